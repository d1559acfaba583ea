"""Commands from upstream services: `strategies.commands` in, `strategies.command-results` out.

A command's record key is its request id (UUID v4) and its `platform` header names the
platform, exactly like X-REQUEST-ID and the API key over HTTP: a replayed command returns the
original resource (`replayed`), a business refusal is a `rejected` result with the domain's
error code, and a record that cannot even be read goes to the dead-letter topic with the
reason. Nothing a sender does can stop the consumer.

A command that fails for another reason is retried by the bus with a back-off. While the
error is an outage (`infra.transient`: database or broker away) it is retried for as long as
that lasts, since the command is fine. Any other error (a bug this record sets off) is
retried `MAX_ATTEMPTS` times and then dead-lettered as `handler_failed`, so one poison record
cannot hold up its partition for good; the dead letter keeps the record for a replay. The
policy is `domain.failures.COMMANDS`, the one the stage tasks share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import structlog
from pydantic import ValidationError

from domain import commands
from domain.codes import check_platform_id
from domain.commands import PreviewOperation, build_command, build_preview
from domain.errors import DomainError
from domain.failures import COMMAND_ATTEMPTS, COMMANDS, Failure, Verdict, classify
from domain.json_text import JsonTextError, parse_json_text
from domain.preview import OperationPreview
from domain.services import Trading
from domain.strategy import Strategy
from domain.trader import Trader
from infra.bus import Bus, Delivery, Record
from infra.bus.messages import Command, CommandError, CommandResult, DeadLetter, ErrorDetail
from infra.bus.topic_names import PLATFORM_HEADER, Topics
from infra.metrics import METRICS
from infra.tracing import current_trace, handling, trace_headers
from infra.transient import is_transient
from projections.previews import preview_resource
from projections.representations import operation_resource, strategy_resource, trader_resource
from workers.context import SyncCaller, utc_now
from workers.traced import about

if TYPE_CHECKING:
    from domain.venue import QuoteProvider

log = structlog.get_logger("workers.commands")
ResourceType = Literal["strategy", "operation", "trader"]

#: Attempts at a command that fails with an error other than an outage before it is
#: dead-lettered (`domain.failures.COMMANDS`).
MAX_ATTEMPTS = COMMAND_ATTEMPTS


class CommandService:
    """Runs one command for one platform; shared by the command topic and the HTTP API.

    `quotes` (the venue) gives a preview its indicative prices, read at `clock()`."""

    def __init__(
        self,
        trading: Trading,
        call: SyncCaller,
        quotes: QuoteProvider | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.trading = trading
        self.call = call
        self.quotes = quotes
        self.clock = clock

    async def execute(self, platform: str, request_id: UUID, record: Command) -> CommandResult:
        """A command record's outcome; a refusal is a `rejected` result, any other error
        propagates for the consumer's policy to decide. A `preview` is answered like the
        others (its resource the preview) but claims no request id and writes nothing."""
        try:
            if record.command == PreviewOperation.name:
                preview = build_preview(record.strategy_id, record.body)
                found = await self.preview(platform, preview)
                return _accepted(platform, request_id, record, preview_resource(found, preview))
            command = build_command(
                record.command,
                strategy_id=record.strategy_id,
                trader_id=record.trader_id,
                body=record.body,
            )
            kind, resource, created = await self.run(platform, request_id, command)
        except Exception as error:
            if classify(error, outage=is_transient) is not Failure.REFUSED:
                raise
            assert isinstance(error, DomainError)
            return _rejected(platform, request_id, record.command, error)
        return CommandResult(
            request_id=str(request_id),
            platform=platform,
            command=record.command,
            outcome="accepted" if created else "replayed",
            resource_type=kind,
            resource=resource,
        )

    async def preview(self, platform: str, preview: PreviewOperation) -> OperationPreview:
        """What the Operation request would do now (`Trading.preview`), at the venue's
        indicative prices for every tradable asset of the Strategy's currency, fetched as
        the credit check fetches them; a refusal raises the domain's error, as `run` does."""
        if self.quotes is None:
            raise RuntimeError("previews need a quote provider")
        check_platform_id(platform)
        strategy_id = preview.operation.strategy_id
        strategy = await self.call(self.trading.strategy, platform, strategy_id)
        catalogue = await self.call(self.trading.catalogue)
        currency = strategy.quoted_currency
        prices = await self.quotes.indicative(currency, catalogue.tradable_assets(currency))
        priced_at = self.clock()
        found: OperationPreview = await self.call(
            self.trading.preview, platform, preview.operation, prices, priced_at
        )
        return found

    async def run(
        self, platform: str, request_id: UUID, command: commands.Command
    ) -> tuple[ResourceType, dict[str, Any], bool]:
        """(resource type, resource, created); a refusal raises the domain's error."""
        # The request's trace goes on the Operation it requests: see `infra.tracing`.
        trace = current_trace()
        made, created = await self.call(self.trading.handle, platform, request_id, command, trace)
        if isinstance(made, Strategy):
            return "strategy", strategy_resource(made), created
        if isinstance(made, Trader):
            return "trader", trader_resource(made), created
        return "operation", operation_resource(made), created


