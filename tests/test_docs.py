"""The docs stand alone: no page, docstring or comment cites a path outside the repository, and every relative
Markdown link in docs/ and README.md resolves to a file (and, for a link into a Markdown page, a heading) inside it."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Text files scanned for paths that leave the repository (binary data under src/vertaug/data is skipped by suffix).
SCANNED_SUFFIXES = {".md", ".py", ".csv", ".json", ".j2", ".html", ".txt", ".toml", ".cfg", ".rst", ".yaml", ".yml"}

#: What a citation of the project's private notes looks like: the shared folder (relative or absolute), a path into a
#: folder called reference/ (e.g. "reference/physics.md", "../shared/reference"), or the design page.
FORBIDDEN = [
    ("../shared", re.compile(r"\.\./shared\b")),
    ("/work/ path", re.compile(r"/work/(shared|main|wt-)")),
    ("reference/ path", re.compile(r"(?<![\w-])(?:\.\./|shared/)*reference/(?:[\w.-]+\.md\b|\s|$|[`'\")\]:,;])")),
    ("DESIGN.md", re.compile(r"\bDESIGN\.md\b")),
]

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
#: [text](target) or ![alt](target); target up to the first space or closing parenthesis (titles are not used here).
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, https:, mailto:, ...


def scanned_files(root: Path = ROOT) -> list[Path]:
    """docs/ (every text file), README.md, and every text file under src/, benchmarks/ and scripts/."""
    out = [root / "README.md"] if (root / "README.md").exists() else []
    for folder in ("docs", "src", "benchmarks", "scripts"):
        base = root / folder
        if base.is_dir():
            out += sorted(p for p in base.rglob("*") if p.is_file() and p.suffix in SCANNED_SUFFIXES
                          and "__pycache__" not in p.parts)
    return out


def forbidden_mentions(text: str) -> list[tuple[int, str, str]]:
    """(line number, kind, line) of every mention of a path outside the repository."""
    hits = []
    for n, line in enumerate(text.splitlines(), 1):
        for kind, rx in FORBIDDEN:
            if rx.search(line):
                hits.append((n, kind, line.strip()))
    return hits


def _markdown_lines(text: str):
    """(line number, line without inline code) outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, _INLINE_CODE.sub("", line)


