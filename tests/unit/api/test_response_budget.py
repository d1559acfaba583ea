from __future__ import annotations

import math

import pytest

from api.response_budget import ENVELOPE_BYTES, fit_page
from projections.queries import PageOf

BUDGET = ENVELOPE_BYTES + 10_000


def items(weights: list[int]) -> list[dict[str, object]]:
    return [{"n": n, "pad": "x" * weight} for n, weight in enumerate(weights)]


def listing(everything: list[dict[str, object]], page: int, size: int) -> PageOf:
    """What the query layer answers for `page` of `size`."""
    total = len(everything)
    chunk = everything[(page - 1) * size : page * size]
    return PageOf(chunk, page, max(1, math.ceil(total / size)), total)


@pytest.mark.parametrize("size", [1, 7, 10, 12, 50, 199, 200])
@pytest.mark.parametrize(
    "weights",
    [[10] * 300, [3000] * 40, [100, 9000, 50, 4000, 4000, 4000, 20] * 20, [20_000] * 5],
)
def test_following_cut_pages_yields_every_item_once_in_order(size: int, weights: list[int]) -> None:
    everything = items(weights)
    seen: list[object] = []
    page, asked = 1, size
    while True:
        envelope = fit_page(listing(everything, page, asked), asked, BUDGET)
        assert asked % envelope["size"] == 0
        # It starts at the first item asked for, counted in the size served.
        assert (envelope["page"] - 1) * envelope["size"] == (page - 1) * asked
        if len(envelope["message"]) > 1:
            assert sum(len(str(i)) for i in envelope["message"]) <= BUDGET
        seen += [item["n"] for item in envelope["message"]]
        if envelope["page"] >= envelope["total_pages"]:
            break
        page, asked = envelope["page"] + 1, envelope["size"]
    assert seen == list(range(len(everything)))


def test_a_later_page_asked_in_the_original_size_starts_where_it_was_asked() -> None:
    everything = items([3000] * 40)
    envelope = fit_page(listing(everything, 3, 10), 10, BUDGET)
    assert (envelope["page"], envelope["size"], envelope["total_pages"]) == (11, 2, 20)
    assert [item["n"] for item in envelope["message"]] == [20, 21]


def test_an_item_over_the_budget_alone_is_still_served() -> None:
    envelope = fit_page(listing(items([50_000, 10]), 1, 2), 2, BUDGET)
    assert (len(envelope["message"]), envelope["size"], envelope["total_pages"]) == (1, 1, 2)
