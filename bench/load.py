"""Load: `daylight serve` against a bare FastAPI endpoint, driven by one client in one run.

    make bench        (or: .venv/bin/python bench/load.py [--quick] [--duration S] [--clients 20,200]
                                                         [--databases sqlite,postgresql] [--workers N])

For each database (SQLite in a temp data dir; PostgreSQL in a throwaway schema on
postgresql://postgres@127.0.0.1:5432/test or DAYLIGHT_TEST_POSTGRES_URL, dropped at the end) a demo
organisation is served by `daylight serve` with N intake workers (N = cores by default). Next to it
runs bench/bare_intake.py under uvicorn with the same N: the same JSON read into the same
``TipSubmission``, answered 201, nothing else (a `daylight serve` without --intake-workers is one
process, and then so is the floor). For each number of concurrent submitters the bare
endpoint and then Daylight are driven by the same client, so machine noise hits both alike:

* every submitter loops posting the README's tip (a different narrative each time) over one
  keep-alive HTTP/1.1 connection, reconnecting when the server closes it; after a 503 it waits
  ``--retry-pause`` (a browser user waits far longer; no pause at all would turn shed load into a
  retry storm). The client is asyncio on raw streams with pre-encoded requests, so that it costs
  a small share of a core; the table shows that share, and the footer its ceiling (answers per
  client CPU-second) next to the bare endpoint's rate.
* a separate process asks ``/healthz`` every 100 ms on its own connection; a thread sums the
  VmRSS of the server's whole process tree every 200 ms, and the CPU time it used.
* afterwards the tips in the database are counted: as many must be stored as were acknowledged.

Then, per database, a slow-upload scenario: 40 clients trickle a multipart upload a few bytes a
second (asking again after each answer, after its Retry-After when it has one) while a few normal
submitters send multipart reports with a 4 KiB file. The server runs with a short upload deadline
(``--upload-deadline``), so the trickling uploads must be cut with 408 within the run.

Exit status 1, naming each, when a criterion is broken: an answer other than 201 or 503 under
load, a 503 without Retry-After, a connection dropped without an answer, no answer within
``--answer-timeout``, /healthz at or above 1 s (or failing), tips stored ≠ 201s received, a
trickling upload not cut by its deadline, or no normal upload accepted. The ratio of Daylight's
tips/s to the bare endpoint's is a target (≥ 0.5), shown but not enforced: on a shared machine it
is the noisiest figure.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import multiprocessing
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import psycopg
from psycopg import sql

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"
POSTGRES_URL = os.environ.get(
    "DAYLIGHT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
README_TIP = {
    "narrative": "A caller from the station phoned my father.",
    "tactics": ["family_pressure"],
    "host_country": "IE",
    "host_city": "Dublin",
    "urgent": False,
}
HEALTHZ_INTERVAL_SECONDS = 0.1
HEALTHZ_TARGET_SECONDS = 1.0
RATIO_TARGET = 0.5
RSS_INTERVAL_SECONDS = 0.2
STOP_GRACE_SECONDS = 10.0
STARTUP_SECONDS = 60.0
SMALL_FILE_BYTES = 4096
TRICKLE_FILE_BYTES = 64 * 1024
# A trickling upload may outlive the deadline by this much (the server checks between chunks,
# and its answer must travel back) before it counts as not cut.
DEADLINE_SLACK_SECONDS = 3.0


# --- HTTP/1.1, just enough of it ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Head:
    status: int
    content_length: int | None
    chunked: bool
    closes: bool
    retry_after: str | None


def parse_head(lines: list[bytes]) -> Head:
    """The status line and the headers that decide framing, reuse and retrying."""
    version, status, *_ = lines[0].split(b" ", 2)
    content_length: int | None = None
    chunked = False
    closes = version == b"HTTP/1.0"
    retry_after: str | None = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            content_length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            closes = closes or b"close" in value.lower()
        elif name == b"retry-after":
            retry_after = value.decode("latin-1")
    return Head(int(status), content_length, chunked, closes, retry_after)


async def read_answer(reader: asyncio.StreamReader) -> Head:
    """One whole response (the body is read and dropped); IncompleteReadError if the server closes first."""
    raw = await reader.readuntil(b"\r\n\r\n")
    head = parse_head(raw[:-4].split(b"\r\n"))
    if head.chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            await reader.readexactly(size + 2)  # the chunk and its CRLF; no trailers expected
            if size == 0:
                break
    elif head.content_length is not None:
        await reader.readexactly(head.content_length)
    else:
        await reader.read()
        return Head(head.status, None, False, True, head.retry_after)
    return head


def read_answer_blocking(stream: BinaryIO) -> Head:
    lines: list[bytes] = []
    while (line := stream.readline()) not in (b"\r\n", b"\n"):
        if not line:
            raise ConnectionError("closed without an answer")
        lines.append(line.rstrip(b"\r\n"))
    head = parse_head(lines)
    if head.content_length is None:
        stream.read()  # close-delimited or chunked: read to the end, the caller reconnects
        return Head(head.status, None, False, True, head.retry_after)
    stream.read(head.content_length)
    return head


def request_bytes(port: int, path: str, content_type: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class JsonTipRequests:
    """The README's tip, pre-encoded around a fixed-width number in its narrative: every request
    is a different report, and making one costs the client a single bytes formatting."""

    MARKER = "0000000000"

    def __init__(self, port: int) -> None:
        narrative = f"{README_TIP['narrative']} It happened again, call {self.MARKER}."
        encoded = request_bytes(
            port,
            "/api/v1/tips",
            "application/json",
            json.dumps({**README_TIP, "narrative": narrative}).encode(),
        )
        self.before, self.after = encoded.split(self.MARKER.encode())

    def request(self, number: int) -> bytes:
        return b"%b%010d%b" % (self.before, number, self.after)


def multipart_body(boundary: str, fields: dict[str, str], file_bytes: bytes) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="note.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n".encode()
        + file_bytes
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def multipart_tip(port: int, number: int, file_bytes: int) -> tuple[bytes, bytes]:
    """(head, body) of a multipart report with one text file of ``file_bytes`` bytes."""
    boundary = f"daylight-bench-{number:08d}"
    fields = {
        "narrative": f"{README_TIP['narrative']} A photo of the letter, number {number}.",
        "tactics": "family_pressure",
        "host_country": "IE",
        "host_city": "Dublin",
    }
    body = multipart_body(boundary, fields, (b"The letter said to come home. " * file_bytes)[:file_bytes])
    request = request_bytes(port, "/api/v1/tips", f"multipart/form-data; boundary={boundary}", body)
    return request[: len(request) - len(body)], body


async def connect(port: int, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.open_connection(HOST, port)
    except OSError:  # refused, reset, or TimeoutError (an OSError too)
        return None


# --- Client processes ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one client process saw; merged across processes by the orchestrator."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    unavailable_without_retry_after: int = 0
    dropped: int = 0
    timeouts: int = 0
    connect_failures: int = 0
    accepted: int = 0  # every 201, warm-up and drain included: what must be stored
    accepted_in_window: int = 0
    latencies: list[float] = field(default_factory=list)  # of the 201s answered in the window
    answers: int = 0
    cpu_seconds: float = 0.0

    def count(self, head: Head, latency: float, in_window: bool) -> None:
        self.answers += 1
        self.statuses[head.status] += 1
        if head.status == 503 and not head.retry_after:
            self.unavailable_without_retry_after += 1
        if head.status == 201:
            self.accepted += 1
            if in_window:
                self.accepted_in_window += 1
                self.latencies.append(latency)

    def merge(self, other: Tally) -> None:
        self.statuses.update(other.statuses)
        self.latencies.extend(other.latencies)
        for name in (
            "unavailable_without_retry_after",
            "dropped",
            "timeouts",
            "connect_failures",
            "accepted",
            "accepted_in_window",
            "answers",
            "cpu_seconds",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_plain(self) -> dict[str, Any]:
        # Plain data across the process boundary: a spawned child's classes live in another module.
        return {**self.__dict__, "statuses": dict(self.statuses)}

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> Tally:
        return cls(**{**plain, "statuses": collections.Counter(plain["statuses"])})


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Window:
    """A run's clock: requests are sent until ``end``; rates and latencies count from ``start``."""

    start: float
    end: float

    @classmethod
    def after(cls, warmup: float, duration: float) -> Window:
        now = time.perf_counter()
        return cls(start=now + warmup, end=now + warmup + duration)

    def holds(self, moment: float) -> bool:
        return self.start <= moment <= self.end