def heading_anchors(md: Path) -> set[str]:
    """GitHub-style anchors of a Markdown page's headings (lower case, punctuation dropped, spaces to hyphens)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _markdown_lines(md.read_text(encoding="utf-8")):
        m = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        k = seen.get(slug, 0)
        anchors.add(slug if k == 0 else f"{slug}-{k}")
        seen[slug] = k + 1
    return anchors


def broken_links(md: Path, root: Path = ROOT) -> list[tuple[int, str, str]]:
    """(line number, target, why) for every relative link of ``md`` that leaves ``root`` or does not resolve."""
    root = root.resolve()
    bad = []
    for n, line in _markdown_lines(md.read_text(encoding="utf-8")):
        targets = [m.group(1) for m in _LINK.finditer(line)]
        ref = _REFDEF.match(line)
        if ref:
            targets.append(ref.group(1))
        for target in targets:
            if _EXTERNAL.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            dest = (md.parent / path_part).resolve() if path_part else md.resolve()
            if dest != root and root not in dest.parents:
                bad.append((n, target, "outside the repository"))
            elif not dest.exists():
                bad.append((n, target, "no such file"))
            elif anchor and dest.suffix == ".md" and anchor.lower() not in heading_anchors(dest):
                bad.append((n, target, f"no heading #{anchor} in {dest.name}"))
    return bad


#: Where the files a command writes are named, and names found there that are not outputs (with the reason).
OUTPUT_SOURCES = ("src/vertaug/report", "src/vertaug/cohort", "src/vertaug/validate", "src/vertaug/demo.py")
NOT_OUTPUTS = {
    "example_ct.nii.gz", "totalseg.nii.gz", "totalseg_vertebrae_body.nii.gz", "NOTICE.md",  # bundled inputs
    "*.parquet", ".parquet", "{k}.parquet",  # globs and suffix handling over the part files
}
_OUTPUT_NAME = re.compile(r"f?\"([^\"\n]*\.(?:nii\.gz|png|gif|json|parquet|html|txt|md|csv))\"")


def _canonical(name: str) -> str:
    """A file name with its variable parts ({...} in f-strings, <...> or * in docs) as '*'."""
    return re.sub(r"\{[^}]*\}|<[^>]*>|\*", "*", name)


def output_names_in_source(root: Path = ROOT) -> set[str]:
    names = set()
    for rel in OUTPUT_SOURCES:
        base = root / rel
        for f in ([base] if base.is_file() else sorted(base.rglob("*.py"))):
            names |= {m.group(1) for m in _OUTPUT_NAME.finditer(f.read_text(encoding="utf-8"))}
    return names - NOT_OUTPUTS


def undocumented_outputs(names, page_text: str) -> list[str]:
    """Names (f-string patterns) that match no backticked file name of the page."""
    documented = {_canonical(tok) for tok in re.findall(r"`([^`\s]+)`", page_text)}
    documented |= {_canonical(part) for tok in list(documented) for part in tok.split("/")}
    missing = []
    for name in sorted(names):
        pattern = _canonical(name)
        if not any(fnmatch.fnmatchcase(doc, pattern) or fnmatch.fnmatchcase(pattern, doc) for doc in documented):
            missing.append(name)
    return missing


def test_every_output_file_named_in_the_source_is_in_file_formats():
    text = (ROOT / "docs" / "file_formats.md").read_text(encoding="utf-8")
    names = output_names_in_source()
    assert {"comparison.json", "model_labels.nii.gz", "results.parquet", "validation.json"} <= names
    assert undocumented_outputs(names, text) == [], "document these outputs in docs/file_formats.md"


def test_output_check_catches_an_undocumented_file():
    page = "`comparison.json` and `strain_at_failure_pct_pre.nii.gz`, `parts/<case_id>__s<sample:05d>.parquet`"
    names = {"comparison.json", "strain_at_failure_pct_{tag}.nii.gz", "{key}.parquet", "new_overlay_{tag}.nii.gz"}
    assert undocumented_outputs(names, page) == ["new_overlay_{tag}.nii.gz"]


def markdown_pages(root: Path = ROOT) -> list[Path]:
    pages = sorted((root / "docs").rglob("*.md"))
    return ([root / "README.md"] if (root / "README.md").exists() else []) + pages


def test_no_file_cites_a_path_outside_the_repository():
    problems = [f"{p.relative_to(ROOT)}:{n}: {kind}: {line}"
                for p in scanned_files() for n, kind, line in forbidden_mentions(p.read_text(encoding="utf-8",
                                                                                           errors="replace"))]
    assert not problems, "cite the source (docs/references.md) instead:\n" + "\n".join(problems)


def test_every_relative_markdown_link_resolves_inside_the_repository():
    problems = [f"{p.relative_to(ROOT)}:{n}: ({target}) {why}" for p in markdown_pages()
                for n, target, why in broken_links(p)]
    assert not problems, "\n".join(problems)


def test_the_bibliography_exists_and_is_linked_from_the_docs():
    refs = ROOT / "docs" / "references.md"
    assert refs.exists()
    anchors = heading_anchors(refs)
    for group in ("materials", "rheology-and-cement", "flow", "thermal", "balloon", "mechanics",
                  "clinical-trials-and-reviews", "imaging-grading-and-scores", "software", "tags"):
        assert group in anchors, group


@pytest.mark.parametrize("text, kind", [
    ("see ../shared/reference/physics.md section 1", "../shared"),
    ("Tags as in `/work/shared/reference`", "/work/ path"),
    ("(reference/physics.md section 4) [V]", "reference/ path"),
    ("the parameters of ../shared/reference; where", "../shared"),
    ("as in shared/reference/clinical.md", "reference/ path"),
    ("# the derived fields of DESIGN.md", "DESIGN.md"),
])
def test_scanner_catches_planted_mentions(text, kind):
    assert kind in {k for _, k, _ in forbidden_mentions("ok line\n" + text)}


def test_scanner_passes_ordinary_words():
    clean = ("the Genant reference height; a reference matrix; docs/references.md; Hubbell & Seltzer (2004); "
             "tests/reference_data.npz; design.md is not DESIGN")
    assert forbidden_mentions(clean) == []


def test_link_checker_catches_planted_bad_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "good.md").write_text("# Good page\n\n## A section\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n"
        "[ok](good.md) [ok anchor](good.md#a-section) [ok self](#page) [web](https://example.org/x.md)\n"
        "[missing](nothing_here.md)\n"
        "[outside](../../etc/passwd)\n"
        "[bad anchor](good.md#no-such-heading)\n"
        "![missing figure](figures/none.png)\n"
        "```\n[in a code block](not_checked.md)\n```\n"
        "`[inline code](not_checked_either.md)`\n"
        "[ref]: ../../outside.md\n")
    found = {(target, why.split(" ")[0]) for _, target, why in broken_links(page, root=tmp_path)}
    assert found == {("nothing_here.md", "no"), ("../../etc/passwd", "outside"),
                     ("good.md#no-such-heading", "no"), ("figures/none.png", "no"), ("../../outside.md", "outside")}
