"""A pickle loader that can only build numpy arrays and plain containers.

Unpickling calls whatever global the file names, so a downloaded "CIFAR batch" could run
`os.system` on load. The CIFAR pickles need exactly three globals (numpy's array
reconstructor, `numpy.ndarray`, `numpy.dtype`); everything else is refused before it is
called, with a one-line `UserError` naming the file and the global.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from specc.errors import UserError
from specc.training.data.base import read_file_bytes

# (module, name) pairs a CIFAR pickle may reference. Python 2 wrote `numpy.core.multiarray`;
# numpy >= 2 writes `numpy._core.multiarray`. `_frombuffer` is what numpy writes for
# protocol 5, in case someone re-pickled the batches with a modern Python.
_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
# Plain containers have opcodes of their own, except these; none of them can run code.
_CONTAINER_NAMES = {"set", "frozenset", "bytearray", "list", "dict", "tuple"}
_BUILTIN_MODULES = {"builtins", "__builtin__"}


def _bytes_from_latin1(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 pickles at protocols 0-2 write for every bytes object (numpy's array data
    included): `_codecs.encode(text, "latin1")`. Only that encoding is honoured: a codec name
    chosen by the file could otherwise reach any codec module."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}: only latin1 text is allowed")
    return text.encode("latin1")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals in the allow-lists above; see the module docstring."""

    def __init__(self, file: io.BytesIO, path: Path):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _ARRAY_GLOBALS:
            import numpy as np

            # One implementation, two module names; numpy's stubs do not list the private `_core`.
            if name == "_reconstruct":
                return np._core.multiarray._reconstruct  # pyright: ignore[reportAttributeAccessIssue]
            if name == "_frombuffer":
                return np._core.numeric._frombuffer  # pyright: ignore[reportAttributeAccessIssue]
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):
            return _bytes_from_latin1
        if module in _BUILTIN_MODULES and name in _CONTAINER_NAMES:
            return getattr(__import__("builtins"), name)
        raise UserError(
            f"{self._path}: refused to unpickle global '{module}.{name}': "
            "a dataset pickle may only contain numpy arrays and plain containers"
        )


def load_pickle(path: Path) -> object:
    """Unpickle `path` (Python 2 pickles included: str comes back as bytes), refusing any
    global other than numpy array reconstruction and plain containers."""
    data = read_file_bytes(path)
    try:
        return _ArrayOnlyUnpickler(io.BytesIO(data), path).load()
    except UserError:
        raise
    except Exception as err:  # the unpickler raises many types on corrupt input
        # The C unpickler reports a short file as EOFError or as "pickle data was truncated".
        if isinstance(err, EOFError) or "truncated" in str(err):
            raise UserError(f"{path}: truncated pickle ({len(data)} bytes): re-extract the archive") from None
        raise UserError(f"{path}: not a readable pickle: {type(err).__name__}: {err}") from None
