"""The Ethereum side of the anchoring service, behind a small interface (a fake one in tests).

`Web3ChainClient` talks to the LedgerAnchor contract through web3 and the committed artifact: it reads
the certified submitters' `Anchored` events, and sends, follows and re-prices this validator's own anchor
transactions. It is blocking: the service calls it on its own thread. Validators sign with a key file,
or, only on a development chain and when the config asks for it (`ethereum.dev_key_from_node_key`),
with a secp256k1 key derived from their node key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ledger.anchor.observe import Observed
from ledger.config import EthereumConfig
from ledger.crypto import SigningKey

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

ETH_KEY_DOMAIN = b"ledger/anchor/eth-key/v1\x00"
GWEI = 10**9
LOG_CHUNK = 5_000  # blocks per eth_getLogs request (public RPCs refuse long ranges)


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
    """The contract refused the anchor: this submitter anchored that height already."""


@dataclass(frozen=True)
class Fees:
    """What one gas costs at most (EIP-1559 max fee and priority tip; on a legacy chain, the gas price in both)."""

    max_fee: int  # wei
    tip: int  # wei
    legacy: bool = False


def capped(fees: Fees, cap: int) -> Fees:
    tip = min(fees.tip, cap)
    return Fees(min(fees.max_fee, cap), tip, fees.legacy)


def bumped(old: Fees, suggested: Fees, cap: int) -> Fees | None:
    """The fees of a replacement for a transaction stuck at `old`: at least 12.5% more in both (nodes refuse a
    replacement that is not 10% dearer), at least the current suggestion, at most `cap`. None at the cap."""
    tip = max(old.tip + old.tip // 8 + 1, suggested.tip)
    max_fee = max(old.max_fee + old.max_fee // 8 + 1, suggested.max_fee, tip)
    new = capped(Fees(max_fee, tip, old.legacy), cap)
    if new.max_fee * 10 < old.max_fee * 11 or (not old.legacy and new.tip * 10 < old.tip * 11):
        return None
    return new


@dataclass(frozen=True)
class Receipt:
    block: int
    ok: bool


class ChainClient(Protocol):
    chain_id: int
    contract: str  # lowercase
    address: str  # this validator's Ethereum address, lowercase

    def block_number(self) -> int:
        """The latest block."""
        ...

    def anchors(self, from_block: int, to_block: int, submitters: tuple[str, ...]) -> list[Observed]:
        """The `Anchored` events of these submitters in blocks from_block..to_block."""
        ...

    def suggested_fees(self) -> Fees:
        ...

    def nonces(self) -> tuple[int, int]:
        """This address's (mined, pending) transaction counts: pending > mined means something is in flight."""
        ...

    def send_anchor(self, height: int, root: bytes, nonce: int, fees: Fees) -> bytes:
        """Sign and send anchor(height, root) with that nonce and those fees; the tx hash. AnchorConflict if
        this address anchored that height already."""
        ...

    def receipt(self, tx_hash: bytes) -> Receipt | None:
        ...

    def is_known(self, tx_hash: bytes) -> bool:
        """Whether the RPC knows the transaction (pending or mined)."""
        ...

    def root_at(self, submitter: str, height: int) -> bytes:
        ...


