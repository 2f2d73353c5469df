"""The cohort manifest: one CSV row per case (patient level), read into frozen :class:`Case` records.

Columns (header names are case-sensitive; empty cells mean "not given"):

============== ======== ==================================================================================
column         required meaning
============== ======== ==================================================================================
case_id        yes      unique name of the case (used in file names and as the row key)
level          yes      the treated level, e.g. ``L1``
ct             one of   CT: NIfTI file or DICOM folder (relative paths are relative to the manifest's folder)
seg            ct/seg   TotalSegmentator vertebra label map on the CT's grid
body           no       TotalSegmentator ``vertebrae_body`` map (1 body, 2 disc)
numbering      no       TotalSegmentator numbering, ``v2`` (default) or ``v1``
phantom        or this  a synthetic case: ``key=value`` pairs of :class:`vertaug.anatomy.phantom.PhantomSpec` joined
                        by ``;``, e.g. ``fracture=wedge;grade=2;trabecular_hu=90;spacing_mm=2``
procedures     no       procedures to simulate, ``;``-separated (default ``VP;KP``)
spacing_mm     no       voxel size of the model grid in mm (default 1.0; phantoms default to their own spacing)
<input name>   no       any uncertain input of :mod:`vertaug.cohort.sampling` (e.g. ``volume_ml``): fixed, not sampled
============== ======== ==================================================================================

Problems with the manifest itself (missing column, duplicate case, unparsable phantom) raise :class:`InputError`
before anything runs. Problems with a case's files (missing, unreadable, wrong grid) are found when the case runs, on
the worker, and are recorded as that case's failure.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FileFormatError, ParameterError, check_range
from .sampling import INPUT_NAMES, UNCERTAIN_INPUTS

__all__ = ["MANIFEST_COLUMNS", "Case", "parse_phantom_spec", "read_manifest", "write_manifest"]

MANIFEST_COLUMNS = ("case_id", "level", "ct", "seg", "body", "numbering", "phantom", "procedures", "spacing_mm")
DEFAULT_PROCEDURES = ("VP", "KP")
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PHANTOM_TYPES = {"level": str, "fracture": str, "grade": int, "deformity": float, "spacing_mm": float,
                  "trabecular_hu": float, "noise_hu": float, "cortex_mm": float, "endplate_mm": float,
                  "cortical_defect": bool, "cleft": bool, "neighbours": bool, "seed": int}


@dataclass(frozen=True)
class Case:
    """One case of the cohort. Paths are absolute strings (or None); ``phantom`` holds PhantomSpec fields."""

    case_id: str
    level: str
    ct: str | None = None
    seg: str | None = None
    body: str | None = None
    numbering: str = "v2"
    phantom: dict | None = None
    procedures: tuple[str, ...] = DEFAULT_PROCEDURES
    spacing_mm: float | None = None
    fixed: dict = field(default_factory=dict)

    @property
    def is_phantom(self) -> bool:
        return self.phantom is not None


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "y"):
        return True
    if t in ("0", "false", "no", "n", ""):
        return False
    raise ValueError(text)


def parse_phantom_spec(text: str, where: str = "phantom") -> dict:
    """``'fracture=wedge;grade=2'`` -> ``{'fracture': 'wedge', 'grade': 2}`` (types of PhantomSpec's fields)."""
    out: dict = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _PHANTOM_TYPES:
            raise ParameterError(f"{where}: '{part}' is not a key=value pair of a PhantomSpec field.",
                                 f"use keys among {', '.join(_PHANTOM_TYPES)}, e.g. 'fracture=wedge;grade=2'.")
        typ = _PHANTOM_TYPES[key]
        try:
            out[key] = _bool(value) if typ is bool else typ(value.strip())
        except ValueError:
            raise ParameterError(f"{where}: {key}={value!r} is not a {typ.__name__}.",
                                 f"give {key} as a {typ.__name__}.") from None
    if "spacing_mm" in out:
        _check_spacing(out["spacing_mm"], where)
    return out


#: Model voxel sizes a manifest may ask for (mm); the limits of the voxel model (model.vertebra).
SPACING_RANGE_MM = (0.25, 3.0)


def _check_spacing(value: float, where: str) -> float:
    return check_range("spacing_mm", value, *SPACING_RANGE_MM, "mm",
                       f"{where}: give spacing_mm between {SPACING_RANGE_MM[0]:g} and {SPACING_RANGE_MM[1]:g} mm "
                       "(1.0 for studies, 2 for quick tests) or leave the cell empty.")


def _float_or_none(text: str, name: str, where: str) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise ParameterError(f"{where}: {name}={text!r} is not a number.", f"give {name} as a number.") from None


def _path(text: str | None, base: Path) -> str | None:
    if text is None or not text.strip():
        return None
    p = Path(text.strip()).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _case_from_row(row: dict, base: Path, where: str) -> Case:
    def cell(name):
        v = row.get(name)
        return v.strip() if isinstance(v, str) else None

    case_id = cell("case_id") or ""
    if not _CASE_ID.match(case_id):
        raise ParameterError(f"{where}: case_id={case_id!r} is empty or holds characters other than letters, digits, "
                             "'.', '_' and '-'.", "give each case a short unique name such as 'P001-L1'.")
    level = cell("level")
    if not level:
        raise ParameterError(f"{where} ({case_id}): the level is empty.", "give the treated level, e.g. L1.")
    phantom = cell("phantom")
    ct, seg = cell("ct"), cell("seg")
    if bool(phantom) == bool(ct or seg):
        raise ParameterError(f"{where} ({case_id}): give either ct and seg, or phantom (not both, not neither).",
                             "fill the ct and seg columns for a patient, or the phantom column for a synthetic case.")
    if not phantom and not (ct and seg):
        raise ParameterError(f"{where} ({case_id}): both ct and seg are needed.", "fill both columns.")
    spec = None
    if phantom:
        spec = parse_phantom_spec(phantom, f"{where} ({case_id}) phantom")
        if spec.setdefault("level", level).upper() != level.upper():
            raise ParameterError(f"{where} ({case_id}): the phantom's level {spec['level']} differs from level {level}.",
                                 "leave 'level' out of the phantom column or make the two agree.")
    procedures = tuple(p.strip().upper() for p in (cell("procedures") or "VP;KP").split(";") if p.strip())
    bad = [p for p in procedures if p not in DEFAULT_PROCEDURES]
    if bad or not procedures:
        raise ParameterError(f"{where} ({case_id}): procedures={cell('procedures')!r} is not a list of VP and KP.",
                             "write e.g. 'VP;KP', 'VP' or 'KP'.")
    fixed = {}
    for p in UNCERTAIN_INPUTS:
        v = cell(p.name)
        if v:
            if p.kind == "choice":
                if v not in p.options:
                    raise ParameterError(f"{where} ({case_id}): {p.name}={v!r} is not one of {p.options}.",
                                         f"use one of {', '.join(p.options)} or leave the cell empty.")
                fixed[p.name] = v
            else:
                fixed[p.name] = _float_or_none(v, p.name, f"{where} ({case_id})")
    spacing = _float_or_none(cell("spacing_mm"), "spacing_mm", f"{where} ({case_id})")
    if spacing is not None:
        _check_spacing(spacing, f"{where} ({case_id})")
    return Case(
        case_id=case_id, level=level, ct=_path(ct, base), seg=_path(seg, base), body=_path(cell("body"), base),
        numbering=cell("numbering") or "v2", phantom=spec, procedures=procedures,
        spacing_mm=spacing, fixed=fixed,
    )


def read_manifest(path: str | Path) -> list[Case]:
    """Read and check a manifest CSV; relative paths are taken from the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"Manifest '{path}' does not exist or is not a file.",
                              "give the path of a CSV with columns case_id, level, ct, seg (or phantom).")
    try:
        text = path.read_bytes().decode("utf-8-sig")
        if "\0" in text:
            raise FileFormatError(f"Manifest '{path}' holds NUL bytes: it is a binary file, not a CSV text.",
                                  "give the CSV itself (saved as 'CSV UTF-8'), not a spreadsheet or archive.")
        return _read_rows(csv.DictReader(io.StringIO(text, newline="")), path)
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"Manifest '{path}' is not UTF-8 text (byte {exc.start}: {exc.reason}); it may be "
                              "Latin-1/Windows-1252 or not a CSV at all.",
                              "save it as 'CSV UTF-8' (Excel) or convert it, e.g. iconv -f latin1 -t utf-8.") from None
    except csv.Error as exc:
        raise FileFormatError(f"Manifest '{path}' is not a readable CSV ({exc}).",
                              "give a plain-text CSV with a header row: case_id,level,ct,seg (or phantom).") from None


def _read_rows(reader: csv.DictReader, path: Path) -> list[Case]:
    """Cases of the rows of ``reader`` (the manifest at ``path``), header and duplicates checked."""
    header = reader.fieldnames or []
    missing = [c for c in ("case_id", "level") if c not in header]
    if missing:
        raise FileFormatError(f"Manifest '{path}' lacks the column(s) {', '.join(missing)} (header: {header}).",
                              "add a header row: case_id,level,ct,seg,body,phantom,procedures.")
    known = set(MANIFEST_COLUMNS) | set(INPUT_NAMES)
    extra = [c for c in header if c not in known]
    if extra:
        raise FileFormatError(f"Manifest '{path}' has unknown column(s) {extra}.",
                              f"use only {', '.join(MANIFEST_COLUMNS + INPUT_NAMES)}.")
    cases = [_case_from_row(row, path.parent.resolve(), f"manifest '{path.name}' line {i + 2}")
             for i, row in enumerate(reader)]
    if not cases:
        raise FileFormatError(f"Manifest '{path}' lists no cases.", "add one row per case under the header.")
    seen: set[str] = set()
    for c in cases:
        if c.case_id in seen:
            raise ParameterError(f"Manifest '{path}': case_id {c.case_id!r} appears more than once.",
                                 "give every row its own case_id.")
        seen.add(c.case_id)
    return cases


def write_manifest(rows: list[dict], path: str | Path) -> Path:
    """Write manifest rows (dicts of column -> value) as CSV with the standard columns first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = sorted({k for r in rows for k in r} - set(MANIFEST_COLUMNS))
    cols = [c for c in MANIFEST_COLUMNS if any(c in r for r in rows)] + extra
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return path
