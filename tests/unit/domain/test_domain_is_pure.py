"""The domain decides everything and does no I/O: it imports only the stdlib and eventsourcing."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[3] / "domain"
FORBIDDEN_STDLIB = {"asyncio", "socket", "subprocess", "random", "time", "os", "logging"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_domain_imports_only_the_stdlib_and_eventsourcing() -> None:
    offenders = {}
    for path in sorted(DOMAIN.glob("*.py")):
        outside = {
            root
            for root in imported_roots(path)
            if root not in sys.stdlib_module_names and root not in {"eventsourcing", "domain"}
        }
        impure = imported_roots(path) & FORBIDDEN_STDLIB
        if outside or impure:
            offenders[path.name] = sorted(outside | impure)
    assert offenders == {}