class Web3ChainClient:
    """ChainClient over web3 and the committed LedgerAnchor artifact. Blocking: call it on a thread."""

    def __init__(self, rpc: str, contract: str, chain_id: int, account: LocalAccount, timeout: float = 30.0) -> None:
        from ledger.anchor import contract as ac

        self._ac = ac
        self.account = account
        self.address = str(account.address).lower()
        self.w3 = ac.connect(rpc, timeout=timeout)
        self.chain_id = int(self.w3.eth.chain_id)
        if self.chain_id != chain_id:
            raise ac.AnchorContractError(f"the RPC at {rpc} serves chain id {self.chain_id}; the ledger's anchoring "
                                         f"settings name chain {chain_id}")
        self.artifact = ac.load_artifact()
        self.instance = ac.anchor_contract(self.w3, contract, self.artifact)
        self.contract = contract.lower()
        if not self.w3.eth.get_code(self.instance.address):
            raise ac.AnchorContractError(f"no contract at {contract} on chain {self.chain_id}")
        self._topic = "0x" + bytes(self.w3.keccak(text="Anchored(uint64,bytes32,address)")).hex()

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def anchors(self, from_block: int, to_block: int, submitters: tuple[str, ...]) -> list[Observed]:
        topics = ["0x" + bytes.fromhex(s[2:]).rjust(32, b"\0").hex() for s in submitters]
        out: list[Observed] = []
        start = from_block
        while start <= to_block:
            end = min(to_block, start + LOG_CHUNK - 1)
            logs = self.w3.eth.get_logs({"address": self.instance.address, "fromBlock": start, "toBlock": end,
                                         "topics": [self._topic, None, topics]})
            for log in logs:
                args = self.instance.events.Anchored().process_log(log)["args"]
                out.append(Observed(int(args["height"]), bytes(args["root"]), bytes(log["transactionHash"]),
                                    int(log["blockNumber"]), int(log["logIndex"]), str(args["submitter"]).lower()))
            start = end + 1
        return out

    def suggested_fees(self) -> Fees:
        eth = self.w3.eth
        base_fee = eth.get_block("latest").get("baseFeePerGas")
        if base_fee is None:
            price = int(eth.gas_price)
            return Fees(price, price, legacy=True)
        try:
            tip = int(eth.max_priority_fee)
        except Exception:  # noqa: BLE001 - some nodes lack eth_maxPriorityFeePerGas
            tip = GWEI
        return Fees(2 * int(base_fee) + tip, tip)

    def nonces(self) -> tuple[int, int]:
        eth = self.w3.eth
        return int(eth.get_transaction_count(self.account.address, "latest")), int(
            eth.get_transaction_count(self.account.address, "pending"))

    def send_anchor(self, height: int, root: bytes, nonce: int, fees: Fees) -> bytes:
        ac = self._ac
        data = self.instance.encode_abi("anchor", args=[height, root])
        params: dict[str, Any] = {"from": self.account.address, "to": self.instance.address, "data": data,
                                  "chainId": self.chain_id, "nonce": nonce}
        try:
            # the estimate raises the contract's revert (custom error) before anything is sent
            estimate = int(self.w3.eth.estimate_gas(params))  # type: ignore[arg-type]
        except Exception as exc:
            revert = ac.revert_data(exc)
            decoded = ac.decode_revert(self.artifact.abi, revert) if revert else None
            if decoded is not None and decoded[0] == "AlreadyAnchored":
                raise AnchorConflict(f"{decoded[0]}{decoded[1]}") from None
            if decoded is not None:
                raise ac.AnchorContractError(f"anchor reverted: {decoded[0]}{decoded[1]}") from None
            raise
        params["gas"] = estimate + estimate // 5 + 10_000
        if fees.legacy:
            params["gasPrice"] = fees.max_fee
        else:
            params["maxFeePerGas"], params["maxPriorityFeePerGas"] = fees.max_fee, fees.tip
        signed = self.account.sign_transaction(params)
        return bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))

    def receipt(self, tx_hash: bytes) -> Receipt | None:
        from web3.exceptions import TransactionNotFound

        try:
            r = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        return Receipt(int(r["blockNumber"]), r["status"] == 1)

    def is_known(self, tx_hash: bytes) -> bool:
        from web3.exceptions import TransactionNotFound

        try:
            self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        return True

    def root_at(self, submitter: str, height: int) -> bytes:
        return self._ac.root_at(self.instance, submitter, height)


ClientFactory = Callable[[str, int], ChainClient]  # (certified contract, certified chain id) -> a client
