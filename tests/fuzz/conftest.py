"""Hypothesis profiles for the fuzz tests.

CI runs a deterministic sample (`derandomize=True`, FUZZ_EXAMPLES=300 requests in all by default);
the full run is one command (docs/resilience.md):

    FUZZ_EXAMPLES=6000 python -m pytest tests/fuzz -q -p no:randomly -s

FUZZ_EXAMPLES is the total number of generated cases, shared out over the tests by weight; FUZZ_SEED
(optional) switches from the derandomized sample to a seeded random run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

TOTAL = int(os.environ.get("FUZZ_EXAMPLES", "300"))
settings.register_profile(
    "sarcopenia-fuzz",
    derandomize="FUZZ_SEED" not in os.environ,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture, HealthCheck.large_base_example],
)
