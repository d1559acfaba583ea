"""Rebuild every read model from the event store's history, through the same pure functions.

The history is read in log order, which is also each stream's order, so the rows come out
exactly as the live consumer leaves them (the live one sees streams interleaved differently,
which is why no row ever depends on the order across streams). Rebuild into a scratch schema
to check or to swap in; rebuilding the live schema needs its consumer stopped first.

An event the projection cannot apply is recorded in the schema's poisoned events, as the
live consumer does (`projections.poisoned`), and the rebuild goes on; under the same key, so
an event poisoned live is not counted twice, and one that applies now is resolved.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from infra.bus.outbox import event_message
from infra.eventstore.notification_log import START, ApplicationNotificationLog
from projections.poisoned import count_unresolved
from projections.schema import quoted
from projections.tables import empty_read_models
from projections.writer import ProjectionWriter

if TYPE_CHECKING:
    from uuid import UUID

    import asyncpg
    from eventsourcing.application import Application

log = structlog.get_logger("projections.rebuild")

BATCH_SIZE = 1000


async def rebuild(
    pool: asyncpg.Pool, app: Application[UUID], schema: str, *, batch_size: int = BATCH_SIZE
) -> int:
    """Empty the read-model tables of `schema` (`empty_read_models`), replay the whole
    history into them (one transaction per batch) and return how many events were replayed."""
    quoted(schema)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    await empty_read_models(pool, schema)
    notifications = ApplicationNotificationLog(app)
    writer = ProjectionWriter(pool, schema)
    after, replayed = START, 0
    while batch := await asyncio.to_thread(notifications.read, after, batch_size):
        await writer.apply_many(
            [event_message(n.position, n.topic, n.aggregate_id, n.version, n.state) for n in batch]
        )
        replayed += len(batch)
        after = batch[-1].at
    unresolved = await count_unresolved(pool, schema)
    log.info(
        "projections.rebuilt",
        schema=schema,
        events=replayed,
        position=after,
        poisoned_events=unresolved,
    )
    return replayed
