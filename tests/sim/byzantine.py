"""Byzantine validators for the simulation: they run the honest replica (to know what to say) and
rewrite what it sends (`SimNode.outgoing`) or what they answer to catch-up (`SimNode.serves`).

Each forger draws a mutation from its catalogue for every message it forges and counts it by name
(`forged`), so a scenario can check the attack happened. The catalogue covers each rule a receiver
applies (ledger/consensus/newview.py, chain.check_certificate): forged, stale or misplaced prepared
certificates, wrong views, bogus suspicions, new views that do not carry or do not compute what they
claim, and catch-up answers with forged, mismatched or missing certificates. Some mutations stay
within what a correct message may say (older proofs, an older base): those must be harmless too.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from ledger.chain import Block, CommitCertificate, ValidatorSignature, compute_block_hash
from ledger.codec import CodecError, decode, encode
from ledger.consensus.actions import Action, Broadcast, Send
from ledger.consensus.messages import (
    KIND_NEWVIEW,
    KIND_PREPREPARE,
    KIND_VIEWCHANGE,
    CheckpointProof,
    Envelope,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Suspect,
    ViewChange,
    decode_block,
    decode_body,
    decode_envelope,
    encode_envelope,
    sign_message,
)
from ledger.consensus.quorum import quorum_size
from ledger.net.sync import BlockBatch, CertifiedBlock
from tests.sim.network import Network, SimNode

Rewrite = Callable[[SimNode, list[Action]], list[Action]]


def _fake_signatures(rng: random.Random, validators: list[str]) -> tuple[ValidatorSignature, ...]:
    return tuple(ValidatorSignature(v, rng.randbytes(64)) for v in sorted(validators))


def equivocator(net: Network) -> Rewrite:
    """A primary that sends one block to some backups and another block to the rest, and both to one
    of them (a witness: without one, no honest replica might ever hold both signed pre-prepares,
    and the evidence a scenario expects could not exist)."""

    def rewrite(node: SimNode, actions: list[Action]) -> list[Action]:
        out: list[Action] = []
        for a in actions:
            env = decode_envelope(a.message) if isinstance(a, Broadcast) else None
            if not isinstance(a, Broadcast) or env is None or env.kind != KIND_PREPREPARE:
                out.append(a)
                continue
            body = decode_body(env)
            block = decode_block(env.attachment)
            alt_txs = list(block.txs[:-1]) + [f"evil-{body.view}-{body.height}".encode()]
            try:
                alt = node.app.propose(alt_txs, block.header.view, node.id, body.prev_hash)
            except ValueError:
                out.append(a)
                continue
            alt_hash = compute_block_hash(alt.header)
            alt_env = sign_message(
                node.key, net.chain_id, PrePrepare(body.view, body.height, alt_hash, alt.header.prev_hash), encode(alt)
            )
            peers = [v for v in net.config.validators if v != node.id]
            cut = net.rng.randint(1, len(peers) - 1)
            for i, v in enumerate(peers):
                out.append(Send(v, a.message if i < cut else encode_envelope(alt_env)))
            out.append(Send(peers[cut - 1], encode_envelope(alt_env)))  # the witness gets both
            node.equivocated += 1
        return out

    return rewrite


class ViewChangeForger:
    """Replaces the view changes and new views a Byzantine validator sends with forged ones, sends
    some of them only to part of the validators (the others get the honest one), and now and then
    injects a forged view change, suspicion or new view of its own.

    `rng` is the forger's own (seeded from the scenario's), so forging does not shift the network's
    draws more than the messages it adds.
    """

    VIEW_CHANGE_MUTATIONS = (
        "view_zero", "stale_view", "far_view", "forged_prepares", "fabricated_proof", "primary_prepares",
        "too_few_prepares", "duplicate_signers", "beyond_pipeline", "proof_from_new_view", "unordered_proofs",
        "forged_checkpoint", "forged_certificate", "bogus_suspicion", "suspicion_of_other_view",
        "stale_prepared", "stale_base", "missing_attachment", "wrong_attachment",
    )
    NEW_VIEW_MUTATIONS = (
        "too_few_view_changes", "duplicate_view_change", "view_change_of_other_view", "tampered_view_change",
        "malformed_view_change", "wrong_base", "dropped_reproposal", "extra_reproposal", "swapped_reproposal",
        "stale_new_view",
    )

    def __init__(self, net: Network, rng: random.Random, view_changes: bool = True, new_views: bool = True,
                 inject_every: float = 0.05) -> None:
        self.net = net
        self.rng = rng
        self.view_changes = view_changes
        self.new_views = new_views
        self.inject_every = inject_every  # chance per driver call of an unprompted forgery
        self.forged: Counter[str] = Counter()
        self._proofs: list[PreparedProof] = []  # every prepared proof its own view changes carried
        self._bases: list[tuple[CheckpointProof | None, CommitCertificate | None]] = []
        self._old_view_changes: list[bytes] = []  # its own earlier view changes, stripped
        self._old_new_views: list[bytes] = []

    # --- the rewrite -------------------------------------------------------------------------------

    def rewrite(self, node: SimNode, actions: list[Action]) -> list[Action]:
        out: list[Action] = []
        for a in actions:
            if not isinstance(a, Broadcast | Send):
                out.append(a)
                continue
            env = decode_envelope(a.message)
            if env.kind == KIND_VIEWCHANGE and self.view_changes:
                out += self._deliver_split(node, a, self._forge_view_change(node, env))
                self._remember_view_change(env)
            elif env.kind == KIND_NEWVIEW and self.new_views:
                out += self._deliver_split(node, a, self._forge_new_view(node, env))
                self._old_new_views.append(a.message)
            else:
                out.append(a)
        if self.rng.random() < self.inject_every:
            out += self._inject(node)
        return out

    def _deliver_split(self, node: SimNode, original: Broadcast | Send, forged: Envelope) -> list[Action]:
        """The forgery to everyone, or to some with the honest message to the others."""
        raw = encode_envelope(forged)
        if isinstance(original, Send):
            return [Send(original.to, raw)]
        if self.rng.random() < 0.5:
            return [Broadcast(raw)]
        peers = [v for v in self.net.config.validators if v != node.id]
        self.rng.shuffle(peers)
        cut = self.rng.randint(1, len(peers) - 1)
        return [Send(v, raw if i < cut else original.message) for i, v in enumerate(peers)]

    def _remember_view_change(self, env: Envelope) -> None:
        vc: ViewChange = decode_body(env)
        self._proofs += vc.prepared
        self._bases.append((vc.checkpoint, vc.certificate))
        self._old_view_changes.append(encode_envelope(replace(env, attachment=b"")))
        del self._proofs[:-64], self._bases[:-16], self._old_view_changes[:-16]

    def _inject(self, node: SimNode) -> list[Action]:
        """An unprompted forgery: a view change for a view of its choice, a suspicion, a new view."""
        view = node.replica.view
        what = self.rng.choice(("view_change", "suspicion", "new_view"))
        self.forged[f"injected_{what}"] += 1
        if what == "suspicion":
            return [Broadcast(encode_envelope(self._sign(node, Suspect(view + self.rng.randint(-1, 2)))))]
        honest = self._sign(node, ViewChange(view + 1, None, None, ()))
        if what == "view_change":
            return [Broadcast(encode_envelope(self._forge_view_change(node, honest)))]
        # A new view for the next view, whoever its primary is, carrying its own view changes.
        nv = NewView(view + 1, tuple(self._old_view_changes[-3:]), 0, b"", ())
        return [Broadcast(encode_envelope(self._sign(node, nv)))]

    def _sign(self, node: SimNode, body: object, attachment: bytes = b"") -> Envelope:
        return sign_message(node.key, self.net.chain_id, body, attachment)

    # --- view changes ------------------------------------------------------------------------------

    def _forge_view_change(self, node: SimNode, env: Envelope) -> Envelope:
        vc: ViewChange = decode_body(env)
        mutation = self.rng.choice(self.VIEW_CHANGE_MUTATIONS)
        self.forged[mutation] += 1
        body, attachment = self._mutate_view_change(node, vc, env.attachment, mutation)
        return self._sign(node, body, attachment)

    def _mutate_view_change(self, node: SimNode, vc: ViewChange, attachment: bytes,
                            mutation: str) -> tuple[ViewChange, bytes]:
        rng, q = self.rng, node.replica
        validators = list(self.net.config.validators)
        quorum = quorum_size(len(validators))
        base = max(vc.checkpoint.height if vc.checkpoint else 0, vc.certificate.height if vc.certificate else 0)
        others = [v for v in validators if v != node.id]
        if mutation == "view_zero":
            return replace(vc, view=0), attachment
        if mutation == "stale_view":
            return replace(vc, view=max(0, vc.view - 1 - rng.randint(0, 2))), attachment
        if mutation == "far_view":
            return replace(vc, view=vc.view + rng.randint(2, 40)), attachment
        if mutation == "stale_prepared":
            # Genuine proofs it carried before, whatever their heights: older or misplaced certificates.
            picked = sorted(rng.sample(self._proofs, min(len(self._proofs), 3)), key=lambda p: p.height)
            return replace(vc, prepared=tuple(picked)), attachment
        if mutation == "stale_base":
            # An older genuine base with the proofs that were above it then (a lie by omission).
            if self._bases:
                checkpoint, certificate = rng.choice(self._bases)
                old = max(checkpoint.height if checkpoint else 0, certificate.height if certificate else 0)
                above = {p.height: p for p in self._proofs if p.height > old and p.view < vc.view}
                proofs = tuple(above[h] for h in sorted(above) if h <= old + q.config.max_inflight)
                return replace(vc, checkpoint=checkpoint, certificate=certificate, prepared=proofs), b""
            return vc, attachment
        if mutation == "forged_checkpoint":
            height = base + q.config.checkpoint_interval * rng.randint(1, 3)
            proof = CheckpointProof(height, rng.randbytes(32), _fake_signatures(rng, validators[:quorum]))
            return replace(vc, checkpoint=proof), attachment
        if mutation == "forged_certificate":
            cert = CommitCertificate(base + rng.randint(1, 5), max(0, vc.view - 1), rng.randbytes(32),
                                     _fake_signatures(rng, validators[:quorum]))
            return replace(vc, certificate=cert), attachment
        if mutation == "bogus_suspicion":
            signers = sorted(rng.sample(others, len(validators) - quorum) + [node.id])
            sigs = tuple(ValidatorSignature(v, rng.randbytes(64)) for v in signers)
            return replace(vc, suspicion=sigs), attachment
        if mutation == "suspicion_of_other_view":
            signed = self._sign(node, Suspect(max(0, vc.view - 2 - rng.randint(0, 3)))).signature
            return replace(vc, suspicion=(ValidatorSignature(node.id, signed),)), attachment
        if mutation == "missing_attachment":
            return vc, b""
        if mutation == "wrong_attachment":
            fake = node.app.propose([b"forged-attachment"], max(0, vc.view - 1), node.id, None)
            return vc, encode((fake,))
        # The rest forge a prepared proof at the first height above the base.
        forged = self._forged_proof(node, vc, base, mutation)
        if mutation == "unordered_proofs":
            return replace(vc, prepared=(forged, forged)), attachment
        return replace(vc, prepared=(forged,)), attachment

    def _forged_proof(self, node: SimNode, vc: ViewChange, base: int, mutation: str) -> PreparedProof:
        rng = self.rng
        validators = list(self.net.config.validators)
        f = (len(validators) - 1) // 3
        view = max(0, vc.view - 1)
        primary = validators[view % len(validators)]
        height = base + 1
        if mutation == "beyond_pipeline":
            height = base + node.replica.config.max_inflight + rng.randint(1, 3)
        if mutation == "proof_from_new_view":
            view = vc.view
            primary = validators[view % len(validators)]
        block_hash, prev_hash = rng.randbytes(32), rng.randbytes(32)
        pp = PrePrepare(view, height, block_hash, prev_hash)
        # Its own pre-prepare signature is genuine when it was that view's primary; forged otherwise.
        pp_sig = self._sign(node, pp).signature if primary == node.id else rng.randbytes(64)
        backups = [v for v in validators if v != primary]
        prepare = Prepare(view, height, block_hash)
        own = self._sign(node, prepare).signature
        sigs = {v: (own if v == node.id else rng.randbytes(64)) for v in rng.sample(backups, 2 * f)}
        if mutation == "primary_prepares":
            sigs[primary] = rng.randbytes(64)
        prepares = tuple(ValidatorSignature(v, s) for v, s in sorted(sigs.items()))
        if mutation == "too_few_prepares":
            prepares = prepares[: max(0, 2 * f - 1)]
        if mutation == "duplicate_signers" and prepares:
            prepares = (prepares[0], *prepares)
        return PreparedProof(view, height, block_hash, prev_hash, pp_sig, prepares)

    # --- new views ---------------------------------------------------------------------------------

    def _forge_new_view(self, node: SimNode, env: Envelope) -> Envelope:
        """A new view that fails a check of `check_new_view` (every mutation here is refusable)."""
        nv: NewView = decode_body(env)
        rng = self.rng
        vcs = list(nv.viewchanges)
        possible = [m for m in self.NEW_VIEW_MUTATIONS if m not in (
            ("duplicate_view_change",) * (len(vcs) < 2) + ("view_change_of_other_view",) * (not self._old_view_changes)
            + ("stale_new_view",) * (not self._old_new_views))]
        mutation = rng.choice(possible)
        self.forged[mutation] += 1
        if mutation == "too_few_view_changes":
            vcs = vcs[:-1]
        elif mutation == "duplicate_view_change":
            vcs[-1] = vcs[0]
        elif mutation == "view_change_of_other_view":
            vcs[-1] = rng.choice(self._old_view_changes)
        elif mutation == "tampered_view_change":
            raw = bytearray(vcs[-1])
            raw[-1 - rng.randrange(64)] ^= 1  # inside the signature, the last field but one
            vcs[-1] = bytes(raw)
        elif mutation == "malformed_view_change":
            vcs[-1] = rng.randbytes(40)
        elif mutation == "wrong_base":
            nv = replace(nv, base_height=nv.base_height + 1)
        elif mutation == "dropped_reproposal":
            nv = replace(nv, chosen=nv.chosen[:-1]) if nv.chosen else replace(nv, chosen=(rng.randbytes(32),))
        elif mutation == "extra_reproposal":
            nv = replace(nv, chosen=(*nv.chosen, rng.randbytes(32)))
        elif mutation == "swapped_reproposal":
            nv = replace(nv, chosen=(rng.randbytes(32), *nv.chosen[1:]))
        elif mutation == "stale_new_view":
            return decode_envelope(rng.choice(self._old_new_views))
        return self._sign(node, replace(nv, viewchanges=tuple(vcs)))


class CatchUpLiar:
    """Answers block requests with lies drawn from a catalogue (or with nothing): a requester that
    checks certificates only loses the time of one request per lie."""

    LIES = (
        "forged_certificate", "certificate_of_another_block", "skipped_height", "garbage", "empty_but_ahead",
        "silence", "certificate_without_quorum", "reordered", "truth",
    )

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.told: Counter[str] = Counter()

    def serve(self, node: SimNode, request: bytes) -> bytes | None:
        rng = self.rng
        lie = rng.choice(self.LIES)
        self.told[lie] += 1
        try:
            honest = decode(BlockBatch, node.driver.serve(request))
        except CodecError:
            return None
        blocks = list(honest.blocks)
        if lie == "silence":
            return None
        if lie == "garbage":
            return rng.randbytes(rng.randint(0, 200))
        if lie == "empty_but_ahead":
            return encode(BlockBatch(honest.head_height + rng.randint(1, 1000), ()))
        if lie == "truth" or not blocks:
            return encode(honest)
        first = blocks[0]
        cert = first.certificate
        if lie == "forged_certificate":
            blocks[0] = CertifiedBlock(first.block, replace(cert, signatures=_fake_signatures(
                rng, [s.validator for s in cert.signatures])))
        elif lie == "certificate_of_another_block":
            other = Block(first.block.header, (*first.block.txs, b"slipped-in"))
            blocks[0] = CertifiedBlock(other, cert)
        elif lie == "skipped_height":
            blocks = blocks[1:]
        elif lie == "certificate_without_quorum":
            blocks[0] = CertifiedBlock(first.block, replace(cert, signatures=cert.signatures[:1]))
        elif lie == "reordered":
            blocks.reverse()
        return encode(BlockBatch(honest.head_height, tuple(blocks)))


def whisperer(net: Network, target: SimNode) -> Rewrite:
    """Joins any suspicion, to `target` alone: it tries to make one honest replica leave a view alone."""

    def rewrite(node: SimNode, actions: list[Action]) -> list[Action]:
        env = sign_message(node.key, net.chain_id, Suspect(node.replica.view))
        return [*actions, Send(target.id, encode_envelope(env))]

    return rewrite
