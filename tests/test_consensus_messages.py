"""The consensus message codec: round trips, tamper and garbage rejection; step() never raises."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.chain import Block, BlockHeader, CommitCertificate, ValidatorSignature, compute_block_hash
from ledger.codec import encode
from ledger.consensus.application import ApplicationError
from ledger.consensus.messages import (
    BODY_TYPES,
    Checkpoint,
    CheckpointProof,
    Commit,
    Envelope,
    MalformedMessage,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    SignatureChecker,
    Suspect,
    ViewChange,
    Vote,
    decode_body,
    decode_envelope,
    encode_envelope,
    sign_message,
)
from ledger.consensus.replica import Replica
from ledger.crypto import SigningKey
from tests.sim.network import FakeApp, default_config

KEYS = [SigningKey.from_seed(f"msg-validator-{i}".encode()) for i in range(4)]
IDS = tuple(k.id for k in KEYS)
VALIDATOR_KEYS = {k.id: k.public_key for k in KEYS}
CHAIN = "msg-test"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

small = st.integers(min_value=0, max_value=2**20)
hashes = st.binary(min_size=32, max_size=32)
sigs = st.builds(ValidatorSignature, st.sampled_from(IDS), st.binary(min_size=64, max_size=64))
sig_tuples = st.lists(sigs, max_size=4).map(lambda xs: tuple(sorted(xs, key=lambda s: s.validator)))

preprepares = st.builds(PrePrepare, small, small, hashes, hashes)
prepares = st.builds(Prepare, small, small, hashes)
commits = st.builds(Commit, small, small, hashes)
votes = st.builds(Vote, small, small, hashes)
checkpoints = st.builds(Checkpoint, small, hashes)
checkpoint_proofs = st.builds(CheckpointProof, small, hashes, sig_tuples)
certificates = st.builds(CommitCertificate, small, small, hashes, sig_tuples)
signatures = st.binary(min_size=64, max_size=64)
prepared_proofs = st.builds(PreparedProof, small, small, hashes, hashes, signatures, sig_tuples)
viewchanges = st.builds(
    ViewChange, small, st.none() | checkpoint_proofs, st.none() | certificates,
    st.lists(prepared_proofs, max_size=3).map(tuple), sig_tuples,
)
suspects = st.builds(Suspect, small)
newviews = st.builds(
    NewView, small, st.lists(st.binary(max_size=64), max_size=3).map(tuple), small,
    st.sampled_from([b""]) | hashes, st.lists(hashes, max_size=3).map(tuple),
)
bodies = st.one_of(preprepares, prepares, commits, votes, checkpoints, viewchanges, newviews, suspects)


def _replica() -> Replica:
    cfg = default_config(CHAIN, IDS)
    return Replica(cfg, KEYS[1], FakeApp(CHAIN, VALIDATOR_KEYS), VALIDATOR_KEYS)


@FAST
@given(body=bodies, signer=st.sampled_from(KEYS))
def test_round_trip_and_signature(body: Any, signer: SigningKey) -> None:
    env = sign_message(signer, CHAIN, body)
    raw = encode_envelope(env)
    back = decode_envelope(raw)
    assert back == env
    assert decode_body(back) == body
    checker = SignatureChecker(CHAIN, VALIDATOR_KEYS)
    assert checker.envelope(back, body)
    # Another chain, another signer, another body: the signature does not carry over.
    assert not SignatureChecker("other-chain", VALIDATOR_KEYS).envelope(back, body)
    other = next(k for k in KEYS if k.id != signer.id)
    assert not checker.envelope(Envelope(env.kind, other.id, env.body, env.signature, b""), body)


@FAST
@given(body=st.one_of(prepares, commits, votes, checkpoints), index=st.integers(min_value=0), bit=st.integers(0, 7))
def test_tampered_bytes_never_verify_as_another_message(body: Any, index: int, bit: int) -> None:
    env = sign_message(KEYS[0], CHAIN, body)
    raw = bytearray(encode_envelope(env))
    raw[index % len(raw)] ^= 1 << bit
    try:
        tampered = decode_envelope(bytes(raw))
        tampered_body = decode_body(tampered)
    except MalformedMessage:
        return
    checker = SignatureChecker(CHAIN, VALIDATOR_KEYS)
    if checker.envelope(tampered, tampered_body):
        assert (tampered.kind, tampered.sender, tampered_body) == (env.kind, env.sender, body)


def _decodes_only_canonically(data: bytes) -> bool:
    """Decode `data` as a message: False if refused (MalformedMessage, never anything else), True if
    accepted, and then only because it is the canonical encoding of what it decoded to."""
    try:
        env = decode_envelope(data)
        body = decode_body(env)
    except MalformedMessage:
        return False
    assert encode_envelope(env) == data, "accepted an envelope that is not its own canonical encoding"
    assert encode(body) == env.body, "accepted a body that is not its own canonical encoding"
    return True


@FAST
@given(data=st.binary(max_size=300))
def test_garbage_is_rejected_with_malformed_only(data: bytes) -> None:
    assert not _decodes_only_canonically(data)  # random bytes are never a well-formed message


@FAST
@given(fields=st.lists(st.one_of(st.integers(), st.binary(max_size=40), st.text(max_size=20), st.none()), max_size=6),
       kind=st.sampled_from([*BODY_TYPES, "gossip"]))
def test_arbitrary_msgpack_arrays_are_rejected_cleanly(fields: list[Any], kind: str) -> None:
    """Arrays of the envelope's shape (5 fields, a known kind first, some of them) and of other shapes:
    refused with MalformedMessage, or accepted only as canonical encodings."""
    shaped = [kind, *fields[:4]] if fields else fields
    for candidate in (fields, shaped):
        try:
            data = msgpack.packb(candidate, use_bin_type=True)
        except (OverflowError, TypeError):
            continue
        _decodes_only_canonically(data)


def test_the_decoding_checks_can_fail() -> None:
    """The helper above accepts a real message and refuses a non-canonical one (so the properties
    that use it can fail)."""
    env = sign_message(KEYS[0], CHAIN, Prepare(1, 2, b"\x05" * 32))
    assert _decodes_only_canonically(encode_envelope(env))
    longer = msgpack.packb([env.kind, env.sender, b"\x93\xcd\x00\x01\x02\xc4\x20" + b"\x05" * 32, env.signature, b""],
                           use_bin_type=True)
    assert not _decodes_only_canonically(longer)


def test_non_canonical_encoding_rejected() -> None:
    env = sign_message(KEYS[0], CHAIN, Prepare(1, 2, b"\x05" * 32))
    canonical = encode_envelope(env)
    # The same array with an int field written in a longer form than needed.
    body_long = b"\x93\xcd\x00\x01\x02\xc4\x20" + b"\x05" * 32
    assert body_long != env.body
    bad = msgpack.packb([env.kind, env.sender, body_long, env.signature, b""], use_bin_type=True)
    with pytest.raises(MalformedMessage):
        decode_body(decode_envelope(bad))
    with pytest.raises(MalformedMessage):
        decode_envelope(canonical + b"\x00")  # trailing bytes


def test_unknown_kind_and_stray_attachment_rejected() -> None:
    env = sign_message(KEYS[0], CHAIN, Prepare(1, 2, b"\x05" * 32))
    with pytest.raises(MalformedMessage):
        decode_envelope(encode(Envelope("gossip", env.sender, env.body, env.signature, b"")))
    with pytest.raises(MalformedMessage):
        decode_envelope(encode(Envelope(env.kind, env.sender, env.body, env.signature, b"extra")))
    assert set(BODY_TYPES) == {
        "preprepare", "prepare", "commit", "vote", "checkpoint", "viewchange", "newview", "suspect",
    }


def test_bad_field_shapes_rejected() -> None:
    env = sign_message(KEYS[0], CHAIN, Prepare(1, 2, b"\x05" * 31))
    with pytest.raises(MalformedMessage):
        decode_body(env)


@FAST
@given(data=st.binary(max_size=400), sender=st.sampled_from(IDS + ("stranger", "")))
def test_step_never_raises_on_garbage(data: bytes, sender: str) -> None:
    replica = _replica()
    replica.step(sender, data)
    assert replica.metrics["internal_errors"] == 0


@FAST
@given(body=bodies, signer=st.sampled_from(KEYS), attach=st.binary(max_size=64))
def test_step_never_raises_on_signed_nonsense(body: Any, signer: SigningKey, attach: bytes) -> None:
    """Correctly signed messages with arbitrary contents reach the protocol logic and are refused."""
    replica = _replica()
    attachment = attach if isinstance(body, PrePrepare | ViewChange) else b""
    before = dict(replica.metrics)
    replica.step(signer.id, encode_envelope(sign_message(signer, CHAIN, body, attachment)))
    replica.tick()
    assert replica.metrics["internal_errors"] == 0
    assert replica.height == 0
    if signer.id == replica.id:
        assert replica.metrics["dropped_from_self"] == before["dropped_from_self"] + 1


def test_preprepare_with_mismatching_block_refused() -> None:
    replica = _replica()
    app = FakeApp(CHAIN, VALIDATOR_KEYS)
    block = app.propose([b"a"], 0, IDS[0], None)
    other = Block(BlockHeader(**{**block.header.__dict__, "timestamp": block.header.timestamp + 5}), block.txs)
    body = PrePrepare(0, 1, compute_block_hash(block.header), block.header.prev_hash)
    env = sign_message(KEYS[0], CHAIN, body, encode(other))
    replica.step(IDS[0], encode_envelope(env))
    assert replica.metrics["dropped_invalid"] == 1
    # The right block is accepted and answered with a prepare.
    good = sign_message(KEYS[0], CHAIN, body, encode(block))
    actions = replica.step(IDS[0], encode_envelope(good))
    assert any(type(a).__name__ == "Broadcast" for a in actions)
    # A second, different pre-prepare for the same (view, height) is an equivocation.
    alt = app.propose([b"b"], 0, IDS[0], None)
    alt_env = sign_message(KEYS[0], CHAIN, PrePrepare(0, 1, compute_block_hash(alt.header), alt.header.prev_hash),
                           encode(alt))
    out = replica.step(IDS[0], encode_envelope(alt_env))
    assert [type(a).__name__ for a in out] == ["Evidence"]  # no prepare for it: the evidence only
    assert replica.metrics["equivocations"] == 1


def test_a_block_naming_another_proposer_or_view_is_refused() -> None:
    """The proposer field names the view's primary; a fresh block carries the view it is proposed in."""
    app = FakeApp(CHAIN, VALIDATOR_KEYS)
    for proposer, header_view, reason in ((IDS[2], 0, "not the primary"), (IDS[0], 1, "a later view")):
        replica = _replica()
        block = app.propose([b"a"], header_view, proposer, None)
        body = PrePrepare(0, 1, compute_block_hash(block.header), block.header.prev_hash)
        actions = replica.step(IDS[0], encode_envelope(sign_message(KEYS[0], CHAIN, body, encode(block))))
        assert actions == [] and replica.metrics["dropped_invalid"] == 1, reason