@dataclass(frozen=True)
class LoadPlan:
    port: int
    submitters: list[int]  # this process's submitter numbers
    total_submitters: int
    warmup: float
    duration: float
    answer_timeout: float
    retry_pause: float


async def submit_in_a_loop(
    number: int, plan: LoadPlan, requests: JsonTipRequests, window: Window, tally: Tally
) -> None:
    stream = None
    sequence = number
    while time.perf_counter() < window.end:
        if stream is None:
            stream = await connect(plan.port, plan.answer_timeout)
            if stream is None:
                tally.connect_failures += 1
                await asyncio.sleep(0.1)
                continue
        reader, writer = stream
        request = requests.request(sequence)
        sequence += plan.total_submitters
        sent_at = time.perf_counter()
        try:
            async with asyncio.timeout(plan.answer_timeout):
                writer.write(request)
                await writer.drain()
                head = await read_answer(reader)
        except TimeoutError:
            tally.timeouts += 1
            writer.transport.abort()
            stream = None
            continue
        except (asyncio.IncompleteReadError, OSError):
            tally.dropped += 1
            writer.transport.abort()
            stream = None
            continue
        answered_at = time.perf_counter()
        tally.count(head, answered_at - sent_at, window.holds(answered_at))
        if head.closes:
            writer.close()
            stream = None
        if head.status == 503:
            await asyncio.sleep(plan.retry_pause)
    if stream is not None:
        stream[1].close()


