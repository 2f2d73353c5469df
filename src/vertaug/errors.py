"""Errors raised on bad input.

Every message names the offending file or parameter, says what is wrong with it, and says how to fix it.
All derive from :class:`InputError` (itself a ``ValueError``), so a batch can catch one type and record the
message of a failed case without losing the others.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "InputError",
    "FileFormatError",
    "GridMismatchError",
    "LevelNotFoundError",
    "EmptyMaskError",
    "InvalidValueError",
    "ParameterError",
    "FractureError",
    "OutputPathError",
    "check_range",
    "check_output_dir",
    "check_output_file",
    "terminal_safe",
]


class InputError(ValueError):
    """Bad input given to vertaug: a file, an array or a parameter."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem} Fix: {fix}")

    def __reduce__(self):  # pickled as (problem, fix): errors raised in worker processes keep their fix
        return (self.__class__, (self.problem, self.fix))


class FileFormatError(InputError):
    """A file is missing, unreadable, truncated or not the kind of image expected."""


class GridMismatchError(InputError):
    """Two images that must share a voxel grid (CT and labels) do not."""


class LevelNotFoundError(InputError):
    """A requested vertebral level is not present (or not evaluable) in the segmentation."""


class EmptyMaskError(InputError):
    """A mask or label map holds no voxels of the structure asked for."""


class InvalidValueError(InputError):
    """An array holds values that cannot be used (NaN, infinity, wrong dimensionality)."""


class ParameterError(InputError):
    """A parameter is outside its physically meaningful range."""


class OutputPathError(InputError):
    """An output path cannot be written (an existing file where a folder is needed, a read-only folder)."""


class FractureError(InputError):
    """A virtual fracture cannot be made as asked on this level (deeper than the body, no reference height)."""


def check_range(name: str, value: float, low: float, high: float, unit: str = "", hint: str = "") -> float:
    """Return ``value`` as float if ``low <= value <= high``, else raise :class:`ParameterError`.

    The message names the parameter, the value, its unit and the accepted range.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"Parameter {name}={value!r} is not a number.", f"give a number in {unit}.") from None
    if not (low <= v <= high):  # also catches NaN
        u = f" {unit}" if unit else ""
        raise ParameterError(
            f"Parameter {name}={value!r}{u} is outside the accepted range [{low:g}, {high:g}]{u}.",
            hint or f"choose a value between {low:g} and {high:g}{u}.",
        )
    return v


def _writable_parent(path: Path) -> Path:
    """The nearest existing ancestor of ``path``; OutputPathError unless it is a writable folder."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"'{parent}' is a file, so '{path}' cannot be created under it.",
                              "choose an output path whose parent folders are folders (or do not exist yet).")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"The folder '{parent}' is not writable, so '{path}' cannot be created.",
                              "choose an output path in a folder you may write to (e.g. under your home folder).")
    return parent


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """Check, before any work, that ``path`` can be (or already is) a writable output folder."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise OutputPathError(f"{option} '{path}' is an existing file, not a folder.",
                                  f"give {option} a new or existing folder (this run would not overwrite the file).")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputPathError(f"{option} folder '{path}' is not writable.",
                                  f"give {option} a folder you may write to.")
        return path
    _writable_parent(path)
    return path


def check_output_file(path: str | Path, option: str = "--json") -> Path:
    """Check, before any work, that the file ``path`` can be written (a new file or an existing writable file)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} '{path}' is a folder.", f"give {option} a file name, e.g. '{path}/out.json'.")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise OutputPathError(f"{option} file '{path}' is not writable.", f"give {option} another file name.")
        return path
    _writable_parent(path)
    return path


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` with control characters (ANSI escapes, NUL) shown as \\xNN and newlines as spaces: one line."""
    text = str(text).replace("\r\n", " ").replace("\n", " ")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
