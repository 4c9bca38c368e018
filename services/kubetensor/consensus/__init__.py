"""kubetensor's consensus service: Yuma Consensus as Bittensor's chain runs it, per subnet, over gRPC.

The epoch maths: ``fixed`` (the chain's fixed-point arithmetic on raw integers), ``yuma`` (the epoch,
``run_epoch``) and ``replay`` (the ``kubetensor yuma replay`` command). Around it, the service:
``metagraph`` (uids, registration, pruning and the weight rules), ``settlement`` and ``canonical``
(hash-linked epoch settlements), ``store`` (the SQLite state), ``stake``, ``clock`` and
``settlementlog`` (the stake source, block clock and settlement sink), ``service`` (the domain
service), ``servicer`` (its gRPC edge), ``client`` (signed calls to it), ``settings`` and ``__main__``
(``python -m kubetensor.consensus``).
"""
