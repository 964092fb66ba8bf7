"""The TOTP enrolment QR code, drawn on the server as inline SVG.

The provisioning URI carries the TOTP secret. Sending it to a third-party QR
service, or to a script in the page, would hand the second factor to whoever
runs or compromises that code; the staff pages run no script at all (CSP
`default-src 'none'`). The SVG is therefore made here and inlined in the page,
and it holds only presentation attributes (`fill`, `stroke`, `transform`):
CSP `style-src 'self'` blocks inline `style=` attributes, and an SVG with no
link, script or style cannot fetch or run anything.
"""

from __future__ import annotations

import io

import pyotp
import segno

QR_ARIA_LABEL = "QR code for your authenticator app"
# About 5 cm on a phone-held screen: large enough for a camera at arm's
# length, small enough to sit beside the typed-in secret.
TARGET_SIDE_PX = 256
# Medium error correction survives glare and a screen's moiré; a TOTP URI is
# short, so it costs one or two symbol versions at most.
QR_ERROR_CORRECTION = "m"


def totp_provisioning_uri(secret: str, username: str, issuer: str = "Daylight") -> str:
    """The `otpauth://totp/...` URI authenticator apps read; it contains `secret` in clear."""
    uri: str = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)
    return uri


def qr_svg(uri: str) -> str:
    """`uri` as an `<svg>` element to inline in HTML: no XML declaration, no style, no link."""
    qr = segno.make(uri, error=QR_ERROR_CORRECTION, micro=False)
    side_modules = qr.symbol_size(scale=1)[0]  # includes the quiet zone readers need
    scale = max(1, TARGET_SIDE_PX // side_modules)
    buffer = io.BytesIO()
    # light="#fff" draws an opaque background: on a transparent one a dark
    # page theme would leave dark modules on dark ground, and no camera reads that.
    qr.save(
        buffer,
        kind="svg",
        scale=scale,
        dark="#000",
        light="#fff",
        xmldecl=False,
        svgns=True,
        svgclass=None,
        lineclass=None,
        nl=False,
    )
    svg = buffer.getvalue().decode("utf-8")
    if not svg.startswith("<svg "):
        raise RuntimeError("segno's SVG writer changed its output; review qr_svg before use")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{QR_ARIA_LABEL}" ', 1)
