"""Applying poisoned events again, once their cause is fixed (`strategies projections
poisoned --retry`).

A retry takes the poisoned events' lock exclusively, so no writer parks an event behind one
of them while it runs, then applies each chosen event with the rest of its stream, in log
order, through the writer's own code: what applies is resolved, what still fails is recorded
again (one more attempt) and keeps the rest of its stream parked. A resolved event is left
alone, so a retry run twice changes nothing the second time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from infra.bus.messages import DomainEventMessage
from projections import poisoned
from projections.poisoned import Source

if TYPE_CHECKING:
    from collections.abc import Sequence

    from projections.writer import Item, ProjectionWriter


async def retry_poisoned(writer: ProjectionWriter, ids: Sequence[int] | None) -> None:
    """Apply again the unresolved events `ids` (None: every one) of the writer's projection."""
    schema, name = writer.schema, writer.name
    async with writer.pool.acquire() as connection, connection.transaction():
        await poisoned.lock(connection, schema, name, shared=False)
        chosen = await poisoned.list_poisoned(
            connection, schema, unresolved_only=True, ids=None if ids is None else list(ids)
        )
        picked = {row.id for row in chosen if row.projection == name}
        streams = {row.aggregate_id for row in chosen if row.id in picked} - {None}
        items: list[Item] = []
        for row in await poisoned.list_poisoned(connection, schema, unresolved_only=True):
            if row.projection != name or not (row.id in picked or row.aggregate_id in streams):
                continue
            source = Source(row.topic, row.partition, row.offset)
            try:
                message = DomainEventMessage.model_validate_json(row.record)
            except ValidationError as unreadable:
                await poisoned.record_unreadable(
                    connection, schema, name, row.record, source, unreadable
                )
                continue
            if row.position is None:  # it reads now: its event takes over from the record
                await poisoned.resolve(connection, schema, name, [row.event_key])
            items.append((message, source))
        blocked = await poisoned.open_positions(
            connection, schema, name, {m.aggregate_id for m, _ in items}
        )
        observations = await writer.isolated(connection, items, blocked)
    writer.committed(*observations)
