"""Where the consensus service reads each hotkey's stake: the ``StakeSource`` protocol and its genesis form.

``ConsensusService`` asks its ``StakeSource`` when a hotkey registers and before every epoch, and stores
the answer in the metagraph (so a restart resumes with the stake the last epoch used). With a chain
sidecar configured, ``__main__`` composes ``chainclient.ChainSidecar`` (stake from the ledger); without
one, ``GenesisStake``: the fixed allocation ``KT_CONSENSUS_GENESIS_STAKE`` (hotkey hex -> rao).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class StakeSource(Protocol):
    """Stake per hotkey, in rao.

    ``stakes`` returns an amount for every hotkey asked (0 for one without stake), each in
    ``[0, 2**63)``. A source that cannot answer now raises ``kubetensor.core.errors.UnavailableError``.
    """

    async def stakes(self, hotkeys: Sequence[str]) -> Mapping[str, int]: ...


class GenesisStake:
    """A fixed allocation: the stake each hotkey was given at genesis, 0 for every other hotkey."""

    def __init__(self, allocation: Mapping[str, int]) -> None:
        self._allocation = {hotkey.lower(): rao for hotkey, rao in allocation.items()}

    async def stakes(self, hotkeys: Sequence[str]) -> dict[str, int]:
        return {hotkey: self._allocation.get(hotkey.lower(), 0) for hotkey in hotkeys}
