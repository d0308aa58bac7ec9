"""hypothesis-jsonschema 0.23.1 calls `cu.many(...).more()`, which Hypothesis ≥ 6.1xx replaced by an iterator.

`patch()` gives hypothesis_jsonschema a `many` with the old `more()`/`reject()` protocol built on the new one;
nothing else changes. It is a no-op when the installed Hypothesis still has `more()`.
"""

from __future__ import annotations

import types
from typing import Any


def patch() -> None:
    from hypothesis.internal.conjecture import utils as cu
    from hypothesis_jsonschema import _from_schema

    if hasattr(cu.many, "more") or getattr(_from_schema.cu, "_sarcopenia_compat", False):
        return
    new_many = cu.many

    class Many:
        def __init__(self, data: Any, **kwargs: Any) -> None:
            self._many = new_many(data, **kwargs)
            self._many.__enter__()
            self._iterator = iter(self._many)

        def more(self) -> bool:
            try:
                next(self._iterator)
            except StopIteration:
                self._many.__exit__(None, None, None)
                return False
            return True

        def reject(self) -> None:
            self._many.reject()

    shim = types.SimpleNamespace(**{k: getattr(cu, k) for k in dir(cu) if not k.startswith("__")})
    shim.many = Many
    shim._sarcopenia_compat = True
    _from_schema.cu = shim
