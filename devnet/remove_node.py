"""`ledger devnet remove-node ID`: take a validator out of a running devnet by governance, the inverse of add-node.

Steps: propose `validator.remove` and have the devnet's admins approve it up to the threshold; on a devnet
that anchors, also drop the node's Ethereum address from the certified submitters (`anchor.settings`, the
governance action `ledger anchoring set` sends), since a validator that left has no say in anchors either;
then stop the node's process (at once if the others running are a quorum of the set in force, else once
the removal governs) and move its entry from `nodes` to `removed` in `devnet.json` (so `devnet status` and
`devnet down` no longer count it; its home stays, with its keys). `ledger validator remove` alone changes
the set and nothing of the devnet's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from devnet.add_node import CONFIG_FILE, admin_keys, approvals_needed, decide, height_of
from devnet.processes import is_alive, stop_pid
from devnet.record import DevnetError, load_devnet, save_devnet
from ledger.anchor.settings import AnchoringSettings
from ledger.client import LedgerClient, LedgerError
from ledger.consensus.quorum import quorum_size
from ledger.validators import ValidatorRemove


def without_submitter(certified: dict[str, Any] | None, submitter: str) -> AnchoringSettings | None:
    """The certified anchoring settings (`GET /v1/anchors`' `settings`) without `submitter`; None when there is
    nothing to change (it is not listed, or the ledger does not anchor) or it is the last submitter left."""
    if certified is None or submitter not in certified["submitters"] or len(certified["submitters"]) == 1:
        return None
    return AnchoringSettings(int(certified["eth_chain_id"]), str(certified["contract"]),
                             tuple(s for s in certified["submitters"] if s != submitter))


def _submitter_of(home: Path) -> str | None:
    """The node's Ethereum address, when its config names a key file that exists."""
    eth = json.loads((home / CONFIG_FILE).read_text()).get("ethereum")
    if not eth or not eth.get("key_file") or not (home / eth["key_file"]).exists():
        return None
    from ledger.anchor.contract import load_key_file

    return str(load_key_file(home / eth["key_file"]).address).lower()


def remove_node(directory: Path, validator: str, timeout: float = 60.0) -> dict[str, Any]:
    """Remove validator `validator` (its id); returns its devnet.json entry with `takes_effect_at` and the
    submitter dropped (None when none was)."""
    data = load_devnet(directory)
    entry = next((n for n in data["nodes"] if n["id"] == validator), None)
    if entry is None:
        raise DevnetError(f"{validator} is not a node of the devnet at {directory} (see `ledger devnet status`)")
    others = [n for n in data["nodes"] if n is not entry and is_alive(n.get("pid"))]
    if not others:
        raise DevnetError(f"no other node of the devnet at {directory} is running")
    url = others[0]["http"]
    admins = admin_keys(data)
    needed = approvals_needed(url)
    if len(admins) < needed:
        raise DevnetError(f"removing a validator needs {needed} admin approvals; devnet.json has "
                          f"{len(admins)} admin key(s)")
    submitter = _submitter_of(Path(entry["home"]))
    dropped_at = None
    try:
        with LedgerClient(url) as client:
            decided_at = decide(client, admins, needed, "validator.remove", ValidatorRemove(validator))
            settings = None if submitter is None else without_submitter(client.get("/v1/anchors")["settings"],
                                                                         submitter)
            if settings is not None:
                dropped_at = decide(client, admins, needed, "anchor.settings", settings)
            sets = client.get("/v1/validators")["sets"]
    except (LedgerError, httpx.HTTPError) as exc:
        raise DevnetError(f"removing {validator} failed: {exc}") from exc
    takes_effect_at = max(int(s["active_from"]) for s in sets)
    # It stops now if the others running are a quorum of the set in force (they certify the blocks up to the
    # change without it; an idle ledger may take long to get there), else once the new set governs.
    in_force = len(sets[0]["validators"])
    deadline = time.monotonic() + timeout
    while len(others) < quorum_size(in_force) and (height_of(url) or 0) < takes_effect_at:
        if time.monotonic() > deadline:
            raise DevnetError(f"the removal (decided at height {decided_at}) did not take effect at height "
                              f"{takes_effect_at} within {timeout:.0f} s; the ledger makes blocks only as "
                              "transactions come: send some, then stop the node by hand")
        time.sleep(0.2)
    if is_alive(entry.get("pid")):
        stop_pid(int(entry["pid"]))
    data["nodes"].remove(entry)
    data.setdefault("removed", []).append({**entry, "pid": None})
    save_devnet(directory, data)
    return {**entry, "pid": None, "decided_at": decided_at, "takes_effect_at": takes_effect_at,
            "submitter_dropped": None if dropped_at is None else submitter, "submitter_dropped_at": dropped_at}