def _accepted(
    platform: str, request_id: UUID, record: Command, resource: dict[str, Any]
) -> CommandResult:
    return CommandResult(
        request_id=str(request_id),
        platform=platform,
        command=record.command,
        outcome="accepted",
        resource_type="preview",
        resource=resource,
    )


def _rejected(platform: str, request_id: UUID, command: str, error: DomainError) -> CommandResult:
    return CommandResult(
        request_id=str(request_id),
        platform=platform,
        command=command,
        outcome="rejected",
        error=CommandError(
            code=error.code,
            message=error.message,
            errors=[ErrorDetail(field=e.field, message=e.message) for e in error.errors],
        ),
    )


class UnreadableCommandError(Exception):
    """Why a command record is dead-lettered: it cannot be understood at all, or handling
    it failed on every attempt."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def read_command(delivery: Delivery) -> tuple[str, UUID, Command]:
    platform = delivery.headers.get(PLATFORM_HEADER, "").strip()
    if not platform:
        raise UnreadableCommandError(
            "missing_platform", f"the {PLATFORM_HEADER!r} header is required"
        )
    try:
        request_id = UUID(delivery.key or "")
    except ValueError:
        raise UnreadableCommandError(
            "invalid_request_id", "the record key must be a UUID v4 request id"
        ) from None
    if request_id.version != 4:
        raise UnreadableCommandError(
            "invalid_request_id", "the record key must be a UUID v4 request id"
        )
    try:
        # The HTTP API's reading (domain.json_text): UTF-8 only, no repeated member.
        command = Command.model_validate(parse_json_text(delivery.value))
    except JsonTextError as error:
        raise UnreadableCommandError(error.code, error.errors[0].message) from None
    except ValidationError as error:
        raise UnreadableCommandError("invalid_command", _summary(error)) from None
    return platform, request_id, command


def _summary(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()[:5]
    )


def command_consumer(
    service: CommandService, bus: Bus, topics: Topics
) -> Callable[[Delivery], Awaitable[None]]:
    async def traced(delivery: Delivery) -> None:
        # Like X-REQUEST-ID over HTTP, the request id stands as the correlation id unless
        # the sender's `correlation_id` header names one; its `traceparent` is honoured.
        with handling(
            delivery.headers, "command", fallback_id=delivery.key, attributes=about(delivery)
        ):
            await consume(delivery)

    async def consume(delivery: Delivery) -> None:
        try:
            platform, request_id, command = read_command(delivery)
        except UnreadableCommandError as unreadable:
            await bus.publish(_dead_letter(delivery, unreadable, topics.commands_dead_letter))
            METRICS.command_results.labels("dead_letter").inc()
            log.warning("command.dead_lettered", reason=unreadable.reason, offset=delivery.offset)
            return
        try:
            result = await service.execute(platform, request_id, command)
            answer = Record(
                topics.command_results,
                result.encode(),
                key=str(request_id),
                headers=trace_headers(),
            )
            await bus.publish(answer)
        except Exception as error:
            attempt = delivery.redelivered + 1
            failure = classify(error, outage=is_transient)
            if COMMANDS.verdict(failure, attempt) is not Verdict.GIVE_UP:
                raise  # the bus backs off and hands the record over again
            failed = UnreadableCommandError(
                "handler_failed",
                f"{type(error).__name__} on each of {attempt} attempts; see the consumer's log",
            )
            await bus.publish(_dead_letter(delivery, failed, topics.commands_dead_letter))
            METRICS.command_results.labels("dead_letter").inc()
            log.error(
                "command.dead_lettered",
                reason=failed.reason,
                offset=delivery.offset,
                request_id=str(request_id),
                exc_info=True,
            )
            return
        METRICS.command_results.labels(result.outcome).inc()
        log.info(
            "command.handled",
            command=command.command,
            outcome=result.outcome,
            request_id=str(request_id),
        )

    return traced


def _dead_letter(delivery: Delivery, unreadable: UnreadableCommandError, topic: str) -> Record:
    letter = DeadLetter(
        reason=unreadable.reason,
        detail=unreadable.detail,
        topic=delivery.topic,
        partition=delivery.partition,
        offset=delivery.offset,
        key=delivery.key,
        headers=dict(delivery.headers),
        value=delivery.value.decode("utf-8", errors="replace"),
    )
    return Record(topic, letter.encode(), key=delivery.key)
