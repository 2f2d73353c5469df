"""Latin hypercube samples of the uncertain inputs of one case.

For a case with ``n`` samples, a scrambled Latin hypercube of ``n`` points in ``d`` dimensions (scipy.stats.qmc,
McKay 1979; each of the ``n`` equal-probability strata of every input holds exactly one point) is mapped to the
inputs by their inverse CDFs:

    uniform       x = low + u (high - low)
    log-uniform   x = low (high / low)^u
    choice        x = options[floor(u * len(options))]

The design is seeded by ``SeedSequence([seed, crc32(case_id)])``: a case's samples depend only on the cohort seed,
the case name and ``n``, not on the other cases in the manifest nor on the order of execution (resumable runs draw the
same samples again).

Ranges (docs/cohort.md gives the derivations; [V] seen in a source, [M] from memory, [D] derived, [A] assumed):

* ``permeability_scale``: log-uniform over exp(+-2 sigma_ln), sigma_ln^2 = ln(1 + CV^2), CV = 1.72 / 4.45 from the
  scatter of lumbar SI permeability (Baroud 2004, 4.45 +/- 1.72e-8 m^2, n = 20) [V, D]: [0.474, 2.109].
* ``cement_preset``: low- or high-viscosity PMMA (the presets of vertaug.physics.rheology), equally likely [A].
* ``cement_start_time_min``: injection start after mixing, uniform [2, 8] min: after mixing/doughing, before the
  shortest curing time measured at 25 C, 8.7 min (CMW1, Nicholas 2007) [V for 8.7 min, A for the bounds].
* ``volume_ml``: uniform [2.4, 7.5] mL, from the FREE trial's ~2.4 mL per side to VAPOUR's 7.5 mL mean [V].
* ``rate_ml_s``: uniform [0.033, 0.1] mL/s (2-6 mL/min), around the 3 and 4 mL/min of Bou-Francis and Baroud 2005 [V, A].
* ``bmd_slope_mg_cm3_per_hu``: uniform [0.7, 1.3] mg/cm^3 per HU, the spread of phantom slopes at 120 kVp around the
  nominal phantomless 1.0 of :class:`vertaug.model.materials.Calibration` [M].
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError

__all__ = ["INPUT_NAMES", "UNCERTAIN_INPUTS", "UncertainInput", "case_samples", "case_seed", "latin_hypercube"]

#: Baroud 2004 lumbar superior-inferior permeability, mean and SD (m^2), n = 20 [V] (docs/references.md).
_K_MEAN_M2, _K_SD_M2 = 4.45e-8, 1.72e-8
_SIGMA_LN = math.sqrt(math.log(1.0 + (_K_SD_M2 / _K_MEAN_M2) ** 2))


@dataclass(frozen=True)
class UncertainInput:
    """One sampled input: its distribution and where its range comes from."""

    name: str
    kind: str  # "uniform", "loguniform" or "choice"
    low: float = 0.0
    high: float = 1.0
    options: tuple[str, ...] = ()
    source: str = ""

    def from_unit(self, u: np.ndarray):
        """Map points ``u`` in [0, 1) to values by the inverse CDF."""
        u = np.asarray(u, dtype=float)
        if self.kind == "uniform":
            return self.low + u * (self.high - self.low)
        if self.kind == "loguniform":
            return self.low * (self.high / self.low) ** u
        if self.kind == "choice":
            idx = np.minimum((u * len(self.options)).astype(int), len(self.options) - 1)
            return np.array(self.options, dtype=object)[idx]
        raise ParameterError(f"UncertainInput {self.name}: kind={self.kind!r} is unknown.",
                             "use 'uniform', 'loguniform' or 'choice'.")


UNCERTAIN_INPUTS: tuple[UncertainInput, ...] = (
    UncertainInput("permeability_scale", "loguniform", math.exp(-2 * _SIGMA_LN), math.exp(2 * _SIGMA_LN),
                   source="Baroud 2004: exp(+-2 sigma_ln), CV = 1.72/4.45 [V, D]"),
    UncertainInput("cement_preset", "choice", options=("low_viscosity", "high_viscosity"),
                   source="rheology presets, equally likely [A]"),
    UncertainInput("cement_start_time_min", "uniform", 2.0, 8.0,
                   source="after mixing, before CMW1's 8.7 min curing time (Nicholas 2007) [V/A]"),
    UncertainInput("volume_ml", "uniform", 2.4, 7.5, source="FREE ~2.4 mL per side to VAPOUR 7.5 mL mean [V]"),
    UncertainInput("rate_ml_s", "uniform", 2.0 / 60.0, 6.0 / 60.0,
                   source="2-6 mL/min around Bou-Francis 3 and Baroud 2005 4 mL/min [V/A]"),
    UncertainInput("bmd_slope_mg_cm3_per_hu", "uniform", 0.7, 1.3,
                   source="phantom slopes at 120 kVp around the nominal 1.0 [M]"),
)
INPUT_NAMES: tuple[str, ...] = tuple(p.name for p in UNCERTAIN_INPUTS)


def case_seed(seed: int, case_id: str) -> np.random.SeedSequence:
    """The seed sequence of one case: the cohort seed and a stable hash of the case name."""
    return np.random.SeedSequence([int(seed), zlib.crc32(str(case_id).encode("utf-8"))])


def latin_hypercube(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` scrambled Latin hypercube points in [0, 1)^d (scipy.stats.qmc.LatinHypercube)."""
    from scipy.stats import qmc

    if int(n) != n or n < 1:
        raise ParameterError(f"Parameter samples={n!r} is not a positive whole number.", "give --samples 1 or more.")
    return qmc.LatinHypercube(d=d, seed=rng).random(int(n))


def case_samples(case_id: str, n: int, seed: int, fixed: dict | None = None,
                 inputs: tuple[UncertainInput, ...] = UNCERTAIN_INPUTS) -> list[dict]:
    """``n`` samples of the uncertain inputs of one case, as dicts (``sample`` index included).

    ``fixed`` holds inputs given in the manifest: they replace the sampled value in every sample (the Latin hypercube
    is still drawn over all inputs, so pinning one input does not change the others' values).
    """
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(INPUT_NAMES)
    if unknown:
        raise ParameterError(f"Fixed inputs {sorted(unknown)} are not uncertain inputs.",
                             f"use column names among {', '.join(INPUT_NAMES)}.")
    rng = np.random.default_rng(case_seed(seed, case_id))
    u = latin_hypercube(n, len(inputs), rng)
    cols = {p.name: p.from_unit(u[:, j]) for j, p in enumerate(inputs)}
    out = []
    for i in range(int(n)):
        s = {"sample": i}
        for p in inputs:
            v = fixed.get(p.name, cols[p.name][i])
            s[p.name] = str(v) if p.kind == "choice" else float(v)
        out.append(s)
    return out
