"""Fuzzing the command topic (issue 9, item 3): hypothesis-generated records published on the
real `<prefix>.commands` topic of a real Kafka broker, consumed by the real engine on a real
PostgreSQL, valid commands interleaved with hostile ones.

The contract (workers/commands.py, README "The pipeline"): a record that cannot be read (bad
JSON, random bytes, an unknown command, wrong types, missing or extra fields, no `platform`
header, a key that is not a UUID v4) goes to `<prefix>.commands.dead-letter` with a
machine-readable reason; a readable command the domain refuses (bad decimals, huge or negative
amounts, an unknown Strategy, too many participants, ...) gets a `rejected` result with the
domain's error code; a valid one is `accepted` (its Operation then runs to a terminal status)
and a replay of it `replayed`. Nothing a sender does stops the consumer: afterwards a valid
command still gets its result, and its Strategy reaches the read models, within a bound.

FUZZ_COMMANDS (default 200) sets how many generated draws are published; run longer on
demand, e.g. `FUZZ_COMMANDS=2000 uv run pytest tests/integration/pipeline/test_fuzz_commands.py
-s --no-cov`. The figures (records, dead letters, results) are printed (-s).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, get_args
from uuid import UUID, uuid1, uuid3, uuid4

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from domain import ids
from infra.bootstrap.engine import Engine
from infra.bus import Delivery, Record
from infra.bus.messages import CommandName, CommandResult
from infra.bus.topic_names import PLATFORM_HEADER, Topics
from projections import queries
from tests.integration.pipeline.harness import (
    BLUE_CHIP,
    PLATFORM,
    CommandClient,
    pipeline_settings,
    quiet_logs,
    wait_terminal,
)

CASES = int(os.environ.get("FUZZ_COMMANDS", "200"))
# A longer run on demand needs a longer budget than the suite's 300 s per test.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300 + CASES)]
CODES = [f"C{i:03d}" for i in range(40)]
ENROLLED = CODES[:10]
FLOAT = Decimal("10000000.00")
MAX_PARTICIPANTS = 10_000  # domain.requests.Limits
CASE_HEADER = "fuzz-case"
FRESH = "<fresh request id>"
OUTCOMES_TIMEOUT_S = 120 + CASES // 2
LIVE_BOUND_S = 30
DEAD_REASONS = frozenset(
    {"invalid_json", "invalid_command", "missing_platform", "invalid_request_id"}
)
MACHINE_READABLE = re.compile(r"[a-z][a-z0-9_]*")
COMMAND_NAMES = frozenset(get_args(CommandName))
OTHER_WEIGHTS = [
    {"underlying_currency": "ETH", "weight": "0.60"},
    {"underlying_currency": "SOL", "weight": "0.40"},
]


@dataclass(frozen=True)
class Draft:
    """One record to publish and what the contract says must become of it."""

    kind: str
    value: bytes
    expect: str  # "accepted", "replayed", "rejected" or "dead"
    codes: frozenset[str] = frozenset()  # the allowed dead-letter reasons or error codes
    key: str | None = FRESH
    headers: tuple[tuple[str, str], ...] = ((PLATFORM_HEADER, PLATFORM),)


@dataclass(frozen=True)
class World:
    strategy_id: UUID
    trader_ids: tuple[UUID, ...]


def encode(command: Any, body: Any = None, **fields: Any) -> bytes:
    """A command envelope as an upstream service writes it (Python's json: NaN included)."""
    envelope: dict[str, Any] = {"command": command}
    if body is not None:
        envelope["body"] = body
    envelope.update({name: str(v) if isinstance(v, UUID) else v for name, v in fields.items()})
    return json.dumps(envelope).encode()


def is_uuid4(text: str | None) -> bool:
    try:
        return UUID(text or "").version == 4
    except ValueError:
        return False


# -- valid commands -----------------------------------------------------------------------

MONEY = st.decimals(min_value=Decimal("1.00"), max_value=Decimal("500.00"), places=2).map(str)
PRINTABLE = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), max_size=20)


