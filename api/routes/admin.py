"""Administration (extension, spec §11.18): fund a platform's float, set participant
eligibility, manage the instrument catalogue. Guarded by a bearer token
(STRATEGIES_ADMIN_TOKEN); without one configured the admin API is switched off."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.auth import CallerFirstRoute
from api.deps import EngineDep
from api.errors import Problem, ProblemError
from domain.catalogue import Instrument, InstrumentStatus, currency_problem
from domain.codes import asset_problem, code_problem, reference_problem
from domain.eligibility import ParticipantStatus
from domain.money import parse_decimal
from infra.postgres.platforms import require_platform


def require_admin(request: Request) -> None:
    token = request.app.state.settings.admin_token
    if token is None:
        raise ProblemError(
            403, "admin_disabled", "the admin API is off: set STRATEGIES_ADMIN_TOKEN"
        )
    sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(sent.encode(), token.get_secret_value().encode()):
        raise ProblemError(
            401,
            "invalid_admin_token",
            "a valid 'Authorization: Bearer <admin token>' is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


class AdminRoute(CallerFirstRoute):
    """The admin routes: the token is checked before the body is parsed (`CallerFirstRoute`)."""

    async def check_caller(self, request: Request) -> None:
        require_admin(request)


router = APIRouter(
    prefix="/admin",
    route_class=AdminRoute,
    tags=["administration (extension)"],
    dependencies=[Depends(require_admin)],
    responses={
        400: {"model": Problem, "description": "Invalid body."},
        401: {"model": Problem, "description": "Missing or wrong admin token."},
        403: {"model": Problem, "description": "Admin API switched off."},
    },
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _rule(problem: Callable[[object], str | None]) -> AfterValidator:
    """A rule of `domain.codes` as a field check: a refusal names the field's path (400)."""

    def check(value: str) -> str:
        if (why := problem(value)) is not None:
            raise ValueError(why)
        return value

    return AfterValidator(check)


Code = Annotated[str, _rule(code_problem)]
Asset = Annotated[str, _rule(asset_problem)]
Currency = Annotated[str, _rule(currency_problem)]
#: A registered platform's id; one that is not registered is a 404 (`platform_not_found`).
PlatformId = Annotated[str, Path(), _rule(code_problem)]


class FloatDeposit(Strict):
    currency: Currency = Field(examples=["USD"])
    amount: str = Field(examples=["1000000.00"])
    reference: Annotated[str, _rule(reference_problem)] = Field(
        examples=["WIRE-2026-11-26-0001"],
        description="The wire's own reference, at most 128 printable characters: the "
        "deposit's idempotency key (the same reference and amount again credit nothing).",
    )


class FloatBalance(BaseModel):
    platform_id: str
    currency: str
    balance: str
    available: str


class ParticipantEligibility(Strict):
    participant_code: Code
    status: Literal["active", "suspended", "closed"] = "active"
    restricted_assets: list[Asset] = Field(default_factory=list, max_length=500)


class ParticipantsUpdate(Strict):
    participants: Annotated[list[ParticipantEligibility], Field(min_length=1, max_length=10_000)]


class InstrumentListing(Strict):
    asset: Asset
    quoted_currency: Currency
    precision: int = Field(ge=0, le=18)
    min_notional: str = Field(examples=["1.00"])
    status: Literal["enabled", "halted", "disabled"] = "enabled"


class InstrumentsUpdate(Strict):
    instruments: Annotated[list[InstrumentListing], Field(min_length=1, max_length=500)]


@router.post(
    "/platforms/{platform_id}/float-deposits",
    status_code=status.HTTP_201_CREATED,
    response_model=FloatBalance,
    responses={
        200: {"model": FloatBalance, "description": "A replay: this deposit was recorded."},
        404: {"model": Problem, "description": "No such platform."},
        409: {"model": Problem, "description": "The reference was used for another amount."},
    },
    summary="Fund a platform's float account",
)
async def deposit_float(
    platform_id: PlatformId, body: FloatDeposit, engine: EngineDep, response: Response
) -> FloatBalance:
    """201 with the balance after this deposit; a replay (same reference and amount) credits
    nothing and answers 200 with the balance as it is now, like the platform API's replays."""
    amount = parse_decimal(body.amount, "amount")
    await require_platform(engine.pool, platform_id)
    account, created = await engine.call(
        engine.trading.deposit_float, platform_id, body.currency, amount, body.reference
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return FloatBalance(
        platform_id=platform_id,
        currency=body.currency,
        balance=str(account.balance),
        available=str(account.available),
    )


@router.put(
    "/platforms/{platform_id}/participants",
    responses={404: {"model": Problem, "description": "No such platform."}},
    summary="Set participants' eligibility",
)
async def set_participants(
    platform_id: PlatformId, body: ParticipantsUpdate, engine: EngineDep
) -> dict[str, int]:
    await require_platform(engine.pool, platform_id)
    changed = 0
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for entry in body.participants:
        key = (entry.status, tuple(sorted(entry.restricted_assets)))
        groups.setdefault(key, []).append(entry.participant_code)
    for (state, restricted), codes in groups.items():
        changed += await engine.call(
            engine.trading.register_participants,
            platform_id,
            codes,
            ParticipantStatus(state),
            list(restricted),
        )
    return {"changed": changed}


@router.get("/instruments", summary="The instrument catalogue")
async def list_instruments(engine: EngineDep) -> list[dict[str, Any]]:
    catalogue = await engine.call(engine.trading.catalogue)
    return [i.as_dict() for i in sorted(catalogue.instruments.values(), key=lambda i: i.symbol)]


@router.put("/instruments", summary="List or update instruments")
async def set_instruments(body: InstrumentsUpdate, engine: EngineDep) -> list[dict[str, Any]]:
    listings = [
        Instrument(
            item.asset,
            item.quoted_currency,
            item.precision,
            parse_decimal(item.min_notional, "min_notional"),
            InstrumentStatus(item.status),
        )
        for item in body.instruments
    ]
    catalogue = await engine.call(engine.trading.list_instruments, listings)
    return [i.as_dict() for i in sorted(catalogue.instruments.values(), key=lambda i: i.symbol)]
