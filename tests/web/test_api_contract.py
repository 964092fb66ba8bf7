"""Contract fuzzing: schemathesis sends generated requests to every JSON API operation of both apps,
as their OpenAPI documents describe them, and checks every answer against the same document.

Three things must hold: no 5xx; every response has a documented status, content type and body
(the one error model included); and the generated bodies get through: a good share of the requests
to operations that take a body pass body validation (2xx, or a 4xx other than 400/415/422), so the
fuzzing reaches the services rather than bouncing off the reader.

Bounded and derandomized: the same few examples per operation on every run, no shrinking.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok, Result
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.auth.deps import SECURE_COOKIE_NAME
from app.auth.models import Role
from tests.auth.factories import login
from tests.conftest import Organisation

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]
BASE_URL = "https://testserver"
EXAMPLES_PER_OPERATION = 12
FUZZING = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Refused by the body reader: the request never reached the service.
BODY_REFUSALS = frozenset({400, 415, 422})
MIN_SHARE_PAST_BODY_VALIDATION = 0.3

# Who calls each part of the staff API: a role allowed there, so that requests reach the services.
ROLE_BY_PREFIX = {
    # Before /api/v1/accounts: leads confirm members' key pairs, admins manage the rest.
    "/api/v1/accounts/{account_id}/confirm": Role.LEAD,
    "/api/v1/accounts": Role.ADMIN,
    "/api/v1/account-links": Role.ADMIN,
    "/api/v1/audit": Role.AUDITOR,
    # Wrong passwords here lock the account out: a member no other part of the API uses.
    "/api/v1/auth": Role.CASEWORKER,
}
# Each ends the session it is called with, and takes no input to fuzz (tests/auth cover them).
UNFUZZED = frozenset({("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/logout-everywhere")})


@dataclass
class Tally:
    """What the run saw: failures (as text), and per body-taking operation the requests sent and
    those that got past body validation."""

    failures: list[str] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)
    past_body: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)

    def share_past_body(self) -> float:
        return sum(self.past_body.values()) / max(1, sum(self.sent.values()))


def http_kwargs(case: Case) -> dict[str, Any]:
    """The case as arguments for the Starlette test client (schemathesis prepares them for requests)."""
    prepared = case.as_transport_kwargs(base_url=BASE_URL)
    if "json" in prepared:
        content: bytes | None = json.dumps(prepared["json"]).encode()
    else:
        data = prepared.get("data")
        content = data.encode() if isinstance(data, str) else data
    return {
        "method": prepared["method"],
        "url": prepared["url"],
        "headers": prepared.get("headers") or {},
        "params": prepared.get("params") or None,
        "content": content,
    }


def operation_of(loaded: Result[Operation, schemathesis.errors.InvalidSchema]) -> Operation:
    assert isinstance(loaded, Ok), f"the document does not load: {loaded}"
    return loaded.ok()


def fuzz(app: FastAPI, client: TestClient, headers_for: Callable[[str], dict[str, str]]) -> Tally:
    schema = schemathesis.openapi.from_dict(app.openapi()).include(path_regex="^/api/")
    tally = Tally()
    operations = sorted(
        (operation_of(result) for result in schema.get_all_operations()),
        # The members' own account operations last: their wrong passwords may lock the member out.
        key=lambda operation: (operation.path.startswith("/api/v1/auth"), operation.path, operation.method),
    )
    for operation in operations:
        if (operation.method.upper(), operation.path) not in UNFUZZED:
            fuzz_operation(operation, client, headers_for(operation.path), tally)
    return tally


def fuzz_operation(operation: Operation, client: TestClient, headers: dict[str, str], tally: Tally) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    takes_body = bool(operation.body)

    @FUZZING
    @given(case=operation.as_strategy())
    def send(case: Case) -> None:
        kwargs = http_kwargs(case)
        response = client.request(**{**kwargs, "headers": {**kwargs["headers"], **headers}})
        tally.statuses[label, response.status_code] += 1
        if takes_body:
            tally.sent[label] += 1
            tally.past_body[label] += response.status_code not in BODY_REFUSALS
        try:
            case.validate_response(response, checks=CHECKS)
        except schemathesis.errors.FailureGroup as failure:
            tally.failures.append(f"{label} -> {response.status_code}: {failure}")

    send()


def assert_contract_kept(tally: Tally) -> None:
    assert not tally.failures, "\n\n".join(tally.failures[:10])
    assert tally.sent, "no operation takes a documented body"
    assert tally.share_past_body() >= MIN_SHARE_PAST_BODY_VALIDATION, sorted(tally.statuses.items())


def session_cookies(client: TestClient, organisation: Organisation) -> dict[Role, str]:
    cookies = {}
    for role in Role:
        response = login(client, organisation[role])
        assert response.status_code == 200
        cookies[role] = f"{SECURE_COOKIE_NAME}={response.cookies[SECURE_COOKIE_NAME]}"
    client.cookies.clear()  # each request names its member's session itself
    return cookies


def test_the_staff_api_keeps_its_contract(staff_client: TestClient, organisation: Organisation) -> None:
    cookies = session_cookies(staff_client, organisation)
    # Key grants want a password confirmed within minutes.
    stepped_up = staff_client.post(
        "/api/v1/auth/step-up",
        json={"password": organisation[Role.LEAD].password},
        headers={"cookie": cookies[Role.LEAD]},
    )
    assert stepped_up.status_code == 204

    def headers_for(path: str) -> dict[str, str]:
        role = next((role for prefix, role in ROLE_BY_PREFIX.items() if path.startswith(prefix)), Role.LEAD)
        return {"cookie": cookies[role]}

    assert_contract_kept(fuzz(staff_client.app, staff_client, headers_for))  # type: ignore[arg-type]


def test_the_intake_api_keeps_its_contract(intake_client: TestClient, organisation: Organisation) -> None:
    assert_contract_kept(fuzz(intake_client.app, intake_client, lambda _path: {}))  # type: ignore[arg-type]
