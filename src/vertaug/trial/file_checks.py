"""Checks of a trial's population file: the error it raises and the one-line messages naming the key.

Shared by :mod:`vertaug.trial.population` (sources, fracture and density tables) and :mod:`vertaug.trial.arms`
(the arms).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import InputError

__all__ = ["PopulationError", "check_keys", "fail", "number", "probability"]


class PopulationError(InputError):
    """The population file is malformed or holds an impossible value."""


def fail(path: Path, key: str, problem: str, fix: str) -> PopulationError:
    return PopulationError(f"Population file '{path}': {key} {problem}.", fix)


def number(path, key, value, low=-math.inf, high=math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise fail(path, key, f"= {value!r} is not a number in [{low:g}, {high:g}]",
                   f"give {key} a number between {low:g} and {high:g}.")
    return float(value)


def probability(path, key, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
        raise fail(path, key, f"= {value!r} is not a probability", f"give {key} a number between 0 and 1.")
    return float(value)


def check_keys(path, where: str, table: dict, allowed: set) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise fail(path, f"table {where}", f"has unknown key(s) {unknown}", f"use only {sorted(allowed)} (a typo?).")
