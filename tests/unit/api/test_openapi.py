"""The OpenAPI document is what client generators read: every route documented, with its
errors as problem documents and unique operation ids."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from infra.bootstrap.http import create_app
from infra.settings import Settings
from projections.filters import (
    EXECUTION_FILTERS,
    OPERATION_FILTERS,
    STRATEGY_FILTERS,
    TRADER_FILTERS,
)

SIGNED_PATHS_METHODS = {
    ("/strategies", "post"),
    ("/strategies", "get"),
    ("/strategies/{strategy_id}", "get"),
    ("/strategies/{strategy_id}/enroll", "post"),
    ("/strategies/{strategy_id}/top-up", "post"),
    ("/strategies/{strategy_id}/partial-sell", "post"),
    ("/strategies/{strategy_id}/rebalance", "post"),
    ("/strategies/{strategy_id}/liquidate", "post"),
    ("/strategies/traders/{trader_id}", "patch"),
    ("/strategies/traders", "get"),
    ("/strategies/traders/{trader_id}", "get"),
    ("/strategies/operations", "get"),
    ("/strategies/operations/{operation_id}", "get"),
    ("/strategies/executions", "get"),
    ("/strategies/executions/{execution_id}", "get"),
    # Extensions (issue 18): a Strategy's model and rebalancing policy.
    ("/strategies/{strategy_id}/model", "put"),
    ("/strategies/{strategy_id}/policy", "put"),
    # Issue 19: cancelling an Operation before its prices are locked.
    ("/strategies/operations/{operation_id}/cancel", "post"),
}


def document(tmp_path: Path) -> dict[str, Any]:
    settings = Settings(data_dir=tmp_path, master_key=base64.b64encode(bytes(32)).decode())
    return create_app(settings, "postgresql://unused@127.0.0.1:1/x", run_engine=False).openapi()


def test_every_endpoint_of_the_spec_is_documented_with_its_errors(tmp_path: Path) -> None:
    spec = document(tmp_path)
    present = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert present >= SIGNED_PATHS_METHODS | {("/time", "get"), ("/health", "get")}
    for path, method in SIGNED_PATHS_METHODS:
        responses = spec["paths"][path][method]["responses"]
        assert "401" in responses, (path, method)
        assert "400" in responses, (path, method)
        problem = responses["401"]["content"]
        assert set(problem) == {"application/problem+json"}, (path, method)  # what is sent
        schema = next(iter(problem.values()))["schema"]
        assert schema["$ref"].endswith("/Problem"), (path, method)
    for path, method in [p for p in SIGNED_PATHS_METHODS if p[1] in ("post", "put")]:
        responses = spec["paths"][path][method]["responses"]
        assert {"200", "409"} <= set(responses), (path, method)


def test_operation_ids_are_unique_and_bodies_have_examples(tmp_path: Path) -> None:
    spec = document(tmp_path)
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    schemas = spec["components"]["schemas"]
    assert schemas["Allocation"]["properties"]["weight"]["examples"] == ["0.50"]
    assert "examples" in schemas["FundedParticipant"]["properties"]["amount"]


def test_every_response_a_route_can_send_is_documented_as_a_problem(tmp_path: Path) -> None:
    spec = document(tmp_path)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if path != "/time":
                assert "503" in responses, (path, method)  # database unreachable
            if "requestBody" in operation:
                assert "413" in responses, (path, method)
            for status, response in responses.items():
                # /health and /health/ready answer their report, not a problem.
                if status.startswith(("4", "5")) and path not in ("/health", "/health/ready"):
                    assert set(response["content"]) == {"application/problem+json"}, (
                        path,
                        method,
                        status,
                    )


LISTS = {
    "/strategies": STRATEGY_FILTERS,
    "/strategies/traders": TRADER_FILTERS,
    "/strategies/operations": OPERATION_FILTERS,
    "/strategies/executions": EXECUTION_FILTERS,
}


def test_every_list_documents_exactly_its_declared_filters(tmp_path: Path) -> None:
    """The route reads its filters from the declarations the query builder applies, so the
    document names each one, typed as declared, and nothing else besides the page."""
    spec = document(tmp_path)
    for path, declared in LISTS.items():
        parameters = {
            p["name"]: p for p in spec["paths"][path]["get"]["parameters"] if p["in"] == "query"
        }
        assert set(parameters) == {f.query or f.name for f in declared} | {"page", "size"}, path
        for each in declared:
            documented = parameters[each.query or each.name]
            assert documented["description"] == each.description, (path, each.name)
            (schema, _none) = documented["schema"]["anyOf"]
            if each.choices:  # a single choice is documented as a `const`
                shown = schema.get("enum", [schema.get("const")])
                assert shown == list(each.choices), (path, each.name)
            if each.max_length is not None:
                assert schema["maxLength"] == each.max_length, (path, each.name)


def test_the_readme_names_every_declared_filter_of_each_list() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    for path, declared in LISTS.items():
        if not declared:
            continue
        row = next(line for line in readme.splitlines() if line.startswith(f"| `GET {path}["))
        named = re.findall(r"`([a-z_]+(?:\[[a-z]+\])?)`", row.split("| filters", 1)[1])
        assert named == [f.query or f.name for f in declared], path


def test_the_model_and_policy_fields_are_described(tmp_path: Path) -> None:
    schemas = document(tmp_path)["components"]["schemas"]
    strategy = schemas["Strategy"]["properties"]
    for name in ("model", "status", "broken_assets", "policy"):
        assert strategy[name].get("description"), name
    operation = schemas["Operation"]["properties"]
    for name in ("origin", "model_version", "policy_run"):
        assert operation[name].get("description"), name
    policy = schemas["PolicyUpdate"]["properties"]
    assert set(policy) == {"drift_band", "calendar", "cooldown_days", "cash_buffer"}
    assert schemas["Calendar"]["properties"]["frequency"]["enum"] == [
        "daily",
        "weekly",
        "monthly",
        "quarterly",
    ]
    assert schemas["StrategyPolicy"]["properties"]["last_run"]
    assert "trade_strategy.strategy.status_changed" in str(schemas)  # a payload type
