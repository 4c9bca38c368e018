"""The test harness: fixtures that start real servers (nats-server, a Kubernetes control plane, vLLM).

See ``fixtures.py``. Every fixture runs the real binary on loopback with free ports and a temporary
directory, and stops it on teardown; ``tests/unit/test_harness_cleanup.py``-style checks assert no
process is left behind.
"""
