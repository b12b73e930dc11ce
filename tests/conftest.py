"""Shared test fixtures: the location of the recorded orchestrator outputs, and Hypothesis profiles.

The recorded outputs (``symphony-elixir/`` and ``code-factory/``) live in
``tests/fixtures``.  Set ``SYMPHONY_OTEL_FIXTURES`` to use another folder.

Hypothesis runs the ``suite`` profile (300 examples per test) unless
``HYPOTHESIS_PROFILE`` names another registered profile, such as ``thorough``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

FIXTURES_ENV = "SYMPHONY_OTEL_FIXTURES"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures"
FIXTURE_SUBDIRS = ("symphony-elixir", "code-factory")

settings.register_profile(
    "suite",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("suite"), max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


def locate_fixtures() -> Path:
    """Return the fixtures folder, from ``SYMPHONY_OTEL_FIXTURES`` or ``tests/fixtures``.

    Raises:
        FileNotFoundError: If the folder or one of its subfolders is missing.
    """
    override = os.environ.get(FIXTURES_ENV)
    folder = Path(override) if override else DEFAULT_FIXTURES_DIR
    missing = [name for name in FIXTURE_SUBDIRS if not (folder / name).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"test fixtures not found: {folder} lacks {', '.join(missing)}. Restore "
            f"tests/fixtures from the repository, or set {FIXTURES_ENV} "
            "to a folder that holds symphony-elixir/ and code-factory/."
        )
    return folder


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Folder holding the ``symphony-elixir/`` and ``code-factory/`` recordings."""
    try:
        return locate_fixtures()
    except FileNotFoundError as error:
        message = str(error)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def load_fixture(fixtures_dir: Path) -> Any:
    """Return a function that parses one fixture file, given its path inside the folder."""

    def load(relative_path: str) -> Any:
        with (fixtures_dir / relative_path).open(encoding="utf-8") as handle:
            return json.load(handle)

    return load
