#!/usr/bin/env python3
"""Compile contracts/LedgerAnchor.sol with the pinned npm `solc` (solcjs) and write the artifact.

    python3 contracts/build.py            # (re)write contracts/build/LedgerAnchor.json
    python3 contracts/build.py --check    # exit 1 if the committed artifact differs from a fresh compile

Uses only the Python standard library plus `node` and `contracts/node_modules` (from `npm ci`), and runs
fully offline: solcjs carries the compiler as WebAssembly, no compiler download happens.
The artifact is committed so that deploying needs Python only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

CONTRACTS_DIR = Path(__file__).resolve().parent
SOURCE_NAME = "LedgerAnchor.sol"
CONTRACT_NAME = "LedgerAnchor"
ARTIFACT_PATH = CONTRACTS_DIR / "build" / f"{CONTRACT_NAME}.json"
SOLCJS = CONTRACTS_DIR / "node_modules" / "solc" / "solc.js"

# Pinned compiler settings. evmVersion must stay <= prague: py-evm (EthereumTester) stops at Prague and
# solc >= 0.8.31 defaults to osaka. cancun runs on every current L1/L2 and on Anvil.
EVM_VERSION = "cancun"
OPTIMIZER_RUNS = 200
SETTINGS: dict[str, Any] = {
    "evmVersion": EVM_VERSION,
    "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
    "metadata": {"bytecodeHash": "ipfs"},
    "outputSelection": {
        "*": {
            "*": [
                "abi",
                "metadata",
                "storageLayout",
                "evm.bytecode.object",
                "evm.deployedBytecode.object",
                "evm.methodIdentifiers",
            ]
        }
    },
}


class BuildError(RuntimeError):
    pass


def solcjs_available() -> bool:
    return SOLCJS.is_file() and shutil.which("node") is not None


def _solc_package_version() -> str:
    data = json.loads((SOLCJS.parent / "package.json").read_text())
    return str(data["version"])


def _parse_solcjs_output(text: str) -> dict[str, Any]:
    """solcjs may print informational lines (e.g. about SMT solvers) before the JSON document."""
    decoder = json.JSONDecoder()
    for idx, line in enumerate(text.splitlines(keepends=True)):
        if line.lstrip().startswith("{"):
            rest = "".join(text.splitlines(keepends=True)[idx:])
            obj, _ = decoder.raw_decode(rest.lstrip())
            if isinstance(obj, dict):
                return obj
    raise BuildError(f"no JSON document in solcjs output: {text[:500]!r}")


def compile_artifact(source: str | None = None) -> dict[str, Any]:
    """Compile the sources (or ``source`` instead of the file) and return the artifact dict."""
    if not solcjs_available():
        raise BuildError(f"solcjs not found at {SOLCJS} (run `npm ci` in contracts/) or `node` is not on PATH")
    if source is None:
        source = (CONTRACTS_DIR / SOURCE_NAME).read_text()
    std_input = {
        "language": "Solidity",
        "sources": {SOURCE_NAME: {"content": source}},
        "settings": SETTINGS,
    }
    proc = subprocess.run(
        ["node", str(SOLCJS), "--standard-json"],
        input=json.dumps(std_input),
        capture_output=True,
        text=True,
        cwd=CONTRACTS_DIR,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"solcjs failed (exit {proc.returncode}): {proc.stderr.strip()[:2000]}")
    output = _parse_solcjs_output(proc.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise BuildError("compilation failed:\n" + "\n".join(e.get("formattedMessage", str(e)) for e in errors))
    warnings = [e for e in output.get("errors", []) if e.get("severity") != "error"]
    for w in warnings:
        print(w.get("formattedMessage", str(w)).rstrip(), file=sys.stderr)

    contract = output["contracts"][SOURCE_NAME][CONTRACT_NAME]
    metadata = json.loads(contract["metadata"])
    settings = {k: v for k, v in SETTINGS.items() if k != "outputSelection"}
    return {
        "contractName": CONTRACT_NAME,
        "sourceName": SOURCE_NAME,
        "sourceSha256": hashlib.sha256(source.encode()).hexdigest(),
        "compiler": {
            "name": "solc",
            "version": metadata["compiler"]["version"],
            "npmPackage": f"solc@{_solc_package_version()}",
        },
        "settings": settings,
        "abi": contract["abi"],
        "methodIdentifiers": contract["evm"]["methodIdentifiers"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
        "storageLayout": [
            {"label": s["label"], "slot": s["slot"], "offset": s["offset"], "type": s["type"]}
            for s in contract["storageLayout"]["storage"]
        ],
        "metadata": metadata,
    }


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="verify the committed artifact instead of writing it")
    args = parser.parse_args(argv)
    try:
        text = render(compile_artifact())
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = ARTIFACT_PATH.read_text() if ARTIFACT_PATH.exists() else ""
        if current != text:
            print(f"{ARTIFACT_PATH} is out of date: run `make contracts`", file=sys.stderr)
            return 1
        print(f"{ARTIFACT_PATH.relative_to(CONTRACTS_DIR.parent)} is up to date")
        return 0
    ARTIFACT_PATH.parent.mkdir(parents=True, exist_ok=True)
    tmp = ARTIFACT_PATH.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(ARTIFACT_PATH)
    print(f"wrote {ARTIFACT_PATH.relative_to(CONTRACTS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
