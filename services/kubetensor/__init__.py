"""kubetensor: a Bittensor-style network of machine intelligence that runs natively on Kubernetes.

Packages: ``core`` (shared plumbing), one package per deployable service (``consensus``, ...),
``sandbox`` (real local control plane, NATS and vLLM processes for users and tests), ``models``
(the small causal LMs the project builds itself) and ``cli`` (the ``kubetensor`` command).
"""

__version__ = "0.1.0"
