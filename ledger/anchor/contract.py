"""The LedgerAnchor Ethereum contract: artifact loading, key files, deployment and thin call helpers.

Deploying needs Python only: the ABI and bytecode come from the committed artifact
``contracts/build/LedgerAnchor.json`` (rebuilt by ``make contracts``).

Deployment is idempotent. :func:`deploy` first looks at the deployment file; if it names a contract on the
same chain whose runtime code equals the artifact's, that contract is re-used. The contract has no owner and
no allow-list: whose anchors count is certified in the ledger (genesis `anchoring`, governance), so deploying
needs no submitter list. Transactions are signed locally with the key from a key file (mode 0600); the key
is never printed, logged or put in an exception message.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import stat
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.types import TxParams, TxReceipt

from ledger.crypto import KeyFileError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_PATH = REPO_ROOT / "contracts" / "build" / "LedgerAnchor.json"
DEPLOYMENTS_DIR = REPO_ROOT / "contracts" / "deployments"  # default file: DEPLOYMENTS_DIR/<chain id>.json
TESTER_RPC = "tester"
DEPLOYMENT_FORMAT = 1


class AnchorContractError(RuntimeError):
    """Deployment or contract call failure with a message safe to show (never contains a key).

    A bad key file is not one: `load_key_file` raises the ledger's one `KeyFileError` (ledger.crypto).
    """


# --------------------------------------------------------------------------------------------------
# Artifact
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    settings: dict[str, Any]

    @property
    def runtime_code_hash(self) -> str:
        return _code_hash(bytes.fromhex(self.deployed_bytecode.removeprefix("0x")))


def load_artifact(path: Path | str | None = None) -> Artifact:
    p = Path(path) if path is not None else ARTIFACT_PATH
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise AnchorContractError(f"contract artifact {p} is missing: run `make contracts`") from exc
    return Artifact(
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler_version=data["compiler"]["version"],
        settings=data["settings"],
    )


def _code_hash(code: bytes) -> str:
    return "0x" + keccak(code).hex()


# --------------------------------------------------------------------------------------------------
# Connection and keys
# --------------------------------------------------------------------------------------------------


def connect(rpc: str, *, timeout: float = 30.0) -> Web3:
    """``tester`` gives an in-process EthereumTester chain; anything else is an HTTP(S) JSON-RPC URL."""
    if rpc == TESTER_RPC:
        return Web3(Web3.EthereumTesterProvider())
    if rpc.startswith(("http://", "https://")):
        w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": timeout}))
    elif rpc.startswith(("ws://", "wss://")):
        raise AnchorContractError("websocket RPC URLs are not supported; use the node's http(s) endpoint")
    else:
        raise AnchorContractError(f"unsupported RPC {rpc!r}: expected http(s)://... or {TESTER_RPC!r}")
    if not w3.is_connected():
        raise AnchorContractError(f"cannot reach the Ethereum RPC at {rpc}")
    return w3


def load_key_file(path: Path | str, *, check_mode: bool = True) -> LocalAccount:
    """Read a hex private key (optionally 0x-prefixed, surrounding whitespace ignored) from a file.

    The file must not be readable or writable by group or others (e.g. mode 0600). Error messages never
    include the file's contents.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {p}: {exc.strerror}") from None
    if check_mode and stat.S_IMODE(st.st_mode) & 0o077:
        raise KeyFileError(
            f"key file {p} has mode {stat.S_IMODE(st.st_mode):04o}; restrict it with `chmod 600 {p}`"
        )
    text = p.read_text().strip()
    hexkey = text.removeprefix("0x").removeprefix("0X")
    if len(hexkey) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hexkey):
        raise KeyFileError(f"key file {p} does not hold a 32-byte hex private key")
    try:
        account: LocalAccount = Account.from_key(bytes.fromhex(hexkey))
    except Exception:  # noqa: BLE001 - never chain: the original exception may quote the key
        raise KeyFileError(f"key file {p} does not hold a valid secp256k1 private key") from None
    return account


# --------------------------------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------------------------------


def anchor_contract(w3: Web3, address: str, artifact: Artifact | None = None) -> Contract:
    art = artifact or load_artifact()
    return w3.eth.contract(address=to_checksum_address(address), abi=art.abi)


