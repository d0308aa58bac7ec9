"""Workers move their startup objects out of the garbage collector's reach (cds_service.cli.freeze_startup_objects)."""

from __future__ import annotations

import gc

from cds_service import gunicorn_conf
from cds_service.cli import freeze_startup_objects


def test_startup_objects_are_frozen_and_new_ones_are_not():
    try:
        freeze_startup_objects()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the interpreter, Flask, the engine, fhir.resources… all imported here
        fresh = [object() for _ in range(3)] + [[] for _ in range(3)]
        # not more: a background thread (a store's checkpoint or card journal) may free a frozen object
        assert gc.get_freeze_count() <= frozen
        assert any(item is fresh[3] for item in gc.get_objects(0) + gc.get_objects(1) + gc.get_objects(2))
    finally:
        gc.unfreeze()


def test_gunicorn_config_freezes_each_worker_after_it_loads_the_app():
    try:
        gunicorn_conf.post_worker_init(None)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
