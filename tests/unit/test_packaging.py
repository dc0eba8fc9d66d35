"""What an installed gateway has: every file the package reads beside its code is in the
wheel (pyproject.toml's package-data). An editable install, as the tests use, reads them from
the checkout and would never notice one left out; the Docker image installs the wheel."""

from __future__ import annotations

import fnmatch
import tomllib

from tests.support import ROOT


def test_every_data_file_of_the_package_is_packaged():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["extproc"]
    package = ROOT / "extproc"
    data = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    ]
    assert "control/chain_head.lua" in data
    unpackaged = [name for name in data if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert unpackaged == []
