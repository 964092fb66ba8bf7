"""Response headers every page and API answer carries.

The CSP allows nothing from anywhere but our own stylesheet and images, and
no script at all: the submitter's pages must work in Tor Browser at
"Safest", and a script we do not serve cannot run. The one exception is the
staff pages that run a passkey ceremony (login, account, one-time links): a
page that sets ``request.state.script_nonce`` gets ``script-src 'nonce-…'``
for that response only, so only our own script tag carrying the nonce runs.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.encode("latin-1"), value.encode("latin-1"))
    for name, value in (
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("permissions-policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    )
)


SCRIPT_NONCE_STATE = "script_nonce"


def _with_script_nonce(nonce: str) -> bytes:
    return f"{CONTENT_SECURITY_POLICY}; script-src 'nonce-{nonce}'".encode("latin-1")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                overridden = {name for name, _ in SECURITY_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in overridden]
                ours = list(SECURITY_HEADERS)
                nonce = scope.get("state", {}).get(SCRIPT_NONCE_STATE)
                if isinstance(nonce, str) and nonce.isalnum():
                    ours[0] = (b"content-security-policy", _with_script_nonce(nonce))
                message["headers"] = headers + ours
            await send(message)

        await self.app(scope, receive, send_with_headers)
