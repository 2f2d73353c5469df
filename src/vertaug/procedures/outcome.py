"""The result of one simulated procedure (vertebroplasty or kyphoplasty): the shared ``Outcome`` (docs/file_formats.md).

An Outcome holds

* final fields on the model grid: ``cement_fraction`` (cement volume per voxel volume, 0..1: saturation x porosity),
  ``arrival_time_s`` (NaN where cement never arrived) and any further named fields in ``fields`` (for a
  kyphoplasty: the balloon cavity and the compacted shell);
* time series in ``series``: name -> 1-D array, with the unit in the name (``t_s``, ``injected_ml``,
  ``leaked_ml_B`` ..., ``balloon_volume_ml``, ``balloon_pressure_pa``);
* summary metrics as typed fields with units in their names: ``injection`` (:class:`InjectionMetrics`), ``heights``
  (:class:`vertaug.model.heights.HeightChange`, before and after, one measurement for both procedures) and, for a
  kyphoplasty, ``balloon`` (:class:`BalloonMetrics`); ``metrics`` is their flat view for tables and JSON;
* the model before and after treatment (``model_after`` is a valid :class:`vertaug.model.vertebra.Vertebra`);
* ``notes``: plain sentences about what the model did or could not do (a measurement that cannot be made is a NaN
  metric plus a note, never an exception in the middle of a batch), and ``inputs`` (the procedure spec as a dict).

Both procedure modules build it with :func:`make_outcome`; nothing here is specific to one procedure.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..model.heights import HeightChange
from ..constants import PSI_PA

__all__ = ["BalloonMetrics", "InjectionMetrics", "Outcome", "make_outcome"]


@dataclass(frozen=True)
class InjectionMetrics:
    """Summary of one cement injection (vertebroplasty, or the kyphoplasty fill). Pressures are gauge, in Pa."""

    injected_ml: float
    leaked_ml: float
    leaked_ml_by_route: dict[str, float]
    leak_fraction: float
    fill_fraction_of_body: float
    max_injection_pressure_pa: float
    max_injection_pressure_cannula_pa: float
    max_injection_pressure_bone_pa: float
    cannula_share_of_pressure: float
    cement_mass_balance_error_max: float
    injection_time_s: float
    n_cannulas: int
    #: which rule ended the injection (vertaug.physics.flow STOP_*: volume, posterior quarter, visible leak, stall)
    stop_reason: str = ""
    #: plunger pressure limit of the injector, Pa (NaN: no limit)
    pressure_limit_pa: float = math.nan
    #: smallest leak a CT at the model's resolution shows (one voxel), and the fluoroscopy limit of the plan, mL
    ct_detection_limit_ml: float = math.nan
    fluoro_detection_limit_ml: float = math.nan
    #: leaked volume per route as a CT would report it: 0.0 (none) where below ct_detection_limit_ml
    leaked_ml_by_route_ct: dict[str, float] = field(default_factory=dict)

    @property
    def leak_on_ct(self) -> bool:
        """A leak a CT would show: the leaked volume (all routes) is at least one voxel."""
        return bool(self.leaked_ml >= self.ct_detection_limit_ml)

    @property
    def leak_on_fluoroscopy(self) -> bool:
        """A leak fluoroscopy would show: the leaked volume is at least the plan's fluoroscopy detection limit."""
        return bool(self.leaked_ml >= self.fluoro_detection_limit_ml)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["leaked_ml_by_route"] = dict(self.leaked_ml_by_route)
        d["leaked_ml_by_route_ct"] = dict(self.leaked_ml_by_route_ct)
        d["leak_on_ct"] = self.leak_on_ct
        d["leak_on_fluoroscopy"] = self.leak_on_fluoroscopy
        return d


