"""Memory: what counting a section needs, and what this machine (or Dask worker) has free.

A section that would not fit is refused from its file's header, before a
pixel is read: a 25,000^2 section then fails with one line saying how large
it is and what it would need, instead of a MemoryError half-way through, the
kernel killing the whole run, or the machine swapping for an hour.

The estimate is a model of the pipeline's peak, measured (docs/reliability.md):
the pixels as read, a fixed working set (libraries, the network on one tile),
a cost per pixel of the section (label images, layer frame, process tracing,
tables) and a cost per pixel at the model's working pixel size (normalised
and resampled image, flows, mask reconstruction).
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

__all__ = ["MODEL_PIXEL_SIZE_UM", "count_memory_bytes", "available_memory_bytes", "available_cpus", "format_bytes",
           "parse_bytes"]

MODEL_PIXEL_SIZE_UM = 0.6
"""The bundled models' working pixel size: every image is resampled to it."""

# Measured peaks (resident memory above the loaded models) of count_section on
# synthetic sections of 3072^2 and 4096^2 px with 2 and 3 channels at 0.6 um,
# and 1536^2 px at 1.2 um (docs/reliability.md): about 225 MB + 80 bytes per
# pixel at 0.6 um, 7 more per channel, and about 38 per pixel the resampling to
# the model's pixel size adds. Rounded up.
_FIXED_BYTES = 300e6
_BYTES_PER_PIXEL = 35.0
_BYTES_PER_PIXEL_PER_CHANNEL = 8.0
_BYTES_PER_MODEL_PIXEL = 40.0
# The estimate is a model: leave room for what it misses.
_HEADROOM = 1.25

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

LIMIT_VARIABLE = "DCXCOUNT_MEMORY_LIMIT"
"""Environment variable capping the memory one section may use, e.g. ``8GB`` (shared machines)."""


def count_memory_bytes(*, planes: int, channels: int, height: int, width: int, itemsize: int,
                       pixel_size_um: float) -> int:
    """Estimated peak memory (bytes) of reading and counting one section.

    Parameters
    ----------
    planes, channels, height, width : int
        The image's size as its header gives it (z-planes, channels including
        RGB samples, rows, columns).
    itemsize : int
        Bytes per pixel value as stored (1, 2, 4 or 8).
    pixel_size_um : float
        The image's pixel size; the model works at :data:`MODEL_PIXEL_SIZE_UM`,
        so a coarse image is enlarged (and costs more) before segmentation.

    Returns
    -------
    int
        Bytes, including a 25 % margin.
    """
    pixels = height * width
    stored = planes * channels * pixels * itemsize
    # A z-stack is read whole and then projected; float64 is read, then halved to float32.
    read = stored + (channels * pixels * min(itemsize, 4) if planes > 1 or itemsize > 4 else 0)
    model_pixels = pixels * max(pixel_size_um / MODEL_PIXEL_SIZE_UM, 0.0) ** 2
    work = (_FIXED_BYTES + pixels * (_BYTES_PER_PIXEL + _BYTES_PER_PIXEL_PER_CHANNEL * channels)
            + model_pixels * _BYTES_PER_MODEL_PIXEL)
    return int(math.ceil((read + work) * _HEADROOM))


def available_memory_bytes(*, sections_at_once: int = 1) -> int | None:
    """Memory a section may use now: the least of what is free, the container's and Dask worker's headroom.

    Free memory is the system's available memory; inside a container with a
    memory limit (cgroup) or a Dask worker with one, the room left under that
    limit, when smaller. ``DCXCOUNT_MEMORY_LIMIT`` (e.g. ``8GB``) caps it
    further, for machines shared with others.

    Parameters
    ----------
    sections_at_once : int
        Sections counted at the same time in this process (``workers``):
        the free memory and the headroom are shared between them; the
        ``DCXCOUNT_MEMORY_LIMIT`` cap is each one's.

    Returns
    -------
    int or None
        Bytes, or None when nothing could be measured (no check is made then).

    Raises
    ------
    ValueError
        When ``DCXCOUNT_MEMORY_LIMIT`` is set but is not a size.
    """
    shared = [_system_available(), _cgroup_headroom(), _dask_worker_headroom()]
    candidates = [c // max(1, sections_at_once) for c in shared if c is not None]
    cap = os.environ.get(LIMIT_VARIABLE, "").strip()
    if cap:
        candidates.append(parse_bytes(cap))
    known = [int(c) for c in candidates if c is not None]
    return min(known) if known else None


def available_cpus() -> int | None:
    """CPUs this process may run on: a container's or a SLURM job's share, not the host's (None: the OS does not say)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def parse_bytes(text: str) -> int:
    """``"8GB"``, ``"512 MiB"``, ``"2e9"`` -> bytes.

    Raises
    ------
    ValueError
        When the text is not a number with an optional unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB).
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", text.lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"{LIMIT_VARIABLE}={text!r} is not a size such as 8GB or 512MB")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def format_bytes(count: float) -> str:
    """Bytes in the largest decimal unit that keeps the number >= 1, e.g. ``"5.9 GB"``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} B"


def _system_available() -> int | None:
    try:
        import psutil  # comes with dask.distributed
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _cgroup_headroom() -> int | None:
    """Room under a container's memory limit (cgroup v2, else v1); None when there is no limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit_text = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        # "max" (v2) or a huge number (v1) means no limit.
        if limit_text == "max" or not limit_text.isdigit() or int(limit_text) >= 2**60:
            return None
        return max(int(limit_text) - usage, 0)
    return None


def _dask_worker_headroom() -> int | None:
    """Room under the Dask worker's memory limit when running in one (it pauses or dies beyond it)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None  # not imported, so not in a worker (and importing it costs a second)
    try:
        worker = distributed.get_worker()
    except ValueError:
        return None
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    if not limit:
        return None
    import psutil

    return max(int(limit) - psutil.Process().memory_info().rss, 0)
