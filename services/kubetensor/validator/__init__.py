"""kubetensor's validator: samples miners, sends them signed tasks over NATS, scores, sets weights.

``tasks`` (the task plug-in interface and registry) with ``addition`` (the shipped task type),
``scoring`` (task scores and per-uid moving averages, turned into u16 weights), ``state`` (the moving
averages persisted across restarts), ``taskclient`` (the NATS edge: signed tasks out, verified answers
and round reports back), ``consensus`` (the consensus service adapter: metagraph and weights),
``service`` (``ValidatorService``: rounds and the weight cadence), ``servicer`` (gRPC health),
``settings`` and ``__main__`` (``python -m kubetensor.validator``).
"""
