"""The code in docs/ is checked, never a hand copy that drifts: a block marked ``<!-- example: examples/x.py -->`` is
that file verbatim (and tests/test_examples.py runs the file); every other Python block's imports resolve."""

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:<!-- example: (?P<example>[^ ]+) -->\s*\n)?```python\n(?P<code>.*?)```", re.S)


def python_blocks(text: str):
    for m in BLOCK.finditer(text):
        yield m.group("example"), m.group("code")


def imported_names(code: str) -> list[tuple[str, str | None]]:
    """(module, name) of every ``from vertaug... import name`` / ``import vertaug...`` line of a block."""
    out = []
    for line in code.splitlines():
        s = line.split("#")[0].strip()
        if not s.startswith(("from vertaug", "import vertaug")):
            continue
        node = ast.parse(s).body[0]
        if isinstance(node, ast.ImportFrom):
            out += [(node.module, a.name) for a in node.names]
        else:
            out += [(a.name, None) for a in node.names]
    return out


def check_page(path: Path) -> list[str]:
    problems = []
    for example, code in python_blocks(path.read_text()):
        if example is not None:
            if (ROOT / example).read_text() != code:
                problems.append(f"{path.name}: the block marked {example} differs from the file")
            continue
        for module, name in imported_names(code):
            try:
                mod = importlib.import_module(module)
            except ImportError:
                problems.append(f"{path.name}: cannot import {module}")
                continue
            if name is not None and not hasattr(mod, name):
                try:
                    importlib.import_module(f"{module}.{name}")
                except ImportError:
                    problems.append(f"{path.name}: {module} has no {name}")
    return problems


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"], ids=lambda p: p.name)
def test_code_blocks_of_the_docs_are_checked(page):
    assert check_page(page) == []


def test_the_check_catches_a_stale_block(tmp_path):
    page = tmp_path / "bad.md"
    page.write_text("```python\nfrom vertaug.study import no_such_function\n```\n"
                    "<!-- example: examples/fe_block.py -->\n```python\nprint('a hand copy')\n```\n")
    assert len(check_page(page)) == 2
