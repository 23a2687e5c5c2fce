"""The signing digest taken from a transaction's canonical bytes equals the one from re-encoding its body."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.codec import encode
from ledger.crypto import DOMAIN_TX, SigningKey, signing_digest
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.tx import SignedTx, compute_signing_digest, decode_tx, make_tx

KEY = SigningKey.from_seed(b"tx-test")


@settings(max_examples=200, deadline=None)
@given(
    chain=st.text(min_size=1, max_size=40),
    nonce=st.integers(min_value=1, max_value=2**63 - 1),
    suffix=st.text(min_size=1, max_size=300),
)
def test_digest_from_raw_bytes_matches_reencoding(chain: str, nonce: int, suffix: str) -> None:
    tx = make_tx(KEY, chain, nonce, "id.register", IdRegister("88/" + suffix, (ValueSpec(1, "URL", suffix),)))
    raw = encode(tx)
    assert compute_signing_digest(raw, decode_tx(raw)) == signing_digest(DOMAIN_TX, tx.body())


@given(sig=st.binary(max_size=100))
def test_odd_signature_lengths_fall_back_to_reencoding(sig: bytes) -> None:
    tx = make_tx(KEY, "c", 1, "id.register", IdRegister("88/x", ()))
    odd = SignedTx(tx.chain_id, tx.kind, tx.sender, tx.nonce, tx.payload, sig)
    assert compute_signing_digest(encode(odd), odd) == signing_digest(DOMAIN_TX, odd.body())
