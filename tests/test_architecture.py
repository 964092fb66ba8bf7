"""The layer contract (pyproject.toml, [tool.importlinter]; docs/architecture.md, "Layers").

`make lint` runs import-linter on the code as it is; these tests show that the check has teeth:
a copy of the code with one upward import, or one cycle between two features, fails it, and a
new top-level package cannot escape the contract by being left out of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    [contract] = config["tool"]["importlinter"]["contracts"]
    return [[name.strip() for name in line.split("|")] for line in contract["layers"]]


def _lint_copy(tmp_path: Path, edits: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the contract on a copy of app/ with ``edits`` (path -> line appended)."""
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for relative, line in edits.items():
        with (tmp_path / relative).open("a", encoding="utf-8") as module:
            module.write(f"\n{line}\n")
    # The copy comes first on the path, ahead of the editable install of the real tree.
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "pyproject.toml", "--no-cache"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_code_keeps_the_layer_contract(tmp_path: Path) -> None:
    result = _lint_copy(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "upward_import", "named"),
    [
        # The kit imports no feature.
        (
            "app/kit/clock.py",
            "from app.triage import service as _",
            "app.kit is not allowed to import app.triage",
        ),
        # The HTTP kit imports no feature either.
        (
            "app/web/forms.py",
            "from app.intake import models as _",
            "app.web is not allowed to import app.intake",
        ),
        # A feature imports no entry point.
        (
            "app/cases/service.py",
            "from app.entrypoints import apps as _",
            "app.cases is not allowed to import",
        ),
    ],
)
def test_an_upward_import_breaks_the_contract(
    tmp_path: Path, module: str, upward_import: str, named: str
) -> None:
    result = _lint_copy(tmp_path, {module: upward_import})
    assert result.returncode != 0
    assert named in result.stdout


def test_a_cycle_between_two_features_breaks_the_contract(tmp_path: Path) -> None:
    # Cases already read tips from intake; intake reading cases back closes a cycle.
    result = _lint_copy(tmp_path, {"app/intake/models.py": "from app.cases import repository as _"})
    assert result.returncode != 0
    assert "app.intake is not allowed to import app.cases" in result.stdout


def test_every_top_level_package_has_a_place_in_the_layers() -> None:
    """A module import-linter is not told about is not checked: a new feature must be placed."""
    placed = {name for layer in _layers() for name in layer}
    top_level = {
        f"app.{path.stem if path.is_file() else path.name}"
        for path in (ROOT / "app").iterdir()
        if (path.is_dir() and (path / "__init__.py").exists())
        or (path.suffix == ".py" and path.name != "__init__.py")
    }
    assert top_level == placed
