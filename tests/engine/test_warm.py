"""RuleSet.warm generates, before the first call, exactly the plans evaluation then uses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cds_service.app import create_app
from cds_service.engine import EngineSettings, load_ruleset


@pytest.mark.parametrize(
    "settings",
    [EngineSettings(), EngineSettings(profile="awgs2019", ct_cutoffs=None), EngineSettings(ct_cutoffs="prado2008")],
    ids=["ewgsop2-martin", "awgs-default-ct", "ewgsop2-prado"],
)
def test_warm_builds_the_plans_evaluation_uses(settings):
    rs = load_ruleset()
    rs.warm(settings)
    warmed = set(rs._untraced)
    assert {hook for hook, _, _ in warmed} == set(rs.hooks) == {"patient-view", "order-select", "order-sign"}
    for hook in rs.hooks:
        rs.evaluate([], hook=hook, context={"patientId": "p1", "userId": "Practitioner/1"},
                    now=datetime(2026, 11, 29, tzinfo=UTC), settings=settings)
    assert set(rs._untraced) == warmed  # nothing generated at the first call


def test_create_app_warms_the_configured_plans(tmp_path):
    app = create_app({"database": {"url": f"sqlite:///{tmp_path / 'cds.db'}"}, "auth": {"required": False},
                      "rules": {"profile": "awgs2019", "ct_cutoffs": None, "watch": False}})
    rs = app.extensions["cds"].rules.current
    # the configuration resolves AWGS 2019's CT cut-offs to Zhuang 2016 (config.py)
    assert {(hook, "awgs2019", "zhuang2016") for hook in rs.hooks} <= set(rs._untraced)


def test_a_reloaded_set_is_warmed_before_it_serves():
    from cds_service.engine import RuleSetHolder

    holder = RuleSetHolder(None)
    settings = EngineSettings(profile="awgs2019", ct_cutoffs="zhuang2016")
    holder.warm(settings)
    before = holder.current
    assert holder.reload()
    assert holder.current is not before
    assert {(hook, "awgs2019", "zhuang2016") for hook in holder.current.hooks} == set(holder.current._untraced)


def test_a_holder_nobody_warmed_reloads_without_plans():
    from cds_service.engine import RuleSetHolder

    holder = RuleSetHolder(None)
    assert holder.reload()
    assert holder.current._untraced == {}
