"""The names the Flask app imports from cds_service.store stay put."""

import cds_service.store as store_pkg


def test_public_names():
    assert set(store_pkg.__all__) == {
        "FeedbackResult",
        "Store",
        "Suppression",
        "make_suppression",
        "parse_timestamp",
    }
    for name in store_pkg.__all__:
        assert hasattr(store_pkg, name)


def test_suppression_shape():
    s = store_pkg.make_suppression(["a"], ["b"])
    assert s.findings == frozenset({"a"}) and s.suggestions == frozenset({"b"})
    assert isinstance(s.findings, frozenset) and isinstance(s.suggestions, frozenset)


def test_engine_suppression_used_when_the_engine_defines_one(monkeypatch):
    import dataclasses
    import sys
    import types

    from cds_service.store.repository import _suppression_class

    @dataclasses.dataclass(frozen=True)
    class EngineSuppression:
        findings: frozenset[str]
        suggestions: frozenset[str]

    fake = types.ModuleType("cds_service.engine")
    fake.Suppression = EngineSuppression
    monkeypatch.setitem(sys.modules, "cds_service.engine", fake)
    assert _suppression_class.__wrapped__() is EngineSuppression

    class Different:  # another constructor: the store keeps its own class
        def __init__(self, suppressed):
            pass

    fake.Suppression = Different
    from cds_service.store.types import Suppression

    assert _suppression_class.__wrapped__() is Suppression
