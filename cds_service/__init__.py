"""CDS Hooks 2.0 service for cancer-associated sarcopenia."""

__version__ = "0.1.0"
