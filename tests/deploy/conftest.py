"""The installed wheel, shared by the deploy tests: built once per session from the files the
Dockerfile's build stage copies, installed with its dependencies into a fresh venv (not editable,
no system site-packages), with an empty directory outside the repository to run commands from."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What the Dockerfile's build stage copies, and all that building the wheel reads.
BUILD_INPUTS = ("pyproject.toml", "README.md", "app")
BUILD_SECONDS = 300
# The dependencies come from pip's cache when they are there, from the package index otherwise.
INSTALL_SECONDS = 600
COMMAND_SECONDS = 120
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


@dataclass(frozen=True)
class Installed:
    source: Path  # the copy the wheel was built from
    venv: Path
    run_dir: Path  # empty, outside the repository: the cwd of every command

    @property
    def daylight(self) -> str:
        return str(self.venv / "bin" / "daylight")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")


def operator_env(venv: Path, **extra: str) -> dict[str, str]:
    """This process's environment without this checkout's venv and without any DAYLIGHT_ setting."""
    outer_bin = str(Path(sys.executable).parent)
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not name.startswith("DAYLIGHT_")
    }
    path = [part for part in env.get("PATH", "").split(os.pathsep) if part and part != outer_bin]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    return {**env, **extra}


def checked(args: list[str], *, cwd: Path, timeout: int, env: dict[str, str] | None = None) -> str:
    """Run ``args``; their output, or a failure that shows it."""
    result = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{output}"
    return result.stdout


def copy_build_inputs(target: Path) -> None:
    """The build inputs without bytecode caches, the way a clean checkout has them."""
    for name in BUILD_INPUTS:
        source = REPO / name
        if source.is_file():
            (target / name).write_bytes(source.read_bytes())
            continue
        for path in source.rglob("*"):
            if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
                continue
            destination = target / path.relative_to(REPO)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    source, dist, venv, run_dir = root / "source", root / "dist", root / "venv", root / "run"
    for directory in (source, dist, run_dir):
        directory.mkdir()
    # Built from a copy: building in this checkout would leave build/ behind, whose stale files
    # a later build of the checkout would put in its wheel.
    copy_build_inputs(source)
    checked(
        [*PIP, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), str(source)],
        cwd=root,
        timeout=BUILD_SECONDS,
    )
    [wheel] = dist.glob("daylight-*.whl")
    # A venv of its own, without pip: this process's pip installs into it (--python).
    checked([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, timeout=COMMAND_SECONDS)
    checked(
        [*PIP, "--python", str(venv / "bin" / "python"), "install", "--quiet", str(wheel)],
        cwd=root,
        timeout=INSTALL_SECONDS,
    )
    return Installed(source=source, venv=venv, run_dir=run_dir)
