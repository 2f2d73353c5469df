"""The self-contained HTML report (Jinja2 template, images inlined as base64 PNG)."""

from __future__ import annotations

import base64
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from ..clinical import evidence as ev

#: Order of the evidence groups; sham-controlled trials follow the pain and disability benefit figures.
EVIDENCE_ORDER = (
    ("pain_vas", "Pain"),
    ("sham", "Sham-controlled trials (is there a benefit beyond placebo?)"),
    ("disability", "Disability"),
    ("kyphotic_angle", "Kyphotic angle"),
    ("height", "Vertebral height"),
    ("leakage", "Cement leakage"),
    ("embolism", "Pulmonary cement embolism"),
    ("new_fracture", "New (adjacent) fractures"),
    ("procedure_time", "Procedure time"),
    ("cost", "Cost and cost-effectiveness"),
    ("infection", "Infection"),
    ("mortality", "Mortality (association only)"),
    ("guideline", "Guidelines"),
)


def inline_png(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def evidence_groups() -> list[dict]:
    return [{"title": title, "rows": ev.rows_for(metric)} for metric, title in EVIDENCE_ORDER if ev.rows_for(metric)]


def num(v) -> str:
    """An evidence figure as a reader writes it: "9,837" (not "9837.0"), "1.7", "" for none."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    v = float(v)
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:,.2f}".rstrip("0").rstrip(".") if abs(v) >= 1000 else f"{v:g}"


def p_text(p) -> str:
    """A p value as "p < 0.001" or "p = 0.03" (the evidence table holds "<0.001", "0.03", ...)."""
    t = str(p).strip().replace(" ", "")
    if t[:1] in "<>" or t[:2] in ("<=", ">="):
        op = t[:2] if t[:2] in ("<=", ">=") else t[:1]
        return f"p {op.replace('<=', '≤').replace('>=', '≥')} {t[len(op):]}"
    return f"p = {t.lstrip('=')}"


def render_report(context: dict, path: str | Path) -> Path:
    env = Environment(loader=PackageLoader("vertaug.report", "templates"), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(num=num, p_text=p_text, **context)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
