"""Chaos tables are printed in pytest's summary, so they show even when the test passes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

TABLES = pytest.StashKey[list[str]]()


@pytest.fixture
def chaos_table(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Return a function that records a table for the end-of-run summary."""
    tables = request.config.stash.setdefault(TABLES, [])
    return tables.append


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Print every recorded chaos table."""
    for table in config.stash.get(TABLES, []):
        terminalreporter.section("chaos")
        terminalreporter.write_line(table)
