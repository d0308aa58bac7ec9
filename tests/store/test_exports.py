"""The names the Flask app imports from cds_service.store stay put."""

import cds_service.store as store_pkg


def test_public_names():
    assert set(store_pkg.__all__) == {
        "FeedbackResult", "Store", "Suppression", "make_suppression", "parse_timestamp",
    }
    for name in store_pkg.__all__:
        assert hasattr(store_pkg, name)


def test_suppression_shape():
    s = store_pkg.make_suppression(["a"], ["b"])
    assert s.findings == frozenset({"a"}) and s.suggestions == frozenset({"b"})
    assert isinstance(s.findings, frozenset) and isinstance(s.suggestions, frozenset)
