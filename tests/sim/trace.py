"""A readable transcript of one simulated run: faults, messages, ticks and decisions per node.

Recording costs time, so a search runs without it and replays a failing schedule with it (the
simulation is deterministic: the same seed makes the same run). Each line starts with the step;
messages read `src->dst KIND fields`, decisions are in capitals (DECIDES, LEAVES, INSTALLS,
REPORTS EVIDENCE, GIVES UP, CATCH-UP), faults start with FAULT.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from ledger.consensus.messages import MalformedMessage, NewView, ViewChange, decode_body, decode_envelope
from ledger.driver import MSG_CONSENSUS, MSG_FORWARD, decode_forwarded

MAX_LINES = 200_000  # a transcript past this keeps its head and its tail


def _short(value: bytes) -> str:
    return value.hex()[:8] if value else "-"


def describe_message(raw: bytes) -> str:
    """One consensus message in a line: kind, signer, and the fields that matter."""
    try:
        env = decode_envelope(raw)
        body = decode_body(env)
    except MalformedMessage as exc:
        return f"MALFORMED ({exc})"
    fields = [env.kind.upper(), f"by {env.sender[:8]}"]
    if isinstance(body, ViewChange):
        base = max(body.checkpoint.height if body.checkpoint else 0, body.certificate.height if body.certificate else 0)
        fields += [f"v{body.view}", f"base {base}", f"{len(body.prepared)} prepared"]
        fields += [f"h{p.height}@v{p.view}:{_short(p.block_hash)}" for p in body.prepared]
        if body.suspicion:
            fields.append(f"suspicion by {len(body.suspicion)}")
    elif isinstance(body, NewView):
        fields += [f"v{body.view}", f"{len(body.viewchanges)} view changes", f"base {body.base_height}"]
        fields += [f"re-propose {_short(h)}" for h in body.chosen]
    else:
        for name in ("view", "height", "block_hash"):
            if hasattr(body, name):
                value = getattr(body, name)
                fields.append(_short(value) if isinstance(value, bytes) else f"{name[0]}{value}")
    if env.attachment:
        fields.append(f"+{len(env.attachment)} bytes attached")
    return " ".join(fields)


def describe_payload(payload: bytes) -> str:
    """A peer message as the driver frames it (consensus message or forwarded transactions)."""
    if payload and payload[0] == MSG_CONSENSUS:
        return describe_message(payload[1:])
    if payload and payload[0] == MSG_FORWARD:
        return f"FORWARD {len(decode_forwarded(payload[1:]))} txs"
    return f"UNKNOWN {len(payload)} bytes"


class Transcript:
    """Lines of one run; past MAX_LINES it keeps the first half and the latest half."""

    def __init__(self, header: list[str]) -> None:
        self.header = list(header)
        self.head: list[str] = []
        self.tail: deque[str] = deque(maxlen=MAX_LINES // 2)
        self.left_out = 0

    def note(self, time: int, text: str) -> None:
        line = f"t={time:<6} {text}"
        if len(self.head) < MAX_LINES // 2:
            self.head.append(line)
            return
        if len(self.tail) == self.tail.maxlen:
            self.left_out += 1
        self.tail.append(line)

    def write(self, path: Path, footer: list[str]) -> Path:
        middle = [f"... {self.left_out} lines left out ..."] if self.left_out else []
        lines = [*("# " + h for h in self.header), *self.head, *middle, *self.tail, *("# " + f for f in footer)]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return path
