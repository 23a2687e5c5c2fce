"""Python SDK: sign transactions and talk to a node over HTTP.

Delivery (`deliver`, used by `Signer.send` and `ledger id import`): getting signed transactions
committed through a node that may be busy, restarting or behind. `deliver` submits a batch and
waits until every transaction is settled: committed (successfully or not), or refused with a
reason that no retry can change. A temporary
failure is retried with exponential back-off: the node unreachable, overloaded (`mempool_full`),
rate-limiting (429, honouring `Retry-After`), or a transaction still pending when the node's wait
ended. What is retried is the very same signed bytes, so a transaction is never counted twice: a
node that already holds it answers `duplicate`, which means "on its way", and the transaction is
then awaited rather than resent. A transaction the node gave up on (`unordered`) is sent again.
`on_wait` hears what is being waited for, so a command can say it. `deliver` gives up only when
nothing settles for `give_up_after_s` seconds: then no quorum is within reach of this node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import msgpack

from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.tx import SignedTx, compute_tx_id, make_tx


class LedgerError(Exception):
    """The node refused a request or a transaction; `reason` is the node's stable reason string."""

    def __init__(self, reason: str, message: str, status: int = 0, body: Any = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Proven:
    body: dict[str, Any]
    found: bool  # False: the body is a 404 answer proving absence
    note: str | None  # why the answer is not as of the latest anchored height


RATE_LIMIT_RETRIES = 5
MAX_RETRY_AFTER_S = 30


class _WaitWhenRateLimited(httpx.HTTPTransport):
    """A node that answers 429 says when to ask again (`Retry-After`): wait that long and ask again,
    a few times, rather than fail a command that only went a little too fast."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(RATE_LIMIT_RETRIES):
            response = super().handle_request(request)
            wait = response.headers.get("retry-after", "")
            if response.status_code != 429 or not wait.isdigit():
                return response
            response.close()
            time.sleep(min(int(wait), MAX_RETRY_AFTER_S))
        return super().handle_request(request)


class LedgerClient:
    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout, transport=_WaitWhenRateLimited())

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, **params: Any) -> Any:
        """`GET path` with the params that are not None; the JSON answer, or LedgerError (with the node's
        reason, status and body) for an error answer or an unreachable node."""
        try:
            r = self.http.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as exc:
            raise LedgerError("unreachable", f"cannot reach {self.url}: {exc}") from exc
        body = _json(r)
        if r.status_code >= 400:
            raise LedgerError(body.get("error", str(r.status_code)), body.get("message", r.text), r.status_code, body)
        return body

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/v1/status")
        return result

    def member(self, member_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/v1/members/{member_id}")
        return result

    def tx(self, tx_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/v1/tx/{tx_id}")
        return result

    def block(self, height: int | str = "latest") -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/v1/blocks/{height}")
        return result

    def resolve(self, identifier: str, height: int | None = None, proof: bool = False) -> dict[str, Any]:
        """The record of an identifier in any form the node accepts (with a proof reaching the latest
        Ethereum anchor when `proof`: see `proven`)."""
        if proof:
            return self.proven(resolve_path(identifier), height).body
        result: dict[str, Any] = self.get(resolve_path(identifier), height=height)
        return result

    def latest_anchored_height(self) -> int | None:
        """The height of the latest Ethereum anchor recorded in the ledger (None: none yet, or no anchoring)."""
        try:
            return int(self.get("/v1/anchors/latest")["height"])
        except LedgerError as exc:
            if exc.status == 404:
                return None
            raise

    def proven(self, path: str, height: int | None = None, **params: Any) -> Proven:
        """`GET path?proof=true&anchor=true`. An anchor covers only blocks at or below it, never the head, so
        without `height` the answer is as of the latest anchored height; when the thing asked for is newer
        than that, as of the head, with a note that no anchor covers it yet. A 404 answer that carries a
        proof (of absence) is returned with `found` False, not raised: when absent at the head too, the one
        as of the anchored height, whose proof reaches the anchor. `params` are further query parameters."""
        flags = {**params, "proof": "true", "anchor": "true"}
        anchored = self.latest_anchored_height() if height is None else None
        try:
            return Proven(self.get(path, height=height if height is not None else anchored, **flags), True, None)
        except LedgerError as exc:
            if height is not None or anchored is None or exc.status != 404:
                return _absence(exc)
            absent_then = exc
        try:
            return Proven(self.get(path, **flags), True, f"not found as of the latest anchored height {anchored}: "
                          "proven at the head, which no Ethereum anchor covers yet")
        except LedgerError as exc:
            if exc.status != 404:
                raise
            return _absence(absent_then)

    def submit(self, txs: Sequence[SignedTx], wait: bool = True, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Submit signed transactions as one msgpack batch; per-tx results in order."""
        return self.submit_raw([encode(t) for t in txs], wait, timeout)

    def submit_raw(self, raws: Sequence[bytes], wait: bool = True, timeout: float = 30.0) -> list[dict[str, Any]]:
        """`submit` of transactions already encoded."""
        body = msgpack.packb(list(raws), use_bin_type=True)
        params = {"wait": str(wait).lower(), "timeout": str(timeout)}
        try:
            r = self.http.post(
                "/v1/tx", content=body, params=params, headers={"content-type": "application/msgpack"},
                timeout=timeout + 30,
            )
        except httpx.HTTPError as exc:
            raise LedgerError("unreachable", f"cannot reach {self.url}: {exc}") from exc
        data = _json(r)
        if "results" in data:
            results: list[dict[str, Any]] = data["results"]
            return results
        raise LedgerError(data.get("error", str(r.status_code)), data.get("message", r.text), r.status_code, data)


def resolve_path(identifier: str) -> str:
    """`/v1/resolve/{identifier}` with the identifier percent-encoded (the node decodes it back), so that
    '?', '#', '%' and spaces in a URI or a Handle reach the node as part of the identifier."""
    return "/v1/resolve/" + quote(identifier, safe="/")


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        return {"error": str(r.status_code), "message": r.text[:500]}
    return data if isinstance(data, dict) else {"value": data}


MAX_TRACKED_NONCES = 100_000  # signed txs whose outcome a Signer still waits to learn from


class Signer:
    """Signs a member's transactions with consecutive nonces, starting from the node's view.

    A node still catching up (restarted, healed from a partition) reports an old nonce: signing from
    it would reuse nonces, and those rows are refused `replayed_nonce`. So the signer also keeps the
    highest nonce it has seen used (its own txs that committed, or were refused as replayed: `learn`),
    and `resync` never goes below it, whichever node it reads."""

    def __init__(self, key: SigningKey, client: LedgerClient, chain_id: str | None = None) -> None:
        self.key = key
        self.client = client
        self.chain_id = chain_id or client.status()["chain_id"]
        self.member_id = key.id
        self.next_nonce = 0
        self.used_nonce = 0  # the highest nonce of this member known to be used
        self._signed: dict[str, int] = {}  # tx id (hex) -> nonce, of txs whose outcome is not learnt yet
        self.on_wait: Callable[[str], None] | None = None  # told what a send waits for, while it retries
        self.resync()

    def resync(self) -> None:
        """Continue from the used nonce (after transactions were refused or lost): the node's, or the
        higher one this signer saw used itself (the node may lag behind the chain)."""
        try:
            member = self.client.member(self.key.id)
        except LedgerError as exc:
            if exc.status != 404:
                raise
            # A member that rotated its key keeps its first id: find it by the current key.
            member = self.client.get("/v1/members", public_key=self.key.public_key.hex())
        self.member_id = str(member["id"])
        self.next_nonce = max(int(member["nonce"]), self.used_nonce) + 1

    def sign(self, kind: str, payload: Any) -> SignedTx:
        tx = make_tx(self.key, self.chain_id, self.next_nonce, kind, payload, sender=self.member_id)
        self._signed[compute_tx_id(encode(tx)).hex()] = self.next_nonce
        if len(self._signed) > MAX_TRACKED_NONCES:
            del self._signed[next(iter(self._signed))]  # the oldest: its outcome never came back
        self.next_nonce += 1
        return tx

    def learn(self, results: Sequence[dict[str, Any]]) -> None:
        """Note the nonces that `deliver`'s answers show used: committed successfully (a failed
        envelope consumes nothing), or refused because the nonce was used already."""
        for r in results:
            nonce = self._signed.pop(str(r.get("tx_id", "")), None)
            if nonce is None:
                continue
            if (r.get("status") == "committed" and r.get("ok")) or r.get("reason") == "replayed_nonce":
                self.used_nonce = max(self.used_nonce, nonce)

    def send(self, kind: str, payload: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Sign, submit and wait for one transaction; raise LedgerError unless it commits successfully.
        Temporary failures are retried (see ledger.delivery), and said to `on_wait` when set."""
        result = deliver(self.client, [self.sign(kind, payload)], wait_s=timeout, on_wait=self.on_wait)[0]
        self.learn([result])
        check_result(result, self)
        return result


def check_result(result: dict[str, Any], signer: Signer | None = None) -> None:
    if not result.get("accepted"):
        if signer is not None:
            signer.resync()
        raise LedgerError(result.get("reason", "rejected"), result.get("message", ""), 0, result)
    if result.get("status") == "refused":
        if signer is not None:
            signer.resync()
        raise LedgerError(result.get("reason", "refused"), result.get("message", ""), 0, result)
    if result.get("status") != "committed":
        raise LedgerError("timeout", f"transaction {result['tx_id']} not committed yet", 0, result)
    if not result.get("ok"):
        raise LedgerError(result.get("reason", "failed"), result.get("message", ""), 0, result)


def _absence(exc: LedgerError) -> Proven:
    """A 404 answer carrying a proof of absence, or `exc` raised."""
    if exc.status == 404 and isinstance(exc.body, dict) and "proof" in exc.body:
        return Proven(exc.body, False, None)
    raise exc


# --- delivery ------------------------------------------------------------------------------------

TEMPORARY = frozenset({"mempool_full", "rate_limited", "unreachable", "unordered", "timeout", "503", "429", "502",
                       "504"})
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
GIVE_UP_AFTER_S = 300.0


def deliver(
    client: LedgerClient,
    txs: Sequence[SignedTx],
    wait_s: float = 30.0,
    give_up_after_s: float = GIVE_UP_AFTER_S,
    on_wait: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[dict[str, Any]]:
    """Each tx's final answer (as `POST /v1/tx` gives it: committed, or not accepted with a reason), in
    order. Raises LedgerError("unavailable") when nothing settles for `give_up_after_s`."""
    raws = [encode(t) for t in txs]
    ids = [compute_tx_id(r).hex() for r in raws]
    settled: dict[int, dict[str, Any]] = {}
    to_send = list(range(len(raws)))  # indexes the node has not accepted yet
    waiting: list[int] = []  # accepted (or held already) and not committed yet
    backoff, last_progress = FIRST_BACKOFF_S, clock()
    while len(settled) < len(raws):
        progressed, why = False, ""
        if to_send:
            answers, why = _submit(client, [raws[i] for i in to_send], wait_s)
            if answers is not None:
                retry: list[int] = []
                for i, answer in zip(to_send, answers, strict=True):
                    state = _classify(answer)
                    if state == "settled":
                        settled[i], progressed = answer, True
                    elif state == "waiting":
                        waiting.append(i)
                    else:
                        retry.append(i)
                        why = why or answer.get("reason", "temporary refusal")
                to_send = retry
        if waiting and _has_moved(client, ids[waiting[-1]]):
            # The last one settled (a signer's txs commit in nonce order): look at each of the others.
            still: list[int] = []
            for i in waiting:
                now_said = _look_up(client, ids[i])
                state = "waiting" if now_said is None else _classify(now_said)
                if state == "settled" and now_said is not None:
                    settled[i], progressed = now_said, True
                elif state == "retry":
                    to_send.append(i)
                else:
                    still.append(i)
            waiting = still
        if waiting:
            why = why or "not committed yet"
        if len(settled) == len(raws):
            break
        now = clock()
        if progressed:
            backoff, last_progress = FIRST_BACKOFF_S, now
            continue
        if now - last_progress > give_up_after_s:
            raise LedgerError("unavailable", f"nothing settled for {give_up_after_s:.0f} s ({why}): no quorum "
                              f"reachable through {client.url}")
        if on_wait is not None:
            on_wait(f"{len(raws) - len(settled)} transaction(s) waiting: {why}; retrying in {backoff:.1f} s")
        sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_S)
    return [settled[i] for i in range(len(raws))]


def _submit(client: LedgerClient, raws: list[bytes], wait_s: float) -> tuple[list[dict[str, Any]] | None, str]:
    """Per-tx answers, or None and why the whole request failed for a temporary reason."""
    try:
        return client.submit_raw(raws, wait=True, timeout=wait_s), ""
    except LedgerError as exc:
        if exc.reason in TEMPORARY or str(exc.status) in TEMPORARY:
            retry_after = _retry_after(exc)
            return None, f"{exc.reason}{f' (retry after {retry_after} s)' if retry_after else ''}"
        if isinstance(exc.body, dict) and isinstance(exc.body.get("results"), list):
            return exc.body["results"], ""  # a batch with no tx accepted: each says why
        raise


def _retry_after(exc: LedgerError) -> str | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    value = body.get("retry_after")
    return None if value is None else str(value)


def _classify(answer: dict[str, Any]) -> str:
    """settled (committed, or refused for good), waiting (held by the node), or retry (send again)."""
    status = answer.get("status")
    if status == "committed":
        return "settled"
    if status == "pending" or answer.get("reason") == "duplicate":
        return "waiting"
    reason = str(answer.get("reason", ""))
    if status == "refused" or not answer.get("accepted", True):
        return "retry" if reason in TEMPORARY else "settled"
    return "waiting"


def _has_moved(client: LedgerClient, tx_id: str) -> bool:
    answer = _look_up(client, tx_id)
    return answer is not None and _classify(answer) != "waiting"


def _look_up(client: LedgerClient, tx_id: str) -> dict[str, Any] | None:
    """What the node says of a transaction now (None: it does not know it, or cannot be reached)."""
    try:
        answer: dict[str, Any] = client.tx(tx_id)
    except LedgerError as exc:
        if exc.status == 404:
            return {"tx_id": tx_id, "accepted": False, "reason": "unordered", "message": "the node lost it"}
        return None
    answer.setdefault("accepted", True)
    return answer
