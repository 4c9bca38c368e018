"""Verification of a ledger: ``verify_ledger(path)`` for a file, ``verify_remote(address)`` for a sidecar.

Called by ``kubetensor chain verify`` (``commands``), the tests and anyone auditing a ledger. Both walk
every block from genesis with one ``BlockChecker`` and stop at the first bad block. For each block it
checks: the body decodes and is canonical; the height is the next one; the parent hash is the previous
block's hash; the authority is the genesis block's (and the expected one, if given) and its signature
verifies; timestamps do not go back. It then replays the block with the ledger's own rules
(``state``): every transaction's signed payload decodes to the fields the block says, its signatures
verify and its nonce is the account's next; every settlement's hash is its content's, its submitter
signature (if any) verifies, it follows the subnet's previous settlement, its credits are exactly what
``economics`` computes from the replayed state, and they add up to its emission. After the last
block, free balances plus stakes must equal issuance; for a file, the derived state tables and the
indexes must equal the replay (so a tampered balance row is caught too); for a sidecar, its reported
head and issuance must.

What verification cannot show (docs/chain.md): a ledger cut back to an earlier block by someone with
write access to the file is still a valid ledger (compare the head hash with one you recorded), and
whoever holds the authority key can write a whole new valid history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kubetensor.chain import wire
from kubetensor.chain.block import Block, SealedBlock
from kubetensor.chain.client import ChainClient
from kubetensor.chain.errors import ChainError
from kubetensor.chain.ledger import Ledger
from kubetensor.chain.state import ChainState, apply_genesis, apply_settlement, apply_transaction, snapshot
from kubetensor.chain.transactions import SUBMIT_SETTLEMENT, public_key_hex
from kubetensor.core import keys


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of a verification: ``ok``, or the first bad block (``bad_block``) and what is wrong."""

    ok: bool
    blocks: int
    """Blocks that passed every check."""
    transactions: int
    settlements: int
    issuance_rao: int
    head_hash: str
    """Hash of the last block that passed."""
    authority: str
    bad_block: int | None = None
    """Height of the first bad block (None when ``ok``, or when the fault is not in a block)."""
    problem: str | None = None

    @property
    def summary(self) -> str:
        """One line saying what was verified, or what is wrong."""
        if self.ok:
            return (
                f"ok: {self.blocks} blocks (head {max(self.blocks - 1, 0)} {self.head_hash[:16]}), "
                f"{self.transactions} transactions, {self.settlements} settlements, issuance "
                f"{self.issuance_rao} rao, authority {self.authority[:16]}"
            )
        where = f"block {self.bad_block}" if self.bad_block is not None else "ledger"
        return f"FAILED at {where}: {self.problem} ({self.blocks} blocks verified before it)"


class BadBlockError(Exception):
    """A verification failure: ``height`` (None: not a block's fault) and what is wrong."""

    def __init__(self, height: int | None, problem: str) -> None:
        self.height = height
        self.problem = problem
        super().__init__(f"block {height}: {problem}" if height is not None else problem)