def send_transaction(
    w3: Web3, account: LocalAccount, tx: TxParams, *, timeout: float = 180.0
) -> TxReceipt:
    """Fill nonce/chain id/gas/fees, sign locally, send and wait; raise if the transaction reverted."""
    params: dict[str, Any] = dict(tx)
    params["from"] = account.address
    params.setdefault("chainId", w3.eth.chain_id)
    params.setdefault("nonce", w3.eth.get_transaction_count(account.address, "pending"))
    if "gas" not in params:
        # estimate_gas raises the contract's revert (custom error) before anything is sent
        estimate = w3.eth.estimate_gas(params)  # type: ignore[arg-type]
        params["gas"] = estimate + estimate // 5 + 10_000
    if "gasPrice" not in params and "maxFeePerGas" not in params:
        base_fee = w3.eth.get_block("latest").get("baseFeePerGas")
        if base_fee is None:
            params["gasPrice"] = w3.eth.gas_price
        else:
            try:
                tip = w3.eth.max_priority_fee
            except Exception:  # noqa: BLE001 - some nodes lack eth_maxPriorityFeePerGas
                tip = Web3.to_wei(1, "gwei")
            params["maxPriorityFeePerGas"] = tip
            params["maxFeePerGas"] = 2 * base_fee + tip
    signed = account.sign_transaction(params)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    if receipt["status"] != 1:
        raise AnchorContractError(f"transaction {tx_hash.to_0x_hex()} reverted (block {receipt['blockNumber']})")
    return receipt


def submit_anchor(
    w3: Web3, account: LocalAccount, contract: Contract, height: int, root: bytes, *, timeout: float = 180.0
) -> TxReceipt:
    """Anchor ``root`` (32 bytes) at ``height`` from ``account`` (stored under its own address)."""
    if len(root) != 32:
        raise ValueError("root must be 32 bytes")
    data = contract.encode_abi("anchor", args=[height, root])
    # send_transaction estimates gas first, so a revert (custom error) is raised before anything is sent
    return send_transaction(w3, account, {"to": contract.address, "data": data}, timeout=timeout)


def root_at(contract: Contract, submitter: str, height: int) -> bytes:
    """The root ``submitter`` anchored at ``height`` (32 zero bytes if it did not)."""
    return bytes(contract.functions.rootAt(to_checksum_address(submitter), height).call())


def decode_revert(abi: list[dict[str, Any]], data: bytes) -> tuple[str, tuple[Any, ...]] | None:
    """Decode revert data as one of the ABI's custom errors: (name, args), or None if unknown."""
    if len(data) < 4:
        return None
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [str(i["type"]) for i in item.get("inputs", [])]
        if keccak(text=f"{item['name']}({','.join(types)})")[:4] == data[:4]:
            values = abi_decode(types, data[4:])
            return str(item["name"]), tuple(
                to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)
            )
    return None


def revert_data(exc: BaseException) -> bytes | None:
    """Revert data carried by a web3 ContractCustomError/ContractLogicError or an eth_tester TransactionFailed."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, bytes | bytearray):
            return bytes(arg)
        if isinstance(arg, str):
            text = arg.removeprefix("execution reverted: ")
            if text.startswith(("b'", 'b"')):
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    continue
                if isinstance(value, bytes):
                    return value
            elif text.startswith("0x"):
                try:
                    return bytes.fromhex(text[2:])
                except ValueError:
                    continue
    return None


# --------------------------------------------------------------------------------------------------
# Deployment
# --------------------------------------------------------------------------------------------------


@dataclass
class Deployment:
    address: str
    chain_id: int
    tx_hash: str
    block_number: int
    code_hash: str
    deployer: str
    compiler: str
    deployed_at: str = ""
    format: int = DEPLOYMENT_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        return cls(
            address=to_checksum_address(data["address"]),
            chain_id=int(data["chain_id"]),
            tx_hash=str(data["tx_hash"]),
            block_number=int(data["block_number"]),
            code_hash=str(data["code_hash"]),
            deployer=str(data.get("deployer", "")),
            compiler=str(data.get("compiler", "")),
            deployed_at=str(data.get("deployed_at", "")),
            format=int(data.get("format", DEPLOYMENT_FORMAT)),
        )


@dataclass
class DeployResult:
    deployment: Deployment
    reused: bool


def default_deployment_path(chain_id: int) -> Path:
    return DEPLOYMENTS_DIR / f"{chain_id}.json"


def read_deployment(path: Path | str) -> Deployment | None:
    p = Path(path)
    if not p.exists():
        return None
    try:
        return Deployment.from_dict(json.loads(p.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise AnchorContractError(f"deployment file {p} is malformed: {exc}") from exc


def write_deployment(path: Path | str, deployment: Deployment) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(deployment.to_json())
    os.replace(tmp, p)


def matches_chain(w3: Web3, deployment: Deployment, artifact: Artifact) -> tuple[bool, str]:
    """Whether ``deployment`` is live on the chain behind ``w3`` with the artifact's runtime code."""
    chain_id = w3.eth.chain_id
    if chain_id != deployment.chain_id:
        return False, f"chain id is {chain_id}, the deployment file says {deployment.chain_id}"
    code = bytes(w3.eth.get_code(to_checksum_address(deployment.address)))
    if not code:
        return False, f"no code at {deployment.address}"
    if _code_hash(code) != artifact.runtime_code_hash:
        return False, f"code at {deployment.address} differs from the artifact's runtime bytecode"
    return True, "ok"


