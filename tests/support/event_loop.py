"""Running a coroutine from a synchronous test, whatever else the test process is running."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

ResultT = TypeVar("ResultT")


def run_in_new_loop(make_coroutine: Callable[[], Coroutine[Any, Any, ResultT]]) -> ResultT:
    """Run the coroutine ``make_coroutine()`` returns on a new event loop in a thread of its own.

    Not ``asyncio.run`` in the test's thread: Playwright's synchronous API (tests/browser) keeps
    an event loop running in the main thread for the whole session, and ``asyncio.run`` refuses
    to start beside it. The coroutine is created inside the thread, so none is left un-awaited.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(lambda: asyncio.run(make_coroutine())).result()
