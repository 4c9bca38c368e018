"""Real servers on one machine: a Kubernetes control plane with fake GPU nodes, NATS and vLLM.

Used by ``kubetensor sandbox`` (a user's local cluster), by the test harness (``tests/harness``) and,
later, by the devnet. Every server is a real binary started as a child process on loopback with
free ports and its own temporary directory; nothing here is a mock.
"""
