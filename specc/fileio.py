"""Writing files atomically: a reader sees the old file or the new one, never half of one.

Every file specc writes (specs, checkpoints, ONNX models, generated code, figures, metrics,
reports) goes through here, so that all of them get the same durability:

1. the bytes go to a fresh temporary file in the destination's folder (same file system,
   so the rename below is atomic; a unique name, so concurrent writers never share one),
2. which is flushed and fsynced (the data is on disk before the name points at it),
3. given the mode a new file would get (0o666 less the umask) or the mode of the file it
   replaces — `mkstemp` makes it 0o600, which would surprise anyone sharing a results folder,
4. moved over the destination with `os.replace`,
5. and the folder is fsynced, so that the rename itself survives a power cut.

On any error (including Ctrl-C) the temporary file is removed and the error re-raised; the
destination is untouched. `write_files` does the same for a set of files that belong
together (`specc compile`'s model and code): every one is written and synced before the
first is renamed into place, and if a rename fails the ones already renamed are put back.
What the file system refuses (a read-only folder, a full disk, a file where a folder should
be, a folder where the file should be) is a `UserError` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from specc.errors import UserError

Writer = Callable[[BinaryIO], object]  # writes the content to an open binary file


def atomic_write(path: str | Path, write: Writer) -> int:
    """Call `write(file)` on a temporary file next to `path`, then move it into place.
    Missing parent folders are created. Returns the size written, in bytes. (A set of one.)"""
    path = Path(path)
    return write_files({path: write})[path]


def write_bytes(path: str | Path, data: bytes) -> int:
    """Write `data` to `path` atomically; returns its size."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> int:
    """Write `text` (UTF-8) to `path` atomically; returns the size in bytes."""
    return write_bytes(path, text.encode("utf-8"))


def write_files(contents: Mapping[Path, bytes | Writer]) -> dict[Path, int]:
    """Write several files as one result: each entry's bytes (or writer) goes to a temporary
    file first; only when all of them are written and synced are they renamed into place, in
    order. A failure while writing (a full disk, content that cannot be serialised) leaves
    every destination as it was; only a failing rename, after all the data is safe, can leave
    part of the set replaced. Returns the sizes."""
    staged: dict[Path, tuple[str, int]] = {}
    targets = {Path(path): _target(Path(path)) for path in contents}
    try:
        for path, content in contents.items():
            write = content if callable(content) else _writer_of(content)
            target = targets[Path(path)]
            if target in staged:  # two links to one file: the last content wins, no orphaned temporary
                _remove(staged.pop(target)[0])
            staged[target] = _stage(target, write)
        _rename_all({target: tmp for target, (tmp, _) in staged.items()})
    except BaseException:
        for tmp, _ in staged.values():
            _remove(tmp)  # the ones already renamed are gone from there: nothing to do
        raise
    for folder in {target.parent for target in staged}:
        _sync_folder(folder)
    return {path: staged[target][1] for path, target in targets.items()}


def _target(path: Path) -> Path:
    """The file a write to `path` replaces: a symlink's target (`fmt -i link.yaml` rewrites the
    spec the link points at and keeps the link, as an editor would), else `path` itself."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _rename_all(moves: dict[Path, str]) -> None:
    """Move each staged file over its destination; if one move fails, undo the ones made (the
    files they replaced were kept as hard links until all moves succeeded)."""
    backups: dict[Path, str | None] = {}
    try:
        for path, tmp in moves.items():
            backups[path] = _keep(path)
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise _refusal(path, exc) from None
            backups[path] = backups[path] or ""  # "" marks: renamed, nothing was there before
    except BaseException:
        for path, backup in backups.items():
            if backup:  # renamed over an old file (or not renamed at all): put the old one back
                with contextlib.suppress(OSError):
                    os.replace(backup, path)
            elif backup == "":
                _remove(str(path))
        raise
    finally:
        for backup in backups.values():
            if backup:
                _remove(backup)


def _keep(path: Path) -> str | None:
    """A hard link to the file at `path` (None when there is none), so it can be put back."""
    if not path.is_file():
        return None
    link = f"{path.parent / ('.' + path.name)}.{os.getpid()}.bak"
    with contextlib.suppress(OSError):
        os.link(path, link)
        return link
    return None


def _refusal(path: Path, exc: OSError) -> UserError:
    """What the file system said about writing `path`, as one line naming the path."""
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        return UserError(f"{path}: is a folder — expected a file name to write")
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return UserError(f"{path}: cannot write it — a file is in the way where a folder should be")
    return UserError(f"{path}: cannot write it ({exc.strerror or exc})")


def _writer_of(data: bytes) -> Writer:
    return lambda f: f.write(data)


def _stage(path: Path, write: Writer) -> tuple[str, int]:
    """(temporary file next to `path` holding the content, fsynced and with its final mode, size)."""
    if path.is_dir():
        raise UserError(f"{path}: is a folder — expected a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _refusal(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            size = os.fstat(f.fileno()).st_size
        os.chmod(tmp, _mode_for(path))
    except OSError as exc:
        _remove(tmp)
        raise _refusal(path, exc) from None
    except BaseException:
        _remove(tmp)
        raise
    return tmp, size


def _mode_for(path: Path) -> int:
    """The mode of the file being replaced, else what `open()` would give a new file."""
    with contextlib.suppress(OSError):
        return path.stat().st_mode & 0o777
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask. Linux reports it; elsewhere the only way to read it is to set it,
    which is briefly process-wide: a restrictive 0o077 meanwhile means a file another thread
    creates in that instant is too private, never too open."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; folders cannot be opened on Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(tmp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
