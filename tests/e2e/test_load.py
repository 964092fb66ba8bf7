"""Under a flood and against slow clients, `daylight serve` answers in the protocol.

A real `daylight serve` (its worker processes, its admission control) on each
database, driven by raw HTTP/1.1 clients in one event loop: past capacity the
service answers 503 with Retry-After at once, never a timeout, a dropped
connection or a 500; /healthz keeps answering; every acknowledged report is
stored; uploads trickled byte by byte are cut off and leave room for others.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import CHEAP_ARGON2
from tests.e2e.test_serve import daylight
from tests.support.event_loop import run_in_new_loop
from tests.support.ports import free_ports

pytestmark = pytest.mark.serve

TIP = json.dumps(
    {
        "narrative": "A caller from the station phoned my father.",
        "tactics": ["family_pressure"],
        "host_country": "IE",
        "host_city": "Dublin",
        "urgent": False,
    }
).encode()
CLIENT_TIMEOUT_SECONDS = 10


@dataclass
class Server:
    data_dir: Path
    intake_port: int
    staff_port: int
    env: dict[str, str]
    log_path: Path


def start_serve(tmp_path: Path, database_url: str | None, **settings: str) -> Iterator[Server]:
    env = {
        **os.environ,
        "DAYLIGHT_ARGON2__TIME_COST": str(CHEAP_ARGON2.time_cost),
        "DAYLIGHT_ARGON2__MEMORY_COST_KIB": str(CHEAP_ARGON2.memory_cost_kib),
        **{f"DAYLIGHT_{name.upper()}": value for name, value in settings.items()},
    }
    env.pop("DAYLIGHT_DATABASE_URL", None)
    if database_url:
        env["DAYLIGHT_DATABASE_URL"] = database_url
    data_dir = tmp_path / "org"
    created = daylight("demo", "--data-dir", str(data_dir), env=env)
    assert created.returncode == 0, created.stderr
    server = Server(data_dir, *free_ports(2), env, tmp_path / "serve.log")
    with server.log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "serve",
                "--data-dir",
                str(data_dir),
                "--intake-workers",
                "2",
                "--staff-workers",
                "1",
                "--intake-port",
                str(server.intake_port),
                "--staff-port",
                str(server.staff_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            run_in_new_loop(lambda: wait_until_up(server, process))
            yield server
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


async def wait_until_up(server: Server, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            statuses = [
                (await request(port, b"GET", "/healthz"))[0]
                for port in (server.intake_port, server.staff_port)
            ]
            if statuses == [200, 200]:
                return
        except OSError:
            pass
        assert process.poll() is None, server.log_path.read_text()
        assert time.monotonic() < deadline, "daylight serve did not come up"
        await asyncio.sleep(0.2)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("closed without an answer")
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def encode_request(
    method: bytes, path: str, body: bytes = b"", content_type: str = "application/json", close: bool = False
) -> bytes:
    head = [f"{method.decode()} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if method == b"POST":
        head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def request(
    port: int, method: bytes, path: str, body: bytes = b"", content_type: str = "application/json"
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(encode_request(method, path, body, content_type, close=True))
        return await asyncio.wait_for(read_response(reader), CLIENT_TIMEOUT_SECONDS)
    finally:
        writer.close()
        await writer.wait_closed()


@dataclass
class Outcome:
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    busy_without_retry_after: int = 0
    busy_bodies_not_in_the_error_model: int = 0
    dropped: int = 0
    timeouts: int = 0
    receipts: list[str] = field(default_factory=list)
    health_seconds: list[float] = field(default_factory=list)


TIP_REQUEST = encode_request(b"POST", "/api/v1/tips", TIP)
WRONG_RECEIPT_REQUEST = encode_request(
    b"POST", "/api/v1/followup", json.dumps({"receipt": "0000-0000-0000-0000-0000-0000"}).encode()
)
FORM_STEP_REQUEST = encode_request(
    b"POST",
    "/report/step",
    b"step=what&go=next&narrative=They+came+again",
    "application/x-www-form-urlencoded",
)


async def submitter(port: int, stop_at: float, outcome: Outcome, payload: bytes = TIP_REQUEST) -> None:
    """One client posting the same request over a keep-alive connection, as a flood would."""
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while time.monotonic() < stop_at:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = connection
            try:
                writer.write(payload)
                status, headers, body = await asyncio.wait_for(read_response(reader), CLIENT_TIMEOUT_SECONDS)
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
                if isinstance(exc, TimeoutError):
                    outcome.timeouts += 1
                else:
                    outcome.dropped += 1
                writer.close()
                connection = None
                continue
            outcome.statuses[status] += 1
            if status == 201 and payload is TIP_REQUEST:
                outcome.receipts.append(json.loads(body)["receipt"])
            elif status == 503:
                outcome.busy_without_retry_after += "retry-after" not in headers
                outcome.busy_bodies_not_in_the_error_model += set(json.loads(body)) != {"error", "detail"}
                await asyncio.sleep(0.05)
            if headers.get("connection") == "close":
                writer.close()
                connection = None
    finally:
        if connection is not None:
            connection[1].close()
            await connection[1].wait_closed()


async def watch_health(port: int, stop_at: float, outcome: Outcome) -> None:
    while time.monotonic() < stop_at:
        started = time.monotonic()
        status, _, _ = await request(port, b"GET", "/healthz")
        assert status == 200
        outcome.health_seconds.append(time.monotonic() - started)
        await asyncio.sleep(0.1)


async def flood(port: int, clients: int, seconds: float) -> Outcome:
    outcome = Outcome()
    stop_at = time.monotonic() + seconds
    await asyncio.gather(
        *(submitter(port, stop_at, outcome) for _ in range(clients)), watch_health(port, stop_at, outcome)
    )
    return outcome


@pytest.fixture
def small_server(tmp_path: Path, committed_database_url: str | None) -> Iterator[Server]:
    # Capacity far below the flood, so that a short test in CI certainly goes past it.
    yield from start_serve(
        tmp_path,
        committed_database_url,
        max_requests_in_flight="4",
        max_database_requests="2",
        admission_queue="4",
        admission_wait_seconds="0.2",
    )


def test_a_flood_past_capacity_gets_201_or_503_with_retry_after_and_nothing_acknowledged_is_lost(
    small_server: Server,
) -> None:
    outcome = run_in_new_loop(lambda: flood(small_server.intake_port, clients=120, seconds=4))

    assert set(outcome.statuses) == {201, 503}, outcome.statuses
    assert outcome.busy_without_retry_after == 0
    assert outcome.busy_bodies_not_in_the_error_model == 0
    assert (outcome.dropped, outcome.timeouts) == (0, 0)
    assert max(outcome.health_seconds) < 1.0

    async def all_receipts_open() -> collections.Counter[int]:
        answers: collections.Counter[int] = collections.Counter()
        for receipt in outcome.receipts:
            status, _, _ = await request(
                small_server.intake_port,
                b"POST",
                "/api/v1/followup",
                json.dumps({"receipt": receipt}).encode(),
            )
            answers[status] += 1
        return answers

    # Every receipt the flood was given opens its report: an acknowledged tip is stored.
    assert run_in_new_loop(all_receipts_open) == {200: len(outcome.receipts)}


@pytest.fixture
def upload_server(tmp_path: Path, committed_database_url: str | None) -> Iterator[Server]:
    yield from start_serve(
        tmp_path,
        committed_database_url,
        upload_deadline_seconds="3",
        upload_rate_grace_seconds="1",
        upload_min_bytes_per_second="1024",
    )


BOUNDARY = "daylight-test-boundary"


def multipart_tip(file_bytes: bytes) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="narrative"\r\n\r\nThey watch us.\r\n',
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n",
    ]
    return "".join(parts).encode() + file_bytes + f"\r\n--{BOUNDARY}--\r\n".encode()


async def trickle(port: int, outcome: Outcome) -> None:
    """A client that declares a 1 MB upload and sends it a few bytes a second."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = multipart_tip(b"x" * 1_000_000)
    writer.write(
        encode_request(b"POST", "/api/v1/tips", body, f"multipart/form-data; boundary={BOUNDARY}")[
            : -len(body)
        ]
    )
    try:
        for offset in range(0, len(body), 3):
            writer.write(body[offset : offset + 3])
            await writer.drain()
            if reader.at_eof() or len(reader._buffer):
                break
            await asyncio.sleep(1)
        status, _, _ = await asyncio.wait_for(read_response(reader), CLIENT_TIMEOUT_SECONDS)
        outcome.statuses[status] += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        outcome.dropped += 1
    finally:
        writer.close()
        await writer.wait_closed()


