from __future__ import annotations

import pytest

from domain.services import Trading
from domain.strategy import Strategy
from tests.unit.domain.flows import new_app, new_strategy


@pytest.fixture
def app() -> Trading:
    return new_app()


@pytest.fixture
def strategy(app: Trading) -> Strategy:
    return new_strategy(app)
