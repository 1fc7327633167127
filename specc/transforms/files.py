"""Writing results: atomically (a temporary file in the same directory, then `os.replace`),
so that an interrupted run never leaves half a spec or half a checkpoint, and never over an
existing file unless asked."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from specc.errors import UserError


def check_writable(path: str | Path, force: bool, what: str = "-o") -> Path:
    """Refuse early (before any work is written) when `path` exists and `force` is off."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path}: is a directory, expected a file name")
    if path.exists() and not force:
        raise UserError(f"{what} {path}: file exists (use --force to overwrite)")
    if not path.parent.exists():
        raise UserError(f"{what} {path}: no such directory '{path.parent}'")
    return path


def atomic_write(path: str | Path, write: Callable[[object], None]) -> None:
    """Call `write(binary_file)` on a temporary file next to `path`, then move it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _mode_for(path: Path) -> int:
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