def test_trickled_uploads_are_cut_off_and_leave_room_for_normal_uploads(upload_server: Server) -> None:
    async def scenario() -> tuple[Outcome, list[int], float]:
        trickled = Outcome()
        tricklers = [asyncio.create_task(trickle(upload_server.intake_port, trickled)) for _ in range(40)]
        await asyncio.sleep(0.5)
        normal = []
        for _ in range(5):
            status, _, _ = await request(
                upload_server.intake_port,
                b"POST",
                "/api/v1/tips",
                multipart_tip(b"evidence " * 400),
                f"multipart/form-data; boundary={BOUNDARY}",
            )
            normal.append(status)
        started = time.monotonic()
        await asyncio.gather(*tricklers)
        return trickled, normal, time.monotonic() - started

    trickled, normal, waited = run_in_new_loop(scenario)
    assert normal == [201] * 5
    # Each trickler was answered 408 (the minimum rate broken after its grace period), well
    # within the deadline, not left to hold a slot.
    assert trickled.statuses == {408: 40}, (trickled.statuses, trickled.dropped)
    assert waited < 10


def test_a_mixed_flood_of_tips_wrong_receipts_and_form_steps_stays_in_the_protocol(
    small_server: Server,
) -> None:
    """Follow-ups with wrong receipts and the form's steps must not starve tips, block the
    event loop (/healthz), or end in anything but their own answers or a 503."""

    async def mixed() -> tuple[Outcome, Outcome, Outcome]:
        tips, followups, steps = Outcome(), Outcome(), Outcome()
        stop_at = time.monotonic() + 4
        port = small_server.intake_port
        await asyncio.gather(
            *(submitter(port, stop_at, tips) for _ in range(20)),
            *(submitter(port, stop_at, followups, WRONG_RECEIPT_REQUEST) for _ in range(40)),
            *(submitter(port, stop_at, steps, FORM_STEP_REQUEST) for _ in range(10)),
            watch_health(port, stop_at, tips),
        )
        return tips, followups, steps

    tips, followups, steps = run_in_new_loop(mixed)
    assert set(tips.statuses) <= {201, 503}, tips.statuses
    assert set(followups.statuses) <= {401, 503}, followups.statuses
    assert set(steps.statuses) <= {200, 503}, steps.statuses
    # Each kind got through as well as being turned away: no kind starved the others.
    assert min(tips.statuses[201], followups.statuses[401], steps.statuses[200]) > 0
    for outcome in (tips, followups, steps):
        assert (outcome.dropped, outcome.timeouts, outcome.busy_without_retry_after) == (0, 0, 0)
    assert max(tips.health_seconds) < 1.0
