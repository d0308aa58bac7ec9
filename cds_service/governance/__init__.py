"""The CDS governance report (figures, alarms, HTML/CSV/JSON) for the committee and operators."""

from cds_service.governance.report import Report, build_report, render

__all__ = ["Report", "build_report", "render"]
