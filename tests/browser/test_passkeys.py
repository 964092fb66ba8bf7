"""Passkeys in Chromium with its virtual authenticator (Chrome DevTools Protocol `WebAuthn`):
enrol, log in, an assertion made on another origin refused, a cloned authenticator flagged, a
revoked passkey refused, and the login page working with JavaScript on.

WebAuthn binds credentials to a domain, never an IP address: the staff app is reached at
http://localhost:PORT here (a secure context), and the intake app on another port of the same
host plays the phishing site. The RP ID ("localhost") ignores ports, so the authenticator answers
there as a real one would answer a look-alike domain the member was lured to; only the origin
signed into the assertion tells them apart.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page

from tests.browser.conftest import ServedDemo
from tests.browser.test_staff_ui import demo_logins, one_time_code

pytestmark = pytest.mark.serve

# What a relaying phishing page runs in the member's browser: the real site's options, the
# member's authenticator, and the answer handed back to the relay as JSON.
RELAYED_ASSERTION = """async (optionsJson) => {
  const fromB64 = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), c => c.charCodeAt(0));
  const toB64 = (b) => btoa(String.fromCharCode(...new Uint8Array(b)))
    .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const options = JSON.parse(optionsJson);
  options.challenge = fromB64(options.challenge);
  const credential = await navigator.credentials.get({publicKey: options});
  const r = credential.response;
  return JSON.stringify({
    id: credential.id, rawId: toB64(credential.rawId), type: credential.type,
    clientExtensionResults: {},
    response: {clientDataJSON: toB64(r.clientDataJSON), authenticatorData: toB64(r.authenticatorData),
               signature: toB64(r.signature), userHandle: r.userHandle ? toB64(r.userHandle) : null},
  });
}"""


def on_localhost(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


def virtual_authenticator(context: BrowserContext, page: Page) -> tuple[CDPSession, str]:
    """A platform authenticator that holds discoverable credentials and verifies its user."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def credentials(cdp: CDPSession, authenticator_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})[
        "credentials"
    ]
    return found


def log_in_with_code(page: Page, staff: str, user: dict[str, str], step_offset: int) -> None:
    page.goto(f"{staff}/login")
    page.fill("#username", user["username"])
    page.fill("#password", user["password"])
    page.fill("#otp", one_time_code(user["totp_secret"], step_offset))
    page.click("button[type=submit]")
    page.wait_for_url(f"{staff}/tips")


def try_passkey_login(page: Page, staff: str, user: dict[str, str]) -> None:
    page.goto(f"{staff}/login")
    page.fill("#username", user["username"])
    page.fill("#password", user["password"])
    # The script posts the form with the authenticator's answer: a navigation, accepted or not.
    with page.expect_navigation():
        page.click("text=Log in with a passkey")


def log_out(page: Page) -> None:
    page.click("form.logout button")
    page.wait_for_url("**/login")


def test_passkeys_in_chromium(browser: Browser, served_demo: ServedDemo) -> None:
    staff, phishing_site = on_localhost(served_demo.staff_url), on_localhost(served_demo.intake_url)
    lead = demo_logins(served_demo)["lead"]
    context = browser.new_context(bypass_csp=True)  # bypass only for the relay's evaluate below
    page = context.new_page()
    cdp, authenticator_id = virtual_authenticator(context, page)

    # Enrol: signed in with the one-time code, within the step-up window.
    log_in_with_code(page, staff, lead, 0)
    page.goto(f"{staff}/account")
    page.fill("#passkey_name", "office key")
    page.click("text=Add a passkey")
    page.wait_for_url(f"{staff}/account?done=passkey")
    assert page.locator("[data-passkey-row='office key']").inner_text().count("in use") == 1
    [credential] = credentials(cdp, authenticator_id)
    assert credential["isResidentCredential"]
    assert credential["rpId"] == "localhost"

    # Log in with the passkey: password plus the authenticator, no code.
    log_out(page)
    try_passkey_login(page, staff, lead)
    assert page.url == f"{staff}/tips"

    # A phishing site relays the real login page's challenge; the member's authenticator answers
    # it on the phishing origin; the relay posts the answer to the real server: refused.
    log_out(page)
    page.goto(f"{staff}/login")
    options = page.get_attribute("form[data-passkey]", "data-passkey-options")
    login_token = page.input_value("input[name=login_token]")
    page.goto(f"{phishing_site}/")
    relayed = page.evaluate(RELAYED_ASSERTION, options)
    relay = context.request.post(
        f"{staff}/login",
        form={
            "login_token": login_token,
            "username": lead["username"],
            "password": lead["password"],
            "passkey_response": relayed,
        },
        max_redirects=0,
    )
    assert relay.status == 401
    assert "Wrong username, password, passkey or one-time code." in relay.text()

    # A clone: the same key with its counter behind the server's. The login is refused, the
    # passkey flagged, and the member sees it on their account page.
    [credential] = credentials(cdp, authenticator_id)
    cdp.send(
        "WebAuthn.removeCredential",
        {"authenticatorId": authenticator_id, "credentialId": credential["credentialId"]},
    )
    cdp.send(
        "WebAuthn.addCredential",
        {"authenticatorId": authenticator_id, "credential": {**credential, "signCount": 0}},
    )
    try_passkey_login(page, staff, lead)
    assert page.url == f"{staff}/login"
    assert "Wrong username, password, passkey or one-time code." in page.inner_text("main")
    log_in_with_code(page, staff, lead, 1)
    page.goto(f"{staff}/account")
    assert "clone suspected" in page.locator("[data-passkey-row='office key']").inner_text()

    # A revoked passkey: a new one enrolled, revoked, then refused.
    cdp.send("WebAuthn.clearCredentials", {"authenticatorId": authenticator_id})
    page.fill("#passkey_name", "spare key")
    page.click("text=Add a passkey")
    page.wait_for_url(f"{staff}/account?done=passkey")
    page.click("text=Revoke spare key")
    page.wait_for_url(f"{staff}/account?done=passkey_revoked")
    assert "revoked" in page.locator("[data-passkey-row='spare key']").inner_text()
    log_out(page)
    try_passkey_login(page, staff, lead)
    assert page.url == f"{staff}/login"
    context.close()