def load_client(plan: LoadPlan, ready: Any, results: Any) -> None:
    """A client process: its share of the submitters on one event loop."""
    requests = JsonTipRequests(plan.port)
    tally = Tally()

    async def drive() -> None:
        window = Window.after(plan.warmup, plan.duration)
        await asyncio.gather(
            *(submit_in_a_loop(number, plan, requests, window, tally) for number in plan.submitters)
        )

    ready.wait()
    started = cpu_seconds()
    asyncio.run(drive())
    tally.cpu_seconds = cpu_seconds() - started
    results.put(("load", tally.as_plain()))


def healthz_sampler(port: int, seconds: float, timeout: float, ready: Any, results: Any) -> None:
    """A process of its own, so that the load client's event loop does not delay the samples."""
    request = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    failures = 0
    connection: socket.socket | None = None
    stream: BinaryIO | None = None
    ready.wait()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        try:
            if connection is None or stream is None:
                connection = socket.create_connection((HOST, port), timeout=timeout)
                stream = connection.makefile("rb")
            connection.sendall(request)
            head = read_answer_blocking(stream)
            healthy = head.status == 200
            if head.closes:
                connection.close()
                connection = stream = None
        except OSError:  # refused, reset, closed, or no answer within the timeout
            healthy = False
            if connection is not None:
                connection.close()
            connection = stream = None
        elapsed = time.perf_counter() - started
        latencies.append(elapsed)
        failures += not healthy
        time.sleep(max(0.0, HEALTHZ_INTERVAL_SECONDS - elapsed))
    if connection is not None:
        connection.close()
    results.put(("healthz", {"latencies": latencies, "failures": failures}))


# --- Slow uploads --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlowUploadPlan:
    port: int
    tricklers: int
    trickle_bytes_per_second: int
    normal_submitters: int
    head_start: float  # the tricklers take the upload slots first
    duration: float
    answer_timeout: float
    normal_retry_pause: float


@dataclass
class TrickleTally:
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    without_retry_after: collections.Counter[int] = field(default_factory=collections.Counter)
    dropped: int = 0
    connect_failures: int = 0
    longest_held_until_answer: float = 0.0
    held_at_end: list[float] = field(default_factory=list)  # seconds, for uploads never answered

    def as_plain(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "statuses": dict(self.statuses),
            "without_retry_after": dict(self.without_retry_after),
        }


def retry_delay(head: Head, remaining: float) -> float:
    try:
        delay = float(head.retry_after) if head.retry_after else 1.0
    except ValueError:  # an HTTP date: not sent by this server, so wait a second
        delay = 1.0
    return max(0.0, min(delay, remaining))


async def trickle(number: int, plan: SlowUploadPlan, end: float, tally: TrickleTally) -> None:
    """Upload a report a few bytes a second, again after each answer, until ``end``."""
    head_bytes, body = multipart_tip(plan.port, 1_000_000 + number, TRICKLE_FILE_BYTES)
    while time.perf_counter() < end:
        stream = await connect(plan.port, plan.answer_timeout)
        if stream is None:
            tally.connect_failures += 1
            await asyncio.sleep(1)
            continue
        reader, writer = stream
        began = time.perf_counter()
        answer = asyncio.ensure_future(read_answer(reader))
        writer.write(head_bytes)
        sent = 0
        while not answer.done() and time.perf_counter() < end:
            if sent < len(body):
                writer.write(body[sent : sent + plan.trickle_bytes_per_second])
                sent += plan.trickle_bytes_per_second
            await asyncio.wait({answer}, timeout=1.0)
        if not answer.done():
            answer.cancel()
            tally.held_at_end.append(time.perf_counter() - began)
            writer.transport.abort()
            return
        writer.transport.abort()
        try:
            head = answer.result()
        except (asyncio.IncompleteReadError, OSError):
            tally.dropped += 1
            await asyncio.sleep(1)
            continue
        tally.statuses[head.status] += 1
        if not head.retry_after:
            tally.without_retry_after[head.status] += 1
        tally.longest_held_until_answer = max(tally.longest_held_until_answer, time.perf_counter() - began)
        await asyncio.sleep(retry_delay(head, end - time.perf_counter()))


async def submit_uploads(number: int, plan: SlowUploadPlan, window: Window, tally: Tally) -> None:
    """Normal multipart reports, each on a fresh connection (the server may close after an upload)."""
    variant = number
    while time.perf_counter() < window.end:
        stream = await connect(plan.port, plan.answer_timeout)
        if stream is None:
            tally.connect_failures += 1
            await asyncio.sleep(0.1)
            continue
        reader, writer = stream
        head_bytes, body = multipart_tip(plan.port, variant, SMALL_FILE_BYTES)
        variant += plan.normal_submitters
        sent_at = time.perf_counter()
        try:
            async with asyncio.timeout(plan.answer_timeout):
                writer.write(head_bytes + body)
                await writer.drain()
                head = await read_answer(reader)
        except TimeoutError:
            tally.timeouts += 1
            continue
        except (asyncio.IncompleteReadError, OSError):
            tally.dropped += 1
            continue
        finally:
            writer.transport.abort()
        answered_at = time.perf_counter()
        tally.count(head, answered_at - sent_at, window.holds(answered_at))
        if head.status == 503:
            await asyncio.sleep(plan.normal_retry_pause)


