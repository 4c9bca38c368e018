"""Fixtures of the integration tests that only they use: ``anvil``, a real local EVM node (session-wide).

Each test that uses it deploys its own contract, so tests share the node without sharing state.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.evm_support import AnvilNode


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    node = AnvilNode(tmp_path_factory.mktemp("anvil")).start()
    try:
        yield node
    finally:
        node.stop()
