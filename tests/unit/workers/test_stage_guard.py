"""The stage handlers' guard maps the one failure policy: refusals and unreadable tasks are
logged and acknowledged, anything else goes back to the bus for a retry."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain.errors import IllegalTransitionError
from infra.bootstrap.engine import guarded
from infra.bus import Delivery, Handler
from infra.bus.messages import PricingRequested

DELIVERY = Delivery("t.pricing", b"{}", "k", {}, partition=0, offset=7, redelivered=40)


async def refused(_: Delivery) -> None:
    raise IllegalTransitionError("the operation has moved past pricing")


async def unreadable(delivery: Delivery) -> None:
    PricingRequested.model_validate_json(delivery.value)


async def outage(_: Delivery) -> None:
    raise ConnectionResetError("database away")


async def bug(_: Delivery) -> None:
    raise ZeroDivisionError


async def test_refused_and_unreadable_tasks_are_acknowledged() -> None:
    await guarded(refused)(DELIVERY)
    await guarded(unreadable)(DELIVERY)
    with pytest.raises(ValidationError):
        await unreadable(DELIVERY)


@pytest.mark.parametrize("handler", [outage, bug])
async def test_outages_and_faults_are_retried_however_often_they_failed(handler: Handler) -> None:
    with pytest.raises((ConnectionResetError, ZeroDivisionError)):
        await guarded(handler)(DELIVERY)
