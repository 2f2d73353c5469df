"""Errors raised on bad input.

Every message names the offending file or parameter, says what is wrong with it, and says how to fix it.
All derive from :class:`InputError` (itself a ``ValueError``), so a batch can catch one type and record the
message of a failed case without losing the others.
"""

from __future__ import annotations

__all__ = [
    "InputError",
    "FileFormatError",
    "GridMismatchError",
    "LevelNotFoundError",
    "EmptyMaskError",
    "InvalidValueError",
    "ParameterError",
    "FractureError",
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
