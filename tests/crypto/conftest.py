"""Fixtures for the app.crypto tests: the known-answer vectors and hybrid key pairs.

Everything here is session-scoped so Hypothesis tests can use it (function-scoped
fixtures are not reset between generated examples).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.crypto import sealing

VECTORS_PATH = Path(__file__).with_name("vectors.json")


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="session")
def hybrid_key() -> sealing.PrivateKey:
    return sealing.generate_private_key()


@pytest.fixture(scope="session")
def other_hybrid_key() -> sealing.PrivateKey:
    return sealing.generate_private_key()
