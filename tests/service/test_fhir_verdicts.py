"""FHIR validation remembers its verdicts by content (cds_service/fhir/validate.py Verdicts)."""

from __future__ import annotations

import copy

from cds_service.fhir.validate import Verdicts, validate_resources

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1958-03-14"}
BAD_PATIENT = {"resourceType": "Patient", "id": "p2", "gender": "female", "birthDate": "14/03/1958"}


class Counting:
    """A check that counts how often it runs."""

    def __init__(self, answer: list[str]) -> None:
        self.answer, self.calls = answer, 0

    def __call__(self) -> list[str]:
        self.calls += 1
        return self.answer


def test_same_content_is_checked_once_even_as_a_new_object_with_keys_reordered():
    verdicts, check = Verdicts(), Counting([])
    verdicts.problems(PATIENT, check)
    reordered = dict(reversed(list(copy.deepcopy(PATIENT).items())))
    assert verdicts.problems(reordered, check) == []
    assert check.calls == 1


def test_changed_content_is_checked_again():
    verdicts, check = Verdicts(), Counting([])
    verdicts.problems(PATIENT, check)
    verdicts.problems({**PATIENT, "gender": "male"}, check)
    assert check.calls == 2


def test_an_invalid_resource_is_reported_the_same_way_the_second_time():
    verdicts = Verdicts()
    first = validate_resources([BAD_PATIENT], lambda _r: True, verdicts)
    second = validate_resources([copy.deepcopy(BAD_PATIENT)], lambda _r: True, verdicts)
    assert first == second
    assert first[0] == []
    assert first[1][0]["reference"] == "Patient/p2"
    assert first[1][0]["problems"] == ["birthDate: value_error"]


def test_only_the_newest_verdicts_are_kept():
    verdicts, check = Verdicts(size=2), Counting([])
    for ident in ("a", "b", "c"):
        verdicts.problems({**PATIENT, "id": ident}, check)
    verdicts.problems({**PATIENT, "id": "c"}, check)
    assert check.calls == 3
    verdicts.problems({**PATIENT, "id": "a"}, check)  # forgotten: checked again
    assert check.calls == 4


def test_content_orjson_cannot_write_is_checked_every_time():
    verdicts, check = Verdicts(), Counting([])
    odd = {**PATIENT, "extension": [{"url": "urn:x", "valueInteger": 2**70}]}
    verdicts.problems(odd, check)
    verdicts.problems(odd, check)
    assert check.calls == 2


def test_nothing_of_the_resource_is_kept_but_a_digest():
    verdicts = Verdicts()
    verdicts.problems(PATIENT, Counting([]))
    (key,) = verdicts._known
    assert isinstance(key, bytes) and len(key) == 20


def test_a_request_larger_than_the_memory_is_checked_once_and_then_remembered(monkeypatch):
    from cds_service.fhir import validate

    calls = []
    monkeypatch.setattr(validate, "model_problems", lambda kind, resource: calls.append(1) or [])
    verdicts = Verdicts(size=100)
    patients = [{**PATIENT, "id": f"p{k}"} for k in range(5000)]
    validate_resources(patients, lambda _r: True, verdicts)
    assert len(calls) == 5000
    valid, invalid = validate_resources([copy.deepcopy(p) for p in patients], lambda _r: True, verdicts)
    assert len(calls) == 5000  # all 5,000 remembered (before: the 100 newest, so none in time)
    assert (len(valid), invalid, verdicts.size) == (5000, [], 10000)


def test_the_memory_grows_no_further_than_its_most():
    verdicts = Verdicts(size=10, most=50)
    verdicts.fit(1000)
    assert verdicts.size == 50
