"""Application logs: JSON lines with a request id, never the values a call or an exception carried."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.kit.logs import JsonFormatter, RequestIdMiddleware

CANARY = "CANARY-RECEIPT-0000-1111-2222"


def record_with(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    return logging.LogRecord(
        "daylight",
        logging.ERROR,
        __file__,
        1,
        message,
        args,
        (type(exc), exc, exc.__traceback__) if exc else None,
    )


def test_a_line_is_json_without_arguments_or_exception_messages() -> None:
    try:
        int(CANARY)
    except ValueError as error:
        caught = error
    line = JsonFormatter().format(record_with("could not parse %s", CANARY, exc=caught))
    entry = json.loads(line)
    assert CANARY not in line
    assert entry["message"] == "could not parse %s"
    assert entry["exception"] == "ValueError"
    assert entry["level"] == "error"
    assert any("test_logs.py" in frame for frame in entry["traceback"])
    assert entry["time"].endswith("Z")
    assert len(entry["time"]) == len("2026-01-01T00:00:00Z")  # to the second, never finer


def test_each_request_has_an_id_on_its_log_lines_and_its_response() -> None:
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    app = FastAPI()

    @app.get("/boom")
    def boom() -> None:
        logging.getLogger("daylight.test").warning("something odd about %s", CANARY)

    app.add_middleware(RequestIdMiddleware)
    handler = Capture()
    logging.getLogger("daylight.test").addHandler(handler)
    try:
        with TestClient(app) as client:
            first, second = client.get("/boom"), client.get("/boom")
    finally:
        logging.getLogger("daylight.test").removeHandler(handler)
    ids = [json.loads(line)["request_id"] for line in lines]
    assert ids == [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert ids[0] != ids[1]
    assert all(CANARY not in line for line in lines)


def test_an_unhandled_error_logs_the_id_the_client_sees() -> None:
    from app.kit.errors import install_error_handlers

    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError(CANARY)

    handler = Capture()
    logging.getLogger("daylight").addHandler(handler)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/crash")
    finally:
        logging.getLogger("daylight").removeHandler(handler)
    assert response.status_code == 500
    [line] = lines
    entry = json.loads(line)
    assert entry["request_id"] in response.json()["detail"]
    assert entry["exception"] == "RuntimeError"
    assert CANARY not in line
    assert CANARY not in response.text
