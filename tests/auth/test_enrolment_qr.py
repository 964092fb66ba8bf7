from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
import segno

from app.auth.enrolment_qr import QR_ARIA_LABEL, qr_svg, totp_provisioning_uri

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
SVG = f"{{{SVG_NAMESPACE}}}"


@pytest.fixture
def secret() -> str:
    return pyotp.random_base32()


def test_the_provisioning_uri_names_secret_issuer_and_account(secret: str) -> None:
    uri = totp_provisioning_uri(secret, "demo-caseworker", issuer="Daylight Org")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert unquote(parts.path) == "/Daylight Org:demo-caseworker"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["Daylight Org"]
    assert pyotp.parse_uri(uri).verify(pyotp.TOTP(secret).now())


def test_the_default_issuer_is_daylight(secret: str) -> None:
    assert parse_qs(urlsplit(totp_provisioning_uri(secret, "x")).query)["issuer"] == ["Daylight"]


def test_the_svg_is_an_accessible_svg_element_and_nothing_else(secret: str) -> None:
    svg = qr_svg(totp_provisioning_uri(secret, "demo-caseworker"))
    assert svg.startswith("<svg ")
    assert "<?xml" not in svg
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == QR_ARIA_LABEL == "QR code for your authenticator app"


def test_the_svg_holds_nothing_csp_would_block_or_that_could_fetch(secret: str) -> None:
    svg = qr_svg(totp_provisioning_uri(secret, "demo-caseworker"))
    lowered = svg.lower()
    assert "script" not in lowered
    assert "style" not in lowered  # neither style= nor <style>
    assert "href" not in lowered
    assert "url(" not in lowered
    assert "http" not in lowered.replace(SVG_NAMESPACE, "")
    assert lowered.count("http") == 1
    # The secret is drawn as modules, never written out as text.
    assert secret.lower() not in lowered
    allowed_attributes = {"role", "aria-label", "width", "height", "transform", "fill", "stroke", "d"}
    for element in ET.fromstring(svg).iter():  # noqa: S314 - our own output
        assert element.tag in {f"{SVG}svg", f"{SVG}g", f"{SVG}path"}
        assert set(element.attrib) <= allowed_attributes, element.attrib


@pytest.mark.parametrize("username", ["a", "demo-caseworker", "a-very-long-staff-username-for-a-bigger-code"])
def test_the_rendered_size_suits_a_phone_camera(secret: str, username: str) -> None:
    root = ET.fromstring(qr_svg(totp_provisioning_uri(secret, username)))  # noqa: S314
    width, height = int(root.get("width", "0")), int(root.get("height", "0"))
    assert width == height
    assert 200 <= width <= 260


def dark_modules_drawn(svg: str) -> set[tuple[int, int]]:
    """(row, column) of every module the SVG's stroked path paints, quiet zone included."""
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    [stroked] = [path for path in root.iter(f"{SVG}path") if path.get("stroke") == "#000"]
    x = y = 0.0
    modules: set[tuple[int, int]] = set()
    for command, first, second in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?", stroked.get("d", "")):
        if command == "M":
            x, y = float(first), float(second)
        elif command == "m":
            x, y = x + float(first), y + float(second)
        else:  # a horizontal run of dark modules along row y - 0.5
            length = float(first)
            modules.update((int(y - 0.5), int(x) + offset) for offset in range(int(length)))
            x += length
    return modules


def test_the_svg_draws_exactly_the_qr_symbol_of_the_uri(secret: str) -> None:
    uri = totp_provisioning_uri(secret, "demo-caseworker")
    symbol = segno.make(uri, error="m", micro=False)
    border = 4  # segno's default quiet zone, the width QR readers expect
    expected = {
        (row + border, column + border)
        for row, line in enumerate(symbol.matrix)
        for column, module in enumerate(line)
        if module & 1
    }
    assert dark_modules_drawn(qr_svg(uri)) == expected
    other = totp_provisioning_uri(pyotp.random_base32(), "demo-caseworker")
    assert dark_modules_drawn(qr_svg(other)) != expected
