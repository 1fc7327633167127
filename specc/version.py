"""specc's version, in a module of its own so that any layer can read it without importing
the package's API (`import specc` loads specc/api.py)."""

from __future__ import annotations

__version__ = "0.1.0"
