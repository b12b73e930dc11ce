"""Fixtures for end-to-end tests against a real OTLP receiver (rotel-agent)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest's default "prepend" import mode puts tests/ on sys.path (the first
# folder without __init__.py), not the repository root, so the tests.support
# package is only importable once the root is there. The root is derived from
# this file, so it does not depend on the working directory or on rootdir.
_REPOSITORY_ROOT = str(Path(__file__).resolve().parents[2])
if _REPOSITORY_ROOT not in sys.path:
    sys.path.insert(0, _REPOSITORY_ROOT)

from tests.support.otlp_receiver import OtlpReceiver  # noqa: E402


@pytest.fixture
def otlp_receiver(tmp_path: Path) -> Iterator[OtlpReceiver]:
    """Yield a started OTLP receiver and stop its process after the test, whatever the outcome."""
    with OtlpReceiver(tmp_path / "otlp-receiver") as receiver:
        yield receiver