def slow_upload_client(plan: SlowUploadPlan, ready: Any, results: Any) -> None:
    tricklers = TrickleTally()
    normal = Tally()

    async def drive() -> None:
        window = Window.after(plan.head_start, plan.duration)
        await asyncio.gather(
            *(trickle(number, plan, window.end, tricklers) for number in range(plan.tricklers)),
            *(
                delayed(plan.head_start, submit_uploads(number, plan, window, normal))
                for number in range(plan.normal_submitters)
            ),
        )

    ready.wait()
    started = cpu_seconds()
    asyncio.run(drive())
    normal.cpu_seconds = cpu_seconds() - started
    results.put(("slow", {"normal": normal.as_plain(), "tricklers": tricklers.as_plain()}))


async def delayed(seconds: float, work: Any) -> None:
    await asyncio.sleep(seconds)
    await work


# --- Servers and organisations ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(port: int, path: str) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as connection:
            connection.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            return read_answer_blocking(connection.makefile("rb")).status == 200
    except OSError:
        return False


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path


class PortTaken(RuntimeError):
    """Another process took a port between free_port() and the server's bind: try other ports."""


def start_server(name: str, command: list[str], env: dict[str, str], ports: list[int], log: Path) -> Server:
    """A server in a process group of its own, healthy on every port."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + STARTUP_SECONDS
    while not all(http_ok(port, "/healthz") for port in ports):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_group(process)  # first, so that the log is whole
            said = log.read_text(errors="replace")
            failure = PortTaken if "Address already in use" in said else RuntimeError
            raise failure(f"{name} did not start: {said[-2000:]}")
        time.sleep(0.2)
    return Server(name, process, ports[0], log)


@contextlib.contextmanager
def running_server(
    name: str, command_on: Callable[[list[int]], list[str]], env: dict[str, str], port_count: int, log: Path
) -> Iterator[Server]:
    """``command_on(ports)`` started on free ports; stopped with its whole process group."""
    attempts = 3
    for attempt in range(attempts):
        ports = [free_port() for _ in range(port_count)]
        try:
            server = start_server(name, command_on(ports), env, ports, log)
            break
        except PortTaken:
            if attempt == attempts - 1:
                raise
    try:
        yield server
    finally:
        stop_group(server.process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # Workers may outlive a supervisor that exited first: the group goes with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def daylight_command() -> list[str]:
    script = Path(sys.executable).with_name("daylight")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app"]


def serve_takes_worker_flags() -> bool:
    """The worker flags are new; without them `daylight serve` is one process, and so is the floor."""
    shown = subprocess.run(
        [*daylight_command(), "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    return "--intake-workers" in shown and "--staff-workers" in shown


def psycopg_url() -> str:
    return POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1)


@dataclass
class Organisation:
    database: str
    data_dir: Path
    env: dict[str, str]
    count_tips: Callable[[], int]


@contextlib.contextmanager
def demo_organisation(database: str, scratch: Path, env: dict[str, str]) -> Iterator[Organisation]:
    data_dir = scratch / f"org-{database}"
    env = dict(env)
    schema = None
    if database == "postgresql":
        schema = f"daylight_bench_load_{os.urandom(4).hex()}"
        with psycopg.connect(psycopg_url(), autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        separator = "&" if "?" in POSTGRES_URL else "?"
        env["DAYLIGHT_DATABASE_URL"] = f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    try:
        created = subprocess.run(
            [*daylight_command(), "demo", "--data-dir", str(data_dir)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"daylight demo failed on {database}: {created.stderr[-2000:]}")
        yield Organisation(database, data_dir, env, lambda: count_tips(data_dir, schema))
    finally:
        if schema is not None:
            with psycopg.connect(psycopg_url(), autocommit=True, connect_timeout=5) as admin:
                admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def count_tips(data_dir: Path, schema: str | None) -> int:
    if schema is None:
        with contextlib.closing(sqlite3.connect(data_dir / "daylight.sqlite3")) as connection:
            return int(connection.execute("SELECT count(*) FROM tips").fetchone()[0])
    with psycopg.connect(psycopg_url(), connect_timeout=5) as connection:
        statement = sql.SQL("SELECT count(*) FROM {}.tips").format(sql.Identifier(schema))
        row = connection.execute(statement).fetchone()
        assert row is not None
        return int(row[0])


def settled_count(count: Callable[[], int]) -> int:
    """The count once two readings half a second apart agree (a late commit would show up)."""
    previous = count()
    for _ in range(20):
        time.sleep(0.5)
        current = count()
        if current == previous:
            return current
        previous = current
    return previous


# --- Measuring a run ----------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """The process and its descendants: the workers of a server, whatever spawned them."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_bytes()
            except OSError:  # the process ended while we looked
                continue
            parent = int(stat.rsplit(b")", 1)[1].split()[1])
            children[parent].append(int(entry.name))
    tree = []
    pending = [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def rss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of stat(5)


class ServerTreeSampler:
    """Samples the server's process tree in a thread while the run goes on: the peak of its summed
    RSS, and the CPU it used (in cores), which says whether it had the machine to itself."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_rss = 0
        self.cores = 0.0
        self._first_ticks: dict[int, int] = {}
        self._last_ticks: dict[int, int] = {}
        self._started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def _sample(self) -> None:
        rss = 0
        for pid in process_tree(self.root):
            rss += rss_bytes(pid)
            ticks = cpu_ticks(pid)
            if ticks is not None:
                self._first_ticks.setdefault(pid, ticks)
                self._last_ticks[pid] = ticks
        self.peak_rss = max(self.peak_rss, rss)

    def _sample_until_stopped(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(RSS_INTERVAL_SECONDS)

    def __enter__(self) -> ServerTreeSampler:
        self._started = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        used = sum(self._last_ticks[pid] - first for pid, first in self._first_ticks.items())
        self.cores = used / os.sysconf("SC_CLK_TCK") / (time.perf_counter() - self._started)


@dataclass
class Healthz:
    latencies: list[float]
    failures: int

    @property
    def worst(self) -> float:
        return max(self.latencies, default=math.inf)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def run_clients(
    server: Server, targets: list[tuple[Callable[..., None], Any]], seconds: float, answer_timeout: float
) -> tuple[list[tuple[str, Any]], Healthz, ServerTreeSampler]:
    """Run the client processes and the /healthz sampler together; returns their results,
    the /healthz samples and what the server's process tree used meanwhile."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(len(targets) + 2)
    results = context.Queue()
    processes = [context.Process(target=target, args=(plan, ready, results)) for target, plan in targets]
    processes.append(
        context.Process(target=healthz_sampler, args=(server.port, seconds, answer_timeout, ready, results))
    )
    for process in processes:
        process.start()
    collected: list[tuple[str, Any]] = []
    try:
        ready.wait(timeout=STARTUP_SECONDS)
        with ServerTreeSampler(server.process.pid) as sampler:
            for _ in processes:
                collected.append(results.get(timeout=seconds + 2 * answer_timeout + STARTUP_SECONDS))
    finally:
        for process in processes:
            process.join(timeout=STOP_GRACE_SECONDS)
            if process.is_alive():
                process.kill()
    healthz = next(Healthz(**plain) for kind, plain in collected if kind == "healthz")
    return [(kind, plain) for kind, plain in collected if kind != "healthz"], healthz, sampler


@dataclass
class LoadRun:
    database: str
    clients: int
    server: str
    duration: float  # the measured window
    elapsed: float  # warm-up and window: what the client's CPU time is spread over
    tally: Tally
    healthz: Healthz
    peak_rss: int
    server_cores: float
    stored: int | None = None  # tips the database gained; None for the bare endpoint
    ratio: float | None = None

    @property
    def tips_per_second(self) -> float:
        return self.tally.accepted_in_window / self.duration

    def failures(self) -> list[str]:
        """Broken criteria. On the bare endpoint only what would mean a broken client or machine
        counts: its /healthz and storage are not Daylight's."""
        label = f"{self.database}, {self.clients} clients, {self.server}"
        tally = self.tally
        found = [
            f"{label}: {count} answers with status {status}"
            for status, count in sorted(tally.statuses.items())
            if status not in (201, 503)
        ]
        if tally.unavailable_without_retry_after:
            found.append(f"{label}: {tally.unavailable_without_retry_after} 503s without Retry-After")
        if tally.dropped:
            found.append(f"{label}: {tally.dropped} connections closed without an answer")
        if tally.connect_failures:
            found.append(f"{label}: {tally.connect_failures} connections refused or not accepted in time")
        if tally.timeouts:
            found.append(f"{label}: {tally.timeouts} requests unanswered within the timeout")
        is_daylight = self.stored is not None
        if is_daylight and (self.healthz.failures or self.healthz.worst >= HEALTHZ_TARGET_SECONDS):
            found.append(
                f"{label}: /healthz took up to {self.healthz.worst * 1e3:.0f} ms "
                f"({self.healthz.failures} failed of {len(self.healthz.latencies)})"
            )
        if not tally.accepted:
            found.append(f"{label}: no tip accepted")
        if is_daylight and self.stored != tally.accepted:
            found.append(f"{label}: {self.stored} tips stored, {tally.accepted} acknowledged with 201")
        return found


def run_load(
    server: Server, database: str, clients: int, args: argparse.Namespace, count: Callable[[], int] | None
) -> LoadRun:
    processes = max(1, min(args.client_processes, clients))
    plans = [
        LoadPlan(
            port=server.port,
            submitters=list(range(index, clients, processes)),
            total_submitters=clients,
            warmup=args.warmup,
            duration=args.duration,
            answer_timeout=args.answer_timeout,
            retry_pause=args.retry_pause,
        )
        for index in range(processes)
    ]
    before = count() if count else None
    results, healthz, sampler = run_clients(
        server, [(load_client, plan) for plan in plans], args.warmup + args.duration, args.answer_timeout
    )
    tally = Tally()
    for _, plain in results:
        tally.merge(Tally.from_plain(plain))
    stored = settled_count(count) - before if count and before is not None else None
    run = LoadRun(
        database,
        clients,
        server.name,
        args.duration,
        args.warmup + args.duration,
        tally,
        healthz,
        sampler.peak_rss,
        sampler.cores,
        stored,
    )
    progress(
        f"{database}, {clients} clients, {server.name}: {run.tips_per_second:,.0f} tips/s, "
        f"statuses {dict(sorted(tally.statuses.items()))}"
    )
    return run


@dataclass
class SlowUploadRun:
    database: str
    normal: Tally
    tricklers: dict[str, Any]
    healthz: Healthz
    peak_rss: int
    stored: int
    deadline: float

    def failures(self) -> list[str]:
        label = f"{self.database}, slow uploads"
        normal = self.normal
        found = [
            f"{label}: {count} normal uploads answered {status}"
            for status, count in sorted(normal.statuses.items())
            if status not in (201, 503)
        ]
        if normal.unavailable_without_retry_after:
            found.append(f"{label}: {normal.unavailable_without_retry_after} 503s without Retry-After")
        if normal.dropped or normal.timeouts or normal.connect_failures:
            found.append(
                f"{label}: normal uploads {normal.dropped} dropped, {normal.timeouts} timed out, "
                f"{normal.connect_failures} not connected"
            )
        if not normal.accepted:
            found.append(f"{label}: no normal upload accepted")
        held = max([self.tricklers["longest_held_until_answer"], *self.tricklers["held_at_end"]])
        if held > self.deadline + DEADLINE_SLACK_SECONDS:
            found.append(
                f"{label}: a trickling upload was held {held:.1f} s, past the {self.deadline:g} s deadline"
            )
        if self.healthz.failures or self.healthz.worst >= HEALTHZ_TARGET_SECONDS:
            found.append(f"{label}: /healthz took up to {self.healthz.worst * 1e3:.0f} ms")
        if self.stored != normal.accepted:
            found.append(f"{label}: {self.stored} tips stored, {normal.accepted} acknowledged with 201")
        return found


def run_slow_uploads(
    server: Server, database: str, args: argparse.Namespace, count: Callable[[], int]
) -> SlowUploadRun:
    plan = SlowUploadPlan(
        port=server.port,
        tricklers=args.tricklers,
        trickle_bytes_per_second=args.trickle_bytes_per_second,
        normal_submitters=args.normal_uploaders,
        head_start=1.0,
        duration=args.slow_duration,
        answer_timeout=args.answer_timeout,
        normal_retry_pause=0.5,
    )
    before = count()
    results, healthz, sampler = run_clients(
        server, [(slow_upload_client, plan)], plan.head_start + plan.duration, args.answer_timeout
    )
    plain = results[0][1]
    run = SlowUploadRun(
        database,
        Tally.from_plain(plain["normal"]),
        plain["tricklers"],
        healthz,
        sampler.peak_rss,
        settled_count(count) - before,
        args.upload_deadline,
    )
    progress(
        f"{database}, slow uploads: normal {dict(sorted(run.normal.statuses.items()))}, "
        f"tricklers {plain['tricklers']['statuses']}"
    )
    return run


# --- The table ----------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


def statuses_text(statuses: dict[int, int]) -> str:
    return " ".join(f"{status}×{count}" for status, count in sorted(statuses.items())) or "-"


def mib(size: int) -> str:
    return f"{size / 2**20:.0f}"


def print_load_table(runs: list[LoadRun]) -> None:
    print(
        f"{'database':<10} {'clients':>7} {'server':<8} {'tips/s':>8} {'p50 ms':>7} {'p99 ms':>7}  "
        f"{'answers by status':<20} {'503 no RA':>9} {'dropped':>7} {'timeouts':>8} "
        f"{'healthz p99/max ms':>18} {'RSS MiB':>7} {'server CPU':>10} {'client CPU':>10} {'ratio':>5} "
        f"{'stored/201':>12}"
    )
    for run in runs:
        tally = run.tally
        statuses = statuses_text(tally.statuses)
        if tally.connect_failures:
            statuses += f" refused×{tally.connect_failures}"
        ratio = "" if run.ratio is None else f"{run.ratio:.2f}{'' if run.ratio >= RATIO_TARGET else '!'}"
        stored = "" if run.stored is None else f"{run.stored}/{tally.accepted}"
        healthz = f"{run.healthz.p99 * 1e3:.0f} / {run.healthz.worst * 1e3:.0f}"
        client_cpu = f"{tally.cpu_seconds / run.elapsed:.2f}"
        p50, p99 = percentile(tally.latencies, 0.5) * 1e3, percentile(tally.latencies, 0.99) * 1e3
        print(
            f"{run.database:<10} {run.clients:>7} {run.server:<8} {run.tips_per_second:>8.0f} "
            f"{p50:>7.1f} {p99:>7.1f}  {statuses:<20} {tally.unavailable_without_retry_after:>9} "
            f"{tally.dropped:>7} {tally.timeouts:>8} {healthz:>18} {mib(run.peak_rss):>7} "
            f"{run.server_cores:>10.2f} {client_cpu:>10} "
            f"{ratio:>5} {stored:>12}"
        )


def print_slow_table(runs: list[SlowUploadRun], args: argparse.Namespace) -> None:
    print(
        f"\nslow uploads: {args.tricklers} clients trickling {args.trickle_bytes_per_second} B/s "
        f"(upload deadline {args.upload_deadline:g} s, minimum {args.upload_min_rate} B/s), "
        f"{args.normal_uploaders} normal submitters of a {SMALL_FILE_BYTES // 1024} KiB file "
        f"for {args.slow_duration:g} s.\nA trickler starts again after each answer (after its Retry-After, "
        f"or 1 s), so some are mid-upload at the end; one held past the deadline + "
        f"{DEADLINE_SLACK_SECONDS:g} s fails"
    )
    print(
        f"{'database':<10} {'normal: tried':>13} {'201':>5} {'503+RA':>6} {'503 no RA':>9} {'other':>5} "
        f"{'lost':>4}  {'tricklers: answers':<28} {'held max s':>10} {'held, unanswered at end':>23} "
        f"{'healthz p99/max ms':>18} {'RSS MiB':>7} {'stored/201':>10}"
    )
    for run in runs:
        normal = run.normal
        unavailable = normal.statuses.get(503, 0)
        other = sum(count for status, count in normal.statuses.items() if status not in (201, 503))
        lost = normal.dropped + normal.timeouts + normal.connect_failures
        tricklers = run.tricklers
        answers = statuses_text({int(status): count for status, count in tricklers["statuses"].items()})
        missing = tricklers["without_retry_after"].get(503, 0)
        if missing:
            answers += f" (503 no RA×{missing})"
        if tricklers["dropped"]:
            answers += f" dropped×{tricklers['dropped']}"
        held_at_end = tricklers["held_at_end"]
        at_end = f"{len(held_at_end)}, ≤{max(held_at_end):.1f} s" if held_at_end else "0"
        healthz = f"{run.healthz.p99 * 1e3:.0f} / {run.healthz.worst * 1e3:.0f}"
        without_retry_after = normal.unavailable_without_retry_after
        print(
            f"{run.database:<10} {normal.answers + lost:>13} {normal.statuses.get(201, 0):>5} "
            f"{unavailable - without_retry_after:>6} {without_retry_after:>9} {other:>5} {lost:>4}  "
            f"{answers:<28} {tricklers['longest_held_until_answer']:>10.1f} "
            f"{at_end:>23} {healthz:>18} {mib(run.peak_rss):>7} {f'{run.stored}/{normal.accepted}':>10}"
        )


# --- Main ----------------------------------------------------------------------------------------------


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 20; --quick 3)")
    parser.add_argument(
        "--warmup", type=float, help="seconds of load before measuring (default 2; --quick 0.5)"
    )
    parser.add_argument("--clients", default="20,200", help="concurrent submitters, comma-separated")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="intake workers of both servers (default: the number of cores)",
    )
    parser.add_argument(
        "--client-processes", type=int, default=1, help="processes the load client is split over"
    )
    parser.add_argument(
        "--answer-timeout", type=float, default=10.0, help="seconds without an answer that count as a timeout"
    )
    parser.add_argument(
        "--retry-pause", type=float, default=0.1, help="seconds a submitter waits after a 503"
    )
    parser.add_argument(
        "--slow-duration", type=float, help="seconds of normal uploads (default 20; --quick 8)"
    )
    parser.add_argument(
        "--upload-deadline",
        type=float,
        help="DAYLIGHT_UPLOAD_DEADLINE_SECONDS of the served app (default 10; --quick 4)",
    )
    parser.add_argument(
        "--upload-min-rate",
        type=int,
        default=1024,
        help="DAYLIGHT_UPLOAD_MIN_BYTES_PER_SECOND of the served app",
    )
    parser.add_argument("--tricklers", type=int, default=40)
    parser.add_argument("--trickle-bytes-per-second", type=int, default=4)
    parser.add_argument("--normal-uploaders", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke check, not a measurement")
    args = parser.parse_args()
    quick = args.quick
    for name, full, short in (
        ("duration", 20.0, 3.0),
        ("warmup", 2.0, 0.5),
        ("slow_duration", 20.0, 8.0),
        ("upload_deadline", 10.0, 4.0),
    ):
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    args.client_counts = [int(count) for count in args.clients.split(",") if count]
    args.database_names = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = set(args.database_names) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown databases: {', '.join(sorted(unknown))}")
    return args


def server_environment(args: argparse.Namespace) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("DAYLIGHT_")}
    env.update(
        {
            # Logins are not measured here; cheap Argon2id makes `daylight demo` quick.
            "DAYLIGHT_ARGON2__TIME_COST": "1",
            "DAYLIGHT_ARGON2__MEMORY_COST_KIB": "8",
            # Short enough that the slow-upload scenario sees its tricklers cut within the run.
            "DAYLIGHT_UPLOAD_DEADLINE_SECONDS": f"{args.upload_deadline:g}",
            "DAYLIGHT_UPLOAD_MIN_BYTES_PER_SECOND": str(args.upload_min_rate),
        }
    )
    return env


