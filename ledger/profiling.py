"""Where a node's time goes: sampling profiles of running node processes, split into stages.

`ledger bench --profile DIR` runs py-spy (a sampling profiler that reads a process from outside: no code
changes, no pauses with --nonblocking) on every node process while the load runs. Each node's samples are
written as collapsed stacks (one line per distinct stack: frames root first, then the sample count), from
which this module computes the per-stage table and draws the flame graph (an SVG: hover a bar for its name
and share).

A sample's stage is the innermost frame that a stage rule claims, so a hash computed for the state tree
counts as state tree, and a signature verification as signature check wherever it is called from. Frames
no rule claims (asyncio's loop, the standard library) pass the sample on to their callers; a stack no rule
claims at all is "other".
"""

from __future__ import annotations

import html
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Stack = tuple[str, ...]  # frames, root first, each "function (module/file.py)"

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass(frozen=True)
class Rule:
    stage: str
    files: tuple[str, ...]  # a frame's file ends with one of these (or contains it, for a directory)
    functions: tuple[str, ...] = ()  # if given, the function name must contain one of these too

    def claims(self, func: str, file: str) -> bool:
        if not any(file.endswith(f) or f"/{f}" in file or file.startswith(f) for f in self.files):
            return False
        return not self.functions or any(name in func for name in self.functions)


# Tried in order at each frame, innermost frame first. The order matters only where rules overlap.
RULES: tuple[Rule, ...] = (
    Rule("signature check", ("ledger/crypto.py", "nacl/", "cryptography/"), ("verify",)),
    Rule("LevelDB write", ("ledger/store.py",), ("write_batch",)),
    Rule("LevelDB read", ("ledger/store.py",)),
    Rule("state tree", ("ledger/smt.py", "ledger/merkle.py")),
    # The codec's generated record functions run from "<string>".
    Rule("decode", ("ledger/codec.py", "<string>"), ("decode", "unpack", "conv", "from_plain", "_fail")),
    Rule("encoding", ("ledger/codec.py",)),
    Rule("encoding", ("<string>",), ("encode_record",)),
    Rule("decode", ("ledger/tx.py",), ("decode",)),
    Rule("execution", (
        "ledger/state.py", "ledger/ledger_app.py", "ledger/chaindb.py", "ledger/chain.py", "ledger/tx.py",
        "ledger/resolver/", "ledger/nft/", "ledger/market/", "ledger/members.py", "ledger/governance.py",
        "ledger/validators.py", "ledger/anchor/records.py", "ledger/system_txs.py",
    )),
    Rule("admission (mempool)", ("ledger/mempool.py",)),
    Rule("consensus", ("ledger/consensus/", "ledger/driver.py")),
    Rule("peer links (TLS, frames)", ("ledger/net/", "ssl.py")),
    # The event loop's own work (uvloop's C code: polling, socket reads and writes, callbacks) shows as
    # the loop's Python entry frame; without this rule it would fall to whoever started the loop.
    Rule("event loop and socket I/O", (
        "asyncio/runners.py", "asyncio/base_events.py", "asyncio/events.py", "selectors.py", "uvloop/",
    )),
    Rule("HTTP intake and answers", (
        "ledger/api/", "uvicorn/", "h11/", "starlette/", "fastapi/", "httptools/", "anyio/", "pydantic",
    )),
)
OTHER = "other"
STAGES: tuple[str, ...] = tuple(dict.fromkeys([r.stage for r in RULES] + [OTHER]))


def parse_frame(frame: str) -> tuple[str, str]:
    """("function", "file") of a py-spy frame "function (file:line)"; the line is dropped."""
    m = _FRAME.match(frame.strip())
    return (m.group("func"), m.group("file")) if m else (frame.strip(), "")


def parse_collapsed(text: str) -> Counter[Stack]:
    """The stacks of a collapsed-stack file ("f1;f2;...;fn COUNT" per line), lines dropped from frames."""
    stacks: Counter[Stack] = Counter()
    for line in text.splitlines():
        head, _, count = line.rpartition(" ")
        if not head or not count.isdigit():
            continue
        frames = tuple(_short(*parse_frame(f)) for f in head.split(";") if f)
        stacks[frames] += int(count)
    return stacks


def _short(func: str, file: str) -> str:
    """"function (file)" with the file's path cut to the package that holds it."""
    for marker in ("site-packages/", "/lib/python3", "/ledger/", "/devnet/"):
        if marker in file:
            tail = file.split(marker, 1)[1]
            if marker in ("/ledger/", "/devnet/"):
                tail = marker.strip("/") + "/" + tail
            elif marker == "/lib/python3":
                tail = tail.split("/", 1)[1] if "/" in tail else tail
            file = tail
            break
    return f"{func} ({file})"


def stage_of(stack: Stack) -> str:
    for frame in reversed(stack):
        func, file = parse_frame(frame)
        for rule in RULES:
            if rule.claims(func, file):
                return rule.stage
    return OTHER


def stage_samples(stacks: Mapping[Stack, int]) -> Counter[str]:
    out: Counter[str] = Counter()
    for stack, count in stacks.items():
        out[stage_of(stack)] += count
    return out


def stage_table(per_node: Mapping[str, Mapping[Stack, int]]) -> str:
    """A Markdown table: each stage's share of every node's samples, and of all nodes' together."""
    counts = {node: stage_samples(stacks) for node, stacks in per_node.items()}
    total = Counter[str]()
    for c in counts.values():
        total.update(c)
    nodes = sorted(counts)
    lines = ["| stage | " + " | ".join(nodes) + " | all nodes |", "|---|" + "---|" * (len(nodes) + 1)]
    for stage in STAGES:
        if not total[stage]:
            continue
        cells = [_share(counts[n][stage], sum(counts[n].values())) for n in nodes]
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {_share(total[stage], sum(total.values()))} |")
    lines.append("| samples | " + " | ".join(f"{sum(counts[n].values()):,}" for n in nodes)
                 + f" | {sum(total.values()):,} |")
    return "\n".join(lines)


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


