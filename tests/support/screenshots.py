"""Where browser tests put screenshots: docs/screenshots/ only when asked (`make screenshots`),
so that an ordinary test run leaves the working tree untouched."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot_dir() -> Path:
    if os.environ.get("DAYLIGHT_WRITE_SCREENSHOTS") == "1":
        return DOCS_SCREENSHOTS
    path = Path(tempfile.gettempdir()) / "daylight-screenshots"
    path.mkdir(exist_ok=True)
    return path