class _BrokenApp(FakeApp):
    """An application whose disk fails: every execution raises."""

    def validate(self, block: Block, parent: bytes | None) -> bool:
        raise OSError("read error on the state store")

    def propose(self, txs: Any, view: int, proposer: str, parent: bytes | None) -> Block:
        raise OSError("read error on the state store")


def test_application_failure_checking_a_block_stops_the_replica_and_blames_no_primary() -> None:
    """A local failure is no evidence against the primary: no 'invalid block', no prepare, an error
    the driver stops the node on (counting it as an invalid block once led to a view change)."""
    replica = Replica(default_config(CHAIN, IDS), KEYS[1], _BrokenApp(CHAIN, VALIDATOR_KEYS), VALIDATOR_KEYS)
    block = FakeApp(CHAIN, VALIDATOR_KEYS).propose([b"a"], 0, IDS[0], None)
    body = PrePrepare(0, 1, compute_block_hash(block.header), block.header.prev_hash)
    env = sign_message(KEYS[0], CHAIN, body, encode(block))
    with pytest.raises(ApplicationError, match="read error"):
        replica.step(IDS[0], encode_envelope(env))
    assert replica.metrics["invalid_blocks"] == 0
    assert replica.metrics["internal_errors"] == 0


def test_application_failure_building_a_block_raises_at_the_primary() -> None:
    config = default_config(CHAIN, IDS)
    primary = Replica(config, KEYS[0], _BrokenApp(CHAIN, VALIDATOR_KEYS), VALIDATOR_KEYS)
    with pytest.raises(ApplicationError, match="building block 1"):
        primary.submit([f"tx-{i}".encode() for i in range(config.batch_size)])
