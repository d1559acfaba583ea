"""The AsyncAPI document: valid AsyncAPI 3.0 (checked against the specification's own JSON
schema, vendored from the npm package @asyncapi/specs 6.11.1, Apache-2.0), every topic of
the installation, and payloads that are the code's own models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import jsonschema_rs
import pytest
from typer.testing import CliRunner

from infra.bus.asyncapi import asyncapi_document
from infra.bus.messages import CommandName
from infra.bus.topic_names import Topics
from infra.cli.main import app

SCHEMA = Path(__file__).parents[2] / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"


@pytest.fixture(scope="module")
def validator() -> Any:
    return jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))


def test_the_document_is_valid_asyncapi_3(validator: Any) -> None:
    document = asyncapi_document("strategies", "1.2.3")
    assert [str(e) for e in validator.iter_errors(document)] == []
    broken = {**document, "channels": {"events": {"address": 7}}}
    assert list(validator.iter_errors(broken))  # the schema does check


def test_every_topic_is_a_channel_under_the_installations_prefix() -> None:
    document = asyncapi_document("acme-prod", "1.2.3")
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == set(Topics("acme-prod").all)
    for name, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        assert operation["channel"]["$ref"].removeprefix("#/channels/") in document["channels"]


def test_payloads_are_the_codes_own_models() -> None:
    document = asyncapi_document("strategies", "1.2.3")
    command = document["components"]["schemas"]["Command"]
    assert set(command["properties"]["command"]["enum"]) == set(get_args(CommandName))
    assert {"set_policy", "cancel_operation", "preview"} <= set(get_args(CommandName))
    headers = document["channels"]["commands"]["messages"]["Command"]["headers"]
    assert headers["required"] == ["platform"]


def test_the_cli_prints_the_document_for_the_configured_prefix(monkeypatch: Any) -> None:
    monkeypatch.setenv("STRATEGIES_TOPIC_PREFIX", "acme")
    printed = CliRunner().invoke(app, ["asyncapi"])
    assert printed.exit_code == 0, printed.output
    document = json.loads(printed.output)
    assert document["channels"]["commands"]["address"] == "acme.commands"


def test_the_trace_headers_are_a_trait_of_every_message_but_the_dead_letters() -> None:
    document = asyncapi_document("strategies", "1.2.3")
    trait = document["components"]["messageTraits"]["traced"]["headers"]
    assert set(trait["properties"]) == {"correlation_id", "traceparent"}
    assert "required" not in trait  # optional: older records and senders have none
    for name, channel in document["channels"].items():
        (message,) = channel["messages"].values()
        traits = [t["$ref"] for t in message.get("traits", [])]
        expected = [] if name == "commandsDeadLetter" else ["#/components/messageTraits/traced"]
        assert traits == expected, name
