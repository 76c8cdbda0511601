"""Pytest fixtures for the real stack; import them into a test module's namespace to use them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A redis-server and one voice and one lip-sync worker, shared by a test module."""
    with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[object]:
    """A JobClient connected to the stack."""
    from jobs.client import JobClient

    job_client = await JobClient.connect(stack.settings())  # type: ignore[arg-type]
    try:
        yield job_client
    finally:
        await job_client.close()
