"""Wiring of the request budgets and the bounded passphrase check into an app.

`create_app` installs them from the settings; an app assembled without it (a test's own
FastAPI app around the auth dependency) gets the defaults on first use, its own ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api.passphrase_check import PassphraseCheck
from api.rate_limits import RequestBudgets, document_rate_limits
from infra.settings_limits import DEFAULT_ABUSE_LIMITS

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.datastructures import State

    from infra.settings_limits import AbuseLimits


def install_abuse_limits(app: FastAPI, limits: AbuseLimits) -> None:
    """The app's budgets and passphrase check, and 429 in its OpenAPI document."""
    app.state.request_budgets = RequestBudgets(limits)
    app.state.passphrase_check = PassphraseCheck(limits)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return document_rate_limits(generate())

    app.openapi = openapi  # type: ignore[method-assign]


def request_budgets(state: State) -> RequestBudgets:
    budgets = getattr(state, "request_budgets", None)
    if budgets is None:
        budgets = state.request_budgets = RequestBudgets(DEFAULT_ABUSE_LIMITS)
    assert isinstance(budgets, RequestBudgets)
    return budgets


def passphrase_check(state: State) -> PassphraseCheck:
    check = getattr(state, "passphrase_check", None)
    if check is None:
        check = state.passphrase_check = PassphraseCheck(DEFAULT_ABUSE_LIMITS)
    assert isinstance(check, PassphraseCheck)
    return check
