"""The virtual population of an in-silico trial: read from one TOML file, sampled into patients (seeded, reproducible).

The file (default: ``population.toml`` next to this module; its comments document every key and source) holds

* ``[trial]``: default ``patients``, ``seed`` and the model's ``spacing_mm``;
* ``[[source]]``: the real vertebrae a patient is drawn from, with weights (the bundled CT's L1-L5, the TPTBox L3,
  a phantom level);
* ``[fracture]``: Genant type and grade tables (Genant 1993), the probabilities of a cleft and of an endplate break,
  the cortical-break table;
* ``[density]``: the osteoporotic trabecular HU distribution (Pickhardt 2013 bands), a truncated normal;
* ``[arms.NAME]``: the procedures run on every patient (see :mod:`vertaug.trial.arms`).

Sampling: one ``numpy.random.Generator`` (PCG64, seeded ``SeedSequence(seed)``) draws, per patient in order, the
source, type, grade, cleft, endplate break, cortical break, density and the fracture-line seed: the same file and seed
give the same patients on any machine. The grade is drawn from the grades the source level can be fractured to
(:func:`reachable_grades` of its measured baseline deformity, :func:`baseline_deformities`): the bundled L1, already a
grade-1 wedge, gets wedge grades 2 or 3, the table renormalised, and the patient records why. A source's ``fracture_types`` (default: all three) restricts its type draw to
those types, the type table renormalised over them: a level whose scan cannot grade a type (the TPTBox L3's
neighbours are cut by the field of view, so a crush, graded against the neighbours' posterior heights, cannot be
built) is never given it. Every problem of the file (TOML syntax, unknown key, a probability outside
0..1, a table that does not sum to 1, an unknown arm) raises :class:`PopulationError` naming the key, before anything
runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np
import tomllib

from .file_checks import PopulationError, check_keys, fail, number, probability

__all__ = ["DEFAULT_POPULATION", "Patient", "Population", "PopulationError", "Source", "baseline_deformities",
           "load_population", "reachable_grades", "sample_patients"]

DEFAULT_POPULATION = Path(str(files("vertaug.trial") / "population.toml"))
FRACTURE_TYPES = ("wedge", "biconcave", "crush")
GRADES = (1, 2, 3)
CORTICAL = ("none", "anterior", "lateral", "posterior")
#: a probability table must sum to 1 within this
SUM_TOLERANCE = 1e-6
_TOP_KEYS = {"trial", "source", "fracture", "density", "arms"}
_SOURCE_KEYS = {"id", "ct", "seg", "body", "numbering", "level", "weight", "optional", "phantom", "fracture_types"}
_FRACTURE_KEYS = {"type", "grade", "cleft", "endplate_break", "cortical_break"}
_DENSITY_KEYS = {"mean_hu", "sd_hu", "min_hu", "max_hu"}
_TRIAL_KEYS = {"patients", "seed", "spacing_mm"}


@dataclass(frozen=True)
class Source:
    """One real vertebra patients are drawn from: a CT level (absolute paths) or a phantom level."""

    source_id: str
    level: str
    weight: float
    ct: str | None = None
    seg: str | None = None
    body: str | None = None
    numbering: str = "v2"
    phantom: bool = False
    fracture_types: tuple[str, ...] = FRACTURE_TYPES  # the Genant types this level can be given (see _source)


@dataclass(frozen=True)
class Patient:
    """One virtual patient: a source vertebra, its virtual fracture and its bone density."""

    patient_id: str
    source_id: str
    fracture_type: str
    genant_grade: int
    cleft: bool
    endplate_break: bool
    cortical_break: str  # "none" or a side
    trabecular_hu: float
    fracture_seed: int
    #: the source level's deformity of the drawn type before the fracture, the largest over the density table's HU
    #: points (baseline_deformities); None for a phantom (built intact, then fractured)
    baseline_deformity: float | None = None
    #: why the grade was drawn from the deeper grades only ("" when the whole grade table was open)
    grade_note: str = ""

    def to_dict(self) -> dict:
        """The fields, ``baseline_deformity`` NaN where there is none (one float column in the trial's rows)."""
        d = dict(self.__dict__)
        if d["baseline_deformity"] is None:
            d["baseline_deformity"] = math.nan
        return d


@dataclass(frozen=True)
class Population:
    """A parsed population file."""

    path: Path
    sources: tuple[Source, ...]
    fracture_type: dict[str, float]
    grade: dict[int, float]
    cleft: float
    endplate_break: float
    cortical_break: dict[str, float]
    density: dict[str, float]
    arms: dict[str, dict]
    patients: int
    seed: int
    spacing_mm: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def source(self, source_id: str) -> Source:
        return next(s for s in self.sources if s.source_id == source_id)


def _table(path, key: str, table, names) -> dict:
    if not isinstance(table, dict) or not table:
        raise fail(path, key, "is missing or not a table", f"give a table {key} with probabilities for {list(names)}.")
    check_keys(path, key, table, {str(n) for n in names})
    probs = {n: probability(path, f"{key}.{n}", table.get(str(n), 0.0)) for n in names}
    total = sum(probs.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise fail(path, f"table {key}", f"sums to {total:g}, not 1", "make its probabilities add up to 1.")
    return probs


def _fracture_types(path: Path, key: str, value) -> tuple[str, ...]:
    """A source's ``fracture_types``: a non-empty list of Genant types (a level whose scan cannot grade a type, e.g. a
    crush without an intact neighbour in view, is never given it)."""
    if not isinstance(value, list) or not value or any(v not in FRACTURE_TYPES for v in value):
        raise fail(path, f"{key}.fracture_types", f"= {value!r} is not a list of fracture types",
                    f"give a non-empty list of {list(FRACTURE_TYPES)}.")
    return tuple(t for t in FRACTURE_TYPES if t in value)


def _source(path: Path, i: int, raw: dict, notes: list[str]) -> Source | None:
    key = f"source[{i}]"
    if not isinstance(raw, dict):
        raise fail(path, key, "is not a table", "write each source as a [[source]] table.")
    check_keys(path, key, raw, _SOURCE_KEYS)
    for need in ("id", "level"):
        if not isinstance(raw.get(need), str):
            raise fail(path, f"{key}.{need}", "is missing", f"give every [[source]] an {need} (a string).")
    weight = number(path, f"{key}.weight", raw.get("weight", 1.0), 0.0)
    common = {"source_id": raw["id"], "level": raw["level"], "weight": weight,
              "fracture_types": _fracture_types(path, key, raw.get("fracture_types", list(FRACTURE_TYPES)))}
    if raw.get("phantom"):
        return Source(**common, phantom=True)
    ct = raw.get("ct")
    if ct == "bundled":
        from ..demo import example_paths

        p = example_paths()
        return Source(**common, ct=str(p["ct"]), seg=str(p["seg"]), body=str(p["body"]))
    if not isinstance(ct, str) or not isinstance(raw.get("seg"), str):
        raise fail(path, key, "has neither phantom = true nor ct and seg paths",
                    'give ct = "bundled", or ct and seg files, or phantom = true.')
    files_ = {k: (path.parent / raw[k]).resolve() for k in ("ct", "seg", "body") if isinstance(raw.get(k), str)}
    missing = [str(f) for f in files_.values() if not f.exists()]
    if missing:
        if raw.get("optional"):
            notes.append(f"source {raw['id']} left out: {missing[0]} is absent")
            return None
        raise fail(path, f"{key}.ct/seg", f"names a missing file {missing[0]}",
                    "fix the path (relative to the population file) or set optional = true.")
    return Source(**common, **{k: str(v) for k, v in files_.items()}, numbering=str(raw.get("numbering", "v2")))


def _sources(path: Path, raw, notes: list[str]) -> tuple[Source, ...]:
    if not isinstance(raw, list) or not raw:
        raise fail(path, "source list", "is missing", "list at least one [[source]] vertebra.")
    out = tuple(s for i, r in enumerate(raw) if (s := _source(path, i, r, notes)) is not None)
    ids = [s.source_id for s in out]
    if len(set(ids)) != len(ids):
        raise fail(path, "source id", "is not unique", "give every source its own id.")
    if not out or sum(s.weight for s in out) <= 0:
        raise fail(path, "source list", "has no source with a positive weight", "give a source weight > 0.")
    return out


def _check_types(pop: Population) -> Population:
    """Every source with a weight must be able to take a type of positive probability."""
    for s in pop.sources:
        if s.weight > 0 and sum(pop.fracture_type[t] for t in s.fracture_types) <= 0:
            raise fail(pop.path, f"source {s.source_id!r} fracture_types", f"= {list(s.fracture_types)} has "
                        "probability 0 in fracture.type", "allow a type with a positive share, or set weight = 0.")
    return pop


def _density(path: Path, raw) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise fail(path, "table density", "is missing", "give mean_hu, sd_hu, min_hu and max_hu.")
    check_keys(path, "density", raw, _DENSITY_KEYS)
    d = {k: number(path, f"density.{k}", raw.get(k), -200.0, 1000.0) for k in sorted(_DENSITY_KEYS)}
    if d["sd_hu"] < 0 or d["min_hu"] >= d["max_hu"] or not d["min_hu"] <= d["mean_hu"] <= d["max_hu"]:
        raise fail(path, "table density", f"= {d} is inconsistent",
                    "give sd_hu >= 0 and min_hu <= mean_hu <= max_hu with min_hu < max_hu.")
    return d


def load_population(path: str | Path | None = None) -> Population:
    """Read and check a population file (default: the shipped ``population.toml``)."""
    from .arms import check_arms

    path = Path(path) if path is not None else DEFAULT_POPULATION
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PopulationError(f"Population file '{path}' does not exist.", "give the path of a TOML file.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PopulationError(f"Population file '{path}' is not valid TOML: {exc}.",
                              "fix the syntax (see the shipped population.toml).") from None
    check_keys(path, "top level", raw, _TOP_KEYS)
    notes: list[str] = []
    trial = raw.get("trial", {})
    check_keys(path, "trial", trial, _TRIAL_KEYS)
    frac = raw.get("fracture", {})
    check_keys(path, "fracture", frac, _FRACTURE_KEYS)
    return _check_types(Population(
        path=path, sources=_sources(path, raw.get("source"), notes),
        fracture_type=_table(path, "fracture.type", frac.get("type"), FRACTURE_TYPES),
        grade=_table(path, "fracture.grade", frac.get("grade"), GRADES),
        cleft=probability(path, "fracture.cleft", frac.get("cleft", 0.0)),
        endplate_break=probability(path, "fracture.endplate_break", frac.get("endplate_break", 1.0)),
        cortical_break=_table(path, "fracture.cortical_break", frac.get("cortical_break"), CORTICAL),
        density=_density(path, raw.get("density")),
        arms=check_arms(path, raw.get("arms")),
        patients=int(number(path, "trial.patients", trial.get("patients", 40), 1, 100000)),
        seed=int(number(path, "trial.seed", trial.get("seed", 0), 0, 2**63 - 1)),
        spacing_mm=number(path, "trial.spacing_mm", trial.get("spacing_mm", 1.5), 0.5, 3.0),
        notes=tuple(notes)))


def _choice(rng: np.random.Generator, table: dict):
    keys = list(table)
    return keys[int(rng.choice(len(keys), p=np.array([table[k] for k in keys], float)))]


def _allowed(table: dict, names: tuple[str, ...]) -> dict:
    """The type table restricted to a source's types, renormalised (the full table, unchanged, for most sources)."""
    total = sum(table[k] for k in names)
    return {k: table[k] / total for k in table if k in names}


def _truncated_normal(rng: np.random.Generator, d: dict[str, float]) -> float:
    """Inverse-CDF draw of N(mean, sd) truncated to [min, max] (one uniform per patient: reproducible)."""
    from scipy.stats import truncnorm

    if d["sd_hu"] == 0:
        return d["mean_hu"]
    a, b = (d["min_hu"] - d["mean_hu"]) / d["sd_hu"], (d["max_hu"] - d["mean_hu"]) / d["sd_hu"]
    return float(truncnorm.ppf(rng.random(), a, b, loc=d["mean_hu"], scale=d["sd_hu"]))


def _density_points(d: dict[str, float]) -> tuple[float, ...]:
    return (d["min_hu"], d["mean_hu"], d["max_hu"])


_BASELINES: dict = {}


def baseline_deformities(pop: Population) -> dict[str, dict[str, float]]:
    """Per CT source, its level's Genant deformity by type before any fracture: the largest over the density table's
    minimum, mean and maximum HU (``DENSITY_POINTS``) of :func:`vertaug.anatomy.fracture.level_deformities` on the
    volumes the runner fractures (the level turned upright where it must be, its HU scaled to the point). The CT
    endplate fit moves with the bone's contrast (bundled L1, wedge: 0.226 at 134 HU, 0.241 as scanned, 0.265 at 60 HU),
    so the largest is kept. Phantom sources have none (a phantom is built intact, then fractured). Measured once per
    process and population (~15 s for the shipped one)."""
    from ..anatomy.fracture import level_deformities
    from ..anatomy.morphometry import measure_volumes
    from .runner import scale_level_hu, source_volumes

    key = (tuple((s.source_id, s.ct, s.seg, s.body, s.level, s.numbering, s.phantom) for s in pop.sources),
           _density_points(pop.density), pop.spacing_mm)
    if key in _BASELINES:
        return _BASELINES[key]
    out, spines = {}, {}
    for s in pop.sources:
        if s.phantom or s.weight <= 0:
            continue
        ct, seg, body, _tilt, _turned = source_volumes(s, pop.spacing_mm)
        if id(ct) not in spines:  # unturned levels of one scan share its volumes and its morphometry
            spines[id(ct)] = (ct, measure_volumes(ct, seg, body, s.numbering))
        spine = spines[id(ct)][1]
        per_hu = [level_deformities(scale_level_hu(ct, seg, body, s.level, s.numbering, hu)[0], seg, s.level, body,
                                    s.numbering, spine) for hu in _density_points(pop.density)]
        out[s.source_id] = {k: max(d[k] for d in per_hu) for k in FRACTURE_TYPES}
    _BASELINES[key] = out
    return out


def reachable_grades(baseline: float | None) -> tuple[int, ...]:
    """The grades a level of this baseline deformity can be fractured to: those whose target deformity
    (``anatomy.fracture.GRADE_DEFORMITY``) exceeds the baseline by more than the fracture search's tolerance (the
    condition under which :func:`~vertaug.anatomy.fracture.fracture_level` refuses a level as already deformed)."""
    from ..anatomy.fracture import DEFORMITY_TOLERANCE, GRADE_DEFORMITY

    if baseline is None or not math.isfinite(baseline):
        return GRADES
    return tuple(g for g in GRADES if GRADE_DEFORMITY[g] - DEFORMITY_TOLERANCE > baseline)


def _grade(table: dict, u: float, allowed: tuple[int, ...]) -> int:
    """The grade of the uniform ``u`` in ``table``; where it falls on a grade that is not ``allowed`` (a prefix: the
    mildest grades), the remainder of ``u`` in that prefix, itself uniform, picks among the allowed grades with their
    shares renormalised. The result is the grade table conditioned on the allowed grades, from the same one uniform,
    and every patient whose draw is allowed keeps it."""
    keys = list(table)
    cdf = np.cumsum([table[k] for k in keys])
    cdf = cdf / cdf[-1]
    g = keys[int(np.searchsorted(cdf, u, side="right"))]
    if g in allowed:
        return int(g)
    closed = sum(table[k] for k in keys if k not in allowed)
    return int(_grade({k: table[k] for k in keys if k in allowed}, u / closed, allowed))


def _grade_note(src: Source, kind: str, baseline: float, allowed: tuple[int, ...]) -> str:
    return (f"{src.level} of {src.source_id} measures a {kind} deformity of {baseline:.3f} before the fracture: "
            f"grade drawn from {', '.join(map(str, allowed))} (the deeper grades), the shares renormalised")


def sample_patients(pop: Population, n: int, seed: int, baselines: dict | None = None) -> list[Patient]:
    """``n`` patients of ``pop`` drawn with ``numpy.random.default_rng(seed)`` (same inputs, same patients).

    The grade of a patient is drawn from the grades its source level can be fractured to (:func:`reachable_grades`
    of its baseline deformity of the drawn type, ``baselines`` or :func:`baseline_deformities`): the bundled L1 is
    already a grade-1 wedge, so its wedge patients are grade 2 or 3; the patient records the baseline and says so
    (``grade_note``). No source without an allowed grade: :class:`PopulationError`."""
    n = int(n)
    if n < 1:
        raise PopulationError(f"Parameter patients={n} is below 1.", "give --patients 1 or more.")
    baselines = baseline_deformities(pop) if baselines is None else baselines
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    weights = {s.source_id: s.weight for s in pop.sources}
    total = sum(weights.values())
    weights = {k: w / total for k, w in weights.items()}
    out = []
    for i in range(n):
        src = _choice(rng, weights)
        kind = _choice(rng, _allowed(pop.fracture_type, pop.source(src).fracture_types))
        u_grade = float(rng.random())  # the one uniform _choice would draw
        cleft = bool(rng.random() < pop.cleft)
        endplate = bool(rng.random() < pop.endplate_break)
        cortical = _choice(rng, pop.cortical_break)
        hu = _truncated_normal(rng, pop.density)
        base = baselines.get(src, {}).get(kind)
        base = float(base) if base is not None and math.isfinite(base) else None
        allowed = tuple(g for g in reachable_grades(base) if pop.grade[g] > 0)
        if not allowed:
            raise PopulationError(f"Source {src!r} already measures a {kind} deformity of {base:.3f}: no grade of "
                                  "fracture.grade with a positive share is deeper.",
                                  f"give grade 3 a share, or leave {kind} out of the source's fracture_types.")
        grade = _grade(pop.grade, u_grade, allowed)
        note = "" if len(allowed) == sum(pop.grade[g] > 0 for g in GRADES) else _grade_note(
            pop.source(src), kind, base, allowed)
        out.append(Patient(f"p{i:05d}", src, kind, grade, cleft, endplate, cortical, hu, int(rng.integers(2**31)),
                           None if base is None else round(base, 4), note))
    return out
