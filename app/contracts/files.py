"""Files both planes write for each other: replaced whole, never seen half-written."""

from __future__ import annotations

import contextlib
import os
import threading

PRIVATE_MODE = 0o600


def write_atomic(path: str | os.PathLike, text: str, *, private: bool = False) -> None:
    """Replace `path` with `text` (UTF-8): a reader sees the old file or the new one, never a part.

    `private`: the file holds a secret, so it is readable by its owner only from the moment
    it is created, not chmod-ed after the rename (when another user could already open it).
    """
    path = os.fspath(path)
    # Unique per process and thread: two writers never share a temporary file.
    tmp = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE if private else 0o666)
    try:
        if private:
            os.fchmod(fd, PRIVATE_MODE)   # a temporary file left by a crash keeps its old mode
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


__all__ = ["PRIVATE_MODE", "write_atomic"]
