"""Registers the test harness (real servers as pytest fixtures) for every test under tests/.

A SIGTERM (a CI timeout, ``kill``) is turned into KeyboardInterrupt, as Ctrl-C is, so that pytest
tears the session's fixtures down and stops the real servers they started instead of leaving them
running.
"""

import signal

import pytest

pytest_plugins = ("tests.harness.fixtures",)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