def funded(codes: list[str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(st.sampled_from(codes), min_size=1, max_size=5, unique=True).flatmap(
        lambda chosen: st.tuples(*(MONEY for _ in chosen)).map(
            lambda amounts: [
                {"participant_code": c, "amount": a} for c, a in zip(chosen, amounts, strict=True)
            ]
        )
    )


def valid_commands(world: World) -> st.SearchStrategy[list[Draft]]:
    strategy = world.strategy_id
    allocations = st.sampled_from([BLUE_CHIP, OTHER_WEIGHTS])
    named = st.lists(st.sampled_from(ENROLLED), min_size=1, max_size=4, unique=True).map(
        lambda codes: [{"participant_code": c} for c in codes]
    )
    new_strategy = st.fixed_dictionaries(
        {"quoted_currency": st.sampled_from(["USD", "EUR", "JPY"])},
        optional={"metadata": st.dictionaries(PRINTABLE, PRINTABLE | st.integers(), max_size=3)},
    )
    bodies = st.one_of(
        new_strategy.map(lambda b: ("create_strategy", encode("create_strategy", b))),
        st.builds(
            lambda a, p: (
                "enroll",
                encode("enroll", {"allocations": a, "participants": p}, strategy_id=strategy),
            ),
            allocations,
            funded(CODES[len(ENROLLED) :]),
        ),
        st.builds(
            lambda a, p: (
                "top_up",
                encode("top_up", {"allocations": a, "participants": p}, strategy_id=strategy),
            ),
            allocations,
            funded(ENROLLED),
        ),
        st.builds(
            lambda p: (
                "partial_sell",
                encode(
                    "partial_sell",
                    {"allocations": BLUE_CHIP, "participants": p},
                    strategy_id=strategy,
                ),
            ),
            funded(ENROLLED).map(lambda ps: [{**p, "amount": "1.00"} for p in ps]),
        ),
        st.builds(
            lambda a, p: (
                "rebalance",
                encode("rebalance", {"allocations": a, **p}, strategy_id=strategy),
            ),
            allocations,
            st.one_of(st.just({}), named.map(lambda p: {"participants": p})),
        ),
        named.map(
            lambda p: ("liquidate", encode("liquidate", {"participants": p}, strategy_id=strategy))
        ),
        st.builds(
            lambda t, flag: (
                "update_trader",
                encode("update_trader", {"auto_rebalance": flag}, trader_id=t),
            ),
            st.sampled_from(world.trader_ids),
            st.booleans(),
        ),
    )
    return bodies.map(lambda kb: [Draft(f"valid {kb[0]}", kb[1], "accepted")])


def replays() -> st.SearchStrategy[list[Draft]]:
    """The same request id twice: the same body is `replayed`, another body refused."""
    first = encode("create_strategy", {"quoted_currency": "USD", "metadata": {"n": 1}})
    same = [Draft("replay", first, "accepted"), Draft("replay", first, "replayed")]
    other = encode("create_strategy", {"quoted_currency": "EUR"})
    conflict = [
        Draft("reused request id", first, "accepted"),
        Draft("reused request id", other, "rejected", frozenset({"idempotency_conflict"})),
    ]
    return st.sampled_from([same, conflict])


# -- records the consumer cannot read: dead letters ----------------------------------------

VALID = encode("create_strategy", {"quoted_currency": "USD"})
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
)


def dead(kind: str, value: bytes, *reasons: str, **fields: Any) -> Draft:
    return Draft(kind, value, "dead", frozenset(reasons), **fields)


def unreadable_records() -> st.SearchStrategy[list[Draft]]:
    not_json = "invalid_json"
    not_a_command = "invalid_command"
    # Not UTF-8, or a NUL among the first bytes (the sign of UTF-16/32 JSON): domain.json_text.
    not_utf8 = "unsupported_encoding"
    truncated = st.builds(
        lambda whole, cut: dead("truncated JSON", whole[:cut], not_json),
        st.just(VALID),
        st.integers(min_value=0, max_value=len(VALID) - 1),
    )
    trailing = (
        st.binary(min_size=1, max_size=8)
        .filter(lambda b: b.strip() != b"")
        .map(lambda tail: dead("trailing garbage", VALID + b"x" + tail, not_json, not_utf8))
    )
    random_bytes = st.binary(max_size=64).map(
        lambda raw: dead("random bytes", raw, not_json, not_a_command, not_utf8)
    )
    random_text = st.text(max_size=64).map(
        lambda text: dead("random text", text.encode(), not_json, not_a_command, not_utf8)
    )
    not_an_object = JUNK.map(
        lambda value: dead("not an object", json.dumps(value).encode(), not_a_command)
    )
    unknown = (
        st.text(max_size=20)
        .filter(lambda name: name not in COMMAND_NAMES)
        .map(lambda name: dead("unknown command", encode(name, {}), not_a_command))
    )
    missing_command = st.just(
        dead(
            "missing command",
            json.dumps({"body": {"quoted_currency": "USD"}}).encode(),
            not_a_command,
        )
    )
    wrong_types = st.one_of(
        JUNK.filter(lambda v: not (isinstance(v, str) and v in COMMAND_NAMES)).map(
            lambda v: ("command", v)
        ),
        st.sampled_from([1, "not-a-uuid", "", [], {}, True, "1234"]).map(
            lambda v: ("strategy_id", v)
        ),
        st.sampled_from([1, "not-a-uuid", [], True]).map(lambda v: ("trader_id", v)),
        st.sampled_from([[], "body", 1, True, None]).map(lambda v: ("body", v)),
    ).map(
        lambda field_value: dead(
            f"wrong type for {field_value[0]}",
            json.dumps({"command": "enroll", "body": {}, field_value[0]: field_value[1]}).encode(),
            not_a_command,
        )
    )
    extra_field = (
        st.text(min_size=1, max_size=10)
        .filter(lambda name: name not in {"command", "strategy_id", "trader_id", "body"})
        .map(
            lambda name: dead(
                "extra field",
                json.dumps({"command": "create_strategy", "body": {}, name: 1}).encode(),
                not_a_command,
            )
        )
    )
    no_platform = st.sampled_from([(), ((PLATFORM_HEADER, "  "),), (("Platform-Id", PLATFORM),)])
    missing_platform = no_platform.map(
        lambda headers: dead("missing platform header", VALID, "missing_platform", headers=headers)
    )
    bad_key = st.one_of(
        st.sampled_from([None, "", "not-a-uuid", str(uuid1()), str(uuid3(UUID(int=0), "x"))]),
        st.text(max_size=40).filter(lambda text: not is_uuid4(text)),
    ).map(lambda key: dead("key not a UUID v4", VALID, "invalid_request_id", key=key))
    return st.one_of(
        truncated,
        trailing,
        random_bytes,
        random_text,
        not_an_object,
        unknown,
        missing_command,
        wrong_types,
        extra_field,
        missing_platform,
        bad_key,
    ).map(lambda draft: [draft])


# -- readable commands the domain refuses: rejected results --------------------------------

BAD_AMOUNTS = st.one_of(
    st.sampled_from(
        [
            "abc",
            "",
            " ",
            "NaN",
            "sNaN",
            "Infinity",
            "-1",
            "-0.01",
            "0",
            "-0.00",
            "1.001",
            "1e26",
            "100000000000000000000000000",
            "1E+999999",
            "9" * 400,
            "1e15",
            "0x10",
            "1,000.00",
            "1e-999999999",
            1.5,
            100,
            None,
            True,
            [],
            {},
        ]
    ),
    st.decimals(max_value=0, allow_nan=False).map(str),
    st.decimals(min_value=Decimal("1e15"), allow_nan=False, allow_infinity=False).map(str),
)
BAD_CODES = st.one_of(
    st.sampled_from(
        ["", " C001", "C001 ", "C\x00001", "\x00", "C\n1", "\u200b", "x" * 65, 5, None]
    ),
    st.text(st.characters(categories=["Cc"]), min_size=1, max_size=3),
)


def refused(kind: str, value: bytes, *codes: str) -> Draft:
    return Draft(kind, value, "rejected", frozenset(codes))


def metadata_draft(kind: str, metadata: dict[str, Any]) -> Draft:
    """NaN and Infinity are not JSON (domain.json_text): such a record cannot be read and is
    dead-lettered; a NUL is JSON the domain refuses."""
    value = encode("create_strategy", {"quoted_currency": "USD", "metadata": metadata})
    if b"NaN" in value or b"Infinity" in value:
        return dead(kind, value, "invalid_json")
    return refused(kind, value, "invalid_request")


def refused_commands(world: World) -> st.SearchStrategy[list[Draft]]:
    strategy = world.strategy_id
    funded_kind = st.sampled_from(["enroll", "top_up", "partial_sell"])
    good = funded(ENROLLED)

    def with_bad_entry(participants: list[dict[str, Any]], entry: Any, at: int) -> list[Any]:
        at %= len(participants) + 1
        return [*participants[:at], entry, *participants[at:]]

    bad_amount = st.builds(
        lambda kind, ps, amount, at: refused(
            f"bad amount ({kind})",
            encode(
                kind,
                {
                    "allocations": BLUE_CHIP,
                    "participants": with_bad_entry(
                        ps, {"participant_code": "C039", "amount": amount}, at
                    ),
                },
                strategy_id=strategy,
            ),
            "invalid_participants",
        ),
        funded_kind,
        good,
        BAD_AMOUNTS,
        st.integers(0, 5),
    )
    bad_entry = st.one_of(
        BAD_CODES.map(lambda code: {"participant_code": code, "amount": "10.00"}),
        st.sampled_from(["C001", 5, None, [], {"amount": "1.00"}]),
        st.just({"participant_code": "C001", "amount": "1.00", "auto_rebalance": "yes"}),
    )
    bad_participant = st.builds(
        lambda kind, ps, entry, at: refused(
            f"bad participant ({kind})",
            encode(
                kind,
                {"allocations": BLUE_CHIP, "participants": with_bad_entry(ps, entry, at)},
                strategy_id=strategy,
            ),
            "invalid_participants",
        ),
        funded_kind,
        good,
        bad_entry,
        st.integers(0, 5),
    )
    bad_list = st.builds(
        lambda kind, participants: refused(
            f"bad participant list ({kind})",
            encode(kind, {"allocations": BLUE_CHIP, **participants}, strategy_id=strategy),
            "invalid_participants",
        ),
        funded_kind,
        st.sampled_from(
            [
                {},
                {"participants": []},
                {"participants": "C001"},
                {"participants": {}},
                {"participants": None},
            ]
        ),
    )
    duplicated = good.map(
        lambda ps: refused(
            "duplicate participant",
            encode(
                "enroll",
                {"allocations": BLUE_CHIP, "participants": [*ps, ps[0]]},
                strategy_id=strategy,
            ),
            "invalid_participants",
        )
    )
    oversized = st.just(
        refused(
            "oversized participant list",
            encode(
                "enroll",
                {
                    "allocations": BLUE_CHIP,
                    "participants": [
                        {"participant_code": f"X{i}", "amount": "1.00"}
                        for i in range(MAX_PARTICIPANTS + 1)
                    ],
                },
                strategy_id=strategy,
            ),
            "invalid_participants",
        )
    )
    bad_allocations = st.builds(
        lambda kind, ps, allocations: refused(
            f"bad allocations ({kind})",
            encode(kind, {**allocations, "participants": ps}, strategy_id=strategy),
            "invalid_allocations",
        ),
        funded_kind,
        good,
        st.one_of(
            st.sampled_from(
                [
                    {},
                    {"allocations": []},
                    {"allocations": "BTC"},
                    {"allocations": [1]},
                    {"allocations": None},
                ]
            ),
            st.lists(
                st.fixed_dictionaries(
                    {
                        "underlying_currency": st.sampled_from(
                            ["BTC", "ETH", "XXX", "USD", "", "\x00"]
                        ),
                        "weight": BAD_AMOUNTS | st.sampled_from(["0.5", "0.25", "2", "1"]),
                    }
                ),
                min_size=1,
                max_size=4,
            )
            .filter(lambda items: not _valid_weights(items))
            .map(lambda items: {"allocations": items}),
        ),
    )
    unknown_strategy = st.builds(
        lambda kind, ps, other: refused(
            "unknown strategy",
            encode(kind, {"allocations": BLUE_CHIP, "participants": ps}, strategy_id=other),
            "strategy_not_found",
        ),
        funded_kind,
        good,
        st.uuids(),
    )
    no_strategy = st.builds(
        lambda kind, ps: refused(
            "missing strategy_id",
            encode(kind, {"allocations": BLUE_CHIP, "participants": ps}),
            "invalid_request",
        ),
        funded_kind,
        good,
    )
    bad_tolerance = st.builds(
        lambda tolerance: refused(
            "bad drift_tolerance",
            encode(
                "rebalance",
                {
                    "allocations": BLUE_CHIP,
                    "participants": ENROLLED[:2],
                    "drift_tolerance": tolerance,
                },
                strategy_id=strategy,
            ),
            "invalid_request",
            "invalid_amount",
        ),
        st.sampled_from(["abc", "-0.1", "1", "2", 0.5, "NaN", "1e20", [], True]),
    )
    both = st.just(
        refused(
            "participants and all",
            encode(
                "liquidate",
                {"participants": [{"participant_code": "C001"}], "all": True},
                strategy_id=strategy,
            ),
            "invalid_request",
        )
    )
    bad_currency = st.sampled_from(
        [
            {},
            {"quoted_currency": ""},
            {"quoted_currency": "XYZ"},
            {"quoted_currency": "usd"},
            {"quoted_currency": 5},
            {"quoted_currency": None},
            {"quoted_currency": "\x00"},
        ]
    ).map(
        lambda body: refused(
            "bad currency",
            encode("create_strategy", body),
            "invalid_request",
            "unsupported_currency",
        )
    )
    bad_metadata = st.sampled_from(
        [
            "x",
            [],
            5,
            {"k": "\x00"},
            {"\x00": 1},
            {"k": float("nan")},
            {"k": [float("inf")]},
            {"k": {"deep": [-float("inf")]}},
        ]
    ).map(lambda metadata: metadata_draft("bad metadata", metadata))
    bad_update = st.one_of(
        st.just(
            refused(
                "update_trader without trader_id",
                encode("update_trader", {"auto_rebalance": True}),
                "invalid_request",
            )
        ),
        st.uuids().map(
            lambda other: refused(
                "update_trader of an unknown trader",
                encode("update_trader", {"auto_rebalance": True}, trader_id=other),
                "trader_not_found",
            )
        ),
        st.sampled_from(
            [{}, {"auto_rebalance": "yes"}, {"auto_rebalance": 1}, {"auto_rebalance": None}]
        ).map(
            lambda body: refused(
                "update_trader with a bad flag",
                encode("update_trader", body, trader_id=world.trader_ids[0]),
                "invalid_request",
            )
        ),
    )
    return st.one_of(
        bad_amount,
        bad_participant,
        bad_list,
        duplicated,
        oversized,
        bad_allocations,
        unknown_strategy,
        no_strategy,
        bad_tolerance,
        both,
        bad_currency,
        bad_metadata,
        bad_update,
    ).map(lambda draft: [draft])


def _valid_weights(items: list[dict[str, Any]]) -> bool:
    """Allocations a generator must not mistake for bad ones: listed, distinct, summing to 1."""
    assets = [item["underlying_currency"] for item in items]
    try:
        weights = [Decimal(str(item["weight"])) for item in items]
        return (
            all(a in ("BTC", "ETH") for a in assets)
            and len(set(assets)) == len(assets)
            and all(isinstance(item["weight"], str) for item in items)
            and all(Decimal(0) < w <= 1 for w in weights)
            and sum(weights) == 1
        )
    except ArithmeticError:  # NaN cannot even be compared: not a valid weight
        return False


def explicit_drafts(world: World) -> list[Draft]:
    """Records that once stopped the consumer or a read model (or would have), published on
    every run whatever the generator draws: hypothesis' explicit examples."""
    strategy = world.strategy_id

    def enroll(amount: Any, code: Any = "C039") -> bytes:
        participants = [{"participant_code": code, "amount": amount}]
        return encode(
            "enroll", {"allocations": BLUE_CHIP, "participants": participants}, strategy_id=strategy
        )

    def new_strategy(metadata: Any) -> bytes:
        return encode("create_strategy", {"quoted_currency": "USD", "metadata": metadata})

    def nested(levels: int) -> bytes:
        inner = "[" * levels + "]" * levels
        return (
            '{"command": "create_strategy", "body": {"quoted_currency": "USD", '
            f'"metadata": {{"k": {inner}}}}}}}'
        ).encode()

    amounts = ["1e26", "1E+999999", "9" * 400, "1e15", "NaN", "-1", "0", "1.001"]
    codes = ["C\x00", "\x00", "\u200b", "\x07"]
    metadata = [{"k": "\x00"}, {"\x00": 1}, {"k": float("nan")}, {"k": [float("inf")]}]
    return [
        *(refused("explicit: hostile amount", enroll(a), "invalid_participants") for a in amounts),
        *(
            refused("explicit: hostile code", enroll("10.00", c), "invalid_participants")
            for c in codes
        ),
        *(metadata_draft("explicit: hostile metadata", m) for m in metadata),
        refused("explicit: metadata 150 levels deep", nested(150), "invalid_request"),
        Draft("explicit: metadata 30 levels deep", nested(30), "accepted"),
        dead("explicit: metadata 5000 levels deep", nested(5000), "invalid_json"),
        dead(
            "explicit: lone surrogate",
            new_strategy({"k": "\ud800"}),
            "invalid_json",
        ),
        dead(
            "explicit: 5000-digit number",
            b'{"command": "create_strategy", "body": {"metadata": {"n": ' + b"9" * 5000 + b"}}}",
            "invalid_json",
        ),
        dead(
            "explicit: not UTF-8",
            b'{"command": "create_strategy", "body": {"x": "\xff"}}',
            "unsupported_encoding",
        ),
        dead("explicit: empty record", b"", "invalid_json"),
    ]


# -- the harness ---------------------------------------------------------------------------


class FuzzClient(CommandClient):
    """Keeps every result of a request id, in order (a replay answers a second time)."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.outcomes: defaultdict[str, list[CommandResult]] = defaultdict(list)
        super().__init__(bootstrap, topics)

    async def _result(self, delivery: Delivery) -> None:
        result = CommandResult.model_validate_json(delivery.value)
        self.outcomes[result.request_id].append(result)
        self.results[result.request_id] = result


def generate(world: World, count: int) -> list[Draft]:
    """`count` draws of hypothesis, valid and hostile ones interleaved as they come."""
    draws: list[list[Draft]] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.one_of(valid_commands(world), replays(), unreadable_records(), refused_commands(world))
    )
    def draw(drafts: list[Draft]) -> None:
        draws.append(drafts)

    draw()
    # The explicit records go in among the generated ones, spread evenly.
    step = max(1, len(draws) // (len(explicit_drafts(world)) + 1))
    for n, draft in enumerate(explicit_drafts(world), start=1):
        draws.insert(min(len(draws), n * step + n - 1), [draft])
    drafts: list[Draft] = []
    for group in draws:
        request_id = str(uuid4())  # one fresh request id per draw: a replay pair shares it
        drafts.extend(
            replace(draft, key=request_id) if draft.key == FRESH else draft for draft in group
        )
    return drafts


@pytest.fixture
async def engine(fresh_database_url: str, kafka_bootstrap: str) -> AsyncIterator[Engine]:
    settings_ = pipeline_settings(fresh_database_url, kafka_bootstrap)
    with quiet_logs():
        async with Engine(settings_, fresh_database_url, ["all"]) as running:
            await running.call(running.trading.register_participants, PLATFORM, CODES)
            await running.call(running.trading.deposit_float, PLATFORM, "USD", FLOAT, "FUZZ")
            yield running


async def seed(client: FuzzClient, engine: Engine) -> World:
    created = await client.send("create_strategy", {"quoted_currency": "USD"})
    assert created.outcome == "accepted" and created.resource is not None, created
    strategy_id = UUID(created.resource["id"])
    participants = [{"participant_code": c, "amount": "300.00"} for c in ENROLLED]
    enrolled = await client.send(
        "enroll",
        {"allocations": BLUE_CHIP, "participants": participants},
        strategy_id=strategy_id,
    )
    assert enrolled.outcome == "accepted" and enrolled.resource is not None, enrolled
    await wait_terminal(engine.trading, UUID(enrolled.resource["id"]))
    return World(strategy_id, tuple(ids.trader_id(strategy_id, c) for c in ENROLLED))


async def wait_for(done: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


# -- the test ------------------------------------------------------------------------------


async def test_fuzzed_commands_are_dead_lettered_refused_or_processed_and_never_stop_the_consumer(
    engine: Engine,
) -> None:
    bootstrap = engine.settings.kafka.bootstrap_servers or ""
    async with FuzzClient(bootstrap, engine.topics) as client:
        world = await seed(client, engine)
        client.outcomes.clear()
        drafts = generate(world, CASES)
        started = time.monotonic()
        await client.bus.publish_many(
            [
                Record(
                    engine.topics.commands,
                    draft.value,
                    key=draft.key,
                    headers={**dict(draft.headers), CASE_HEADER: str(n)},
                )
                for n, draft in enumerate(drafts)
            ]
        )
        # A record is answered by a dead letter (found by its case number) or by a result (the
        # i-th one of its request id): whichever it gets, right or wrong, check() judges.
        nth: list[int] = []
        per_key: Counter[str | None] = Counter()
        for draft in drafts:
            nth.append(per_key[draft.key])
            per_key[draft.key] += 1

        def all_answered() -> bool:
            lettered = {letter["headers"].get(CASE_HEADER) for letter in client.dead_letters}
            return all(
                str(n) in lettered
                or (draft.key is not None and len(client.outcomes.get(draft.key, ())) > nth[n])
                for n, draft in enumerate(drafts)
            )

        answered = await wait_for(all_answered, OUTCOMES_TIMEOUT_S)
        answered_after = time.monotonic() - started

        problems = check(drafts, client)
        report(drafts, client, answered_after if answered else None)
        assert answered, (
            f"the consumer stopped: {len(problems)} records unanswered after "
            f"{OUTCOMES_TIMEOUT_S} s, e.g. {problems[:5]}"
        )
        assert not problems, "\n".join(problems[:30])

        # Every accepted Operation runs to a terminal status.
        operations = [
            UUID(result.resource["id"])
            for results in client.outcomes.values()
            for result in results
            if result.outcome == "accepted"
            and result.resource_type == "operation"
            and result.resource is not None
        ]
        for operation_id in operations:
            await wait_terminal(engine.trading, operation_id, timeout=120)

        # Never stuck: a valid command sent now is answered, and reaches the read models,
        # within a bound.
        probe_started = time.monotonic()
        live = await asyncio.wait_for(
            client.send("create_strategy", {"quoted_currency": "USD"}), LIVE_BOUND_S
        )
        answered_in = time.monotonic() - probe_started
        assert live.outcome == "accepted" and live.resource is not None, live
        live_id = UUID(live.resource["id"])

        async def projected() -> bool:
            return await queries.get_strategy(engine.pool, PLATFORM, live_id) is not None

        deadline = time.monotonic() + LIVE_BOUND_S
        while not await projected():
            assert time.monotonic() < deadline, "the read models stopped after the fuzzing"
            await asyncio.sleep(0.1)
        projected_in = time.monotonic() - probe_started

    print(
        f"fuzz commands: {len(operations)} accepted operations terminal; a valid command "
        f"afterwards answered in {answered_in:.2f} s and projected in {projected_in:.2f} s "
        f"(bound {LIVE_BOUND_S} s)"
    )


def report(drafts: list[Draft], client: FuzzClient, answered_after: float | None) -> None:
    """The figures the issue asks for: cases run, results, dead letters (with -s)."""
    kinds = Counter(draft.kind for draft in drafts)
    outcomes = Counter(result.outcome for results in client.outcomes.values() for result in results)
    reasons = Counter(letter["reason"] for letter in client.dead_letters)
    answered = (
        f"all answered in {answered_after:.1f} s"
        if answered_after is not None
        else "NOT all answered"
    )
    print(
        f"\nfuzz commands: {len(drafts)} records ({CASES} generated draws and the explicit "
        f"ones), {answered}; results {dict(outcomes)}; {len(client.dead_letters)} dead letters "
        f"{dict(reasons)}"
    )
    for kind, n in sorted(kinds.items()):
        print(f"  {kind:<45} {n:>4}")


def check(drafts: list[Draft], client: FuzzClient) -> list[str]:
    """What the contract says each record must have become, against what the topics hold."""
    problems: list[str] = []
    letters = {letter["headers"].get(CASE_HEADER): letter for letter in client.dead_letters}
    seen: Counter[str] = Counter()
    for n, draft in enumerate(drafts):
        letter = letters.get(str(n))
        if draft.expect == "dead":
            if letter is None:
                problems.append(f"#{n} {draft.kind}: no dead letter for {draft.value[:80]!r}")
            elif letter["reason"] not in draft.codes or not letter["detail"]:
                problems.append(
                    f"#{n} {draft.kind}: dead letter {letter['reason']!r} "
                    f"({letter['detail']!r}), expected one of {sorted(draft.codes)}"
                )
            elif not MACHINE_READABLE.fullmatch(letter["reason"]):
                problems.append(f"#{n} {draft.kind}: reason {letter['reason']!r}")
            continue
        if letter is not None:
            problems.append(
                f"#{n} {draft.kind}: dead-lettered ({letter['reason']}) though "
                f"readable: {draft.value[:120]!r}"
            )
            continue
        assert draft.key is not None
        index = seen[draft.key]
        seen[draft.key] += 1
        results = client.outcomes.get(draft.key, [])
        if len(results) <= index:
            problems.append(f"#{n} {draft.kind}: no result for {draft.value[:120]!r}")
            continue
        result = results[index]
        code = result.error.code if result.error else None
        if result.outcome != draft.expect:
            problems.append(
                f"#{n} {draft.kind}: {result.outcome} ({code}), expected "
                f"{draft.expect}: {draft.value[:160]!r}"
            )
        elif draft.expect == "rejected" and (
            code is None
            or not MACHINE_READABLE.fullmatch(code)
            or (draft.codes and code not in draft.codes)
        ):
            problems.append(
                f"#{n} {draft.kind}: refused with {code!r}, expected one of "
                f"{sorted(draft.codes)}: {draft.value[:160]!r}"
            )
    unexpected = set(letters) - {str(n) for n in range(len(drafts))}
    if unexpected:
        problems.append(f"dead letters for no fuzzed record: {sorted(map(str, unexpected))}")
    return problems
