"""Where `specc transform` may write: never over an existing file unless asked, and never
into a folder that does not exist. The writing itself is `specc.fileio`'s (atomic)."""

from __future__ import annotations

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
