"""Registers the test harness (real servers as pytest fixtures) for every test under tests/."""

pytest_plugins = ("tests.harness.fixtures",)
