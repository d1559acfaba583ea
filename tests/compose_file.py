"""compose.yaml read as Docker Compose reads it: YAML (anchors and merge keys included), then
`${VAR}` interpolation from a `.env` file, for the tests that check or run the deployment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
#: The image every service of ours runs; the others (databases, monitoring) are not ours.
IMAGE = "portfolio-strategies:local"

# Compose's syntax: $$ (a literal $), ${NAME}, ${NAME:-default}, ${NAME-default},
# ${NAME:?error}, ${NAME?error}, ${NAME:+alternative}, ${NAME+alternative}.
_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})"
)


class InterpolationError(ValueError):
    """Raised where `docker compose` would refuse the file: a required variable is empty."""


def load() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def references() -> dict[str, str | None]:
    """Every variable compose.yaml reads -> its operator (`:?` for a required one)."""
    found: dict[str, str | None] = {}
    for match in _REFERENCE.finditer(COMPOSE.read_text()):
        if match["name"]:
            found[match["name"]] = match["op"]
    return found


def interpolated(variables: Mapping[str, str]) -> dict[str, Any]:
    """compose.yaml with every `${...}` resolved from `variables`, as `docker compose config`
    shows it (unset and empty are alike for the `:` forms)."""
    result = _resolve(load(), variables)
    assert isinstance(result, dict)
    return result


def _resolve(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _resolve(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, variables) for item in node]
    if isinstance(node, str):
        return _REFERENCE.sub(lambda match: _substitute(match, variables), node)
    return node


def _substitute(match: re.Match[str], variables: Mapping[str, str]) -> str:
    if match["escaped"]:
        return "$"
    name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
    value = variables.get(name)
    present = bool(value) if op.startswith(":") else value is not None
    if op.endswith("-"):
        return value if present and value is not None else arg
    if op.endswith("?"):
        if not present or value is None:
            raise InterpolationError(f"required variable {name} is missing a value: {arg}")
        return value
    if op.endswith("+"):
        return arg if present else ""
    return value or ""


def stop_grace_seconds(service: Mapping[str, Any]) -> float:
    """A service's `stop_grace_period` (compose's duration: `75s`, `1m30s`; default 10 s)."""
    text = str(service.get("stop_grace_period", "10s"))
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    assert parts and any(parts.groups()), f"unreadable stop_grace_period {text!r}"
    hours, minutes, seconds = (float(part or 0) for part in parts.groups())
    return hours * 3600 + minutes * 60 + seconds
