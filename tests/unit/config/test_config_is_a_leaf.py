"""The configuration is a leaf: the running gateway reads it, never the other way round, so
that its types, reader and checks can be read, tested and changed on their own."""

from __future__ import annotations

import ast
from pathlib import Path

import extproc.config

CONFIG_DIR = Path(extproc.config.__file__).parent


def imported_modules(source: str) -> list[str]:
    """Every module a source file imports, relative ones written out (`.x` → `extproc.config.x`)."""
    modules = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            package = "extproc.config".rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (package, node.module) if part)
            modules += [f"{module}.{alias.name}" for alias in node.names]
    return modules


def test_the_config_package_imports_nothing_of_extproc_outside_it():
    files = sorted(CONFIG_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "settings.py", "loading.py"}
    outside = [
        f"{path.name}: {module}"
        for path in files
        for module in imported_modules(path.read_text(encoding="utf-8"))
        if module.split(".")[0] == "extproc" and not (module + ".").startswith("extproc.config.")
    ]
    assert outside == []


def test_an_import_of_a_runtime_package_is_seen():
    """Each way of writing an import is read as the module it names."""
    source = (
        "import extproc.proxy.paths\nfrom extproc.translate import contract\nfrom .. import app\n"
    )
    assert imported_modules(source) == [
        "extproc.proxy.paths",
        "extproc.translate.contract",
        "extproc.app",
    ]
