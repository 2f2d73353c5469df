"""Mixed-precision Jacobi-preconditioned conjugate gradients for the implicit heat steps (physics/thermal.py).

The system of a theta step, (C / dt + theta L) T = b, is strongly diagonally dominant at the exotherm's steps (dt
2.5-10 s on 1 mm voxels), so Jacobi-PCG from the extrapolated temperature needs 8-15 iterations to the relative
residual 1e-10 that the energy balance asks for; each iteration is one 7-diagonal product and a few vector passes,
bound by memory bandwidth. Iterative refinement halves those bytes: the residual r = b - A T and the temperature are
float64 (A as assembled), each correction A d = r / ||r|| is a float32 Jacobi-PCG (float32 7-diagonal matrix, float32
vectors) to a reduction of ``INNER_REDUCTION`` (or less when that already meets the tolerance), and the stopping test
||b - A T|| <= rtol ||b|| is on the float64 residual, as in the voxel FE's solver (physics/fe_solvers.py) and the
pressure's (physics/gmg_pressure.py). The result meets the same test as the float64 PCG, so the step's physics is
unchanged to the solver tolerance. A round that cuts the float64 residual by less than 10 % ends the refinement with
a RuntimeError (the caller falls back to a direct or AMG solve).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.blas import saxpy as _saxpy

__all__ = ["INNER_REDUCTION", "mixed_jacobi_pcg"]

INNER_REDUCTION = 1e-5  # each float32 round reduces its residual by this factor (float32 eps ~ 6e-8)
STAGNATION = 0.9


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    # np.dot: one BLAS pass over a contiguous pair (the CLI and the workers pin BLAS to one thread)
    return float(np.dot(u, v))


def _pcg32(a32, dinv32: np.ndarray, r: np.ndarray, reduction: float, max_iterations: int):
    """float32 Jacobi-PCG for a32 d = r from d = 0 (``r`` is overwritten); (d, iterations) or (d, None)."""
    d = np.zeros_like(r)
    stop2 = reduction**2 * _dot(r, r)
    z = dinv32 * r
    p = z.copy()
    rz = _dot(r, z)
    for it in range(1, max_iterations + 1):
        ap = a32 @ p
        step = rz / _dot(p, ap)
        _saxpy(p, d, a=step)  # d += step p, one pass, no temporary
        _saxpy(ap, r, a=-step)
        if _dot(r, r) <= stop2:
            return d, it
        np.multiply(dinv32, r, out=z)
        rz_new = _dot(r, z)
        p *= np.float32(rz_new / rz)
        p += z
        rz = rz_new
    return d, None


def mixed_jacobi_pcg(a64, a32, dinv32: np.ndarray, b: np.ndarray, x0: np.ndarray, rtol: float,
                     max_iterations: int) -> tuple[np.ndarray, int]:
    """x with ||b - a64 x||_2 <= rtol ||b||_2, from ``x0``; returns (x, float32 PCG iterations). ``a32``: a64 in
    float32 (any operator with ``@``), ``dinv32``: its inverse diagonal. Raises RuntimeError when it stalls."""
    x = np.array(x0, dtype=np.float64)
    r = b - a64 @ x
    stop = rtol * np.sqrt(_dot(b, b))
    rnorm, total = np.sqrt(_dot(r, r)), 0
    while rnorm > stop:
        budget = max(max_iterations - total, 1)
        d, its = _pcg32(a32, dinv32, (r / rnorm).astype(np.float32), max(INNER_REDUCTION, 0.5 * stop / rnorm), budget)
        total += budget if its is None else its
        x += rnorm * d
        r = b - a64 @ x
        new = np.sqrt(_dot(r, r))
        if new > STAGNATION * rnorm or (total >= max_iterations and new > stop):
            raise RuntimeError(f"mixed-precision heat PCG stalled at relative residual {new / (stop / rtol):.1e} "
                               f"after {total} iterations")
        rnorm = new
    return x, total
