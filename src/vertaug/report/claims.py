"""The claims of a typical patient article (the eight of ``CLAIMS`` below), checked against evidence and simulation.

Each claim gets a status — ``supported``, ``partly supported``, ``not supported`` or ``not assessed`` — with the numbers
behind it: evidence rows (by id, from ``clinical/evidence.csv``) and, where the simulation computes the quantity, the
simulated figure for this patient's level. Numbers are read from the evidence table and the models, never typed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..clinical import evidence as ev
from ..constants import BODY_TEMPERATURE_C
from ..physics import rheology

__all__ = ["CLAIMS", "Claim", "check_claims"]

CLAIMS = {
    1: "Vertebral compression fractures are common in older people; osteoporosis is the usual cause.",
    2: "In vertebroplasty, cement is injected directly into the fractured bone and solidifies.",
    3: "Vertebroplasty is cost-effective and simple to perform.",
    4: "Vertebroplasty reduces pain a great deal.",
    5: "The cement hardens within 30 minutes; patients return to activity within days.",
    6: "Leakage and infection are more likely with vertebroplasty than with kyphoplasty.",
    7: "Kyphoplasty: a balloon is inflated to make a space, the space is filled with cement, then the balloon is deflated.",
    8: "Kyphoplasty restores the vertebra's height, which vertebroplasty cannot.",
}


@dataclass(frozen=True)
class Claim:
    number: int
    text: str
    status: str
    finding: str
    evidence_ids: tuple[str, ...] = ()
    simulated: dict = field(default_factory=dict)


def _row(rid: str) -> ev.EvidenceRow:
    for r in ev.load_evidence():
        if r.id == rid:
            return r
    raise KeyError(rid)


def _cite(r: ev.EvidenceRow) -> str:
    return f"{r.citation.split(',')[0]} {r.year}"


def check_claims(density_class: str | None = None, simulated: dict | None = None) -> list[Claim]:
    """Check the eight claims. ``simulated`` may hold VP/KP metrics: ``vp_leaked_ml``, ``kp_leaked_ml``,
    ``vp_height_restored_mm``, ``kp_height_restored_mm``, ``vp_injected_ml``."""
    sim = dict(simulated or {})
    out: list[Claim] = []

    dens = f" This patient's trabecular attenuation class: {density_class}." if density_class else ""
    out.append(Claim(1, CLAIMS[1], "not assessed",
                     "Epidemiology is outside what vertaug models or tabulates." + dens))

    low, high = rheology.cement_preset("low"), rheology.cement_preset("high")
    set_low, set_high = rheology.set_time_s(low, BODY_TEMPERATURE_C) / 60, rheology.set_time_s(high, BODY_TEMPERATURE_C) / 60
    inj = f" Simulated VP: {sim['vp_injected_ml']:.1f} mL injected." if "vp_injected_ml" in sim else ""
    out.append(Claim(2, CLAIMS[2], "supported",
                     f"The cement is injected into trabecular bone and sets by polymerisation: modelled set time at 37 C "
                     f"{set_low:.1f} min (low-viscosity preset), {set_high:.1f} min (high-viscosity preset).{inj}",
                     simulated={"set_time_min_low": set_low, "set_time_min_high": set_high}))

    cost, time_row = _row("ajnr2011_cost_outpatient"), _row("kaviar2014_time")
    sham_ids = ("invest2009_rmdq", "buchbinder2009_pain", "vertos4_2018_1mo", "cochrane2018_sham")
    out.append(Claim(3, CLAIMS[3], "partly supported",
                     f"Cheaper and quicker than KP per procedure: outpatient ${cost.vp_value:,.0f} vs ${cost.kp_value:,.0f} "
                     f"({_cite(cost)}); {time_row.vp_value:.1f} vs {time_row.kp_value:.1f} min ({_cite(time_row)}). "
                     "Cost-effectiveness needs a benefit, and sham-controlled trials found little (claim 4).",
                     evidence_ids=(cost.id, time_row.id) + sham_ids))

    pap = _row("papanastassiou2012_vas")
    vap = _row("vapour2016_nrs")
    sham_txt = "; ".join(f"{_cite(_row(i))}: difference {_row(i).effect if _row(i).effect is not None else 'ns'}"
                         for i in sham_ids[:3])
    out.append(Claim(4, CLAIMS[4], "partly supported",
                     f"Pain falls after VP (VAS {pap.vp_value:+.2f} points, {_cite(pap)}), but against a sham procedure the "
                     f"difference is small and not significant ({sham_txt}; {_cite(_row('cochrane2018_sham'))}: no "
                     f"important benefit). One sham trial in acute severe pain was positive ({_cite(vap)}: "
                     f"{vap.vp_value:.0f} % vs {vap.comparator_value:.0f} % pain-free).",
                     evidence_ids=(pap.id,) + sham_ids + (vap.id,)))

    hard = rheology.hardened_time_s(low, BODY_TEMPERATURE_C) / 60
    out.append(Claim(5, CLAIMS[5], "supported" if hard <= 30 else "not supported",
                     f"Modelled time to 95 % of the reachable cure at body temperature: {hard:.1f} min (Li 2003 "
                     "kinetics, vitrification at T/Tg, isothermal 37 C); "
                     "return to activity is not modelled.",
                     simulated={"hardened_time_min": hard}))

    leak = ev.pooled("leakage")
    inf = ev.rows_for("infection")
    sim_leak = ""
    if "vp_leaked_ml" in sim and "kp_leaked_ml" in sim:
        sim_leak = (f" Simulated for this level: VP leaked {sim['vp_leaked_ml']:.2f} mL, KP {sim['kp_leaked_ml']:.2f} mL.")
    out.append(Claim(6, CLAIMS[6], "partly supported",
                     f"Leakage: more with VP in every study (VP {leak.vp_range[0]:.0f}-{leak.vp_range[1]:.0f} % vs KP "
                     f"{leak.kp_range[0]:.0f}-{leak.kp_range[1]:.0f} % of levels; RR KP/VP "
                     f"{leak.effects[0][2]:.2f}).{sim_leak} Infection: no study in the table compares VP with KP; "
                     f"the rate after VP is {inf[0].vp_value:.2f} % ({_cite(inf[0])}): the infection half is not supported.",
                     evidence_ids=tuple(r.id for r in leak.rows) + tuple(r.id for r in inf)))

    out.append(Claim(7, CLAIMS[7], "partly supported",
                     "The steps are right except their order: the balloon is deflated and withdrawn before the cement goes "
                     "in (the cavity is filled at low pressure with thicker cement). vertaug simulates them in that order."))

    ang = _row("xing2013_angle")
    hgt = _row("xing2013_height")
    beall = _row("beall2018_height")
    sim_h = ""
    if "vp_height_restored_mm" in sim and "kp_height_restored_mm" in sim:
        sim_h = (f" Simulated for this level: KP restores {sim['kp_height_restored_mm']:.1f} mm, VP "
                 f"{sim['vp_height_restored_mm']:.1f} mm.")
    out.append(Claim(8, CLAIMS[8], "partly supported",
                     f"KP restores a little more: kyphotic angle {abs(ang.effect):.2f} deg and anterior height "
                     f"{hgt.effect:.2f} mm more than VP ({_cite(ang)}), but not in every review ({_cite(beall)}: no "
                     f"difference); VP can restore some height by positioning and cement.{sim_h}",
                     evidence_ids=(ang.id, hgt.id, beall.id)))
    return out
