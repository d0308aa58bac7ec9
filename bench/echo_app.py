"""The baseline for bench_service.py: a bare Flask app that only parses and echoes JSON."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/cds-services/<service_id>")
def echo(service_id: str):
    """Parse the body and send it back."""
    return jsonify(request.get_json())
