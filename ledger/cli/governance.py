"""`ledger governance list|approve|reject`: proposals of admin actions and the admins' votes on them.

With a threshold above one, an admin action (`member add|remove|roles`, `id prefix` of a top-level
prefix) makes a proposal; those commands print its id (`proposal_fields`), and the others approve or
reject it here.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from ledger.cli.common import (
    EXIT_USAGE,
    CliError,
    Subcommands,
    add_command,
    add_group,
    add_read_options,
    add_write_options,
    fetch,
    print_json,
    signer,
)
from ledger.client import LedgerError
from ledger.governance import STATUSES, ProposalVote, compute_proposal_id

GROUP_DETAILS = """\
When the genesis sets a threshold of M admin approvals (`ledger devnet up --admins K --approvals M`),
admin actions (adding and removing members, setting roles, creating top-level prefixes) are proposals:
the command that makes one prints its id, and it takes effect once M admins approved it. A proposal
that can no longer reach M (too many rejections) is rejected; one not decided in time expires. IDs may
be shortened to a unique prefix (at least 6 hex digits)."""

MIN_PREFIX = 6


def _proposal_path(proposal_id: str) -> str:
    return f"/v1/governance/proposals/{proposal_id}"


def proposal_fields(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    """For an admin action's committed tx: the proposal it made ({} when it ran at once), with a note on
    stderr saying how to approve it."""
    proposal_id = compute_proposal_id(bytes.fromhex(result["tx_id"]))
    try:
        found = fetch(args, _proposal_path(proposal_id))
    except LedgerError as exc:
        if exc.status == 404:
            return {}
        raise
    missing = found["approvals_needed"] - found["approvals_counted"]
    print(f"proposal {proposal_id} needs {missing} more admin approval(s): "
          f"ledger governance approve {proposal_id[:12]} --key <another admin>", file=sys.stderr)
    return {"proposal": proposal_id, "status": found["status"],
            "approvals": f"{found['approvals_counted']} of {found['approvals_needed']}"}


def _full_id(args: argparse.Namespace, text: str) -> str:
    """A proposal id from its full hex or a unique prefix of it."""
    text = text.lower()
    if len(text) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in text):
        raise CliError(f"a proposal id is hex (at least {MIN_PREFIX} digits), not {text!r}", EXIT_USAGE)
    if len(text) == 64:
        return text
    listed = fetch(args, "/v1/governance/proposals", limit=500)["proposals"]
    matches = [p["proposal"]["id"] for p in listed if p["proposal"]["id"].startswith(text)]
    if len(matches) != 1:
        raise CliError(f"{'no' if not matches else 'more than one'} recent proposal id starts with {text}", EXIT_USAGE)
    return str(matches[0])


def _vote(args: argparse.Namespace, kind: str) -> int:
    proposal_id = _full_id(args, args.id)
    result = signer(args, "admin").send(kind, ProposalVote(proposal_id))
    found = fetch(args, _proposal_path(proposal_id))
    print_json({"proposal": proposal_id, "status": found["status"],
                "approvals": f"{found['approvals_counted']} of {found['approvals_needed']}",
                "rejections": len(found["proposal"]["rejections"]), "tx_id": result["tx_id"],
                "height": result["height"]})
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    return _vote(args, "governance.approve")


def cmd_reject(args: argparse.Namespace) -> int:
    return _vote(args, "governance.reject")


def _summary(item: dict[str, Any]) -> str:
    action = item["action"]
    if not isinstance(action, dict):
        return ""
    return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in action.items()
                    if k != "public_key")


def cmd_list(args: argparse.Namespace) -> int:
    status = None if args.status == "all" else args.status
    body = fetch(args, "/v1/governance/proposals", status=status, limit=args.limit)
    if args.json:
        print_json(body)
        return 0
    print(f"{'seq':>4} {'id':<12} {'kind':<14} {'approvals':<9} {'status':<8} {'expires (UTC)':<16} action")
    for item in body["proposals"]:
        p = item["proposal"]
        expires = datetime.fromtimestamp(p["expires_at"] / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        approvals = f"{item['approvals_counted']}/{item['approvals_needed']}"
        print(f"{p['seq']:>4} {p['id'][:12]:<12} {p['kind']:<14} {approvals:<9} {item['status']:<8} {expires:<16} "
              f"{_summary(item)}")
    if not body["proposals"]:
        print(f"(no {status + ' ' if status else ''}proposals)")
    return 0


def add_commands(sub: Subcommands) -> None:
    gov = add_group(sub, "governance", "proposals of admin actions: list, approve, reject", GROUP_DETAILS)
    p = add_command(gov, "list", "list proposals, newest first")
    p.add_argument("--status", choices=(*STATUSES, "all"), default="all", help="only proposals in this state")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="print the node's JSON answer")
    add_read_options(p)
    p.set_defaults(func=cmd_list)
    for name, summary, func in (
        ("approve", "admin: approve a proposal (the approval that reaches the threshold runs it)", cmd_approve),
        ("reject", "admin: reject a proposal (it dies once it can no longer reach the threshold)", cmd_reject),
    ):
        p = add_command(gov, name, summary)
        p.add_argument("id", metavar="ID", help="the proposal id, or a unique prefix of it")
        add_write_options(p)
        p.set_defaults(func=func)
