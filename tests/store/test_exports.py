"""The names the Flask app imports from cds_service.store stay put, and the store needs no engine."""

import subprocess
import sys

import cds_service.store as store_pkg
from cds_service.engine import Suppression as EngineSuppression
from cds_service.suppression import Suppression


def test_public_names():
    assert set(store_pkg.__all__) == {
        "FeedbackRejected",
        "FeedbackResult",
        "LiftResult",
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
    assert s.reasons == ()


def test_one_suppression_class_for_store_and_engine():
    assert store_pkg.Suppression is Suppression is EngineSuppression
    assert type(store_pkg.make_suppression([], [])) is EngineSuppression


def test_the_store_imports_nothing_from_the_engine():
    code = (
        "import sys, cds_service.store\n"
        "engine = sorted(m for m in sys.modules if m.startswith('cds_service.engine'))\n"
        "print(engine)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
