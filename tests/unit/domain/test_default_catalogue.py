"""The default instruments are listed when the catalogue is created, whatever creates it."""

from __future__ import annotations

from decimal import Decimal

from domain import ids
from domain.catalogue import DEFAULT_INSTRUMENTS, Instrument
from domain.reference import Catalogue
from domain.services import Trading


def test_listing_one_instrument_first_still_lists_the_defaults() -> None:
    app = Trading()
    link = Instrument("LINK", "USD", 0, Decimal("1.00"))
    catalogue = app.list_instruments([link])
    defaults = {(i.asset, i.quoted_currency) for i in DEFAULT_INSTRUMENTS}
    assert defaults <= set(catalogue.instruments)
    assert catalogue.get("LINK", "USD").precision == 0  # the caller's change wins
    assert app.catalogue().get("BTC", "USD").tradable


def test_the_defaults_are_seeded_once_and_never_over_an_operators_change() -> None:
    app = Trading()
    app.ensure_default_catalogue()
    app.list_instruments([Instrument("BTC", "USD", 6, Decimal("5.00"))])
    version = app.repository.get(ids.CATALOGUE_ID).version
    app.ensure_default_catalogue()
    assert app.catalogue().get("BTC", "USD").precision == 6
    stored = app.repository.get(ids.CATALOGUE_ID)
    assert isinstance(stored, Catalogue) and stored.version == version  # nothing written