def deploy(
    w3: Web3,
    account: LocalAccount,
    *,
    out: Path | str | None = None,
    artifact: Artifact | None = None,
    force: bool = False,
    timeout: float = 180.0,
) -> DeployResult:
    """Deploy LedgerAnchor, or re-use the one in ``out``.

    Re-use needs the same chain id and the artifact's runtime code at the recorded address. A deployment
    file for another chain id is an error unless ``force`` (it probably records a real network); a stale
    file for the same chain (e.g. a restarted Anvil) is replaced by a fresh deployment.
    """
    art = artifact or load_artifact()
    out_path = Path(out) if out is not None else default_deployment_path(w3.eth.chain_id)

    existing = read_deployment(out_path)
    if existing is not None:
        ok, why = matches_chain(w3, existing, art)
        if ok:
            log.info("re-using LedgerAnchor at %s on chain %d", existing.address, existing.chain_id)
            return DeployResult(deployment=existing, reused=True)
        if existing.chain_id != w3.eth.chain_id and not force:
            raise AnchorContractError(
                f"{out_path} records a deployment on another chain ({why}); use another --out or --force"
            )
        log.warning("deployment in %s is stale (%s); deploying a new contract", out_path, why)
    deployment = _deploy_new(w3, account, art, timeout=timeout)
    write_deployment(out_path, deployment)
    return DeployResult(deployment=deployment, reused=False)


def _deploy_new(w3: Web3, account: LocalAccount, art: Artifact, *, timeout: float) -> Deployment:
    # the constructor takes no arguments: the init code is the whole transaction data
    receipt = send_transaction(w3, account, {"data": HexStr(art.bytecode)}, timeout=timeout)
    address = receipt.get("contractAddress")
    if not address:
        raise AnchorContractError("deployment receipt has no contract address")
    code = bytes(w3.eth.get_code(address))
    if _code_hash(code) != art.runtime_code_hash:
        raise AnchorContractError(f"deployed code at {address} does not match the artifact")
    log.info("deployed LedgerAnchor at %s (gas %d)", address, receipt["gasUsed"])
    return Deployment(
        address=to_checksum_address(address),
        chain_id=w3.eth.chain_id,
        tx_hash=receipt["transactionHash"].to_0x_hex(),
        block_number=int(receipt["blockNumber"]),
        code_hash=_code_hash(code),
        deployer=account.address,
        compiler=art.compiler_version,
        deployed_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


# --------------------------------------------------------------------------------------------------
# Command line (shared by contracts/deploy.py and `ledger contracts deploy`)
# --------------------------------------------------------------------------------------------------


def run_deploy(args: Any) -> int:
    """Run a deployment from parsed arguments; prints the deployment JSON. Returns an exit code."""
    try:
        account = load_key_file(args.key)
        w3 = connect(args.rpc)
        if args.rpc == TESTER_RPC:
            _fund_from_tester(w3, account.address)
        result = deploy(
            w3,
            account,
            out=args.out,
            artifact=load_artifact(args.artifact) if args.artifact else None,
            force=args.force,
            timeout=args.timeout,
        )
    except (AnchorContractError, KeyFileError) as exc:
        print(f"error: {exc}", flush=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - RPC/contract errors; they never carry the key
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
        return 1
    d = result.deployment
    out = args.out or default_deployment_path(d.chain_id)
    verb = "re-used" if result.reused else "deployed"
    print(f"{verb} LedgerAnchor at {d.address} on chain {d.chain_id}; wrote {out}", flush=True)
    print(d.to_json(), end="", flush=True)
    return 0



def _fund_from_tester(w3: Web3, address: str, amount_eth: int = 100) -> None:
    """On the in-process tester, give the deployer some ether from the pre-funded, unlocked account."""
    if w3.eth.get_balance(to_checksum_address(address)) >= Web3.to_wei(1, "ether"):
        return
    tx_hash = w3.eth.send_transaction(
        {"from": w3.eth.accounts[0], "to": address, "value": Web3.to_wei(amount_eth, "ether")}
    )
    w3.eth.wait_for_transaction_receipt(tx_hash)
