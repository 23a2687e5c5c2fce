// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.37;

/// @title LedgerAnchor
/// @notice Public anchor of a permissioned ledger: authorised submitters (the validators' Ethereum
///         addresses) record one bytes32 root per ledger height. Heights strictly increase and each
///         height is anchored at most once, so the chain of anchors is append-only.
/// @dev Gas: an anchor costs one cold SSTORE of a fresh slot (the root), one warm rewrite of the packed
///      head slot (owner + latest height + flag) and one LOG3. Duplicate detection needs no extra read
///      on the success path: a height above the latest one cannot have been anchored.
contract LedgerAnchor {
    /// @dev Packed into a single storage slot (20 + 8 + 1 bytes).
    struct Head {
        address owner;
        uint64 latestHeight;
        bool anchored;
    }

    Head private _head;
    address private _pendingOwner;
    mapping(address => bool) private _submitters;
    mapping(uint64 => bytes32) private _roots;

    event Anchored(uint64 indexed height, bytes32 root, address indexed submitter);
    event SubmitterAdded(address indexed submitter);
    event SubmitterRemoved(address indexed submitter);
    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error NotOwner(address caller);
    error NotPendingOwner(address caller);
    error NotSubmitter(address caller);
    error ZeroAddress();
    error ZeroRoot();
    error AlreadySubmitter(address submitter);
    error UnknownSubmitter(address submitter);
    error AlreadyAnchored(uint64 height, bytes32 root);
    error HeightNotIncreasing(uint64 height, uint64 latestHeight);

    constructor() {
        _head.owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    modifier onlyOwner() {
        if (msg.sender != _head.owner) revert NotOwner(msg.sender);
        _;
    }

    // ----------------------------------------------------------------------------------------------
    // Anchoring
    // ----------------------------------------------------------------------------------------------

    /// @notice Record `root` as the ledger root at `height`.
    /// @dev Reverts with NotSubmitter, ZeroRoot, AlreadyAnchored (the height already holds a root)
    ///      or HeightNotIncreasing (the height is not above the latest anchored one).
    function anchor(uint64 height, bytes32 root) external {
        if (!_submitters[msg.sender]) revert NotSubmitter(msg.sender);
        if (root == bytes32(0)) revert ZeroRoot();
        Head memory head = _head;
        if (head.anchored && height <= head.latestHeight) {
            bytes32 existing = _roots[height];
            if (existing != bytes32(0)) revert AlreadyAnchored(height, existing);
            revert HeightNotIncreasing(height, head.latestHeight);
        }
        _roots[height] = root;
        _head = Head({owner: head.owner, latestHeight: height, anchored: true});
        emit Anchored(height, root, msg.sender);
    }

    /// @notice The root anchored at `height`, or zero if that height was never anchored.
    function rootAt(uint64 height) external view returns (bytes32) {
        return _roots[height];
    }

    /// @notice Whether anything has been anchored yet.
    function hasAnchor() external view returns (bool) {
        return _head.anchored;
    }

    /// @notice The latest anchored height (0 if nothing is anchored: check hasAnchor()).
    function latestHeight() external view returns (uint64) {
        return _head.latestHeight;
    }

    /// @notice The latest anchored height and its root; (0, 0) if nothing is anchored.
    function latest() external view returns (uint64 height, bytes32 root) {
        Head memory head = _head;
        if (!head.anchored) return (0, bytes32(0));
        return (head.latestHeight, _roots[head.latestHeight]);
    }

    // ----------------------------------------------------------------------------------------------
    // Submitters
    // ----------------------------------------------------------------------------------------------

    function isSubmitter(address account) external view returns (bool) {
        return _submitters[account];
    }

    function addSubmitter(address submitter) external onlyOwner {
        if (submitter == address(0)) revert ZeroAddress();
        if (_submitters[submitter]) revert AlreadySubmitter(submitter);
        _submitters[submitter] = true;
        emit SubmitterAdded(submitter);
    }

    function removeSubmitter(address submitter) external onlyOwner {
        if (!_submitters[submitter]) revert UnknownSubmitter(submitter);
        delete _submitters[submitter];
        emit SubmitterRemoved(submitter);
    }

    // ----------------------------------------------------------------------------------------------
    // Ownership (two-step: the new owner must accept)
    // ----------------------------------------------------------------------------------------------

    function owner() external view returns (address) {
        return _head.owner;
    }

    function pendingOwner() external view returns (address) {
        return _pendingOwner;
    }

    /// @notice Start handing the contract over to `newOwner`, who must call acceptOwnership().
    ///         Passing the zero address cancels a pending transfer.
    function transferOwnership(address newOwner) external onlyOwner {
        _pendingOwner = newOwner;
        emit OwnershipTransferStarted(msg.sender, newOwner);
    }

    function acceptOwnership() external {
        if (msg.sender != _pendingOwner || msg.sender == address(0)) revert NotPendingOwner(msg.sender);
        address previous = _head.owner;
        _head.owner = msg.sender;
        delete _pendingOwner;
        emit OwnershipTransferred(previous, msg.sender);
    }
}
