"""Admission control: the service answers 503 at once instead of starving itself.

Threat: a state floods the tip line. Without a bound, every request takes a
worker thread, and every thread then waits for one of the pool's connections,
while the requests that hold those connections wait for a thread to commit:
the process stalls, clients time out, connections drop, and nothing is stored.

Every request with a small body (JSON, a form, a GET) passes these steps in the
event loop, before it takes a thread or a connection:

1. Its body is read whole, within ``max_json_bytes``, an idle timeout and an
   overall deadline (``small_body_deadline_seconds``). A slow client holds
   nothing but its own socket while it sends.
2. It takes one of ``max_requests_in_flight`` slots (a bound on memory and
   latency; a tip waiting for its group commit holds nothing else).
3. If it uses a database session (``DbSession``), the session's dependency
   takes one of ``max_database_requests`` database slots before the session's
   first statement, and gives it back after the commit. The connection pool is
   sized from that number (``serving_pool_size``), so a request holding a slot
   never waits for a connection, and a request waiting for a slot holds no
   thread and no connection.

At either gate a request waits in a bounded queue (``admission_queue``
waiters, at most ``admission_wait_seconds``); past that it is answered ``503``
with ``Retry-After`` in the error model. Uploads (multipart bodies) stream for
minutes: they skip step 1 and 2 and take upload slots
(``max_concurrent_uploads``) in the route, and database slots only for their
two short database steps (``admit``). ``/healthz``, ``/readyz`` and ``/static``
are never gated: an operator must see a live process when every slot is taken.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.kit.config import Settings
from app.kit.errors import N_, AppError, error_body
from app.web.request_body import RequestTimeout

ResultT = TypeVar("ResultT")

UNGATED_PATHS = frozenset({"/healthz", "/readyz"})
UNGATED_PREFIXES = ("/static/",)


class AdmissionGate:
    """At most ``limit`` holders; at most ``queue`` waiters, each for at most ``wait`` seconds.

    First come, first served, in the event loop only (not thread-safe, and needs none).
    """

    def __init__(self, limit: int, *, queue: int, wait: float) -> None:
        self._limit = limit
        self._queue = queue
        self._wait = wait
        self._held = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def held(self) -> int:
        return self._held

    async def acquire(self) -> bool:
        """True once a slot is held (release it); False when the caller must be turned away."""
        if self._held < self._limit and not self._waiters:
            self._held += 1
            return True
        if len(self._waiters) >= self._queue or self._wait <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self._wait)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as the wait ended: pass it on, never lose it.
                self.release()
            else:
                waiter.cancel()
                self._remove(waiter)
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def _remove(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def release(self) -> None:
        # Hand the slot straight to the oldest live waiter; the holder count stays the same.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._held -= 1


TICKET_KEY = "daylight.database_slot"


class AdmissionTicket:
    """One request's hold on a gate: taken at most once at a time, given back once."""

    def __init__(self, gate: AdmissionGate) -> None:
        self._gate = gate
        self._held = False

    async def acquire(self) -> bool:
        if self._held:
            return True
        self._held = await self._gate.acquire()
        return self._held

    def release(self) -> None:
        if self._held:
            self._held = False
            self._gate.release()


class ServiceBusy(AppError):
    status = 503
    code = "busy"
    public_message = N_("The service is busy right now. Please try again in a minute.")


def _database_ticket(request: Request) -> AdmissionTicket | None:
    ticket: AdmissionTicket | None = request.scope.get("state", {}).get(TICKET_KEY)
    return ticket


async def try_admit(request: Request) -> bool:
    """Take this request's database slot (from the event loop, before the first statement);
    False when the gate turns it away. Held until ``release_admission`` or the end of the
    request. Outside the middleware (an app built without it) there is nothing to take."""
    ticket = _database_ticket(request)
    return ticket is None or await ticket.acquire()


async def admit(request: Request) -> None:
    """``try_admit``, or 503 ServiceBusy."""
    if not await try_admit(request):
        raise ServiceBusy


