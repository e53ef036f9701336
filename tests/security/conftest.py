"""Fixtures of the adversarial suite: canaries checked after every test, the real dump, the agent zipapp."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dumps.agentproc import zipapp  # noqa: F401 - the agent zipapp, built once per module
from tests.dumps.conftest import dump_fixture  # noqa: F401 - the real vmcore, built once and cached
from tests.security.attack import Canaries


@pytest.fixture
def canaries() -> Iterator[Canaries]:
    marks = Canaries()
    yield marks
    leaked = marks.found()
    marks.remove()
    assert not leaked, f"an attack wrote files: {leaked}"
