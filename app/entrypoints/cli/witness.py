"""`daylight audit witness`: a witness of a Daylight log, run on the witness's own machine.

It needs no data dir and no server secret: a state file (the last checkpoint it cosigned), its
own key (`daylight audit witness-keygen`), the log's verifier key (pinned at first run), and a
credential for the staff API: the bearer token an admin got when registering the witness, or
an auditor's login. Each run fetches the newest checkpoint with a consistency proof from what
it saw last, checks both, saves its new state, and only then sends its cosignature back (C2SP
tlog-witness: persisted before answering, so it can never cosign two inconsistent views).
A rollback or a fork is refused with exit 3 and both signed checkpoints printed as evidence.
"""

from __future__ import annotations

import argparse
import getpass
import http.cookiejar
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from app.audit_log.checkpoint import CheckpointError, parse_verifier_key
from app.audit_log.cosignature import parse_witness_signer
from app.audit_log.witness import WitnessRefusal, WitnessRequestError, add_checkpoint, load_state, save_state
from app.entrypoints.cli.common import Commands

TOKEN_ENV = "DAYLIGHT_WITNESS_TOKEN"  # noqa: S105 - a variable name
PASSWORD_ENV = "DAYLIGHT_WITNESS_PASSWORD"  # noqa: S105 - a variable name
EXIT_REFUSED = 3  # a fork or a rollback: evidence, not a transient failure
EXIT_UNREACHABLE = 4


class StaffApi:
    """The few staff API calls a witness makes, over the standard library's HTTP client."""

    def __init__(self, base_url: str, *, token: str | None, cafile: Path | None, timeout: float) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise WitnessRunError("--url must be an http:// or https:// address")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            urllib.request.HTTPSHandler(context=context),
        )

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        headers = {"Accept": "application/json, text/plain"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        # The scheme was checked in __init__: never file: or a custom handler.
        request = urllib.request.Request(  # noqa: S310
            self.base_url + path, data=data, method=method, headers=headers
        )
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def login(self, username: str, password: str, otp: str) -> None:
        status, _ = self._request(
            "POST", "/api/v1/auth/login", {"username": username, "password": password, "otp": otp}
        )
        if status != 200:
            raise WitnessRunError(f"the auditor login was refused ({status})")

    def add_checkpoint_request(self, old_size: int) -> str:
        status, body = self._request("GET", f"/api/v1/audit/witness/add-checkpoint?old={old_size}")
        if status != 200:
            raise WitnessRunError(f"the log did not hand out its checkpoint ({status}: {body[:200]!r})")
        return body.decode("utf-8")

    def send_cosignature(self, tree_size: int, line: str) -> None:
        status, body = self._request(
            "POST", "/api/v1/audit/witness/cosignatures", {"tree_size": tree_size, "cosignatures": line}
        )
        if status != 201:
            raise WitnessRunError(f"the log did not accept the cosignature ({status}: {body[:200]!r})")


class WitnessRunError(Exception):
    """The run could not complete (network, credentials); nothing was cosigned or refused."""


def cmd_audit_witness(args: argparse.Namespace) -> int:
    try:
        return _witness(args)
    except (WitnessRunError, urllib.error.URLError, OSError) as exc:
        print(f"daylight witness: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (CheckpointError, WitnessRequestError) as exc:
        print(f"daylight witness: {exc}", file=sys.stderr)
        return 2


def _witness(args: argparse.Namespace) -> int:
    witness_name, witness_key = parse_witness_signer(args.key.read_text(encoding="utf-8").strip())
    state = load_state(args.state)
    if state is not None:
        log_key = parse_verifier_key(state.log_verifier_key)
        if args.log_key and args.log_key != state.log_verifier_key:
            print(
                "daylight witness: --log-key differs from the key in the state file; a log's key "
                "never changes under a witness (start a new state file for a new log)",
                file=sys.stderr,
            )
            return 2
    elif args.log_key:
        log_key = parse_verifier_key(args.log_key)
    else:
        print("daylight witness: the first run needs --log-key (from the auditor's page)", file=sys.stderr)
        return 2
    token = (
        args.token_file.read_text(encoding="utf-8").strip() if args.token_file else os.environ.get(TOKEN_ENV)
    )
    api = StaffApi(args.url, token=None if args.username else token, cafile=args.cafile, timeout=args.timeout)
    if args.username:
        password = os.environ.get(PASSWORD_ENV) or getpass.getpass("Auditor password: ")
        api.login(args.username, password, args.otp or input("One-time code: "))
    elif not token:
        print(f"daylight witness: give --token-file, {TOKEN_ENV} or --username", file=sys.stderr)
        return 2
    request_text = api.add_checkpoint_request(state.tree_size if state else 0)
    try:
        new_state, cosignature = add_checkpoint(
            state, request_text, log_key, witness_key, witness_name, int(time.time())
        )
    except WitnessRefusal as refusal:
        print(f"REFUSED ({refusal.kind}): {refusal.message}", file=sys.stderr)
        for number, note in enumerate(refusal.evidence, start=1):
            print(
                f"--- evidence {number} ---\n{note}", file=sys.stderr, end="" if note.endswith("\n") else "\n"
            )
        return EXIT_REFUSED
    save_state(args.state, new_state)
    api.send_cosignature(new_state.tree_size, cosignature)
    print(f"cosigned {log_key.name} at size {new_state.tree_size}")
    return 0


def register(audit_commands: Commands) -> None:
    witness = audit_commands.add_parser(
        "witness", help="witness a Daylight log from your own machine: check, remember, cosign"
    )
    witness.add_argument("--url", required=True, help="the staff app's base URL")
    witness.add_argument("--state", type=Path, required=True, help="this witness's state file for that log")
    witness.add_argument(
        "--key", type=Path, required=True, help="the private key from `audit witness-keygen`"
    )
    witness.add_argument("--log-key", help="the log's verifier key; needed on the first run, then pinned")
    witness.add_argument("--token-file", type=Path, help=f"the witness token (or set {TOKEN_ENV})")
    witness.add_argument("--username", help=f"log in as this auditor instead (password from {PASSWORD_ENV})")
    witness.add_argument("--otp", help="the auditor's one-time code")
    witness.add_argument("--cafile", type=Path, help="a CA bundle for the staff app's TLS certificate")
    witness.add_argument("--timeout", type=float, default=30.0)
    witness.set_defaults(run=cmd_audit_witness)
