"""The audit log against someone holding the server, end to end on a running `daylight serve`.

The two holes of the unsigned tail and of re-signing, tried as an attacker with the database
file (or credentials) and the server's own secrets would: a clean stop leaves nothing unsigned;
the checkpoint signer refuses to sign a rewritten log it remembers otherwise; and when even its
memory is wiped and the rewritten log re-signed with the server's own key, the witness that saw
the earlier checkpoint refuses it, with both checkpoints as evidence.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy import create_engine, text

from tests.e2e.test_serve import Served, daylight, served, staff_login

__all__ = ["served"]  # the fixture, imported for its parametrisation over both databases

pytestmark = pytest.mark.serve

SERVE = (sys.executable, "-m", "app", "serve")


def database_url(target: Served) -> str:
    return target.env.get("DAYLIGHT_DATABASE_URL") or f"sqlite:///{target.data_dir / 'daylight.sqlite3'}"


def rewrite_history(target: Served) -> None:
    """What someone with the database owner's rights does: drop the append-only guards, forget
    the signed tree and its witnesses, and change who did what."""
    engine = create_engine(database_url(target))
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "sqlite":
                for table in ("audit_events", "audit_checkpoints"):
                    for operation in ("update", "delete"):
                        connection.execute(text(f"DROP TRIGGER {table}_no_{operation}"))
            else:
                for table in ("audit_events", "audit_checkpoints"):
                    connection.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))
            connection.execute(text("DELETE FROM audit_cosignatures"))
            connection.execute(text("DELETE FROM audit_checkpoints"))
            connection.execute(text("DELETE FROM audit_nodes"))
            connection.execute(text("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2"))
    finally:
        engine.dispose()


def stop(target: Served) -> None:
    target.process.send_signal(signal.SIGTERM)
    target.process.wait(timeout=30)


def start_again(target: Served) -> None:
    """`daylight serve` again on the same ports; the caller stops it."""
    intake_port = target.intake.rsplit(":", 1)[1]
    staff_port = target.staff.rsplit(":", 1)[1]
    with target.log_path.open("a") as log:  # the child keeps its own descriptor
        target.process = subprocess.Popen(
            [
                *SERVE,
                "--data-dir",
                str(target.data_dir),
                "--intake-port",
                intake_port,
                "--staff-port",
                staff_port,
            ],
            env=target.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{target.staff}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert target.process.poll() is None, target.log_path.read_text()
        assert time.monotonic() < deadline
        time.sleep(0.1)


def witness_run(target: Served, files: dict[str, Path], *extra: str) -> tuple[int, str, str]:
    result = daylight(
        "audit",
        "witness",
        "--url",
        target.staff,
        "--state",
        str(files["state"]),
        "--key",
        str(files["key"]),
        "--token-file",
        str(files["token"]),
        *extra,
        env=target.env,
    )
    return result.returncode, result.stdout, result.stderr


def test_a_rewritten_log_is_refused_by_the_signer_and_by_a_witness_that_saw_it_before(
    served: Served, tmp_path: Path
) -> None:
    witness_dir = tmp_path / "witness-machine"
    witness_dir.mkdir()
    files = {
        "key": witness_dir / "witness.key",
        "state": witness_dir / "state.json",
        "token": witness_dir / "t",
    }

    # The witness's operator makes a key pair on their own machine; an admin registers it.
    made = daylight(
        "audit",
        "witness-keygen",
        "--name",
        "witness.example/w1",
        "--key-file",
        str(files["key"]),
        env=served.env,
    )
    assert made.returncode == 0, made.stderr
    witness_verifier_key = made.stdout.strip()
    assert "PRIVATE" not in made.stdout
    assert files["key"].stat().st_mode & 0o077 == 0
    added = daylight(
        "audit",
        "witnesses",
        "add",
        "--data-dir",
        str(served.data_dir),
        "--verifier-key",
        witness_verifier_key,
        env=served.env,
    )
    assert added.returncode == 0, added.stderr
    files["token"].write_text(next(w for w in added.stdout.split() if w.startswith("dlw_")))

    with httpx.Client(base_url=served.staff) as auditor:
        staff_login(served, "auditor", auditor)
        log_key = auditor.get("/api/v1/audit/checkpoint").json()["verifier_key"]
        # The first run pins the log's key and cosigns what it sees.
        code, out, err = witness_run(served, files, "--log-key", log_key)
        assert code == 0, out + err
        first_size = int(out.split()[-1])
        # Within about a second the signer covers the auditor's own events, and the witness
        # cosigns the grown log with a consistency proof from what it saw.
        verdict = _wait_until_covered(auditor)
        assert verdict["ok"], verdict
        assert verdict["witnessed_size"] >= first_size, verdict
        code, out, err = witness_run(served, files)
        assert code == 0, out + err
        assert int(out.split()[-1]) > first_size
        page = auditor.get("/audit").text
        assert "witness.example/w1" in page

    # A clean stop signs the last events: nothing is left unsigned to edit.
    stop(served)
    verified = daylight("audit", "verify", "--data-dir", str(served.data_dir), env=served.env)
    assert verified.returncode == 0, verified.stderr
    assert "every event covered" in verified.stdout

    rewrite_history(served)
    # The server's own signer remembers what it signed and will not sign the rewrite.
    refused = daylight("audit", "checkpoint", "--data-dir", str(served.data_dir), env=served.env)
    assert refused.returncode == 1
    assert "AUDIT ALERT" in refused.stderr
    remembered = daylight("audit", "verify", "--data-dir", str(served.data_dir), env=served.env)
    assert remembered.returncode == 1
    assert "the signer's memory disagrees with the database" in remembered.stderr

    # Someone holding the whole server also wipes the signer's memory and re-signs.
    (served.data_dir / "audit-signer-state.json").unlink()
    resigned = daylight("audit", "checkpoint", "--data-dir", str(served.data_dir), env=served.env)
    assert resigned.returncode == 0, resigned.stderr
    alone = daylight("audit", "verify", "--data-dir", str(served.data_dir), env=served.env)
    assert alone.returncode == 0, "the server alone cannot tell: that is what witnesses are for"

    # The witness remembers: a fork, refused with both checkpoints printed as evidence.
    start_again(served)
    state_before = files["state"].read_text()
    try:
        code, out, err = witness_run(served, files)
    finally:
        stop(served)
    assert code == 3, out + err
    assert "REFUSED (fork)" in err
    assert err.count("\u2014 ") >= 2, "both signed checkpoints, as evidence"
    assert files["state"].read_text() == state_before, "a refused checkpoint never replaces the memory"


def _wait_until_covered(auditor: httpx.Client) -> dict[str, object]:
    deadline = time.monotonic() + 15
    while True:
        verdict: dict[str, object] = auditor.get("/api/v1/audit/verify").json()
        if verdict["unsigned_events"] in (0, 1):  # the verification itself is the newest event
            return verdict
        assert time.monotonic() < deadline, verdict
        time.sleep(0.3)
