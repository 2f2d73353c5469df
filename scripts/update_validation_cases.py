"""Rewrite the case list of docs/validation.md from vertaug.validate.cases (without rerunning the cases).

``vertaug validate --docs docs/validation.md`` regenerates the whole page (list and measured table, ~2 min); this
refreshes only the generated case list after a docstring change.
"""

from pathlib import Path

from vertaug.validate.run import CASES_BEGIN, CASES_END, render_cases_markdown

page = Path(__file__).resolve().parents[1] / "docs" / "validation.md"
text = page.read_text()
start, end = text.index(CASES_BEGIN), text.index(CASES_END) + len(CASES_END)
page.write_text(text[:start] + render_cases_markdown().rstrip("\n") + text[end:])
