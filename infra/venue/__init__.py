"""The venue adapters: today the deterministic simulation. The ports they implement
(`QuoteProvider`, `ExecutionVenue`) are pure and live in `domain.venue`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from infra.venue.config import VenueConfig
from infra.venue.simulated import SimulatedVenue


def build_venue(
    config: VenueConfig, *, now: Callable[[], datetime] | None = None
) -> SimulatedVenue:
    """The composition root asks here; a real adapter will be chosen by `config` later."""
    return SimulatedVenue(config, now=now)
