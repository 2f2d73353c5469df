"""A synthetic cohort from phantoms, so cohort runs are testable offline and exactly reproducible.

Case ``i`` of a cohort with seed ``s`` draws, from ``numpy.random.default_rng([s, i])``:

* level: uniform over T11..L4 (each with one neighbour above and below in the phantom table);
* fracture type and Genant grade: wedge / biconcave / crush, grade 1, 2 or 3, equally likely;
* trabecular density: uniform in [40, 180] HU, spanning Pickhardt's osteoporosis (< 110 HU), osteopenia and
  normal (>= 160 HU) classes (anatomy.morphometry);
* a cortical defect with probability 0.25 and an intravertebral cleft with probability 0.15 [A].

Rows either describe the phantom in the manifest's ``phantom`` column (built on the worker) or, with
``nifti_dir``, point at NIfTI files written here (CT in HU, TotalSegmentator v2 labels, vertebrae_body), which runs
the same code path as a patient CT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import check_range
from .manifest import write_manifest

__all__ = ["SYNTHETIC_LEVELS", "synthetic_cases", "write_synthetic_cohort"]

SYNTHETIC_LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4")
FRACTURES = ("wedge", "biconcave", "crush")
GRADES = (1, 2, 3)
HU_RANGE = (40.0, 180.0)
P_CORTICAL_DEFECT = 0.25
P_CLEFT = 0.15


def synthetic_cases(n_cases: int, seed: int = 0, spacing_mm: float = 2.0) -> list[dict]:
    """``n_cases`` phantom descriptions (PhantomSpec fields, ``case_id`` added), deterministic in ``seed``."""
    n_cases = int(check_range("n_cases", n_cases, 1, 1e6, "cases"))
    spacing_mm = check_range("spacing_mm", spacing_mm, 0.5, 3.0, "mm", "use 2 mm for tests, 1 mm for studies.")
    cases = []
    for i in range(n_cases):
        rng = np.random.default_rng([int(seed), i])
        cases.append({
            "case_id": f"SYN{i:04d}",
            "level": str(rng.choice(SYNTHETIC_LEVELS)),
            "fracture": str(rng.choice(FRACTURES)),
            "grade": int(rng.choice(GRADES)),
            "trabecular_hu": round(float(rng.uniform(*HU_RANGE)), 1),
            "cortical_defect": bool(rng.random() < P_CORTICAL_DEFECT),
            "cleft": bool(rng.random() < P_CLEFT),
            "spacing_mm": float(spacing_mm),
            "seed": i,
        })
    return cases


def _spec_text(c: dict) -> str:
    keys = ("fracture", "grade", "trabecular_hu", "cortical_defect", "cleft", "spacing_mm", "seed")
    return ";".join(f"{k}={c[k]}" for k in keys)


def write_synthetic_cohort(manifest: str | Path, n_cases: int, seed: int = 0, spacing_mm: float = 2.0,
                           nifti_dir: str | Path | None = None, procedures: str = "VP;KP") -> Path:
    """Write a manifest of ``n_cases`` synthetic cases; with ``nifti_dir``, also their CT/labels as NIfTI files."""
    manifest = Path(manifest)
    rows = []
    for c in synthetic_cases(n_cases, seed, spacing_mm):
        row = {"case_id": c["case_id"], "level": c["level"], "procedures": procedures}
        if nifti_dir is None:
            row["phantom"] = _spec_text(c)
        else:
            row.update(_write_nifti(c, Path(nifti_dir), manifest.parent))
        rows.append(row)
    return write_manifest(rows, manifest)


def _write_nifti(c: dict, folder: Path, base: Path) -> dict:
    from ..anatomy.io import save_nifti
    from ..anatomy.phantom import make_phantom

    spec = {k: v for k, v in c.items() if k != "case_id"}
    ph = make_phantom(**spec)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for col, vol in (("ct", ph.ct), ("seg", ph.labels), ("body", ph.body)):
        p = save_nifti(vol.data, vol.affine_mm, folder / f"{c['case_id']}_{col}.nii.gz")
        try:
            out[col] = str(p.resolve().relative_to(base.resolve()))
        except ValueError:
            out[col] = str(p.resolve())
    return out
