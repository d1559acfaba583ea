"""Reference data kept as aggregates: the instrument catalogue and participant eligibility."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.catalogue import Instrument, InstrumentCatalogue, fiat_precision
from domain.codes import check_asset
from domain.eligibility import ParticipantProfile, ParticipantStatus
from domain.errors import FieldError, InvalidRequestError


class Catalogue(Aggregate):
    """The one instrument catalogue of an installation."""

    @staticmethod
    def create_id() -> UUID:
        return ids.CATALOGUE_ID

    @event("Opened")
    def __init__(self) -> None:
        self.instruments: dict[str, dict[str, str | int]] = {}

    def list_instrument(self, instrument: Instrument) -> None:
        """List or update an instrument; a no-op when nothing changes (idempotent admin)."""
        check_asset(instrument.asset)
        fiat_precision(instrument.quoted_currency)
        if instrument.precision < 0 or instrument.precision > 18:
            raise InvalidRequestError(
                "precision must be between 0 and 18",
                errors=(FieldError("precision", "must be between 0 and 18"),),
            )
        if instrument.min_notional < 0:
            raise InvalidRequestError(
                "min_notional must not be negative",
                errors=(FieldError("min_notional", "must be zero or more"),),
            )
        if self.instruments.get(instrument.symbol) != instrument.as_dict():
            self._listed(instrument.as_dict())

    @event("InstrumentListed")
    def _listed(self, instrument: dict[str, str | int]) -> None:
        self.instruments[f"{instrument['asset']}/{instrument['quoted_currency']}"] = instrument

    def view(self) -> InstrumentCatalogue:
        return InstrumentCatalogue.of(Instrument.from_dict(d) for d in self.instruments.values())


class Participant(Aggregate):
    """A platform's natural person, as far as eligibility goes."""

    @staticmethod
    def create_id(platform_id: str, code: str) -> UUID:
        return ids.participant_id(platform_id, code)

    @event("Registered")
    def __init__(
        self, platform_id: str, code: str, status: str, restricted_assets: list[str]
    ) -> None:
        self.platform_id = platform_id
        self.code = code
        self._status = ParticipantStatus(status).value
        self.restricted_assets = sorted(restricted_assets)

    def update(self, status: ParticipantStatus, restricted_assets: list[str]) -> None:
        if status is not self.status or sorted(restricted_assets) != self.restricted_assets:
            self._updated(status.value, sorted(restricted_assets))

    @event("EligibilityChanged")
    def _updated(self, status: str, restricted_assets: list[str]) -> None:
        self._status = status
        self.restricted_assets = restricted_assets

    @property
    def status(self) -> ParticipantStatus:
        # A plain string underneath: snapshots restore JSON types, not enums.
        return ParticipantStatus(self._status)

    def profile(self) -> ParticipantProfile:
        return ParticipantProfile(self.code, self.status, frozenset(self.restricted_assets))
