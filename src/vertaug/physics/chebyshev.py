"""Chebyshev-Jacobi smoothing shared by the matrix-free multigrids (pressure: gmg_pressure.py; voxel FE:
fe_solvers.py).

Chebyshev iteration on D^-1 A over the interval [beta / range_ratio, beta] (beta: an upper bound of the spectrum of
D^-1 A, e.g. Gershgorin), ``degree`` applications of A; Adams et al. 2003 (docs/references.md). Dimensionless: the
operator's units cancel in D^-1 A. Works on numpy and CuPy arrays alike (numpy ufuncs dispatch to CuPy through ``__array_ufunc__``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["chebyshev_coefficients", "chebyshev_smooth", "chebyshev_smooth_updating"]


def chebyshev_smooth(residual, dinv, beta: float, b, x, d, w, first: bool, degree: int, range_ratio: float):
    """Smooth A x = b in place on ``x`` (taken as 0 when ``first``).

    ``residual(x, b, out)`` writes b - A x into ``out``; ``dinv`` is the inverse diagonal of A; ``d`` and ``w`` are
    work arrays of ``x``'s shape and dtype.
    """
    alpha = beta / range_ratio
    theta, delta = 0.5 * (beta + alpha), 0.5 * (beta - alpha)
    sigma = theta / delta
    rho = 1.0 / sigma
    if first:
        np.multiply(dinv, b, out=d)
        d *= 1.0 / theta
        x[...] = d
    else:
        residual(x, b, w)
        np.multiply(dinv, w, out=d)
        d *= 1.0 / theta
        x += d
    for _ in range(degree - 1):
        residual(x, b, w)
        w *= dinv
        rho_new = 1.0 / (2.0 * sigma - rho)
        d *= rho_new * rho
        w *= 2.0 * rho_new / delta
        d += w
        x += d
        rho = rho_new
    return x


def chebyshev_coefficients(beta: float, degree: int, range_ratio: float) -> tuple[float, list[tuple[float, float]]]:
    """The scalars of :func:`chebyshev_smooth`: 1 / theta of the first step and (c_old, c_new) of each later one,
    d <- c_old d + c_new D^-1 r. They depend only on the level (beta) and the degree, so a level can fold them into
    scaled copies of D^-1 once."""
    alpha = beta / range_ratio
    theta, delta = 0.5 * (beta + alpha), 0.5 * (beta - alpha)
    sigma = theta / delta
    rho = 1.0 / sigma
    steps = []
    for _ in range(degree - 1):
        rho_new = 1.0 / (2.0 * sigma - rho)
        steps.append((rho_new * rho, 2.0 * rho_new / delta))
        rho = rho_new
    return 1.0 / theta, steps


def chebyshev_smooth_updating(sub_product, fma, residual, dinv_first, dinv_steps, c_old, b, x, r, d, first: bool,
                              want_residual: bool, axpy=None):
    """The polynomial of :func:`chebyshev_smooth` in residual-updating form: r carries b - A x from step to step.

    ``sub_product(v, r)``: r -= A v in one pass; ``fma(s, v, d)``: d += s * v elementwise in one pass;
    ``residual(x, b, out)``: out = b - A x. ``dinv_first`` = D^-1 / theta and ``dinv_steps[k]`` = c_new_k D^-1,
    ``c_old[k]`` from :func:`chebyshev_coefficients`. Same products as the residual form (degree per call), but no
    product starts from a copy of b and the scalars are folded into D^-1; with ``want_residual`` one more product
    leaves r = b - A x on return (the residual a V-cycle restricts, which it would otherwise compute itself).
    ``axpy(a, v, y)``: y += a v in one pass; when given and no residual is wanted, the last step adds c_old d + c_new
    D^-1 r straight into x (two passes instead of three: the last d is never needed again).
    """
    if first:
        np.copyto(r, b)
        np.multiply(dinv_first, b, out=x)
        dprev = x
    else:
        residual(x, b, r)
        np.multiply(dinv_first, r, out=d)
        x += d
        dprev = d
    last = len(dinv_steps) - 1
    for k, (s, c) in enumerate(zip(dinv_steps, c_old)):
        sub_product(dprev, r)
        if k == last and axpy is not None and not want_residual:
            axpy(c, dprev, x)
            fma(s, r, x)
            return x
        np.multiply(dprev, c, out=d)
        fma(s, r, d)
        x += d
        dprev = d
    if want_residual:
        sub_product(dprev, r)
    return x