@dataclass(frozen=True)
class BalloonMetrics:
    """Summary of the kyphoplasty balloon: inflation, cavity, compaction, endplate lift and recoil."""

    balloon_volume_ml: float
    balloon_final_pressure_pa: float
    balloon_max_pressure_pa: float
    cavity_volume_ml: float
    crushed_bone_tissue_ml: float
    shell_mass_balance_error: float
    endplate_lift_max_mm: float
    deflation_recoil_mm: float
    #: heights with the balloons inflated (before deflation)
    inflated: HeightChange
    #: the membrane's space after deflation (balloon.BalloonResult.cavity; balloon_space_* are the same voxels as
    #: cavity_*, kept for their readers); connected regions by scipy.ndimage.label (6-connectivity, the cement's) and
    #: the share of their voxels more than half full of cement after the fill
    balloon_space_ml: float = float("nan")
    balloon_space_regions: int = 0
    balloon_space_regions_touching: int = 0  # the same with 26-connectivity (regions meeting along an edge or corner)
    cavity_regions: int = 0
    balloon_space_filled_pct: float = float("nan")
    cavity_filled_pct: float = float("nan")
    #: space opened under the lifted plate that the membrane could not enter (open void, not cavity) and its fill
    fracture_gap_ml: float = 0.0
    fracture_gap_filled_pct: float = float("nan")

    @property
    def balloon_final_pressure_psi(self) -> float:
        return self.balloon_final_pressure_pa / PSI_PA

    def to_dict(self) -> dict[str, float]:
        d = {k: float(v) for k, v in asdict(self).items() if k != "inflated"}
        d["balloon_final_pressure_psi"] = self.balloon_final_pressure_psi
        d.update(self.inflated.to_dict("_inflated"))
        return d


@dataclass(frozen=True, eq=False)
class Outcome:
    """What a procedure did to one vertebra. Arrays are on the grid of ``model_after``."""

    procedure: str
    cement_fraction: np.ndarray
    arrival_time_s: np.ndarray
    series: dict[str, np.ndarray]
    injection: InjectionMetrics
    heights: HeightChange
    model_after: Any
    model_before: Any = None
    balloon: BalloonMetrics | None = None
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    version: str = ""

    @property
    def metrics(self) -> dict[str, Any]:
        """Every summary metric as one flat dict (units in the names): injection, heights before and after, and for a
        kyphoplasty the balloon's. A view for tables and JSON; the typed fields are the source."""
        out = {**self.heights.before_dict(), **self.heights.to_dict(), **self.injection.to_dict()}
        if self.balloon is not None:
            out.update(self.balloon.to_dict())
        return out

    def metric(self, name: str) -> Any:
        """One summary metric; NaN (not an error) if this procedure did not produce it."""
        return self.metrics.get(name, math.nan)

    def summary(self) -> dict[str, Any]:
        """Metrics, inputs, notes and version as plain JSON-able values."""

        def plain(x):
            if isinstance(x, dict):
                return {str(k): plain(v) for k, v in x.items()}
            if isinstance(x, (np.floating, np.integer)):
                return x.item()
            if isinstance(x, (tuple, list)):
                return [plain(v) for v in x]
            return x

        return {"procedure": self.procedure, "version": self.version, "inputs": plain(self.inputs),
                "metrics": plain(self.metrics), "notes": list(self.notes)}


def make_outcome(procedure: str, cement_fraction, arrival_time_s, series: dict, injection: InjectionMetrics,
                 heights: HeightChange, model_after, model_before=None, balloon: BalloonMetrics | None = None,
                 fields: dict | None = None, inputs: dict | None = None, notes=()) -> Outcome:
    """Build an :class:`Outcome`, checking that every field lies on the grid of ``model_after``."""
    from vertaug import __version__
    from vertaug.errors import GridMismatchError

    shape = tuple(model_after.labels.shape)
    all_fields = {"cement_fraction": cement_fraction, "arrival_time_s": arrival_time_s, **(fields or {})}
    for name, arr in all_fields.items():
        if np.shape(arr) != shape:
            raise GridMismatchError(f"Outcome field {name} has shape {np.shape(arr)}, the model has {shape}.",
                                    "compute every field on the treated model's grid.")
    return Outcome(
        procedure=procedure, cement_fraction=np.asarray(cement_fraction), arrival_time_s=np.asarray(arrival_time_s),
        series={k: np.asarray(v) for k, v in series.items()}, injection=injection, heights=heights,
        model_after=model_after, model_before=model_before, balloon=balloon, fields=dict(fields or {}),
        inputs=dict(inputs or {}), notes=tuple(notes), version=str(__version__),
    )
