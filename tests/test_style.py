"""The code style CI holds: ruff's rules in ruff.toml (pyflakes, imports, bugbear, pyupgrade), over the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_core_never_imports_qt_or_napari():
    # The core must run headless on a cluster node; the plugin is a thin layer over it.
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "dcxcount").rglob("*.py")
                 if any(word in path.read_text(encoding="utf-8") for word in ("import napari", "from napari",
                                                                               "PyQt", "qtpy", "from magicgui"))]
    assert offenders == []