# --- the flame graph -----------------------------------------------------------------------------

_COLOURS = {stage: colour for stage, colour in zip(STAGES, (
    "#e4572e", "#4f6d7a", "#29a19c", "#f3a712", "#a8c686", "#669bbc", "#c3a29e", "#8e7dbe", "#56a3a6",
    "#d4b483", "#9b9b9b", "#bbbbbb", "#dddddd",
), strict=True)}


@dataclass
class _Bar:
    samples: int = 0
    stages: Counter[str] = field(default_factory=Counter)
    kids: dict[str, _Bar] = field(default_factory=dict)

    def depth(self) -> int:
        return max((1 + k.depth() for k in self.kids.values()), default=0)


def flame_svg(stacks: Mapping[Stack, int], title: str, width: int = 1600, row: int = 16,
              min_share: float = 0.0005) -> str:
    """An SVG flame graph (root at the bottom), each bar coloured by the stage most of its samples count as."""
    root = _Bar()
    total = sum(stacks.values())
    for stack, count in stacks.items():
        stage = stage_of(stack)
        bar = root
        for frame in stack:
            bar = bar.kids.setdefault(frame, _Bar())
            bar.samples += count
            bar.stages[stage] += count
    height = (root.depth() + 1) * row
    bars: list[str] = []

    def place(level: dict[str, _Bar], x: float, y_level: int) -> None:
        for frame, bar in sorted(level.items()):
            w = width * bar.samples / total
            if bar.samples / total >= min_share:
                stage = bar.stages.most_common(1)[0][0]
                y = height - (y_level + 1) * row
                tip = f"{html.escape(frame)}: {100 * bar.samples / total:.2f}% ({html.escape(stage)})"
                text = html.escape(_fit(frame, w))
                bars.append(f'<g><title>{tip}</title><rect x="{x:.1f}" y="{y}" width="{max(w - 0.5, 0.5):.1f}" '
                            f'height="{row - 1}" fill="{_COLOURS.get(stage, "#ccc")}"/>'
                            + (f'<text x="{x + 2:.1f}" y="{y + row - 4}">{text}</text>' if text else "") + "</g>")
                place(bar.kids, x, y_level + 1)
            x += w

    place(root.kids, 0.0, 0)
    per_row = 6
    legend = "".join(f'<rect x="{8 + 200 * (i % per_row)}" y="{row * (i // per_row) + 3}" width="10" height="10" '
                     f'fill="{c}"/><text x="{22 + 200 * (i % per_row)}" y="{row * (i // per_row) + 12}">'
                     f'{html.escape(s)}</text>' for i, (s, c) in enumerate(_COLOURS.items()))
    top = row * (2 + (len(_COLOURS) + per_row - 1) // per_row)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + top}" '
            f'font-family="monospace" font-size="11">'
            f'<text x="8" y="{row * 0.8}" font-size="13">{html.escape(title)}</text>'
            f'<g transform="translate(0,{row})">{legend}</g>'
            f'<g transform="translate(0,{top})">{"".join(bars)}</g></svg>\n')


def _fit(frame: str, width: float) -> str:
    chars = int(width / 7)
    if chars < 4:
        return ""
    return frame if len(frame) <= chars else frame[: chars - 2] + ".."


# --- recording ------------------------------------------------------------------------------------


class ProfilerMissing(RuntimeError):
    pass


def find_py_spy() -> str:
    """The py-spy beside this Python (its virtual environment), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    exe = str(beside) if beside.exists() else shutil.which("py-spy")
    if exe is None:
        raise ProfilerMissing("--profile needs py-spy: pip install 'ledger[profile]' (or py-spy)")
    return exe


class Profilers:
    """One py-spy per process, recording collapsed stacks until `stop`."""

    def __init__(self, pids: Mapping[str, int], out_dir: Path, rate: int = 100) -> None:
        exe = find_py_spy()
        out_dir.mkdir(parents=True, exist_ok=True)
        self.paths = {name: out_dir / f"{name}.collapsed" for name in pids}
        self._procs = [
            subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking",
                              "--format", "raw", "--output", str(self.paths[name])],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for name, pid in pids.items()
        ]

    def stop(self) -> dict[str, Counter[Stack]]:
        """Stop every recorder (it writes its file on SIGINT) and read what they wrote."""
        for p in self._procs:
            p.send_signal(signal.SIGINT)
        for p in self._procs:
            try:
                _, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            if p.returncode not in (0, -signal.SIGINT) and b"Wrote" not in err:
                raise RuntimeError(f"py-spy failed: {err.decode(errors='replace').strip()[-400:]}")
        return {name: parse_collapsed(path.read_text()) if path.exists() else Counter()
                for name, path in self.paths.items()}


def merged(per_node: Iterable[Mapping[Stack, int]]) -> Counter[Stack]:
    out: Counter[Stack] = Counter()
    for stacks in per_node:
        out.update(stacks)
    return out


def write_report(out_dir: Path, per_node: Mapping[str, Mapping[Stack, int]], title: str) -> Sequence[Path]:
    """DIR/stages.md (the table) and DIR/flame.svg (all nodes' samples together)."""
    table = out_dir / "stages.md"
    table.write_text(f"{title}\n\n{stage_table(per_node)}\n")
    flame = out_dir / "flame.svg"
    flame.write_text(flame_svg(merged(per_node.values()), title))
    return table, flame
