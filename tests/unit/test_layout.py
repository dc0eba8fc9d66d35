"""The tests' own layout: helpers live in tests/support/, and no test file imports another
(one that did would run the other's tests' module code, and tie two files' cases together)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

TESTS = ROOT / "tests"


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, absolute or relative, as written."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            modules.add(base)
            # `from tests.unit import test_x` names the test module as an imported name.
            modules.update(f"{base}.{alias.name}" for alias in node.names)
    return modules


def test_no_test_file_or_helper_imports_a_test_file():
    offenders = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in TESTS.rglob("*.py")
        for module in imported_modules(path)
        if module.rpartition(".")[2].startswith("test_")
    }
    assert not offenders, sorted(offenders)


def test_the_checker_sees_each_way_of_importing_a_test_file(tmp_path):
    path = tmp_path / "test_a.py"
    for line in (
        "from tests.e2e.test_faults import send",
        "from tests.unit import test_layout",
        "import tests.unit.translate.test_sse",
        "from .test_sse import x",
    ):
        path.write_text(line + "\n", encoding="utf-8")
        assert any(m.rpartition(".")[2].startswith("test_") for m in imported_modules(path)), line
