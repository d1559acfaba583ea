"""No SQL text is built from runtime values: a static check (ast) of every module that talks to
PostgreSQL.

Every call that executes SQL (asyncpg's `execute`, `executemany`, `fetch`, `fetchrow`,
`fetchval`, `copy_from_query`, `prepare`; psycopg's `cursor.execute`, ...) and every psycopg
`SQL(...)` must get text made only of

- string literals and module-level string constants;
- f-strings, `%`, `+`, `.format(...)` and `sep.join(...)` over such parts;
- identifiers made safe by a quoting helper (`projections.schema.quoted`, psycopg
  `Identifier`/`Literal`), SQL built by the read-model builders (which this test checks by the
  same rules), and values of `len()` or `uuid4()`;
- and, where none of that can be proven from the code, names on `ALLOWED`: each entry says why
  it is not user input.

Names are followed to what is assigned to them (in the function, its closure, the module,
`self.x = ...` in the module), function calls of the same module to what they return; anything
else (a parameter, an unpacked loop variable, an unknown call) is a finding. Every value
proper travels as a query parameter (`$1`, `%s`), which this test does not need to look at.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from projections.executions import EXECUTIONS
from projections.filters import (
    EXECUTION_FILTERS,
    OPERATION_FILTERS,
    STRATEGY_FILTERS,
    TRADER_FILTERS,
)
from projections.operations import OPERATIONS
from projections.schema import quoted
from projections.strategies import STRATEGIES
from projections.tables import read_model_tables
from projections.traders import TRADERS

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "projections", "workers", "infra")

#: Methods that take SQL text as their first argument (asyncpg connections and pools,
#: psycopg connections and cursors).
EXECUTORS = frozenset(
    {"execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_from_query", "prepare"}
)
#: psycopg's raw-SQL composable: whatever it wraps is SQL text, never quoted.
RAW_SQL = frozenset({"SQL"})
#: Calls whose result is a safely quoted identifier or literal, whatever their argument.
SANITIZERS = frozenset(
    {
        "quoted",  # projections.schema.quoted: refuses anything but [A-Za-z_][A-Za-z0-9_]{0,62}
        "Identifier",  # psycopg.sql.Identifier: double-quotes and escapes
        "Literal",  # psycopg.sql.Literal: quotes as a value
    }
)
#: Calls whose result cannot carry SQL: an int, or a random uuid.
SAFE_VALUES = frozenset({"len", "uuid4"})
#: Calls that only wrap their argument (checked instead).
PASS_THROUGH = frozenset({"tuple", "list", "sorted", "str"})
#: The read-model SQL builders (projections/schema.py, projections/executions.py). A call to
#: one is trusted where it is made; `test_the_sql_builders_follow_the_same_rules` checks what
#: they return by the rules of this file.
BUILDERS = {
    "qualified": ("projections/schema.py", "qualified"),
    "selected": ("projections/schema.py", "selected"),
    "select_by_ids": ("projections/schema.py", "select_by_ids"),
    "upsert": ("projections/schema.py", "upsert"),
    "backfill_sql": ("projections/executions.py", "backfill_sql"),
}
#: Calls with an executor's name that run no SQL (same method name, another object).
NOT_SQL = {
    # CommandService.execute(platform, request_id, command): runs a domain command.
    ("workers/commands.py", "service.execute"),
    ("infra/tools/demo.py", "engine.commands.execute"),
}
#: (module, expression as `ast.unparse` writes it) -> why it is not user input.
ALLOWED = {
    # _where(): the (column, operator, value) conditions come from the Filter constants of
    # projections/filters.py (and _VISIBLE_TRADER, id = ... here); only the value is a runtime
    # input, and it becomes a $n parameter.
    ("projections/queries.py", "column"): "a column name literal of projections/*.py",
    ("projections/queries.py", "operator"): "an operator literal of projections/*.py",
    # A Clause's text is a module constant of projections/drift.py (DRIFT_AT_LEAST,
    # OUTSIDE_BAND), its `{n}` formatted with `$n` names; its values are parameters.
    ("projections/queries.py", "condition.sql"): "a Clause constant of projections/drift.py",
    ("projections/queries.py", "range(len(condition.values))"): "$n numbers, integers",
    # Table: a dataclass whose instances are module constants of projections/*.py
    # (STRATEGIES = Table("strategies", (Column("id", "uuid"), ...))); test_read_model_
    # identifiers_are_plain_names below checks every one of them at run time.
    ("projections/schema.py", "self.name"): "a read-model table name literal",
    ("infra/postgres/migrations/__init__.py", "migration.sql"): "a migration's SQL file",
    ("projections/schema.py", "self.columns"): "the table's Column literals",
    ("projections/schema.py", "self.guard"): "an upsert guard literal (Table.guard)",
    ("projections/schema.py", "alias"): "a table alias written by the calling code",
    # SEALED_COLUMNS: a module constant tuple of SealedColumn literals (table and key names).
    ("infra/postgres/secrets_rotation.py", "column.table"): "a SEALED_COLUMNS table literal",
    ("infra/postgres/secrets_rotation.py", "column.key"): "a SEALED_COLUMNS column literal",
}


@dataclass
class Module:
    path: str
    tree: ast.Module
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)
    functions: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Module:
        return cls.parse(path.relative_to(ROOT).as_posix(), path.read_text())

    @classmethod
    def parse(cls, name: str, source: str) -> Module:
        tree = ast.parse(source, filename=name)
        module = cls(name, tree)
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                module.parents[child] = node
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                module.functions.setdefault(node.name, []).append(node)
        return module

    def scope_of(self, node: ast.AST) -> ast.AST:
        """The innermost function holding `node`, else the module."""
        current = self.parents.get(node)
        while current is not None:
            if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                return current
            current = self.parents.get(current)
        return self.tree


Scope = ast.AST


class Checker:
    """Finds the parts of an expression that may carry runtime text into SQL."""

    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules
        self.used: set[tuple[str, str]] = set()
        self.examined = 0  # SQL arguments looked at: a check that finds no call proves nothing
        self._seen: set[tuple[str, int, int | None]] = set()

    # -- entry points ---------------------------------------------------------------------
    def sql_findings(self) -> list[str]:
        findings = []
        for module in self.modules.values():
            for node in ast.walk(module.tree):
                if not isinstance(node, ast.Call):
                    continue
                for argument in self._sql_arguments(module, node):
                    self.examined += 1
                    for part in self.unsafe(module, argument, module.scope_of(node)):
                        findings.append(f"{module.path}:{node.lineno}: {part}")
        return findings

    def returns_findings(self, module: Module, name: str) -> list[str]:
        findings = []
        for function in module.functions.get(name, []):
            for value in _returned(function):
                for part in self.unsafe(module, value, function):
                    findings.append(f"{module.path}:{value.lineno}: {part}")
        return findings

    @staticmethod
    def _sql_arguments(module: Module, node: ast.Call) -> list[ast.expr]:
        name = _called_name(node)
        if isinstance(node.func, ast.Attribute) and name in EXECUTORS:
            if (module.path, ast.unparse(node.func)) in NOT_SQL:
                return []
            query = [kw.value for kw in node.keywords if kw.arg in ("query", "sql")]
            return node.args[:1] or query
        if name in RAW_SQL:
            return node.args[:1]
        return []

    # -- the rules ------------------------------------------------------------------------
    def unsafe(
        self, module: Module, node: ast.expr, scope: Scope, index: int | None = None
    ) -> list[str]:
        """Source of every part of `node` that is not provably code-written SQL text."""
        key = (module.path, id(node), index)
        if key in self._seen:
            return []  # a cycle (x = x + ...): the other assignments decide
        self._seen.add(key)
        try:
            return self._unsafe(module, node, scope, index)
        finally:
            self._seen.discard(key)

    def _unsafe(self, module: Module, node: ast.expr, scope: Scope, index: int | None) -> list[str]:
        allowed = (module.path, ast.unparse(node))
        if allowed in ALLOWED:
            self.used.add(allowed)
            return []
        if isinstance(node, ast.Constant):
            return []
        if isinstance(node, ast.JoinedStr):
            return self._all(
                module, [v.value for v in node.values if isinstance(v, ast.FormattedValue)], scope
            )
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod | ast.Sub):
            return self._all(module, [node.left, node.right], scope)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            if index is not None and isinstance(node, ast.Tuple) and index < len(node.elts):
                return self.unsafe(module, node.elts[index], scope)
            return self._all(module, list(node.elts), scope)
        if isinstance(node, ast.ListComp | ast.GeneratorExp | ast.SetComp):
            return self.unsafe(module, node.elt, node)
        if isinstance(node, ast.IfExp):  # the test chooses between two parts; it is not SQL
            return self._all(module, [node.body, node.orelse], scope)
        if isinstance(node, ast.Starred):
            return self.unsafe(module, node.value, scope)
        if isinstance(node, ast.Attribute | ast.Subscript) and not self._is_self_attribute(node):
            # an attribute or item of a safe object is safe (`uuid4().hex[:10]`, `c.name`)
            return [] if not self.unsafe(module, node.value, scope) else [ast.unparse(node)]
        if isinstance(node, ast.Call):
            return self._call(module, node, scope, index)
        if isinstance(node, ast.Name):
            return self._name(module, node.id, node, scope, index)
        if isinstance(node, ast.Attribute):  # self.x
            return self._self_attribute(module, node, index)
        return [ast.unparse(node)]

    def _all(self, module: Module, nodes: list[ast.expr], scope: Scope) -> list[str]:
        return [part for node in nodes for part in self.unsafe(module, node, scope)]

    @staticmethod
    def _is_self_attribute(node: ast.expr) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        )

    def _call(self, module: Module, node: ast.Call, scope: Scope, index: int | None) -> list[str]:
        name = _called_name(node)
        arguments = [*node.args, *(kw.value for kw in node.keywords)]
        if name in SANITIZERS or name in SAFE_VALUES or name in BUILDERS:
            return []
        if name in PASS_THROUGH or name in RAW_SQL:
            return self._all(module, arguments, scope)
        if name in ("format", "join") and isinstance(node.func, ast.Attribute):
            # "...{x}...".format(x=...), SQL("...").format(...), ", ".join(parts)
            return self._all(module, [node.func.value, *arguments], scope)
        local = self._same_module_function(module, node)
        if local is not None:
            return [
                part
                for function in local
                for value in _returned(function)
                for part in self.unsafe(module, value, function, index)
            ]
        return [ast.unparse(node)]

    @staticmethod
    def _same_module_function(
        module: Module, node: ast.Call
    ) -> list[ast.FunctionDef | ast.AsyncFunctionDef] | None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in module.functions:
            return module.functions[func.id]
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "self"
            and func.attr in module.functions
        ):
            return module.functions[func.attr]
        return None

    def _name(
        self, module: Module, name: str, node: ast.expr, scope: Scope, index: int | None
    ) -> list[str]:
        current: Scope | None = scope
        while current is not None:
            if isinstance(current, ast.ListComp | ast.GeneratorExp | ast.SetComp):
                found = _comprehension_sources(current, name)
            else:
                if _is_parameter(current, name):
                    return [name]
                found = _assigned(current, name)
            if found is not None:
                parts: list[str] = []
                for value, value_index in found:
                    if value is None:  # bound by unpacking a loop, `with`, import ...
                        return [name]
                    parts += self.unsafe(
                        module,
                        value,
                        module.scope_of(value),
                        value_index if value_index is not None else index,
                    )
                return parts
            current = None if current is module.tree else module.scope_of(current)
        return [name]

    def _self_attribute(self, module: Module, node: ast.Attribute, index: int | None) -> list[str]:
        values = [
            target_value
            for candidate in ast.walk(module.tree)
            if isinstance(candidate, ast.Assign | ast.AnnAssign)
            for target_value in _self_assignments(candidate, node.attr)
        ]
        if values:
            return [
                part
                for value in values
                for part in self.unsafe(module, value, module.scope_of(value))
            ]
        if node.attr in module.functions:  # a property
            return [
                part
                for function in module.functions[node.attr]
                for value in _returned(function)
                for part in self.unsafe(module, value, function, index)
            ]
        return [ast.unparse(node)]


# -- ast helpers ------------------------------------------------------------------------------
def _called_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _returned(function: ast.AST) -> list[ast.expr]:
    values = []
    for node in _walk_own(function):
        if isinstance(node, ast.Return) and node.value is not None:
            values.append(node.value)
    return values


def _walk_own(scope: ast.AST) -> list[ast.AST]:
    """The nodes of `scope` outside nested functions and classes."""
    found: list[ast.AST] = []
    pending = list(ast.iter_child_nodes(scope))
    while pending:
        node = pending.pop()
        found.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))
    return found


def _is_parameter(scope: Scope, name: str) -> bool:
    if not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        return False
    arguments = scope.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
    return any(argument.arg == name for argument in every)


Source = tuple[ast.expr | None, int | None]


def _assigned(scope: Scope, name: str) -> list[Source] | None:
    """What flows into `name` in `scope`: (value, tuple index) pairs; a None value means bound
    by something this test does not follow. None when `scope` does not bind `name`."""
    sources: list[Source] = []
    for node in _walk_own(scope):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                sources += _from_target(target, name, node.value)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            if isinstance(node.target, ast.Name) and node.target.id == name:
                sources.append((node.value, None))
        elif isinstance(node, ast.For | ast.AsyncFor):
            sources += _loop_sources(node.target, node.iter, name)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            if _binds(node.optional_vars, name):
                sources.append((None, None))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any((alias.asname or alias.name) == name for alias in node.names):
                sources.append((None, None))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == name
            and node.func.attr in ("append", "extend", "insert")
        ):
            sources += [(argument, None) for argument in node.args[-1:]]
    return sources or None


def _from_target(target: ast.expr, name: str, value: ast.expr) -> list[Source]:
    if isinstance(target, ast.Name):
        return [(value, None)] if target.id == name else []
    if isinstance(target, ast.Tuple):
        for position, element in enumerate(target.elts):
            if isinstance(element, ast.Name) and element.id == name:
                return [(value, position)]
    return []


def _loop_sources(target: ast.expr, iterable: ast.expr, name: str) -> list[Source]:
    """A plain loop variable takes the iterable's items (safe when the iterable is); one that
    is unpacked from a tuple is not followed (it needs an ALLOWED entry)."""
    if isinstance(target, ast.Name):
        return [(iterable, None)] if target.id == name else []
    return [(None, None)] if _binds(target, name) else []


def _comprehension_sources(node: ast.AST, name: str) -> list[Source] | None:
    assert isinstance(node, ast.ListComp | ast.GeneratorExp | ast.SetComp)
    for generator in node.generators:
        sources = _loop_sources(generator.target, generator.iter, name)
        if sources:
            return sources
    return None


def _binds(target: ast.expr, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(target))


def _self_assignments(node: ast.Assign | ast.AnnAssign, attr: str) -> list[ast.expr]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [
        node.value
        for target in targets
        if node.value is not None
        and isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
        and target.attr == attr
    ]


# -- the tests --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    paths = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))
    loaded = {m.path: m for m in map(Module.load, paths)}
    assert len(loaded) > 20, "the packages were not found"
    return loaded


@pytest.fixture(scope="module")
def checker(modules: dict[str, Module]) -> Checker:
    return Checker(modules)


def test_no_sql_is_built_from_runtime_values(checker: Checker) -> None:
    findings = checker.sql_findings()
    assert checker.examined >= 40, "the check no longer sees the SQL calls"
    assert not findings, "SQL text built from values that may not be code-written:\n" + "\n".join(
        findings
    )


def test_the_sql_builders_follow_the_same_rules(
    checker: Checker, modules: dict[str, Module]
) -> None:
    findings = []
    for path, function in BUILDERS.values():
        assert function in modules[path].functions, f"{path} no longer defines {function}"
        findings += checker.returns_findings(modules[path], function)
    assert not findings, "\n".join(findings)


def test_every_allowed_name_is_still_needed(checker: Checker, modules: dict[str, Module]) -> None:
    checker.sql_findings()
    for path, function in BUILDERS.values():
        checker.returns_findings(modules[path], function)
    assert set(ALLOWED) - checker.used == set(), "stale ALLOWED entries: remove them"


def test_read_model_identifiers_are_plain_names() -> None:
    """What the ALLOWED entries of projections/schema.py rely on, checked on the real tables."""
    plain = re.compile(r"[a-z_][a-z0-9_]{0,62}")
    for table in read_model_tables():
        assert plain.fullmatch(table.name), table.name
        for column in table.columns:
            assert plain.fullmatch(column.name), column.name
            assert re.fullmatch(r"[a-z]+(\[\])?", column.type), column.type
        for suffix, expression in table.indexes:
            assert plain.fullmatch(suffix), suffix
            index_keys = r"\((?:[a-z_]+(?: DESC)?(?:, )?)+\)(?: WHERE [a-z_]+ IS (?:NOT )?NULL)?"
            assert re.fullmatch(index_keys, expression), expression


def test_every_filter_compares_a_column_of_its_table() -> None:
    """What the ALLOWED `column` and `operator` entries of projections/queries.py rely on,
    checked on the real filter declarations."""
    for table, declared in (
        (STRATEGIES, STRATEGY_FILTERS),
        (TRADERS, TRADER_FILTERS),
        (OPERATIONS, OPERATION_FILTERS),
        (EXECUTIONS, EXECUTION_FILTERS),
    ):
        columns = {column.name for column in table.columns}
        for each in declared:
            if each.computed:  # applied by its query as a Clause (projections/drift.py)
                assert each.column == "", (table.name, each)
                continue
            assert each.column in columns, (table.name, each)
            assert each.operator in {"=", ">=", "<"}, (table.name, each)


@pytest.mark.parametrize(
    "schema", ['public"; DROP TABLE platforms; --', "a b", "", "x" * 64, "1abc", 'q"q', "a.b"]
)
def test_the_schema_quoting_helper_refuses_anything_but_a_plain_name(schema: str) -> None:
    with pytest.raises(ValueError, match="schema name"):
        quoted(schema)


@pytest.mark.parametrize(
    ("source", "finding"),
    [
        ('conn.execute(f"SELECT * FROM t WHERE id = {user_id}")', "user_id"),
        ('conn.fetch("SELECT * FROM t WHERE id = %s" % user_id)', "user_id"),
        ('conn.fetch("SELECT * FROM " + table)', "table"),
        ('conn.fetchrow("SELECT {} FROM t".format(column))', "column"),
        ("conn.fetchval(query)", "query"),
        ("""conn.execute(f'CREATE SCHEMA "{schema}"')""", "schema"),  # quotes by hand
        ("curs.execute(SQL(text))", "text"),
        ('conn.execute(f"SET x = {request.headers}")', "request.headers"),
        ('conn.execute(f"SELECT {helper(value)}")', "helper(value)"),
    ],
)
def test_the_check_finds_sql_built_from_a_parameter(source: str, finding: str) -> None:
    """The checker itself: a function whose SQL is built from its parameters is reported."""
    parameters = "conn, curs, user_id, table, column, query, text, request, value, schema"
    findings = _check_snippet(f"def handler({parameters}):\n    {source}\n")
    assert any(finding in f for f in findings), findings


@pytest.mark.parametrize(
    "source",
    [
        'conn.execute("SELECT 1 WHERE id = $1", user_id)',
        'conn.fetch(f"SELECT {COLUMNS} FROM t WHERE id = $1", user_id)',
        'conn.execute(f"CREATE SCHEMA {quoted(schema)}")',
        'curs.execute(SQL("SELECT * FROM {}").format(Identifier(schema, "t")), (user_id,))',
        'conn.fetch("SELECT " + ", ".join(c for c in COLUMNS) + " FROM t")',
    ],
)
def test_the_check_accepts_parameters_and_quoted_identifiers(source: str) -> None:
    findings = _check_snippet(
        f'COLUMNS = "a, b"\n\ndef handler(conn, curs, user_id, schema):\n    {source}\n'
    )
    assert findings == []


def _check_snippet(source: str) -> list[str]:
    return Checker({"snippet.py": Module.parse("snippet.py", source)}).sql_findings()


#: Where Python may still hold DDL: the migrator's own version table, and the copies of the
#: live read models into a scratch schema. Everything else is in the migrations' SQL files.
DDL_ALLOWED = {"infra/postgres/migrations/__init__.py", "projections/tables.py"}
DDL = re.compile(r"\b(CREATE (UNIQUE )?(TABLE|INDEX|TYPE)|ALTER TABLE)\b")


def test_tables_are_made_only_by_the_migrations() -> None:
    """`strategies db migrate` is the only way a table is made: no start-up DDL left."""
    found = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if ".venv" in path.parts or "tests" in path.parts or relative in DDL_ALLOWED:
            continue
        found += [relative for line in path.read_text().splitlines() if DDL.search(line)]
    assert found == []
