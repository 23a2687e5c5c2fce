// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.37;

/// @title LedgerAnchor
/// @notice A public notary for a permissioned ledger's block hashes. Anyone may call anchor(height, root):
///         the root is stored under the caller's own address and that height, once. Whose anchors count
///         is not the contract's business: the ledger certifies its validators' submitter addresses
///         (genesis file, governance), and validators and verifiers read only those addresses' slots.
/// @dev No owner, no allow-list and no order between heights, so no key can overwrite, refuse or stop
///      another key's anchors: anchoring a huge height fills one slot of the sender's and nothing else.
///      Gas: one cold read and one fresh SSTORE of the sender's slot, and one LOG3.
contract LedgerAnchor {
    mapping(address => mapping(uint64 => bytes32)) private _roots;

    event Anchored(uint64 indexed height, bytes32 root, address indexed submitter);

    error ZeroRoot();
    error AlreadyAnchored(address submitter, uint64 height, bytes32 root);

    /// @notice Record `root` as the ledger's block hash at `height`, under the sender's address.
    /// @dev Reverts with ZeroRoot, or AlreadyAnchored when the sender has anchored that height already.
    function anchor(uint64 height, bytes32 root) external {
        if (root == bytes32(0)) revert ZeroRoot();
        bytes32 existing = _roots[msg.sender][height];
        if (existing != bytes32(0)) revert AlreadyAnchored(msg.sender, height, existing);
        _roots[msg.sender][height] = root;
        emit Anchored(height, root, msg.sender);
    }

    /// @notice The root `submitter` anchored at `height`, or zero if it never anchored that height.
    function rootAt(address submitter, uint64 height) external view returns (bytes32) {
        return _roots[submitter][height];
    }
}
