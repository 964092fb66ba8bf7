"""Peak memory of a burst of logins, with the Argon2id derivation gate and with it effectively off.

    make bench        (or: .venv/bin/python bench/login_burst.py [--burst 50] [--json])

A burst of ``--burst`` password checks (`password_matches`, what a login costs in Argon2id) of one
account at the production cost (the defaults of `Argon2Cost`: t=3, 64 MiB, p=1) starts at once
from as many threads, as the routes run them in the threadpool. Each scenario runs in a fresh
child process, one after the other:

* ``off``: the gate sized to the burst (``argon2_max_concurrent`` = burst), so every check runs
  at once: today's figure before the gate. It needs about burst x 64 MiB (3.2 GiB for 50).
* ``cores``: the default gate (one turn per usable core) and a wait long enough for all to be
  served: the same work, so its wall time sits beside ``off``'s.
* ``cores, 2 s``: the default gate and the default wait (``argon2_wait_seconds``): how many of
  the burst a process answers, and how many it refuses with 503 (TooManyLogins).

In each child the threads start and wait at a barrier; the resting RSS (``base``) is read then,
the peak is reset (Linux: clear_refs, then VmHWM; elsewhere ``ru_maxrss``, the peak of the whole
child, which includes the one derivation that set the password), and the barrier lets them go.
Shown: checks answered and refused, wall time of the burst, median and slowest check, base, peak
and peak above base, and the bound

    bound = base + limit x memory_cost + MARGIN (32 MiB: thread stacks touched, allocator
            arenas, the interpreter's own growth while 50 threads run)

Exit status 1 when a gated scenario's peak is above its bound: the gate does not hold memory.
Wall time is shown, never asserted (one shared machine's noise).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("DAYLIGHT_ROOT", Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(ROOT))

from app.auth import password_keys  # noqa: E402
from app.auth.models import StaffAccount  # noqa: E402
from app.crypto import sealing  # noqa: E402
from app.kit.config import Argon2Cost, Settings  # noqa: E402

MiB = 1024 * 1024
MARGIN = 32 * MiB
# A throwaway account's. ASCII: one Argon2id run per check, as for most logins.
PASSWORD = "correct horse battery staple"  # noqa: S105
LONG_WAIT = 600.0


def status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as lines:
            return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field))
    except (OSError, StopIteration):
        return None


def reset_peak() -> bool:
    """Make VmHWM start again from the current RSS (Linux); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return status_bytes("VmHWM") is not None


def lifetime_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def child(burst: int, limit: int, wait: float) -> dict[str, Any]:
    # Nothing is written to the data dir: only the Argon2id settings are read.
    settings = Settings(
        data_dir=Path(tempfile.gettempdir()), argon2_max_concurrent=limit, argon2_wait_seconds=wait
    )
    gate = password_keys.configure_derivation_gate(settings)
    account = StaffAccount(id=uuid.uuid4())
    password_keys.wrap_under_password(account, PASSWORD, sealing.generate_private_key(), settings)
    start = threading.Barrier(burst + 1)
    latencies: list[float] = []
    answered = refused = 0
    tally = threading.Lock()

    def check() -> None:
        nonlocal answered, refused
        start.wait()
        began = time.perf_counter()
        try:
            matched = password_keys.password_matches(account, PASSWORD) is not None
        except password_keys.TooManyLogins:
            matched = None
        took = time.perf_counter() - began
        with tally:
            latencies.append(took)
            if matched:
                answered += 1
            elif matched is None:
                refused += 1

    threads = [threading.Thread(target=check) for _ in range(burst)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # every thread at the barrier, its stack in the base
    base = status_bytes("VmRSS") or lifetime_peak()
    resettable = reset_peak()
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    peak = (status_bytes("VmHWM") if resettable else None) or lifetime_peak()
    return {
        "limit": gate.limit,
        "wait": gate.wait_seconds,
        "answered": answered,
        "refused": refused,
        "wall": wall,
        "median": statistics.median(latencies),
        "slowest": max(latencies),
        "base": base,
        "peak": peak,
        "peak_source": "VmHWM" if resettable else "ru_maxrss",
        "memory_cost": settings.argon2.memory_cost_kib * 1024,
    }


def run_child(burst: int, limit: int, wait: float) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps([burst, limit, wait])],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=50, help="checks started at once (default 50)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*json.loads(args.child))))
        return 0
    cores = password_keys.usable_cores()
    default_wait = float(Settings.model_fields["argon2_wait_seconds"].default)
    cost = Argon2Cost()
    print(
        f"burst of {args.burst} password checks, Argon2id t={cost.time_cost} "
        f"m={cost.memory_cost_kib // 1024} MiB p={cost.parallelism}; {cores} usable cores"
    )
    scenarios = {
        "off": (args.burst, LONG_WAIT),
        "cores": (cores, LONG_WAIT),
        f"cores, {default_wait:g} s": (cores, default_wait),
    }
    header = (
        f"{'gate':14} {'limit':>5} {'ok':>4} {'503':>4} {'wall':>7} {'median':>7} {'slowest':>7} "
        f"{'base':>7} {'peak':>7} {'above':>7} {'bound':>7}  within"
    )
    print(header)
    results: dict[str, dict[str, Any]] = {}
    broken = []
    for name, (limit, wait) in scenarios.items():
        result = results[name] = run_child(args.burst, limit, wait)
        bound = result["base"] + result["limit"] * result["memory_cost"] + MARGIN
        result["bound"] = bound
        gated = result["limit"] < args.burst
        within = result["peak"] <= bound
        if gated and not within:
            broken.append(name)
        print(
            f"{name:14} {result['limit']:5} {result['answered']:4} {result['refused']:4} "
            f"{result['wall']:6.2f}s {result['median']:6.2f}s {result['slowest']:6.2f}s "
            f"{result['base'] / MiB:6.0f}M {result['peak'] / MiB:6.0f}M "
            f"{(result['peak'] - result['base']) / MiB:6.0f}M {bound / MiB:6.0f}M  "
            f"{'yes' if within else 'NO'}{'' if gated else ' (not gated)'}",
            flush=True,
        )
    off, on = results["off"], results["cores"]
    print(
        f"peak above base, gated / off: {(on['peak'] - on['base']) / (off['peak'] - off['base']):.3f}; "
        f"wall time, gated / off: {on['wall'] / off['wall']:.2f}; "
        f"median check, gated / off: {on['median'] / off['median']:.2f} "
        f"(peak from {on['peak_source']}; bound = base + limit x {on['memory_cost'] // MiB} MiB "
        f"+ {MARGIN // MiB} MiB)"
    )
    if args.json:
        print(json.dumps(results, indent=2))
    for name in broken:
        print(f"FAIL: gate {name!r}: peak above the bound", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
