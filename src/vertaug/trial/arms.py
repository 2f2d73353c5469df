"""The arms of an in-silico trial: each ``[arms.NAME]`` table of the population file is a procedure plan per patient.

Defaults (the shipped ``population.toml``, from the clinical reference): ``VP`` = vertebroplasty, low-viscosity
cement, volume = ``volume_fraction`` x the level's body volume ("volume by body size"); ``KP`` = kyphoplasty,
bipedicular balloons of ``balloon_fraction`` x body volume each (clipped to the balloon's maximum,
``physics.balloon.BALLOON_MAX_ML``), high-viscosity cement of ``volume_fraction`` x body volume. Any further arm (e.g.
``VP_high``: vertebroplasty with high-viscosity cement) is run on every patient too. Both ``VP`` and ``KP`` are
required: the trial's statistics compare them.
"""

from __future__ import annotations

from pathlib import Path

from .file_checks import PopulationError, check_keys, fail, number

__all__ = ["ARM_KEYS", "PROCEDURES", "arm_plan", "check_arms"]

PROCEDURES = ("vertebroplasty", "kyphoplasty")
CEMENTS = ("low", "high")
ARM_KEYS = {"procedure", "cement", "volume_fraction", "balloon_fraction", "rate_ml_s", "start_time_s"}
REQUIRED_ARMS = ("VP", "KP")
#: the body volume fraction bounds accepted for cement and balloons
MAX_VOLUME_FRACTION = 0.6


def check_arms(path: Path, raw) -> dict[str, dict]:
    """The arms of a population file, checked (raises PopulationError naming the key)."""

    if not isinstance(raw, dict) or not raw:
        raise fail(path, "table arms", "is missing", "give [arms.VP] and [arms.KP] tables.")
    out = {}
    for name, arm in raw.items():
        key = f"arms.{name}"
        if not isinstance(arm, dict):
            raise fail(path, key, "is not a table", f"write it as a table {key}.")
        check_keys(path, key, arm, ARM_KEYS)
        proc = arm.get("procedure")
        if proc not in PROCEDURES:
            raise fail(path, f"{key}.procedure", f"= {proc!r} is unknown", f"use one of {list(PROCEDURES)}.")
        cement = arm.get("cement", "low" if proc == "vertebroplasty" else "high")
        if cement not in CEMENTS:
            raise fail(path, f"{key}.cement", f"= {cement!r} is unknown", f"use one of {list(CEMENTS)}.")
        spec = {"procedure": proc, "cement": cement,
                "volume_fraction": number(path, f"{key}.volume_fraction", arm.get("volume_fraction", 0.15), 0.01,
                                           MAX_VOLUME_FRACTION),
                "rate_ml_s": number(path, f"{key}.rate_ml_s", arm.get("rate_ml_s", 0.05), 1e-3, 1.0),
                "start_time_s": number(path, f"{key}.start_time_s", arm.get("start_time_s", 210.0), 0.0, 1200.0)}
        if proc == "kyphoplasty":
            spec["balloon_fraction"] = number(path, f"{key}.balloon_fraction", arm.get("balloon_fraction", 0.05),
                                               0.005, MAX_VOLUME_FRACTION)
        elif "balloon_fraction" in arm:
            raise fail(path, f"{key}.balloon_fraction", "is given for a vertebroplasty",
                        "remove it (only kyphoplasty arms have balloons).")
        out[str(name)] = spec
    for need, proc in zip(REQUIRED_ARMS, PROCEDURES):
        if need not in out or out[need]["procedure"] != proc:
            raise PopulationError(f"Population file '{path}': arm {need} (a {proc}) is missing.",
                                  "keep the VP and KP arms; add other arms beside them.")
    return out


def arm_plan(arm: dict, body_volume_ml: float, n_cannulas: int = 2):
    """The procedure plan (Vertebroplasty or Kyphoplasty, bipedicular) of one arm on a body of ``body_volume_ml``."""
    from ..physics.balloon import BALLOON_MAX_ML
    from ..procedures.kyphoplasty import Kyphoplasty
    from ..procedures.vertebroplasty import Vertebroplasty

    volume = arm["volume_fraction"] * float(body_volume_ml)
    common = {"rate_ml_s": arm["rate_ml_s"], "start_time_s": arm["start_time_s"], "cement": arm["cement"],
              "approach": "bipedicular"}
    if arm["procedure"] == "vertebroplasty":
        return Vertebroplasty(volume_ml=volume, **common)
    balloon = min(arm["balloon_fraction"] * float(body_volume_ml), BALLOON_MAX_ML)
    return Kyphoplasty(balloon_ml=balloon, cement_ml=volume, **common)