class ServerExited(RuntimeError):
    pass


def still_running(server: Server) -> None:
    if server.process.poll() is not None:
        raise ServerExited(
            f"{server.name} exited with status {server.process.returncode} during the "
            f"runs; its log ends: {server.log.read_text(errors='replace')[-2000:]}"
        )


def bench_database(
    database: str,
    bare: Server,
    args: argparse.Namespace,
    env: dict[str, str],
    scratch: Path,
    daylight_workers: list[str],
    load_runs: list[LoadRun],
    slow_runs: list[SlowUploadRun],
) -> None:
    """Every run on one database, appended as it completes (a server that dies ends the rest)."""
    progress(f"{database}: a demo organisation")
    with (
        demo_organisation(database, scratch, env) as organisation,
        running_server(
            "daylight",
            lambda ports: [
                *daylight_command(),
                "serve",
                "--data-dir",
                str(organisation.data_dir),
                "--host",
                HOST,
                "--intake-port",
                str(ports[0]),
                "--staff-port",
                str(ports[1]),
                *daylight_workers,
            ],
            organisation.env,
            2,
            scratch / f"daylight-{database}.log",
        ) as daylight,
    ):
        for clients in args.client_counts:
            floor = run_load(bare, database, clients, args, None)
            real = run_load(daylight, database, clients, args, organisation.count_tips)
            if floor.tips_per_second:
                real.ratio = real.tips_per_second / floor.tips_per_second
            load_runs += [floor, real]
            still_running(bare)
            still_running(daylight)
        slow_runs.append(run_slow_uploads(daylight, database, args, organisation.count_tips))
        still_running(daylight)


