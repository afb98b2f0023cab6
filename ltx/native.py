"""The optional C extension ltx._frames (ltx/_frames.c), loaded once for the modules that use it."""

from __future__ import annotations

import importlib
from types import ModuleType


def load_frames() -> ModuleType | None:
    """ltx._frames, or None where it was not built (no C compiler at install): the callers then do
    the same work in Python, slower."""
    try:
        return importlib.import_module("ltx._frames")
    except ImportError:
        return None
