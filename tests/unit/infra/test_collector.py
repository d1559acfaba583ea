"""The collector tuning every `strategies` process starts with."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from infra.collector import YOUNG_THRESHOLD, tune_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_young_objects_are_collected_less_often_and_the_start_up_heap_is_frozen() -> None:
    tune_collector()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restored_collector")
def test_cycles_are_still_collected() -> None:
    tune_collector()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2


def test_every_strategies_command_runs_with_the_tuned_collector() -> None:
    probe = (
        "import gc, sys\n"
        "from infra.cli.main import main\n"
        "sys.argv = ['strategies', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('threshold', gc.get_threshold()[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert f"threshold {YOUNG_THRESHOLD}" in done.stdout
