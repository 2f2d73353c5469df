"""An independent reference for the exotherm of a ball of cement in trabecular bone: the spherically symmetric heat
equation with the cure source, by the method of lines (finite volumes in r, scipy's BDF in time, the cure degree of
each cement shell an ODE of its own), sharing nothing with physics/thermal.py but the material tables and the cure
law (rheology.cure_rate_1_s).

    (rho c) dT/dt = (1/r^2) d/dr (r^2 k dT/dr) - w (rho c)_b (T - T_inf) + rho_c H d(alpha)/dt,   T(r_out) = T_inf
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.integrate import solve_ivp

from vertaug.constants import KELVIN
from vertaug.model.labels import TRABECULAR
from vertaug.physics import rheology, thermal


def radial_ball_peak(cement, radius_m, outer_m, t_end_s, *, cement_c=23.0, tissue_c=37.0, age_s=0.0,
                     perfusion=True, cells=400):
    """(peak temperature C at r = 0, its time s, peak anywhere in the cement C) of the ball's exotherm."""
    edges = np.linspace(0.0, outer_m, cells + 1)
    rc = 0.5 * (edges[1:] + edges[:-1])
    vol = 4.0 / 3.0 * np.pi * np.diff(edges**3)
    cem = rc < radius_m
    nc = int(cem.sum())
    tb = thermal.LABEL_THERMAL[TRABECULAR]
    k = np.where(cem, cement.conductivity_w_m_k, tb.conductivity_w_m_k)
    cap = np.where(cem, cement.volumetric_heat_capacity_j_m3k, tb.rho_c_j_m3k) * vol
    w = np.where(cem, 0.0, tb.perfusion_1_s * thermal.BLOOD_RHO_C_J_M3K * vol) if perfusion else np.zeros(cells)
    hw = np.diff(edges)
    g = 4.0 * np.pi * edges[1:-1] ** 2 / (0.5 * hw[:-1] / k[:-1] + 0.5 * hw[1:] / k[1:])
    g_out = 4.0 * np.pi * outer_m**2 / (0.5 * hw[-1] / k[-1])
    heat = cement.density_kg_m3 * cement.heat_of_reaction_j_kg * vol[:nc]
    a0 = cement.alpha0
    if age_s > 0:
        a0 = float(rheology.cure_0d(cement, age_s, "isothermal", cement_c, n_out=2).alpha[-1])

    def rhs(_t, y):
        temp, alpha = y[:cells], y[cells:]
        flux = g * (temp[1:] - temp[:-1])
        d = -w * (temp - tissue_c)
        d[:-1] += flux
        d[1:] -= flux
        d[-1] += g_out * (tissue_c - temp[-1])
        rate = rheology.cure_rate_1_s(cement, alpha, temp[:nc] + KELVIN)
        d[:nc] += heat * rate
        return np.concatenate([d / cap, rate])

    tri = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(cells, cells))
    link = sp.eye(cells, nc)
    jac = sp.bmat([[tri, link], [link.T, sp.eye(nc)]]).tocsr()
    y0 = np.concatenate([np.where(cem, cement_c, tissue_c), np.full(nc, a0)])
    sol = solve_ivp(rhs, (0.0, t_end_s), y0, method="BDF", jac_sparsity=jac, rtol=1e-8, atol=1e-10, max_step=1.0)
    centre = sol.y[0]
    i = int(np.argmax(centre))
    return float(centre[i]), float(sol.t[i]), float(sol.y[:nc].max())
