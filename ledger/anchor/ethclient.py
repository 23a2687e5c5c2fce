"""The Ethereum side of the anchoring service, behind a small interface (a fake one in tests).

`Web3ChainClient` talks to the LedgerAnchor contract through web3 and the committed artifact. It is
blocking: the service calls it on its own thread. Validators sign with a key file, or, only on a
development chain and when the config asks for it (`ethereum.dev_key_from_node_key`), with a
secp256k1 key derived from their node key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ledger.anchor.recovery import AnchorReceipt
from ledger.config import EthereumConfig
from ledger.crypto import SigningKey

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

ETH_KEY_DOMAIN = b"ledger/anchor/eth-key/v1\x00"
CONFLICT_ERRORS = ("AlreadyAnchored", "HeightNotIncreasing")


def derive_eth_key(node_key: SigningKey) -> bytes:
    """A deterministic secp256k1 private key for a validator, derived from its node key (development chains)."""
    return hashlib.sha256(ETH_KEY_DOMAIN + node_key.to_pem()).digest()


def eth_account_for(node_key: SigningKey, cfg: EthereumConfig) -> LocalAccount:
    """The validator's Ethereum account: its key file, or the derived key where the config allows it
    (EthereumConfig accepts `dev_key_from_node_key` only with a development chain id)."""
    from eth_account import Account

    from ledger.anchor.contract import load_key_file

    if cfg.key_file is not None:
        return load_key_file(cfg.key_file)
    if not cfg.dev_key_from_node_key:
        raise ValueError("ethereum.key_file is required")
    account: LocalAccount = Account.from_key(derive_eth_key(node_key))
    return account


class AnchorConflict(Exception):
    """The contract refused the anchor: that height or a higher one is already anchored."""


class AnchorInFlight(Exception):
    """An earlier transaction from this validator's address is still pending: do not send another."""


class ChainClient(Protocol):
    chain_id: int
    contract: str
    address: str  # this validator's Ethereum address

    def latest_height(self) -> int:
        """The contract's latest anchored height, 0 if none."""
        ...

    def submit(self, height: int, root: bytes) -> AnchorReceipt:
        """Anchor and wait for the receipt; AnchorConflict if the contract refuses the height,
        AnchorInFlight if an earlier transaction of ours is still pending."""
        ...

    def anchored_since(self, from_block: int) -> list[AnchorReceipt]:
        """The receipts of every anchor mined from Ethereum block `from_block` on (the contract's events)."""
        ...


class Web3ChainClient:
    """ChainClient over web3 and the committed LedgerAnchor artifact. Blocking: call it on a thread."""

    def __init__(self, cfg: EthereumConfig, account: LocalAccount) -> None:
        from ledger.anchor import contract as ac

        self._ac = ac
        self.cfg = cfg
        self.account = account
        self.address: str = str(account.address)
        self.w3 = ac.connect(cfg.rpc, timeout=10.0)
        self.chain_id = int(self.w3.eth.chain_id)
        if cfg.chain_id is not None and self.chain_id != cfg.chain_id:
            raise ac.AnchorContractError(
                f"the RPC at {cfg.rpc} serves chain id {self.chain_id}, configured {cfg.chain_id}"
            )
        self.artifact = ac.load_artifact()
        self.instance = ac.anchor_contract(self.w3, cfg.contract, self.artifact)
        self.contract = str(self.instance.address)
        code = bytes(self.w3.eth.get_code(self.instance.address))
        if not code:
            raise ac.AnchorContractError(f"no contract at {self.contract} on chain {self.chain_id}")

    def latest_height(self) -> int:
        latest = self._ac.latest_anchor(self.instance)
        return 0 if latest is None else latest[0]

    def submit(self, height: int, root: bytes) -> AnchorReceipt:
        ac = self._ac
        eth = self.w3.eth
        # Our earlier anchor may still be pending (we restarted, or its receipt wait timed out): a
        # second one would race it and, at best, revert.
        mined_nonce = eth.get_transaction_count(self.account.address, "latest")
        if eth.get_transaction_count(self.account.address, "pending") > mined_nonce:
            raise AnchorInFlight(
                f"an earlier transaction from {self.address} (nonce {mined_nonce}) is still pending; "
                "not sending another anchor until it is mined"
            )
        try:
            receipt = ac.submit_anchor(
                self.w3, self.account, self.instance, height, root, timeout=self.cfg.tx_timeout_s
            )
        except ac.AnchorContractError:
            # Mined but reverted: another validator's anchor got in between our estimate and our turn.
            if self.latest_height() >= height:
                raise AnchorConflict(f"height {height} was overtaken on chain while our anchor was pending") from None
            raise
        except Exception as exc:
            data = ac.revert_data(exc)
            decoded = ac.decode_revert(self.artifact.abi, data) if data else None
            if decoded is not None and decoded[0] in CONFLICT_ERRORS:
                raise AnchorConflict(f"{decoded[0]}{decoded[1]}") from None
            if decoded is not None:
                raise ac.AnchorContractError(f"anchor reverted: {decoded[0]}{decoded[1]}") from None
            raise
        return AnchorReceipt(
            height, root, bytes(receipt["transactionHash"]), int(receipt["blockNumber"]), self.address
        )

    def anchored_since(self, from_block: int) -> list[AnchorReceipt]:
        events = self.instance.events.Anchored.get_logs(from_block=from_block, to_block="latest")
        return [
            AnchorReceipt(int(e["args"]["height"]), bytes(e["args"]["root"]), bytes(e["transactionHash"]),
                          int(e["blockNumber"]), str(e["args"]["submitter"]))
            for e in events
        ]


ClientFactory = Callable[[], ChainClient]
