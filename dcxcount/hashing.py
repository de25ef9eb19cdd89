"""SHA-256 of files: what decides a result (images, models, outlines) and what a person edited."""

from __future__ import annotations

import functools
import hashlib
import os

__all__ = ["file_sha256", "file_version_sha256"]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (large sections never whole in memory).

    Raises
    ------
    OSError
        The file cannot be read.
    """
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@functools.lru_cache(maxsize=4096)
def file_version_sha256(path: str, size: int, mtime_ns: int) -> str:
    """:func:`file_sha256`, cached per file version (path, size, modification time).

    For files read again and again in one process (a model file per section,
    a study's images per summary); files a person edits are hashed uncached.
    """
    return file_sha256(path)