@dataclass
class BlockChecker:
    """Checks blocks fed in height order from genesis, replaying them into ``state``."""

    expected_authority: str | None = None
    state: ChainState | None = None
    authority: str = ""
    blocks: int = 0
    transactions: int = 0
    settlements: int = 0
    head_hash: str = ""
    locations: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Transaction hash -> (block, position), as replayed."""
    _timestamp_ms: int = 0

    def feed(self, sealed: SealedBlock, *, stored_hash: str | None = None) -> None:
        """Check the next block (raises BadBlockError naming it if anything is wrong)."""
        height = self.blocks
        try:
            block = Block.decode(sealed.body)
        except (ValueError, KeyError, TypeError, ChainError) as exc:
            raise BadBlockError(height, f"the body does not decode as a canonical block ({exc})") from None
        if stored_hash is not None and stored_hash != sealed.hash:
            raise BadBlockError(height, f"stored hash {stored_hash[:16]}... is not the sha256 of its body")
        if block.height != height:
            raise BadBlockError(height, f"the body says height {block.height}")
        if height == 0:
            self._check_genesis(block, sealed)
        else:
            if block.genesis is not None:
                raise BadBlockError(height, "only block 0 may carry a genesis")
            if block.parent_hash != self.head_hash:
                raise BadBlockError(
                    height, f"parent hash {block.parent_hash[:16]}... is not block {height - 1}'s hash"
                )
            if block.authority != self.authority:
                raise BadBlockError(
                    height, f"authority {block.authority[:16]}... is not the genesis authority"
                )
        if not sealed.signature_valid(self.authority):
            raise BadBlockError(
                height, f"the signature is not authority {self.authority[:16]}...'s over the body"
            )
        if block.timestamp_ms < self._timestamp_ms:
            raise BadBlockError(height, "the timestamp is earlier than the parent's")
        self._replay(block)
        self.blocks += 1
        self.head_hash = sealed.hash
        self._timestamp_ms = block.timestamp_ms

    def _check_genesis(self, block: Block, sealed: SealedBlock) -> None:
        if block.genesis is None or block.parent_hash != "":
            raise BadBlockError(0, "block 0 must be a genesis block with an empty parent hash")
        if block.transactions or block.settlements:
            raise BadBlockError(0, "the genesis block holds transactions or settlements")
        try:
            self.authority = public_key_hex("authority", block.authority)
        except ChainError as exc:
            raise BadBlockError(0, str(exc)) from None
        if self.expected_authority is not None and self.authority != self.expected_authority:
            raise BadBlockError(
                0, f"authority {self.authority[:16]}... is not the expected {self.expected_authority[:16]}..."
            )
        state = ChainState(params=block.genesis.params)
        try:
            balances: dict[str, int] = {}
            for account, rao in block.genesis.balances:
                balances[public_key_hex("genesis.balances", account)] = rao
            apply_genesis(state, balances)
        except ChainError as exc:
            raise BadBlockError(0, f"genesis: {exc}") from None
        self.state = state

    def _replay(self, block: Block) -> None:
        state = self.state
        if state is None:
            raise BadBlockError(block.height, "no genesis block before it")
        for position, signed in enumerate(block.transactions):
            what = f"transaction {position} ({signed.domain} by {signed.tx.coldkey[:16]}...)"
            try:
                from_payload = wire.transaction_from_payload(signed.domain, signed.payload)
            except (ValueError, ChainError) as exc:
                raise BadBlockError(block.height, f"{what}: {exc}") from None
            if from_payload != signed.tx:
                raise BadBlockError(block.height, f"{what}: the signed payload says {from_payload}")
            try:
                apply_transaction(state, signed)
            except ChainError as exc:
                raise BadBlockError(block.height, f"{what}: {exc}") from None
            self.locations[signed.hash] = (block.height, position)
            self.transactions += 1
        for position, item in enumerate(block.settlements):
            settlement = item.settlement
            what = f"settlement {position} (netuid {settlement.netuid} epoch {settlement.epoch})"
            if item.submitter is not None:
                submitter = item.submitter
                if not keys.verify(
                    submitter.public_key, SUBMIT_SETTLEMENT, submitter.payload, submitter.signature
                ):
                    raise BadBlockError(block.height, f"{what}: the submitter signature does not verify")
                try:
                    submitted = wire.submitted_settlement(submitter.payload)
                except (ValueError, ChainError) as exc:
                    raise BadBlockError(block.height, f"{what}: {exc}") from None
                if submitted != settlement:
                    raise BadBlockError(block.height, f"{what}: the signed request holds another settlement")
            try:
                outcome = apply_settlement(state, settlement, block=block.height, position=position)
            except ChainError as exc:
                raise BadBlockError(block.height, f"{what}: {exc}") from None
            if outcome.credits is None:
                raise BadBlockError(block.height, f"{what}: recorded a second time")
            credited = sum(credit.amount_rao for credit in item.credits)
            if credited != settlement.emission_rao:
                raise BadBlockError(
                    block.height,
                    f"{what}: credits add up to {credited} rao, the emission is {settlement.emission_rao}",
                )
            if outcome.credits != item.credits:
                raise BadBlockError(block.height, f"{what}: the credits are not what the economics give")
            self.settlements += 1

    def finish(self) -> ChainState:
        """Check the end state (conservation); returns it."""
        if self.state is None:
            raise BadBlockError(None, "the ledger has no genesis block")
        problem = self.state.conservation_error()
        if problem is not None:
            raise BadBlockError(None, f"balances do not conserve: {problem}")
        return self.state

    def report(self, error: BadBlockError | None = None) -> VerifyReport:
        return VerifyReport(
            ok=error is None,
            blocks=self.blocks,
            transactions=self.transactions,
            settlements=self.settlements,
            issuance_rao=0 if self.state is None else self.state.issuance,
            head_hash=self.head_hash,
            authority=self.authority,
            bad_block=None if error is None else error.height,
            problem=None if error is None else error.problem,
        )


def _first_difference(replayed: dict[str, object], stored: dict[str, object]) -> str:
    for table in replayed:
        mine, theirs = replayed[table], stored[table]
        if mine == theirs:
            continue
        if isinstance(mine, dict) and isinstance(theirs, dict):
            for key in sorted(set(mine) | set(theirs), key=repr):
                if mine.get(key) != theirs.get(key):
                    return (
                        f"{table}[{key!r}]: blocks give {mine.get(key)!r}, "
                        f"the table holds {theirs.get(key)!r}"
                    )
        return f"{table}: blocks give {mine!r}, the table holds {theirs!r}"
    return "no difference"


def verify_blocks(blocks: Iterable[SealedBlock], *, expected_authority: str | None = None) -> VerifyReport:
    """Verify a sequence of sealed blocks from genesis on (no state tables to compare)."""
    checker = BlockChecker(expected_authority=expected_authority)
    try:
        for sealed in blocks:
            checker.feed(sealed)
        checker.finish()
    except BadBlockError as error:
        return checker.report(error)
    return checker.report()


def verify_ledger(path: Path, *, expected_authority: str | None = None) -> VerifyReport:
    """Verify the ledger file at ``path`` (read-only): every block, then the state tables and indexes.

    Safe on the file of a running sidecar: everything is read in one read transaction, so the blocks
    and the tables come from the same commit.
    """
    checker = BlockChecker(expected_authority=expected_authority)
    try:
        try:
            ledger = Ledger.open_read_only(path)
        except ChainError as exc:
            raise BadBlockError(None, str(exc)) from None
        try:
            with ledger.snapshot():
                _check_file(ledger, checker)
        finally:
            ledger.close()
    except BadBlockError as error:
        return checker.report(error)
    except sqlite3.DatabaseError as exc:
        return checker.report(BadBlockError(None, f"the file is not a readable SQLite ledger ({exc})"))
    return checker.report()


def _check_file(ledger: Ledger, checker: BlockChecker) -> None:
    for height, stored_hash, sealed in ledger.stored_blocks():
        if height != checker.blocks:
            raise BadBlockError(checker.blocks, f"missing (the next stored block is {height})")
        checker.feed(sealed, stored_hash=stored_hash)
    state = checker.finish()
    replayed, stored = snapshot(state), snapshot(ledger.load_state(state.params))
    if replayed != stored:
        raise BadBlockError(
            None, f"the state tables disagree with the blocks: {_first_difference(replayed, stored)}"
        )
    if ledger.transaction_index() != checker.locations:
        raise BadBlockError(None, "the transaction index disagrees with the blocks")


async def verify_remote(
    address: str, *, expected_authority: str | None = None, rpc_timeout: float = 30.0
) -> VerifyReport:
    """Verify a running sidecar's ledger through GetChainInfo and StreamBlocks, up to its current head."""
    checker = BlockChecker(expected_authority=expected_authority)
    try:
        async with ChainClient.connect(address, timeout=rpc_timeout) as client:
            info = await client.info()
            async for sealed in client.stream_blocks(0):
                checker.feed(sealed)
                if checker.blocks > info.height:
                    break
            state = checker.finish()
            if checker.head_hash != info.head_hash:
                raise BadBlockError(
                    None, f"the sidecar reports head {info.head_hash[:16]}..., the blocks end elsewhere"
                )
            if state.issuance != info.issuance_rao:
                raise BadBlockError(
                    None,
                    f"the sidecar reports issuance {info.issuance_rao}, the blocks give {state.issuance}",
                )
    except BadBlockError as error:
        return checker.report(error)
    return checker.report()
