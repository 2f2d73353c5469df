"""The structure the architecture page promises (docs/architecture.md), checked on the source."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vertaug"
#: the stages of the procedure chain: called from vertaug/study.py only (their own modules define them)
CHAIN_STAGES = {"run_vertebroplasty", "run_kyphoplasty", "exotherm_after", "state_mechanics"}
MAX_FUNCTION_LINES = 100


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            yield f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None), node.lineno


def chain_calls_outside_the_study(root: Path = SRC) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "study.py":
            continue
        for name, line in _calls(ast.parse(path.read_text())):
            if name in CHAIN_STAGES:
                found.append(f"{path.relative_to(root)}:{line} calls {name}")
    return found


def long_functions(root: Path = SRC, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit:
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    return out


def test_the_procedure_chain_is_called_from_one_place():
    assert chain_calls_outside_the_study() == []


def test_no_function_is_longer_than_100_lines():
    assert long_functions() == []


def test_the_checks_can_fail(tmp_path):
    (tmp_path / "other.py").write_text("def f(v):\n    return run_kyphoplasty(v)\n" + "def g():\n" + "    x = 1\n" * 101)
    assert chain_calls_outside_the_study(tmp_path) == ["other.py:2 calls run_kyphoplasty"]
    assert long_functions(tmp_path) == ["other.py:3 g"]
