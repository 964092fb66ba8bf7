"""Holding each image's price against the process's memory budget, before the memory is used."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Final, Self

from app.intake.cleaning.errors import ImageCleaningBusy, ImageExceedsMemoryBudget

# How long an image waits for others to give memory back (and, in app.intake.attachments, for a
# cleaning slot) before it is refused with 503: longer than cleaning the largest accepted photo
# takes, so a burst of ordinary submissions queues rather than fails; short enough that a
# thread and an upload slot are not held for long, and that a stream of costly pictures cannot
# build a queue that ordinary ones wait minutes in.
CLEANING_WAIT_SECONDS: Final = 10.0


class ImageMemoryBudget:
    """A bound on the bytes image cleaning holds at once in one process.

    Threat: every photo is held whole and decoded whole, and a small file can claim a canvas
    worth gigabytes; the pixel and byte limits bound one image, not how many are in flight. Each
    image reserves what it will hold before holding it (`reservation()`); what does not fit waits
    a little for others to finish, then is refused, so the process's memory, not its luck,
    decides. Thread-safe: cleaning runs in worker threads.
    """

    def __init__(self, limit_bytes: int, *, wait_seconds: float = CLEANING_WAIT_SECONDS) -> None:
        if limit_bytes <= 0 or wait_seconds < 0:
            raise ValueError("an image memory budget needs a positive size and a wait of zero or more")
        self.limit_bytes = limit_bytes
        self.wait_seconds = wait_seconds
        self._in_use = 0
        self._given_back = threading.Condition()

    @property
    def in_use_bytes(self) -> int:
        with self._given_back:
            return self._in_use

    def reservation(self) -> ImageMemoryReservation:
        """What one image holds: starts empty, grows and shrinks with it, released at the end."""
        return ImageMemoryReservation(self)

    def _take(self, nbytes: int) -> None:
        with self._given_back:
            if not self._given_back.wait_for(
                lambda: self._in_use + nbytes <= self.limit_bytes, timeout=self.wait_seconds
            ):
                raise ImageCleaningBusy
            self._in_use += nbytes

    def _give_back(self, nbytes: int) -> None:
        with self._given_back:
            self._in_use -= nbytes
            self._given_back.notify_all()


class ImageMemoryReservation:
    """The part of an `ImageMemoryBudget` one image holds, used by one thread at a time (the
    budget is the shared part). Release it on every path: `release()` may be called any number
    of times, and leaving a `with` block releases it."""

    def __init__(self, budget: ImageMemoryBudget) -> None:
        self._budget = budget
        self._held = 0

    @property
    def held_bytes(self) -> int:
        return self._held

    @property
    def limit_bytes(self) -> int:
        """The whole budget: more than this is never held, whatever else is in use."""
        return self._budget.limit_bytes

    def grow_to(self, total_bytes: int) -> None:
        """Hold `total_bytes` in all (nothing to do if already holding as much).

        Raises ImageExceedsMemoryBudget at once when one image would need more than the whole
        budget, and ImageCleaningBusy when the budget stays too full for `wait_seconds`; either way
        it holds what it held before.
        """
        if total_bytes > self._budget.limit_bytes:
            raise ImageExceedsMemoryBudget
        if total_bytes > self._held:
            self._budget._take(total_bytes - self._held)
            self._held = total_bytes

    def shrink_to(self, total_bytes: int) -> None:
        total_bytes = max(total_bytes, 0)
        if total_bytes < self._held:
            self._budget._give_back(self._held - total_bytes)
            self._held = total_bytes

    def release(self) -> None:
        self.shrink_to(0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
