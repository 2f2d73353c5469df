"""Write src/vertaug/report/validation_last.json (the report's trust marks) from the results table of
docs/validation.md (the last full ``vertaug validate`` run). Usage: ``python3 scripts/update_validation_marks.py``."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse(md: str) -> list[dict]:
    body = md.split("## Results of the last full run", 1)[1]
    out = []
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 8 or cells[0] in ("case", "---") or set(cells[0]) <= {"-"}:
            continue
        m = re.match(r"([+-]?[0-9.]+) %", cells[6])
        out.append({"case": cells[0], "quantity": cells[2], "unit": cells[3], "published": cells[4],
                    "ours": cells[5], "rel_error_pct": float(m.group(1)) if m else None,
                    "within": cells[7].strip("*") == "yes"})
    return out


def main() -> None:
    md = (ROOT / "docs" / "validation.md").read_text()
    results = parse(md)
    dest = ROOT / "src" / "vertaug" / "report" / "validation_last.json"
    dest.write_text(json.dumps({"source": "docs/validation.md, results of the last full run", "results": results},
                               indent=1) + "\n")
    print(f"{len(results)} results -> {dest}")


if __name__ == "__main__":
    main()
