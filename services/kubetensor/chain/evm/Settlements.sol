// SPDX-License-Identifier: Apache-2.0
//
// Settlements: anchors kubetensor chain-sidecar settlements on an EVM chain.
//
// The chain sidecar's ledger stays the source of truth for balances and stake; this contract keeps,
// per (netuid, epoch), a commitment to what the ledger recorded: the settlement's sha256 hash and
// the Merkle root of its per-hotkey credits. Anyone can then check one hotkey's credit against the
// root on-chain (verifyCredit / verify) without trusting the sidecar's storage.
//
// Compiled reproducibly by kubetensor.chain.evm.compiler (solc-js at exactly the version pinned below,
// settings in that module); the committed Settlements.json holds the result and a test recompiles it.
//
// Merkle tree (kubetensor.chain.evm.merkle builds the same one):
//   leaf = keccak256(abi.encode(LEAF_DOMAIN, uint16 netuid, uint64 epoch, uint16 uid, bytes32 hotkey,
//                               uint64 amountRao))          -- 192 bytes hashed, never 64
//   node = keccak256(abi.encodePacked(min(a, b), max(a, b))) -- sorted pairs, no position bits
//   Leaves are taken in uid order; each level pairs neighbours left to right and carries an odd last
//   node up unchanged. The root of one leaf is the leaf; a settlement with no entries has root 0 and
//   nothing verifies against it.
pragma solidity 0.8.37;

contract Settlements {
    /// keccak256("kubetensor.credit/v1"): the first word of every leaf's preimage.
    bytes32 public constant LEAF_DOMAIN = keccak256("kubetensor.credit/v1");

    struct Anchor {
        /// sha256 of the settlement's canonical encoding (0: nothing anchored).
        bytes32 settlementHash;
        /// Merkle root of the per-hotkey credits (see above).
        bytes32 creditsRoot;
        /// How many leaves the tree has (the settlement's entries).
        uint32 leafCount;
        /// The block of this chain that recorded the anchor.
        uint64 anchoredAt;
        /// The account that anchored it.
        address anchorer;
    }

    /// The account that manages anchorers (and may anchor itself).
    address public owner;
    /// Accounts the owner allowed to anchor.
    mapping(address => bool) public isAnchorer;
    mapping(uint256 => Anchor) private _anchors;

    event Anchored(
        uint16 indexed netuid,
        uint64 indexed epoch,
        bytes32 settlementHash,
        bytes32 creditsRoot,
        uint32 leafCount,
        address indexed anchorer
    );
    event AnchorerSet(address indexed account, bool allowed);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    /// The caller is neither the owner nor an anchorer (or, for owner-only calls, not the owner).
    error NotAuthorized(address caller);
    /// A different anchor is already recorded for (netuid, epoch); the recorded one is given.
    error AnchorConflict(uint16 netuid, uint64 epoch, bytes32 recordedHash, bytes32 recordedRoot);
    /// settlementHash 0 is reserved for "not anchored".
    error EmptySettlementHash();
    /// The zero address cannot own the contract.
    error ZeroAddress();

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotAuthorized(msg.sender);
        _;
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function setAnchorer(address account, bool allowed) external onlyOwner {
        isAnchorer[account] = allowed;
        emit AnchorerSet(account, allowed);
    }

    /// Record the anchor of settlement (netuid, epoch). One anchor per (netuid, epoch): the same
    /// anchor again changes nothing and returns false (so a retried transaction is harmless); a
    /// different one reverts with AnchorConflict. Returns true when this call recorded it.
    function anchor(
        uint16 netuid,
        uint64 epoch,
        bytes32 settlementHash,
        bytes32 creditsRoot,
        uint32 leafCount
    ) external returns (bool recorded) {
        if (msg.sender != owner && !isAnchorer[msg.sender]) revert NotAuthorized(msg.sender);
        if (settlementHash == bytes32(0)) revert EmptySettlementHash();
        Anchor storage slot = _anchors[_key(netuid, epoch)];
        if (slot.settlementHash != bytes32(0)) {
            if (
                slot.settlementHash == settlementHash &&
                slot.creditsRoot == creditsRoot &&
                slot.leafCount == leafCount
            ) return false;
            revert AnchorConflict(netuid, epoch, slot.settlementHash, slot.creditsRoot);
        }
        slot.settlementHash = settlementHash;
        slot.creditsRoot = creditsRoot;
        slot.leafCount = leafCount;
        slot.anchoredAt = uint64(block.number);
        slot.anchorer = msg.sender;
        emit Anchored(netuid, epoch, settlementHash, creditsRoot, leafCount, msg.sender);
        return true;
    }

    /// The anchor of (netuid, epoch); all zero when none is recorded.
    function getAnchor(uint16 netuid, uint64 epoch) external view returns (Anchor memory) {
        return _anchors[_key(netuid, epoch)];
    }

    /// The leaf of one hotkey's credit in settlement (netuid, epoch).
    function creditLeaf(
        uint16 netuid,
        uint64 epoch,
        uint16 uid,
        bytes32 hotkey,
        uint64 amountRao
    ) public pure returns (bytes32) {
        return keccak256(abi.encode(LEAF_DOMAIN, netuid, epoch, uid, hotkey, amountRao));
    }

    /// Whether `proof` leads from `leaf` to the credits root anchored for (netuid, epoch). It proves
    /// that `leaf` is a node of that tree: compute `leaf` with creditLeaf (or call verifyCredit),
    /// since an inner node's hash would pass too.
    function verify(
        uint16 netuid,
        uint64 epoch,
        bytes32 leaf,
        bytes32[] calldata proof
    ) public view returns (bool) {
        Anchor storage slot = _anchors[_key(netuid, epoch)];
        if (slot.settlementHash == bytes32(0) || slot.leafCount == 0) return false;
        bytes32 node = leaf;
        for (uint256 i = 0; i < proof.length; i++) {
            bytes32 sibling = proof[i];
            node = node < sibling
                ? keccak256(abi.encodePacked(node, sibling))
                : keccak256(abi.encodePacked(sibling, node));
        }
        return node == slot.creditsRoot;
    }

    /// Whether settlement (netuid, epoch) credited `amountRao` for hotkey `hotkey` at `uid`.
    function verifyCredit(
        uint16 netuid,
        uint64 epoch,
        uint16 uid,
        bytes32 hotkey,
        uint64 amountRao,
        bytes32[] calldata proof
    ) external view returns (bool) {
        return verify(netuid, epoch, creditLeaf(netuid, epoch, uid, hotkey, amountRao), proof);
    }

    function _key(uint16 netuid, uint64 epoch) private pure returns (uint256) {
        return (uint256(netuid) << 64) | uint256(epoch);
    }
}
