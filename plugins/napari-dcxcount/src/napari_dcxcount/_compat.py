"""Loading the core's torch inside a napari process without crashing it.

torch imports triton (through torchvision and ``torch._dynamo``) the first
time the core segments. triton carries its own LLVM. Where OpenGL is drawn in
software by Mesa (llvmpipe: Xvfb, virtual machines, remote desktops, CI),
napari's canvas has already loaded the system's ``libLLVM``, and loading
triton next to it kills the process with a segmentation fault (seen with
torch 2.14, triton 3.8, Mesa's LLVM 15). The core only runs models eagerly
and never needs triton (it serves ``torch.compile``), so in that one case
the plugin keeps torch from importing it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["keep_triton_from_system_llvm"]


def keep_triton_from_system_llvm() -> bool:
    """Make ``import triton`` fail when the system's LLVM is already in this process.

    Call before importing ``dcxcount.pipeline`` (which imports torch).

    Returns
    -------
    bool
        True when triton was blocked (torch then reports it as absent and
        runs without it), False when nothing needed doing.
    """
    if "triton" in sys.modules or not sys.platform.startswith("linux"):
        return False
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    if not re.search(r"/libLLVM[-.\w]*\.so", maps):
        return False
    # A None entry makes `import triton` raise ImportError, which torch takes as "not installed".
    sys.modules["triton"] = None  # type: ignore[assignment]
    return True
