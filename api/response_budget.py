"""A byte budget per list or feed response (`STRATEGIES_MAX_RESPONSE_BYTES`, default 8 MiB).

Metadata of up to 4 MiB per Strategy once made `GET /strategies?size=200` 68 MB and
`GET /strategies/events?limit=1000` 82 MB, all of it built in memory. Items are bounded
one by one now (16 KiB of metadata); the budget bounds their sum, whatever the settings
allow per item. A page is cut at an item boundary, and always keeps its first item so that
paging makes progress.

A list page keeps its page semantics when cut: it answers with a smaller `size` that
divides the one asked, and counts `page` and `total_pages` in that size, so the page still
starts at the first item asked for and "`page + 1` with the `size` answered" continues
exactly after it. The events feed cuts the events and its `next` resumes after the last
one sent (`caught_up` is then false).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import Depends, Request

if TYPE_CHECKING:
    from collections.abc import Sequence

    from projections.queries import PageOf

#: Room for the envelope around the items and for a serialiser that writes a little more.
ENVELOPE_BYTES = 1024


def response_budget(request: Request) -> int:
    budget: int = request.app.state.settings.max_response_bytes
    return budget


ResponseBudgetDep = Annotated[int, Depends(response_budget)]


def fitting(items: Sequence[Any], max_bytes: int) -> int:
    """How many leading items fit in `max_bytes` as JSON (one at least, if there is one)."""
    used = ENVELOPE_BYTES
    for count, item in enumerate(items):
        used += len(orjson.dumps(item)) + 1
        if used > max_bytes:
            return max(count, 1)
    return len(items)


def fit_page(found: PageOf, size: int, max_bytes: int) -> dict[str, Any]:
    """The list envelope of `found` (asked with `size`), cut to the budget if need be."""
    items, page, _total_pages, total = found
    served = size
    fit = fitting(items, max_bytes)
    if fit < len(items):
        served = max(d for d in range(1, fit + 1) if size % d == 0)
        page = (page - 1) * size // served + 1
        items = items[:served]
    return {
        "message": items,
        "page": page,
        "size": served,
        "total_pages": max(1, math.ceil(total / served)),
    }
