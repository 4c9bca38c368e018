"""Yuma Consensus as Bittensor's chain runs it, for kubetensor's chain service and tools.

``fixed`` holds the chain's fixed-point arithmetic (substrate-fixed I32F32/I64F64 on raw integers),
``yuma`` the epoch (``run_epoch``), and ``replay`` the replay of a ``yuma-vectors/v1`` file that the
``kubetensor yuma replay`` command and the tests call.
"""
