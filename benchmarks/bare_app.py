"""The baseline for the ingest figure: a Flask app that reads the body and answers 202.

It does no signature check, no parsing and no Redis: whatever the receiver reaches as a
fraction of this app is the price of doing the job properly on the same web stack.
"""

from flask import Flask, Response, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/<path:path>")
    def accept(path: str) -> Response:
        request.get_data(cache=False)
        return Response('{"status":"accepted"}', 202, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status":"ok"}', 200, mimetype="application/json")

    return app
