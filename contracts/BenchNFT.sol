// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.37;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";

/// @title BenchNFT
/// @notice The ERC-721 that bench/evm_compare.py mints on a local Anvil, to set the ledger's asset mints beside
///         Ethereum's. Not deployed anywhere else.
/// @dev OpenZeppelin's ERC721 (pinned in package.json), the implementation most deployed tokens use, so the
///      figure is that of an ordinary token, neither a stripped one nor a heavy one. Like the ledger's
///      `asset.mint`, only an authorised account mints (the ledger checks the issuer role): the minters are
///      fixed at deployment, one storage read per mint. A mint is OpenZeppelin's `_mint`: the owner and the
///      balance written, one Transfer event.
contract BenchNFT is ERC721 {
    mapping(address => bool) public isMinter;

    error NotMinter(address account);

    constructor(address[] memory minters) ERC721("Ledger bench NFT", "LBN") {
        for (uint256 i = 0; i < minters.length; i++) {
            isMinter[minters[i]] = true;
        }
    }

    /// @notice Mint token `tokenId` to `to`; reverts with NotMinter for any other sender, and with
    ///         OpenZeppelin's ERC721InvalidSender when the token exists.
    function mint(address to, uint256 tokenId) external {
        if (!isMinter[msg.sender]) revert NotMinter(msg.sender);
        _mint(to, tokenId);
    }
}
