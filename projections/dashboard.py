"""What the operator dashboard reads of the read models (issue 20), across every platform:
the latest Operations, as the API represents them (`queries.operation_resource`), and their
Executions' exclusions counted by status and reason.

An operator sees all platforms; the platform API's queries (`projections.queries`) stay
scoped to one. SQL is assembled from fixed names only; every value is a parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from projections.executions import EXECUTIONS
from projections.operations import OPERATIONS, OperationRow
from projections.queries import operation_resource
from projections.schema import DEFAULT_SCHEMA, row_from_record

if TYPE_CHECKING:
    import asyncpg

#: Execution statuses that exclude a Trader from an Operation's trades.
EXCLUDED = ("rejected", "skipped", "cancelled")


async def latest_operations(
    pool: asyncpg.Pool, limit: int, *, schema: str = DEFAULT_SCHEMA
) -> list[dict[str, Any]]:
    """The `limit` newest Operations of every platform, each with its `platform_id`."""
    records = await pool.fetch(
        f"SELECT {OPERATIONS.selected()} FROM {OPERATIONS.qualified(schema)} "
        "ORDER BY created_at DESC, id LIMIT $1",
        limit,
    )
    found = []
    for record in records:
        row = row_from_record(OperationRow, record)
        found.append({**operation_resource(row), "platform_id": row.platform_id})
    return found


async def exclusions_by_reason(
    pool: asyncpg.Pool, operations: list[tuple[str, str]], *, schema: str = DEFAULT_SCHEMA
) -> dict[str, dict[str, int]]:
    """Per Operation id (`operations`: (platform id, Operation id) pairs), its excluded
    Executions counted by "status: reason" (a reason-less one counts under its status)."""
    if not operations:
        return {}
    records = await pool.fetch(
        f"SELECT operation_id, status, status_reason, count(*) AS n "
        f"FROM {EXECUTIONS.qualified(schema)} "
        "WHERE platform_id = ANY($1::text[]) AND operation_id = ANY($2::uuid[]) "
        "AND status = ANY($3::text[]) GROUP BY operation_id, status, status_reason",
        sorted({platform for platform, _ in operations}),
        [operation for _, operation in operations],
        list(EXCLUDED),
    )
    found: dict[str, dict[str, int]] = {}
    for record in records:
        reason = record["status_reason"]
        key = f"{record['status']}: {reason}" if reason else record["status"]
        found.setdefault(str(record["operation_id"]), {})[key] = int(record["n"])
    return found
