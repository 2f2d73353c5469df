"""Mixed-precision Jacobi-preconditioned conjugate gradients for the implicit heat steps (physics/thermal.py).

The system of a theta step, (C / dt + theta L) T = b, is diagonally dominant at the exotherm's steps (dt 2.5-20 s on
1 mm voxels), so Jacobi-PCG from the extrapolated temperature needs ~10-30 iterations (14 per step on average in the
demo's KP at 1 mm) to the relative residual 1e-10 that the energy balance asks for; each iteration is one
7-diagonal product and a few vector passes, bound by memory bandwidth. Iterative refinement halves those bytes: the residual r = b - A T and the temperature are
float64 (A as assembled), each correction A d = r / ||r|| is a float32 Jacobi-PCG (float32 7-diagonal matrix, float32
vectors) to a reduction of ``INNER_REDUCTION`` (or less when that already meets the tolerance), and the stopping test
||b - A T|| <= rtol ||b|| is on the float64 residual, as in the voxel FE's solver (physics/fe_solvers.py) and the
pressure's (physics/gmg_pressure.py). The result meets the same test as the float64 PCG, so the step's physics is
unchanged to the solver tolerance. A round that cuts the float64 residual by less than 10 % ends the refinement with
a RuntimeError (the caller falls back to a direct or AMG solve).

The float32 rounds run Jacobi-PCG in its symmetrically scaled form: CG on S A S y = S r with S = D^(-1/2), d = S y
(:func:`jacobi_scaled`: S A S in float32 once per matrix). Its iterates are those of Jacobi-PCG in exact arithmetic,
and the preconditioner's pass and its dot product per iteration are gone; the inner stopping test is on the scaled
residual, the outer one unchanged.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import saxpy as _saxpy

__all__ = ["INNER_REDUCTION", "jacobi_scaled", "mixed_jacobi_pcg"]

INNER_REDUCTION = 1e-5  # each float32 round reduces its residual by this factor (float32 eps ~ 6e-8)
STAGNATION = 0.9


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    # np.dot: one BLAS pass over a contiguous pair (the CLI and the workers pin BLAS to one thread)
    return float(np.dot(u, v))


def jacobi_scaled(a) -> tuple:
    """(S A S in float32, S in float32) with S = diag(A)^(-1/2); a 7-diagonal A stays in DIA form."""
    scale = 1.0 / np.sqrt(a.diagonal())
    if sp.isspmatrix_dia(a) and a.offsets.size <= 7:
        return _scaled_dia(a, scale).astype(np.float32), scale.astype(np.float32)
    s = sp.diags(scale)
    sas = s @ a @ s
    dia = sas.todia()
    return (dia if dia.offsets.size <= 7 else sas.tocsr()).astype(np.float32), scale.astype(np.float32)


def _scaled_dia(a, scale: np.ndarray):
    """S A S for a DIA ``a`` on its diagonals: data[d, j] = A[j - o_d, j] times scale[j - o_d] and then scale[j]."""
    n_rows, width = a.shape[0], a.data.shape[1]
    data = np.array(a.data, dtype=np.float64)
    for d, o in enumerate(a.offsets):
        lo, hi = max(o, 0), min(n_rows + o, width)  # the columns j whose row j - o is in the matrix
        data[d, :lo] = 0.0
        data[d, hi:] = 0.0
        data[d, lo:hi] *= scale[lo - o:hi - o]
    data *= scale[:width]
    return sp.dia_matrix((data, a.offsets), shape=a.shape)


def _pcg32(a32, r: np.ndarray, reduction: float, max_iterations: int):
    """float32 CG for a32 y = r from y = 0 (``r`` is overwritten); (y, iterations) or (y, None)."""
    y = np.zeros_like(r)
    rr = _dot(r, r)
    stop2 = reduction**2 * rr
    p = r.copy()
    for it in range(1, max_iterations + 1):
        ap = a32 @ p
        step = rr / _dot(p, ap)
        _saxpy(p, y, a=step)  # y += step p, one pass, no temporary
        _saxpy(ap, r, a=-step)
        rr_new = _dot(r, r)
        if rr_new <= stop2:
            return y, it
        p *= np.float32(rr_new / rr)
        p += r
        rr = rr_new
    return y, None


def mixed_jacobi_pcg(a64, scaled32: tuple, b: np.ndarray, x0: np.ndarray, rtol: float,
                     max_iterations: int) -> tuple[np.ndarray, int]:
    """x with ||b - a64 x||_2 <= rtol ||b||_2, from ``x0``; returns (x, float32 PCG iterations). ``scaled32``:
    :func:`jacobi_scaled` of a64. Raises RuntimeError when it stalls."""
    sas32, s32 = scaled32
    x = np.array(x0, dtype=np.float64)
    r = b - a64 @ x
    stop = rtol * np.sqrt(_dot(b, b))
    rnorm, total = np.sqrt(_dot(r, r)), 0
    while rnorm > stop:
        budget = max(max_iterations - total, 1)
        y, its = _pcg32(sas32, s32 * (r / rnorm).astype(np.float32), max(INNER_REDUCTION, 0.5 * stop / rnorm), budget)
        total += budget if its is None else its
        y *= s32
        x += rnorm * y
        r = b - a64 @ x
        new = np.sqrt(_dot(r, r))
        if new > STAGNATION * rnorm or (total >= max_iterations and new > stop):
            raise RuntimeError(f"mixed-precision heat PCG stalled at relative residual {new / (stop / rtol):.1e} "
                               f"after {total} iterations")
        rnorm = new
    return x, total
