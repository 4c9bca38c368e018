"""kubetensor's miner: answers validators' tasks over NATS with an OpenAI-compatible engine (vLLM).

``jobs`` (the domain values), ``errors``, ``completions`` (the streaming client of the engine's
``/v1/completions``), ``permits`` (which validators hold a permit, cached from the consensus
metagraph), ``replay`` (the task-nonce guard), ``service`` (``MinerService``: checks, bounded
concurrency, generation, signing), ``subscriber`` (the NATS edge), ``servicer`` (the gRPC edge:
``Generate`` and health), ``settings`` and ``__main__`` (``python -m kubetensor.miner``).
"""
