"""Cement figures: cure and viscosity curves of the presets, probe temperatures of an exotherm run.

The thermal validation geometries these plots were drawn for live in :mod:`vertaug.validate.geometries`.
"""

from __future__ import annotations

from vertaug.constants import BODY_TEMPERATURE_C, ROOM_TEMPERATURE_C
from vertaug.physics import rheology, thermal

__all__ = ["plot_cure_curves", "plot_probe_temperatures"]


def plot_cure_curves(path, t_end_s: float = 3600.0, temperatures_c=(ROOM_TEMPERATURE_C, BODY_TEMPERATURE_C)):
    """alpha and viscosity (shear 1/s) vs time since mixing, both presets, isothermal at each temperature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_a, ax_mu) = plt.subplots(1, 2, figsize=(10, 4))
    for cement, colour in ((rheology.LOW_VISCOSITY, "tab:blue"), (rheology.HIGH_VISCOSITY, "tab:red")):
        for temp, style in zip(temperatures_c, ("--", "-")):
            res = rheology.cure_0d(cement, t_end_s, "isothermal", temperature_c=temp)
            label = f"{cement.name} viscosity, {temp:g} C"
            ax_a.plot(res.t_s / 60, res.alpha, style, color=colour, label=label)
            ax_mu.semilogy(res.t_s / 60, res.viscosity_pa_s, style, color=colour, label=label)
    ax_mu.axhline(rheology.WORKING_LIMIT_PA_S, color="grey", lw=0.8)
    ax_a.set(xlabel="time since mixing (min)", ylabel="degree of cure alpha", title="Cure (Li 2003 kinetics)")
    ax_mu.set(xlabel="time since mixing (min)", ylabel="viscosity at 1/s (Pa s)", title="Viscosity")
    ax_a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_probe_temperatures(result: thermal.ExothermResult, path, title: str = ""):
    """Temperature vs time at each probe of an exotherm result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, series in result.probe_temperature_c.items():
        ax.plot(result.t_s / 60, series, label=name)
    ax.axhline(45.0, color="grey", lw=0.8, ls=":")
    ax.axhline(50.0, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="time since placement (min)", ylabel="temperature (C)", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
