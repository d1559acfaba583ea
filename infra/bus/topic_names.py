"""Kafka topic and consumer-group names (`<area>.<fact>`): one group per stage.

Every name starts with a prefix (default `strategies`), so several installations, or test
runs, can share one Kafka cluster without reading each other's records.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The header naming the platform a command acts for.
PLATFORM_HEADER = "platform"


@dataclass(frozen=True)
class Topics:
    prefix: str = "strategies"

    def __post_init__(self) -> None:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not self.prefix or not set(self.prefix) <= allowed or len(self.prefix) > 100:
            raise ValueError(
                f"topic prefix {self.prefix!r} must be 1-100 letters, digits, '.', '_' or '-'"
            )

    def _name(self, fact: str) -> str:
        return f"{self.prefix}.{fact}"

    @property
    def events(self) -> str:
        return self._name("events")

    @property
    def credit_check(self) -> str:
        return self._name("credit-check-requested")

    @property
    def pricing(self) -> str:
        return self._name("pricing-requested")

    @property
    def execution(self) -> str:
        return self._name("execution-requested")

    @property
    def blocks(self) -> str:
        """Block orders to place: apart from the chunk settlements of `execution`, so a
        locked quote is used while it is valid, not after other Operations' chunks."""
        return self._name("blocks-requested")

    @property
    def commands(self) -> str:
        return self._name("commands")

    @property
    def command_results(self) -> str:
        return self._name("command-results")

    @property
    def commands_dead_letter(self) -> str:
        return self._name("commands.dead-letter")

    @property
    def all(self) -> tuple[str, ...]:
        return (
            self.events,
            self.credit_check,
            self.pricing,
            self.execution,
            self.blocks,
            self.commands,
            self.command_results,
            self.commands_dead_letter,
        )

    def group(self, worker: str) -> str:
        """The consumer group of a worker (`credit-check`, `pricing`, ...)."""
        return self._name(worker)


DEFAULT = Topics()


def relay_position_name(topics: Topics) -> str:
    """The relay's saved position and its leadership lock are named after the topics."""
    return f"{topics.prefix}.outbox"
