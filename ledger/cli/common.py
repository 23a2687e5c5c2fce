"""What the `ledger` command groups share: errors and exit codes, defaults taken from the running devnet
(node URL, signing key, members named by name), identifiers as the ledger stores them, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from devnet.record import DevnetError, devnet_dir, load_devnet, member_with_role
from ledger.client import LedgerClient, LedgerError, Signer
from ledger.crypto import KeyFileError, SigningKey
from ledger.keyfiles import command_passphrase
from ledger.resolver.identifiers import InvalidIdentifier
from ledger.resolver.registry import storage_key

EXIT_REJECTED = 1  # the node refused, or a check failed (a denied right, an invalid proof)
EXIT_USAGE = 2  # the command line or a file it names is wrong (argparse uses 2 too)

HELP_WIDTH = 100
Subcommands = Any  # argparse's private _SubParsersAction: what add_subparsers() returns


class CliError(Exception):
    """Ends the command with `error: MESSAGE` on stderr and exit code `code`."""

    def __init__(self, message: str, code: int = EXIT_REJECTED) -> None:
        super().__init__(message)
        self.code = code


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def add_command(sub: Subcommands, name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
    """A subcommand whose `--help` starts with `summary` (also its line in the parent's list), then `details`
    (paragraphs separated by blank lines, refilled to the help's width)."""
    paragraphs = [f"{summary[:1].upper()}{summary[1:]}.", *(details.split("\n\n") if details else ())]
    description = "\n\n".join(textwrap.fill(" ".join(p.split()), HELP_WIDTH) for p in paragraphs)
    parser: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description,
                                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def add_group(sub: Subcommands, name: str, summary: str, details: str = "") -> Subcommands:
    """A command group (`ledger asset ...`): its subcommands are listed in its `--help`."""
    return add_command(sub, name, summary, details).add_subparsers(dest=f"{name}_command", required=True,
                                                                    metavar="COMMAND")


# --- defaults from the devnet --------------------------------------------------------------------

def add_devnet_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", help="devnet directory to take defaults from (default: $LEDGER_DEVNET or ./.devnet)")


def add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", help="node URL (default: the devnet's first node)")
    add_devnet_option(p)


def add_write_options(p: argparse.ArgumentParser) -> None:
    add_read_options(p)
    p.add_argument("--key", help="member key file, or a devnet member's name such as org2 (default: the devnet's "
                   "first member holding the role the write needs)")


def devnet_record(args: argparse.Namespace) -> dict[str, Any] | None:
    """The devnet's `devnet.json` (from --dir, $LEDGER_DEVNET or ./.devnet), or None when there is none."""
    try:
        return load_devnet(devnet_dir(getattr(args, "dir", None)))
    except DevnetError:
        return None


def node_url(args: argparse.Namespace) -> str:
    if getattr(args, "node", None):
        return str(args.node)
    net = devnet_record(args)
    if net is None:
        raise CliError("no --node given and no running devnet found (start one with `ledger devnet up`)", EXIT_USAGE)
    return str(net["nodes"][0]["http"])


def signing_key(args: argparse.Namespace, role: str) -> SigningKey:
    """--key FILE, --key NAME of a devnet member, or the devnet's first member holding `role`."""
    path = args.key
    net = devnet_record(args)
    if path and net is not None and path in net["keys"] and not Path(path).is_file():
        path = net["keys"][path]
    if not path:
        if net is None:
            raise CliError("no --key given and no devnet found", EXIT_USAGE)
        member = member_with_role(net, role)
        if member is None:
            raise CliError(f"no --key given and the devnet has no member with the {role} role", EXIT_USAGE)
        path = net["keys"][member]
    try:
        return SigningKey.load(path, command_passphrase)
    except KeyFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def signer(args: argparse.Namespace, role: str) -> Signer:
    """A Signer for --key (or the devnet's member with `role`) on --node (or the devnet's first node);
    what a write waits for while it retries is said on stderr."""
    made = Signer(signing_key(args, role), LedgerClient(node_url(args)))
    made.on_wait = lambda text: print(f"waiting: {text}", file=sys.stderr)
    return made


def member_id(text: str, args: argparse.Namespace) -> str:
    """A member given as an id, a devnet member's key name, a key file, or its ledger name."""
    net = devnet_record(args)
    try:
        if net is not None and text in net["keys"]:
            return SigningKey.load(net["keys"][text], command_passphrase).id
        if Path(text).is_file():
            return SigningKey.load(text, command_passphrase).id
    except KeyFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    if len(text) == 40 and all(c in "0123456789abcdef" for c in text):
        return text
    # Otherwise a name that genesis or `member add` gave: ask the node.
    url = getattr(args, "node", None) or (net["nodes"][0]["http"] if net is not None else None)
    if url is None:
        raise CliError(f"unknown member {text!r} (give an id, a key file, or --node to look up names)", EXIT_USAGE)
    with LedgerClient(url) as client:
        try:
            member: dict[str, Any] = client.get("/v1/members", name=text)
        except LedgerError as exc:
            raise CliError(f"unknown member {text!r}: {exc.message}", EXIT_USAGE) from exc
    return str(member["id"])


def fetch(args: argparse.Namespace, path: str, **params: Any) -> dict[str, Any]:
    """`GET path` on --node (or the devnet's first node)."""
    with LedgerClient(node_url(args)) as client:
        body: dict[str, Any] = client.get(path, **params)
    return body


# --- identifiers ---------------------------------------------------------------------------------

IDENTIFIER_FORMS = ("a Handle (88.100.1/EQ-1), a GS1 Digital Link URI (https://id.gs1.org/01/09506000134376/21/12345) "
                    "or path (/01/09506000134376/21/12345), an EPC URN (urn:epc:id:sgtin:9506000.013437.12345) or "
                    "an element string ((01)09506000134376(21)12345)")


def storage_identifier(text: str) -> str:
    """The key the ledger keeps `text` under: the canonical GS1 key (gs1/01/...) for every GS1 form, a
    Handle as given. Checked with the ledger's own parser, so a form the node would refuse fails here."""
    try:
        key, _ = storage_key(text)
    except InvalidIdentifier as exc:
        raise CliError(f"invalid identifier {text!r}: {exc}", EXIT_USAGE) from exc
    return key
