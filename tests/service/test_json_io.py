"""JSON in and out (cds_service/api/http.py): the fast orjson path and the json fallback give the same answers."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from cds_service.api.http import json_response, read_json
from cds_service.protocol import ProtocolError


@pytest.fixture
def app():
    return Flask(__name__)


def read(app, raw: bytes, content_type: str = "application/json"):
    with app.test_request_context("/x", method="POST", data=raw, content_type=content_type):
        return read_json()


def test_integer_beyond_64_bits_is_read_as_the_nearest_double(app):
    # as JavaScript and most JSON readers do; no FHIR or CDS Hooks field holds such a number
    assert read(app, b'{"n": 123456789012345678901234567890}') == {"n": 1.2345678901234568e29}


def test_lone_surrogate_escape_is_read_as_json_reads_it(app):
    assert read(app, b'{"s": "\\ud800"}') == {"s": "\ud800"}


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"a": NaN}', "the request body is not valid JSON: NaN is not allowed in JSON"),
    (b'{"a": 1,}', "the request body is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 9"),
    (b'\xff{}', "the request body is not UTF-8 encoded"),
    (b'  ', "the request body is empty; a JSON object is required"),
])
def test_malformed_bodies_keep_their_precise_messages(app, raw, message):
    with pytest.raises(ProtocolError) as caught:
        read(app, raw)
    assert caught.value.status == 400
    assert caught.value.body()["issue"][0]["diagnostics"] == message


def test_response_is_compact_utf8_json(app):
    with app.app_context():
        response = json_response({"summary": "Sarcopénie", "n": [1.5, None, True]})
    assert response.get_data() == '{"summary":"Sarcopénie","n":[1.5,null,true]}'.encode()
    assert response.mimetype == "application/json"


def test_response_with_integer_beyond_64_bits_is_still_written(app):
    with app.app_context():
        response = json_response({"n": 2**70})
    assert json.loads(response.get_data()) == {"n": 2**70}
