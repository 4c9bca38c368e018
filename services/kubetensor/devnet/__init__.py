"""``kubetensor devnet``: the whole network on one machine, with real processes.

``plan`` (who runs: names, keys, stakes, models, timing), ``components`` (each process: nats-server,
vLLM, the consensus service, miners, validators, started and probed through ready files), ``network``
(starts them in order, registers the neurons, watches them, stops everything), ``monitor`` (per-epoch
records and the live table), ``summary`` (the ``--summary`` JSON and settlement verification),
``errors`` and ``commands`` (the typer sub-app ``devnet_app`` and ``run``).
"""
