# ruff: noqa: E501  (the expected refusals are quoted whole, as main answered them)
"""The commands: built the same way from a record as the routes build them, answered by
`Trading.handle` with today's errors, and fingerprinted byte for byte as before.

The expected fingerprints and errors were computed on main before commands were typed (the
request fingerprint is stored with every request: a change would turn replays into 409s).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.commands import (
    CreateStrategy,
    Enroll,
    Liquidate,
    OperationCommand,
    PartialSell,
    Rebalance,
    TopUp,
    UpdateTrader,
    build_command,
    operation_command,
)
from domain.errors import DomainError, InvalidRequestError
from domain.requests import Limits
from domain.services import Trading
from domain.statuses import OperationType as T
from domain.strategy import Strategy
from tests.unit.domain.flows import PLATFORM, new_app, new_strategy

STRATEGY = UUID("9ba5e569-a966-42a9-a7ad-666b0a5300f3")
TRADER = UUID("0e3f3f1c-7d3a-4c55-9a43-2a6f7f2b7c11")
ALLOC = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.50"},
]
FUNDED = [
    {"participant_code": "ABC123", "amount": "1000.00", "auto_rebalance": True},
    {"participant_code": "DEF456", "amount": "5", "auto_rebalance": False},
]
ONE = [{"participant_code": "ABC123", "amount": "10.5", "auto_rebalance": False}]
SELL = [{"participant_code": "ABC123", "amount": "1.25", "auto_rebalance": False}]

#: (command, strategy, trader, body as the HTTP models dump it, fingerprint on main).
FINGERPRINTS: list[tuple[str, UUID | None, UUID | None, dict[str, Any], str]] = [
    (
        "create_strategy",
        None,
        None,
        {"quoted_currency": "USD", "metadata": {"label": "Blue", "n": [1, 2.5, None]}},
        "ffbab16a7336ee7ce6427f07fbb99f866975ee3e8ec5e710619bb51621391431",
    ),
    (
        "enroll",
        STRATEGY,
        None,
        {"allocations": ALLOC, "participants": FUNDED},
        "8c50411b8ea9d5723a5b80c1a83b9518443708d7df05fa3be57eb0ce0f417e50",
    ),
    (
        "top_up",
        STRATEGY,
        None,
        {"allocations": ALLOC, "participants": ONE},
        "64e0962ccd93ccedf993975d0bd41756f43fe396399f60512e545473c9666abd",
    ),
    (
        "partial_sell",
        STRATEGY,
        None,
        {"allocations": ALLOC, "participants": SELL},
        "ae46bbc8c6ded9a9846efe4971b8e391230e8a71ffd765fa2ee964a743d1d7d7",
    ),
    (
        "rebalance",
        STRATEGY,
        None,
        {
            "allocations": ALLOC,
            "participants": ["ABC123", {"participant_code": "DEF456"}],
            "drift_tolerance": "0.02",
        },
        "764853ef955befb3b48f5416629b6a33be5723a350912e3fd97dd2a71a8a4eac",
    ),
    (
        "rebalance",
        STRATEGY,
        None,
        {"allocations": ALLOC},
        "15bacd2c723d2f6c705197943691b9c458c59d6e6a4202385426c734f95c7895",
    ),
    (
        "liquidate",
        STRATEGY,
        None,
        {"participants": [{"participant_code": "ABC123"}], "all": False},
        "12c9b0c7b71dfd06a9fb7e57b1eb59d55ff32ddf6e9f235b4e0bdcd8c19e8df3",
    ),
    (
        "liquidate",
        STRATEGY,
        None,
        {"all": True},
        "807a1094de10051a24480c16bccaac86cc2c130b599f7a65cb161a99861603af",
    ),
    (
        "update_trader",
        None,
        TRADER,
        {"auto_rebalance": False},
        "c79465c0427f6f380f2ce63d322dc280590923026cfcc7c17b58c35c5e988835",
    ),
]


@pytest.mark.parametrize(("name", "strategy", "trader", "body", "expected"), FINGERPRINTS)
def test_fingerprints_are_those_of_main(
    name: str, strategy: UUID | None, trader: UUID | None, body: dict[str, Any], expected: str
) -> None:
    command = build_command(name, strategy_id=strategy, trader_id=trader, body=body)
    assert command.fingerprint() == expected


def test_each_name_builds_its_own_command() -> None:
    body = {"allocations": ALLOC}
    built = {
        name: build_command(name, strategy_id=STRATEGY, trader_id=None, body=body)
        for name in ("enroll", "top_up", "partial_sell", "rebalance", "liquidate")
    }
    assert built == {
        "enroll": Enroll(STRATEGY, body),
        "top_up": TopUp(STRATEGY, body),
        "partial_sell": PartialSell(STRATEGY, body),
        "rebalance": Rebalance(STRATEGY, body),
        "liquidate": Liquidate(STRATEGY, body),
    }
    assert build_command("create_strategy", strategy_id=None, trader_id=None, body=body) == (
        CreateStrategy(body)
    )
    flag = {"auto_rebalance": True}
    assert build_command("update_trader", strategy_id=None, trader_id=TRADER, body=flag) == (
        UpdateTrader(TRADER, True)
    )
    for kind in T:
        assert operation_command(kind, STRATEGY, body).type is kind


@pytest.mark.parametrize(
    ("trader", "body"),
    [
        (None, {"auto_rebalance": True}),
        (TRADER, {}),
        (TRADER, {"auto_rebalance": "yes"}),
        (TRADER, {"auto_rebalance": 1}),
        (TRADER, {"auto_rebalance": None}),
    ],
)
def test_update_trader_needs_the_trader_and_a_strict_flag(
    trader: UUID | None, body: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        build_command("update_trader", strategy_id=None, trader_id=trader, body=body)
    assert refused.value.code == "invalid_request"
    assert refused.value.message == (
        "update_trader needs trader_id and body.auto_rebalance (true or false)"
    )
    assert [(e.field, e.message) for e in refused.value.errors] == [
        ("auto_rebalance", "must be true or false")
    ]


@pytest.mark.parametrize("name", ["enroll", "top_up", "partial_sell", "rebalance", "liquidate"])
def test_an_operation_needs_its_strategy(name: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        build_command(name, strategy_id=None, trader_id=None, body={})
    assert refused.value.message == f"{name} needs strategy_id"
    assert [(e.field, e.message) for e in refused.value.errors] == [("strategy_id", "is required")]


def test_an_unknown_command_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown command"):
        build_command("transfer", strategy_id=STRATEGY, trader_id=None, body={})


@pytest.fixture
def limited() -> tuple[Trading, Strategy]:
    app = new_app()
    app.limits = Limits(max_participants=3, max_allocations=20)
    return app, new_strategy(app)


A = [{"underlying_currency": "BTC", "weight": "1"}]
cases = [
    ("create", {}),
    ("create", {"quoted_currency": ""}),
    ("create", {"quoted_currency": "USD", "metadata": []}),
    ("create", {"quoted_currency": "USD", "metadata": {"a": "\x00"}}),
    ("create", {"quoted_currency": "XXX"}),
    (T.ENROLLMENT, {"allocations": A}),
    (T.ENROLLMENT, {"allocations": A, "participants": []}),
    (T.ENROLLMENT, {"allocations": A, "participants": [{"participant_code": "P1"}] * 4}),
    (
        T.ENROLLMENT,
        {
            "allocations": A,
            "participants": [
                "P1",
                {"participant_code": "", "amount": "1"},
                {"participant_code": "P2", "amount": "1.001"},
            ],
        },
    ),
    (
        T.ENROLLMENT,
        {
            "allocations": A,
            "participants": [
                {"participant_code": "P1", "amount": "0", "auto_rebalance": "yes"},
                {"participant_code": "P1", "amount": "1e2"},
            ],
        },
    ),
    (
        T.TOP_UP,
        {
            "allocations": [{"underlying_currency": "BTC", "weight": "0.5"}],
            "participants": [{"participant_code": "P1", "amount": "1"}],
        },
    ),
    (
        T.PARTIAL_SELL,
        {
            "allocations": [{"underlying_currency": "DOGE", "weight": "1"}],
            "participants": [{"participant_code": "P1", "amount": "1"}],
        },
    ),
    (T.REBALANCE, {"allocations": A, "drift_tolerance": "1"}),
    (T.REBALANCE, {"allocations": A, "drift_tolerance": 0.1}),
    (T.REBALANCE, {"allocations": A, "participants": ["P1", 5, {"participant_code": "bad code"}]}),
    (T.LIQUIDATION, {}),
    (T.LIQUIDATION, {"all": True, "participants": ["P1"]}),
    (T.LIQUIDATION, {"participants": [{"x": 1}]}),
]
EXPECTED = [
    ("invalid_request", "quoted_currency is required", [("quoted_currency", "is required")]),
    ("invalid_request", "quoted_currency is required", [("quoted_currency", "is required")]),
    ("invalid_request", "metadata must be a JSON object", [("metadata", "must be an object")]),
    (
        "invalid_request",
        "metadata must not contain the NUL character",
        [("metadata", "must not contain the NUL character")],
    ),
    (
        "unsupported_currency",
        "quoted_currency 'XXX' is not supported (supported: AUD, BRL, CAD, CHF, EUR, GBP, JPY, SGD, USD)",
        [("quoted_currency", "must be one of AUD, BRL, CAD, CHF, EUR, GBP, JPY, SGD, USD")],
    ),
    (
        "invalid_participants",
        "participants must be a non-empty list",
        [("participants", "must be a non-empty list")],
    ),
    (
        "invalid_participants",
        "participants must be a non-empty list",
        [("participants", "must be a non-empty list")],
    ),
    (
        "invalid_participants",
        "at most 3 participants are allowed per request (got 4); split the request",
        [("participants", "at most 3 entries")],
    ),
    (
        "invalid_participants",
        "participants are invalid: participants[0] must be an object; participants[1] participant_code must be a non-empty string; participants[2].amount has more than 2 decimals",
        [
            ("participants[0]", "must be an object"),
            ("participants[1]", "participant_code must be a non-empty string"),
            ("participants[2].amount", "has more than 2 decimals"),
        ],
    ),
    (
        "invalid_participants",
        'participants are invalid: participants[0].amount must be greater than 0; participants[0].auto_rebalance must be true or false; participants[1].amount must be a decimal string such as "100.50"',
        [
            ("participants[0].amount", "must be greater than 0"),
            ("participants[0].auto_rebalance", "must be true or false"),
            ("participants[1].amount", 'must be a decimal string such as "100.50"'),
        ],
    ),
    (
        "invalid_allocations",
        "allocations are invalid: allocations weights must sum to exactly 1 (they sum to 0.5)",
        [("allocations", "weights must sum to exactly 1 (they sum to 0.5)")],
    ),
    (
        "invalid_allocations",
        "allocations are invalid: allocations[0].underlying_currency DOGE/USD is not a listed instrument",
        [("allocations[0].underlying_currency", "DOGE/USD is not a listed instrument")],
    ),
    (
        "invalid_request",
        "drift_tolerance must be at least 0 and below 1",
        [("drift_tolerance", "must be in [0, 1)")],
    ),
    (
        "invalid_request",
        'drift_tolerance must be a decimal string such as "0.02"',
        [("drift_tolerance", "must be a decimal string")],
    ),
    (
        "invalid_participants",
        "participants are invalid: participants[1].participant_code participant_code must be a non-empty string",
        [("participants[1].participant_code", "participant_code must be a non-empty string")],
    ),
    ("invalid_request", "participants are required", [("participants", "is required")]),
    (
        "invalid_request",
        'give either participants or "all": true, not both',
        [("all", "cannot be combined with participants")],
    ),
    (
        "invalid_participants",
        "participants are invalid: participants[0].participant_code participant_code must be a non-empty string",
        [("participants[0].participant_code", "participant_code must be a non-empty string")],
    ),
]


@pytest.mark.parametrize(("case", "expected"), list(zip(cases, EXPECTED, strict=True)))
def test_refusals_name_the_same_fields_as_on_main(
    limited: tuple[Trading, Strategy], case: tuple[Any, dict[str, Any]], expected: tuple[Any, ...]
) -> None:
    app, strategy = limited
    kind, body = case
    command = (
        CreateStrategy(body) if kind == "create" else operation_command(kind, strategy.id, body)
    )
    with pytest.raises(DomainError) as refused:
        app.handle(PLATFORM, uuid4(), command)
    error = refused.value
    assert (error.code, error.message, [(e.field, e.message) for e in error.errors]) == expected


def test_handle_replays_and_refuses_a_reused_request_id(limited: tuple[Trading, Strategy]) -> None:
    app, strategy = limited
    request_id = uuid4()
    body = {"allocations": A, "participants": [{"participant_code": "P1", "amount": "10"}]}
    command: OperationCommand = Enroll(strategy.id, body)
    made, created = app.handle(PLATFORM, request_id, command)
    again, created_again = app.handle(PLATFORM, request_id, Enroll(strategy.id, dict(body)))
    assert (created, created_again) == (True, False)
    assert again.id == made.id
    with pytest.raises(DomainError) as reused:
        app.handle(PLATFORM, request_id, TopUp(strategy.id, body))
    assert reused.value.code == "idempotency_conflict"