def main() -> int:
    args = parse_arguments()
    env = server_environment(args)
    notes: list[str] = []
    workers = args.workers
    daylight_workers: list[str] = []
    if serve_takes_worker_flags():
        daylight_workers = ["--intake-workers", str(workers), "--staff-workers", "1"]
    else:
        workers = 1
        notes.append("`daylight serve` has no --intake-workers yet: both servers ran as one process")
    load_runs: list[LoadRun] = []
    slow_runs: list[SlowUploadRun] = []
    failures: list[str] = []

    def bare_command(ports: list[int]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_intake:app",
            "--app-dir",
            str(BENCH_DIR),
            "--host",
            HOST,
            "--port",
            str(ports[0]),
            "--workers",
            str(workers),
            "--no-access-log",
            "--no-server-header",
            "--no-proxy-headers",
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ]

    with (
        tempfile.TemporaryDirectory(prefix="daylight-load-") as scratch_name,
        running_server("bare", bare_command, env, 1, Path(scratch_name) / "bare.log") as bare,
    ):
        for database in args.database_names:
            try:
                bench_database(
                    database, bare, args, env, Path(scratch_name), daylight_workers, load_runs, slow_runs
                )
            except (psycopg.OperationalError, RuntimeError) as exc:
                failures.append(f"{database}: {exc}")

    print(
        f"\nload: {args.duration:g} s measured after {args.warmup:g} s of warm-up per run, "
        f"{workers} intake worker(s) on {os.cpu_count()} cores; latencies of 201s; CPU in cores; "
        f"ratio = Daylight tips/s ÷ bare tips/s in the same run (target ≥ {RATIO_TARGET}, '!' below it)"
    )
    print_load_table(load_runs)
    print_slow_table(slow_runs, args)
    floors = [run for run in load_runs if run.server == "bare" and run.tally.cpu_seconds > 0]
    if floors:
        ceiling = min(run.tally.answers / run.tally.cpu_seconds for run in floors)
        fastest = max(run.tally.answers / run.elapsed for run in floors)
        print(
            f"\nclient ceiling: at least {ceiling:,.0f} answers per client CPU-second (lowest over the "
            f"bare runs), against at most {fastest:,.0f} answers/s from the bare endpoint: "
            f"{'the client is not' if ceiling > 2 * fastest else 'the client may be'} the bottleneck"
        )
    notes += [
        f"{run.database}, {run.clients} clients: Daylight made {run.ratio:.2f} of the bare endpoint's "
        f"tips/s, below the {RATIO_TARGET} target (a target, not an exit criterion)"
        for run in load_runs
        if run.ratio is not None and run.ratio < RATIO_TARGET
    ]
    for note in notes:
        print(note)
    for run in load_runs:
        failures += run.failures()
    for slow in slow_runs:
        failures += slow.failures()
    if failures:
        print("\nFAILED:")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print("\nall criteria met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
