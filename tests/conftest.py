"""Test-suite plumbing shared by every environment.

Each test module names the Python environment it needs with
``pytestmark = pytest.mark.env("lipsync")`` (no marker means the core environment).
`make test` runs pytest once per environment with ``JAYAVATAR_TEST_ENV`` set; modules for
other environments are not even imported, since their packages are not installed here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# The real stack (own Redis, real workers) as fixtures `stack` and `client`.
pytest_plugins = ["tests.support.fixtures"]

ENV_MARK = re.compile(r"""pytest\.mark\.env\(\s*["'](\w+)["']\s*\)""")


def current_env() -> str:
    """Return the environment this pytest process runs in."""
    return os.environ.get("JAYAVATAR_TEST_ENV", "core")


def module_env(path: Path) -> str:
    """Return the environment a test module declares, reading its source without importing it."""
    match = ENV_MARK.search(path.read_text(encoding="utf-8"))
    return match.group(1) if match else "core"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skip importing test modules written for another environment."""
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return module_env(collection_path) != current_env()
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU tests where CUDA is absent."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    try:
        import torch

        has_cuda = bool(torch.cuda.is_available())
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
