"""A bare Flask app plus one Redis round trip (PING) per request: the ceiling for any
receiver that stores each event before answering, on the same web stack and Redis."""

import os

import redis
from flask import Flask, Response, request


def create_app() -> Flask:
    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])

    @app.post("/<path:path>")
    def accept(path: str) -> Response:
        request.get_data(cache=False)
        client.ping()
        return Response('{"status":"accepted"}', 202, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status":"ok"}', 200, mimetype="application/json")

    return app
