"""Vertebral level names and the TotalSegmentator label numbers for them.

TotalSegmentator ``total`` task, two numberings (both verified against its ``map_to_binary.py``):

* **v2** (TotalSegmentator >= 2.0, the default here): 25 sacrum, 26 vertebrae_S1, 27 L5, 28 L4, 29 L3, 30 L2, 31 L1,
  32 T12, 33 T11, ..., 43 T1, 44 C7, ..., 50 C1.
* **v1** (TotalSegmentator 1.x, 104 classes): 18 vertebrae_L5, 19 L4, 20 L3, 21 L2, 22 L1, 23 T12, ..., 34 T1,
  35 C7, ..., 41 C1. v1 has no S1 label.

The ``vertebrae_body`` task writes 1 = vertebral body (all levels in one label) and 2 = intervertebral disc.

**verse** (the VerSe challenge data set, Sekuboyina et al. 2021 Med Image Anal 73:102166, and TPTBox): C1..C7 = 1..7,
T1..T12 = 8..19, L1..L5 = 20..24, L6 = 25, sacrum = 26, T13 = 28 (the README of the TPTBox sample and the VerSe
data description). The transitional L6 and T13 have no name in :data:`LEVELS` and are not read; the VerSe sacrum (26)
is read as "S1" (morphometry does not grade it).

The numbers of the versions overlap (26..41 mean different levels), so the numbering cannot be inferred from the
values alone: it is an explicit argument everywhere (default ``"v2"``).
"""

from __future__ import annotations

from ..errors import LevelNotFoundError, ParameterError

#: Levels from cranial to caudal.
LEVELS: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)),
    "S1",
)

#: The ``vertebrae_body`` output of TotalSegmentator.
BODY_LABEL = 1
DISC_LABEL = 2


def _caudal_to_cranial(first_label: int, names: tuple[str, ...]) -> dict[str, int]:
    return {name: first_label + i for i, name in enumerate(names)}


_CAUDAL_FROM_L5 = tuple(reversed(LEVELS[:-1]))  # L5, L4, ..., C1
TOTALSEG_V2: dict[str, int] = _caudal_to_cranial(26, ("S1", *_CAUDAL_FROM_L5))
TOTALSEG_V1: dict[str, int] = _caudal_to_cranial(18, _CAUDAL_FROM_L5)
#: VerSe: cranial to caudal from C1 = 1; the sacrum (26) stands in for S1.
VERSE: dict[str, int] = {**{name: i + 1 for i, name in enumerate(LEVELS[:-1])}, "S1": 26}
#: VerSe labels of the transitional vertebrae, which vertaug does not model.
VERSE_TRANSITIONAL = {"L6": 25, "T13": 28}
NUMBERINGS: dict[str, dict[str, int]] = {"v1": TOTALSEG_V1, "v2": TOTALSEG_V2, "verse": VERSE}


def label_table(numbering: str = "v2") -> dict[str, int]:
    """Level name -> label value for a numbering: TotalSegmentator ``"v1"`` or ``"v2"``, or ``"verse"``."""
    try:
        return NUMBERINGS[numbering]
    except KeyError:
        raise ParameterError(
            f"Unknown label numbering {numbering!r}.",
            "use 'v2' for TotalSegmentator >= 2.0 (L1 = 31), 'v1' for 1.x (L1 = 22) or 'verse' for VerSe (L1 = 20).",
        ) from None


def normalize_level(name: str) -> str:
    """Accept 'L1', 'l1', 'vertebrae_L1' and return the canonical 'L1'."""
    raw = str(name).strip()
    key = raw.upper().removeprefix("VERTEBRAE_")
    if key not in LEVELS:
        raise LevelNotFoundError(
            f"{raw!r} is not a vertebral level name.", f"use one of {', '.join(LEVELS)} (for example 'L1')."
        )
    return key


def level_index(name: str) -> int:
    """Position from cranial (C1 = 0) to caudal (S1 = 25)."""
    return LEVELS.index(normalize_level(name))


def neighbours(name: str) -> tuple[str | None, str | None]:
    """The level above (cranial) and below (caudal), None past C1 or S1."""
    i = level_index(name)
    above = LEVELS[i - 1] if i > 0 else None
    below = LEVELS[i + 1] if i + 1 < len(LEVELS) else None
    return above, below


def in_genant_range(name: str) -> bool:
    """Genant's semi-quantitative method was defined for T4..L4."""
    i = level_index(name)
    return LEVELS.index("T4") <= i <= LEVELS.index("L4")
