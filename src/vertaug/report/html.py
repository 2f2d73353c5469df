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


def render_report(context: dict, path: str | Path) -> Path:
    env = Environment(loader=PackageLoader("vertaug.report", "templates"), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(**context)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
