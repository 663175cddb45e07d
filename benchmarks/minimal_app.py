"""The signing contract's minimum on this stack: the bare app plus the receiver's own
signature check, envelope parse and intake script (dedupe + durable enqueue), and nothing
else: no request id, no log line, no counters, no error shape. The receiver against this
row is the price of what it adds around the contract; this row against the ceiling is the
price of the contract itself.
"""

import importlib
import os

from flask import Flask, Response, request


def create_app() -> Flask:
    package = os.environ.get("BENCH_PACKAGE", "tw_webhook_receiver")
    config = importlib.import_module(f"{package}.config")
    connection = importlib.import_module(f"{package}.connection")
    events = importlib.import_module(f"{package}.events")
    intake_module = importlib.import_module(f"{package}.intake")
    signature = importlib.import_module(f"{package}.signature")

    settings = config.settings_from_env()
    secrets = settings.require_secrets()
    intake = intake_module.Intake(connection.connect(settings), settings)
    app = Flask(__name__)

    @app.post("/<path:path>")
    def accept(path: str) -> Response:
        body = request.get_data(cache=False)
        try:
            signature.verify(request.headers.get(signature.HEADER), body, secrets)
            envelope = events.parse(body)
        except (signature.SignatureError, events.InvalidEvent):
            return Response('{"status":"rejected"}', 400, mimetype="application/json")
        added = intake.submit(envelope, body)
        return Response('{"status":"accepted"}', 202 if added else 200, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status":"ok"}', 200, mimetype="application/json")

    return app
