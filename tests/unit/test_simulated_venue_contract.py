"""The venue contract (`infra.venue.contract`) holds for the shipped adapter, the simulation:
the same checks a real adapter's tests run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.venue import Quote
from infra.settings import SettingsError, load_settings
from infra.venue import build_venue
from infra.venue.config import VenueConfig
from infra.venue.contract import CONTRACT_CHECKS, ContractCheck, VenueSubject, check_contract


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def simulated_subject() -> VenueSubject:
    clock = Clock()
    config = VenueConfig(seed=7, fail_quotes=frozenset({"SOL"}), reject_orders=frozenset({"ADA"}))

    async def expire(quote: Quote) -> None:
        clock.now = quote.expires_at + timedelta(microseconds=1)

    return VenueSubject(
        make_venue=lambda: build_venue(config, now=clock),
        assets=("BTC", "ETH"),
        halted_asset="SOL",
        rejected_asset="ADA",
        expire=expire,
    )


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__)
async def test_the_simulated_venue_keeps_the_contract(check: ContractCheck) -> None:
    await check(simulated_subject())


async def test_a_broken_adapter_is_named_by_the_check_it_breaks() -> None:
    subject = simulated_subject()
    venue = subject.make_venue()

    class HalfFills:
        indicative = venue.indicative
        firm_quote = venue.firm_quote

        async def place_block(self, client_order_id, quote, quantity):  # type: ignore[no-untyped-def]
            return await venue.place_block(client_order_id, quote, quantity / 2)

    broken = VenueSubject(make_venue=HalfFills, assets=subject.assets, expire=subject.expire)
    with pytest.raises(AssertionError, match="a_block_fills_all_at_the_quoted_price: all or"):
        await check_contract(broken)


def another_venue() -> object:
    """What an adapter package exports for `STRATEGIES_VENUE=package.module:factory`."""
    return build_venue(VenueConfig(seed=99))


def test_the_venue_setting_loads_an_adapter_factory_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATEGIES_VENUE", f"{__name__}:another_venue")
    settings = load_settings()
    venue = build_venue(VenueConfig(), factory=settings.venue_factory)
    assert venue.config.seed == 99
    monkeypatch.delenv("STRATEGIES_VENUE")
    assert load_settings().venue_factory is None


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("acme_venue", "must be simulated or package.module:factory"),
        ("acme_venue_missing:make", "cannot import acme_venue_missing: ModuleNotFoundError"),
        (f"{__name__}:nothing_here", "has no callable nothing_here"),
    ],
)
def test_a_venue_that_cannot_load_is_one_settings_line(
    monkeypatch: pytest.MonkeyPatch, spec: str, says: str
) -> None:
    monkeypatch.setenv("STRATEGIES_VENUE", spec)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    lines = str(refused.value).splitlines()[1:]
    assert len(lines) == 1
    assert lines[0].startswith("  STRATEGIES_VENUE: ")
    assert says in lines[0]