def release_admission(request: Request) -> None:
    ticket = _database_ticket(request)
    if ticket is not None:
        ticket.release()


async def run_admitted(request: Request, work: Callable[[], ResultT]) -> ResultT:
    """``work`` (blocking, database) in a worker thread, within this request's database slot,
    given back as soon as it returns; 503 ServiceBusy when no slot comes."""
    await admit(request)
    try:
        return await run_in_threadpool(work)
    finally:
        release_admission(request)


class _BodyTooLarge(Exception):
    """The small body passed its bound: the route refuses it with its own answer."""


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.in_flight = AdmissionGate(
            settings.max_requests_in_flight,
            queue=settings.admission_queue,
            wait=settings.admission_wait_seconds,
        )
        self.database_slots = AdmissionGate(
            settings.max_database_requests,
            queue=settings.admission_queue,
            wait=settings.admission_wait_seconds,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._with_retry_after(send)
        if _ungated(scope["path"]):
            await self.app(scope, receive, send)
            return
        database_ticket = AdmissionTicket(self.database_slots)
        scope.setdefault("state", {})[TICKET_KEY] = database_ticket
        try:
            if _is_upload(scope):
                await self.app(scope, receive, send)
            else:
                await self._small_request(scope, receive, send)
        finally:
            # Whatever path the request took, its database slot is not kept past its end.
            database_ticket.release()

    async def _small_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            messages = await self._read_small_body(receive)
        except _BodyTooLarge as exc:
            # Replayed as far as it was read, then the rest from the client: the route's own
            # bounded reader answers 413 in its own form (a page for the report form).
            await self.app(scope, _replay(list(exc.args[0]), receive), send)
            return
        except TimeoutError:
            await _refuse(RequestTimeout(), scope, receive, send)
            return
        if messages is None:
            return  # the client went away while sending: nobody to answer
        ticket = AdmissionTicket(self.in_flight)
        if not await ticket.acquire():
            await _refuse(ServiceBusy(), scope, receive, send)  # Retry-After: _with_retry_after
            return
        try:
            await self.app(scope, _replay(messages, receive), send)
        finally:
            ticket.release()

    def _with_retry_after(self, send: Send) -> Send:
        """Every 503, whoever wrote it (a JSON error, a staff page, the report form's page),
        tells the client when to come back: a client that retries at once deepens the flood."""
        retry_after = [(b"retry-after", str(self.settings.retry_after_seconds).encode())]

        async def sending(message: Message) -> None:
            if (
                message["type"] == "http.response.start"
                and message["status"] == 503
                and not any(name.lower() == b"retry-after" for name, _ in message.get("headers", []))
            ):
                message = {**message, "headers": [*message.get("headers", []), *retry_after]}
            await send(message)

        return sending

    async def _read_small_body(self, receive: Receive) -> list[Message] | None:
        limit = self.settings.max_json_bytes
        messages: list[Message] = []
        received = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.small_body_deadline_seconds
        while True:
            timeout = min(self.settings.request_idle_timeout_seconds, deadline - loop.time())
            if timeout <= 0:
                raise TimeoutError
            async with asyncio.timeout(timeout):
                message = await receive()
            if message["type"] == "http.disconnect":
                return None
            messages.append(message)
            received += len(message.get("body", b""))
            if received > limit:
                raise _BodyTooLarge(messages)
            if not message.get("more_body", False):
                return messages


def _ungated(path: str) -> bool:
    return path in UNGATED_PATHS or path.startswith(UNGATED_PREFIXES)


def _is_upload(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"multipart/form-data")
    return False


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = collections.deque(messages)

    async def replayed() -> Message:
        if pending:
            return pending.popleft()
        return await receive()

    return replayed


async def _refuse(error: AppError, scope: Scope, receive: Receive, send: Send) -> None:
    """An answer of the middleware's own, in the one error model (the security headers and the
    request id are added by the middlewares around this one)."""
    await JSONResponse(error_body(error.code, error.public_message), status_code=error.status)(
        scope, receive, send
    )
