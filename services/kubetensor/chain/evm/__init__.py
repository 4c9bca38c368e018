"""The chain sidecar's ``evm`` backend: anchors each settlement in a Solidity contract on an EVM chain.

With ``KT_CHAIN_BACKEND=evm`` the sidecar keeps its ledger (the source of truth for balances and stake)
and an ``anchorer.EvmAnchorer`` follows its blocks, anchoring every settlement's hash and the Merkle root
of its per-hotkey credits (``merkle``) in ``Settlements.sol`` over JSON-RPC (``contract``, web3.py),
with its progress in ``store``. ``compiler`` rebuilds the committed ``Settlements.json``. The README.md
next to this file documents the whole backend.
"""
