"""The coverage floors fail a whole-suite run that falls short, and only such a run."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PACKAGE = """
def used(x):
    return x + 1 if x > 0 else x - 1


def unused(x):
    return x * 2
"""
TEST = """
from pkg.mod import used


def test_used():
    assert used(1) == 2
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # The inner run measures itself; it must not also report to this run's coverage.
    monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)
    monkeypatch.delenv("COVERAGE_PROCESS_START", raising=False)
    pytester.makepyfile(**{"pkg/__init__": "", "pkg/mod": PACKAGE})
    pytester.makepyfile(**{"checks/test_mod": TEST})
    return pytester


def configure(pytester: pytest.Pytester, floor: int) -> None:
    pytester.makeini(
        f"""
        [pytest]
        testpaths = checks
        pythonpath = .
        addopts = -p tests.fixtures.coverage_gate --cov=pkg --cov-branch
        coverage_floors =
            pkg {floor}
        """
    )


def test_a_whole_run_below_a_floor_fails(project: pytest.Pytester) -> None:
    configure(project, 90)
    result = project.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 passed*"])
    result.stdout.fnmatch_lines(["pkg *% *(floor 90.0%)*FAIL"])


def test_a_whole_run_at_its_floors_passes(project: pytest.Pytester) -> None:
    configure(project, 30)
    result = project.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["pkg *% *(floor 30.0%)*ok"])


def test_a_subset_reports_its_figures_without_failing(project: pytest.Pytester) -> None:
    configure(project, 90)
    result = project.runpytest_subprocess("checks/test_mod.py")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*coverage floors (a subset: not binding)*", "pkg *below"])
