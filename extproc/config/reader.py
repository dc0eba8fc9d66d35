"""config.yaml read with line numbers: every value's place in the file, so that each mistake
is reported as `file:line: where: what`, and a checker that collects all of them at once."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import yaml

_ENV_REF = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)")
"""`$VAR` or `${VAR}`; `$$` is a literal `$`."""


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.where}: {self.message}"


class ConfigError(Exception):
    """config.yaml is invalid; `problems` holds one entry per mistake."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def read_yaml(text: str, file: str) -> tuple[Any, dict[str, int]]:
    """The document as Python values, and the line of each path in it (`a.b[0]`; `#key` and
    `#dup` entries for a key's own line and a key given twice); raises ConfigError when the
    text is not YAML."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, file)]) from None
    lines: dict[str, int] = {}
    raw = _plain(node, "", lines) if node is not None else {}
    return raw, lines


def _plain(node: yaml.Node, path: str, lines: dict[str, int]) -> Any:
    """Turn a composed YAML node into Python values, remembering each path's line."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            lines.setdefault(f"{child}#key", key_node.start_mark.line + 1)
            if key in out:
                lines[f"{child}#dup"] = key_node.start_mark.line + 1
            out[key] = _plain(value_node, child, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, f"{path}[{i}]", lines) for i, item in enumerate(node.value)]
    return yaml.SafeLoader(b"").construct_object(node)


class Checker:
    """Collects problems while reading one config file."""

    def __init__(self, file: str, lines: dict[str, int]):
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def line(self, where: str) -> int:
        while where not in self.lines:
            parent = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", where)
            if parent == where:
                return 1
            where = parent
        return self.lines[where]

    def error(self, where: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.line(where), where, message))

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(str(Problem(self.file, self.line(where), where, message)))

    def mapping(self, value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(where, f"expected a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if f"{where}.{key}#dup" in self.lines:
                self.error(f"{where}.{key}", "key given twice")
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                self.error(f"{where}.{key}" if where else key, f"unknown key (known: {known})")
        return value

    def typed(self, value: Any, where: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if value is None:
            return default
        if isinstance(value, bool) and kind is not bool:
            self.error(where, f"expected {_type_name(kind)}, got a boolean")
            return default
        if not isinstance(value, kind):
            self.error(where, f"expected {_type_name(kind)}, got {value!r}")
            return default
        return value

    def expand(self, value: str, where: str) -> tuple[str, str | None]:
        """Expand `$VAR`/`${VAR}` (`$$` is a `$`); returns (value, first unset variable or None)."""
        missing: list[str] = []

        def sub(match: re.Match[str]) -> str:
            var = match.group(1) or match.group(2)
            if var is None:
                return "$"
            if var not in os.environ:
                missing.append(var)
                return ""
            return os.environ[var]

        return _ENV_REF.sub(sub, value), (missing[0] if missing else None)


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", str: "a string", bool: "true or false", float: "a number"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _yaml_problem(exc: yaml.YAMLError, file: str) -> Problem:
    """PyYAML's explanation on one line: the column, what it found, and what it was parsing."""
    mark = getattr(exc, "problem_mark", None)
    if not isinstance(exc, yaml.MarkedYAMLError) or mark is None:
        return Problem(file, 1, "yaml", " ".join(str(exc).split()))
    message = f"column {mark.column + 1}: {exc.problem}"
    context_mark = exc.context_mark
    if exc.context:
        where = f" started at line {context_mark.line + 1}" if context_mark else ""
        message += f" ({exc.context}{where})"
    return Problem(file, mark.line + 1, "yaml", message)
