"""The venue adapters: the deterministic simulation ships; a real one is any object keeping
the ports `QuoteProvider` and `ExecutionVenue` (pure, in `domain.venue`), chosen with
`STRATEGIES_VENUE=package.module:factory` (docs/venue.md). `infra.venue.contract` holds the
checks an adapter's tests run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from infra.venue.config import VenueConfig
from infra.venue.simulated import SimulatedVenue


def build_venue(
    config: VenueConfig,
    *,
    now: Callable[[], datetime] | None = None,
    factory: Callable[[], object] | None = None,
) -> Any:
    """The configured adapter (`factory()`, `Settings.venue_factory`), else the simulation,
    configured by `config`."""
    if factory is not None:
        return factory()
    return SimulatedVenue(config, now=now)
