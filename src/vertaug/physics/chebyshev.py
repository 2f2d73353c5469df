"""Chebyshev-Jacobi smoothing shared by the matrix-free multigrids (pressure: gmg_pressure.py; voxel FE:
fe_solvers.py).

Chebyshev iteration on D^-1 A over the interval [beta / range_ratio, beta] (beta: an upper bound of the spectrum of
D^-1 A, e.g. Gershgorin), ``degree`` applications of A; Adams et al. 2003 (docs/references.md). Dimensionless: the
operator's units cancel in D^-1 A. Works on numpy and CuPy arrays alike (numpy ufuncs dispatch to CuPy through ``__array_ufunc__``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["chebyshev_smooth"]


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
