#!/usr/bin/env python3
"""Compile the contracts with the pinned npm `solc` (solcjs) and write their artifacts.

    python3 contracts/build.py            # (re)write contracts/build/LedgerAnchor.json and BenchNFT.json
    python3 contracts/build.py --check    # exit 1 if a committed artifact differs from a fresh compile

LedgerAnchor.sol is the anchor contract the ledger deploys; BenchNFT.sol is the ERC-721 (OpenZeppelin's, from
contracts/node_modules) that bench/evm_compare.py mints on a local Anvil. Imports are resolved here, from this
directory and from node_modules (`@scope/package/...`), and handed to solc as sources.

Uses only the Python standard library plus `node` and `contracts/node_modules` (from `npm ci`), and runs
fully offline: solcjs carries the compiler as WebAssembly, no compiler download happens.
The artifact is committed so that deploying needs Python only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

CONTRACTS_DIR = Path(__file__).resolve().parent
NODE_MODULES = CONTRACTS_DIR / "node_modules"
SOLCJS = NODE_MODULES / "solc" / "solc.js"


class ContractSpec(NamedTuple):  # not a dataclass: tests load this file without registering it as a module
    source_name: str  # a file in contracts/, and its source unit name
    contract_name: str

    @property
    def artifact_path(self) -> Path:
        return CONTRACTS_DIR / "build" / f"{self.contract_name}.json"


ANCHOR = ContractSpec("LedgerAnchor.sol", "LedgerAnchor")
BENCH_NFT = ContractSpec("BenchNFT.sol", "BenchNFT")
CONTRACTS = (ANCHOR, BENCH_NFT)

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


# `import "x";`, `import {A} from "x";`, `import * as A from "x";`
IMPORT_RE = re.compile(r"""^\s*import\s+(?:[^"';]*?\s+from\s+)?["']([^"']+)["']\s*;""", re.MULTILINE)


def _unit_file(unit: str) -> Path:
    """The file of a source unit name: a package's under node_modules (`@scope/...`), else one in contracts/."""
    if unit.startswith("/") or ".." in unit.split("/"):
        raise BuildError(f"import {unit!r} leaves the contracts directory")
    return (NODE_MODULES if unit.startswith("@") else CONTRACTS_DIR) / unit


def _package_of(unit: str) -> str:
    return "/".join(unit.split("/")[:2])


def collect_sources(unit: str, content: str) -> dict[str, str]:
    """`unit` and every source it imports, transitively, by source unit name (relative imports resolved)."""
    sources = {unit: content}
    pending = [unit]
    while pending:
        importer = pending.pop()
        for path in IMPORT_RE.findall(sources[importer]):
            name = posixpath.normpath(posixpath.join(posixpath.dirname(importer), path)) if path.startswith(".") \
                else path
            if name in sources:
                continue
            try:
                sources[name] = _unit_file(name).read_text()
            except FileNotFoundError:
                raise BuildError(f"{importer} imports {path!r}: no file {name} (run `npm ci` in contracts/)") from None
            pending.append(name)
    return sources


def _package_version(package: str) -> str:
    return str(json.loads((NODE_MODULES / package / "package.json").read_text())["version"])


def compile_artifact(source: str | None = None, spec: ContractSpec = ANCHOR) -> dict[str, Any]:
    """Compile `spec`'s source (or ``source`` instead of the file) and return the artifact dict."""
    if not solcjs_available():
        raise BuildError(f"solcjs not found at {SOLCJS} (run `npm ci` in contracts/) or `node` is not on PATH")
    if source is None:
        source = (CONTRACTS_DIR / spec.source_name).read_text()
    sources = collect_sources(spec.source_name, source)
    std_input = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sorted(sources.items())},
        "settings": SETTINGS,
    }
    # Files, not pipes, for solcjs's input and output: it reads stdin with readFileSync (EAGAIN on a pipe
    # holding more than a pipe buffer) and exits before a large answer has drained into a pipe.
    with tempfile.TemporaryFile("w+") as stdin, tempfile.TemporaryFile("w+") as stdout:
        json.dump(std_input, stdin)
        stdin.seek(0)
        proc = subprocess.run(
            ["node", str(SOLCJS), "--standard-json"],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            cwd=CONTRACTS_DIR,
            timeout=300,
            check=False,
        )
        stdout.seek(0)
        answer = stdout.read()
    if proc.returncode != 0:
        raise BuildError(f"solcjs failed (exit {proc.returncode}): {proc.stderr.strip()[:2000]}")
    output = _parse_solcjs_output(answer)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise BuildError("compilation failed:\n" + "\n".join(e.get("formattedMessage", str(e)) for e in errors))
    warnings = [e for e in output.get("errors", []) if e.get("severity") != "error"]
    for w in warnings:
        print(w.get("formattedMessage", str(w)).rstrip(), file=sys.stderr)

    contract = output["contracts"][spec.source_name][spec.contract_name]
    metadata = json.loads(contract["metadata"])
    settings = {k: v for k, v in SETTINGS.items() if k != "outputSelection"}
    packages = sorted({_package_of(name) for name in sources if name.startswith("@")})
    return {
        "contractName": spec.contract_name,
        "sourceName": spec.source_name,
        "sourceSha256": hashlib.sha256(source.encode()).hexdigest(),
        **({"npmPackages": {p: _package_version(p) for p in packages}} if packages else {}),
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
    parser.add_argument("--check", action="store_true", help="verify the committed artifacts instead of writing them")
    args = parser.parse_args(argv)
    stale = 0
    for spec in CONTRACTS:
        try:
            text = render(compile_artifact(spec=spec))
        except BuildError as exc:
            print(f"build of {spec.source_name} failed: {exc}", file=sys.stderr)
            return 2
        path = spec.artifact_path
        shown = path.relative_to(CONTRACTS_DIR.parent)
        if args.check:
            current = path.read_text() if path.exists() else ""
            if current != text:
                print(f"{shown} is out of date: run `make contracts`", file=sys.stderr)
                stale += 1
            else:
                print(f"{shown} is up to date")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        print(f"wrote {shown}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
