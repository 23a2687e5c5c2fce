"""Fake anchor attestations in the deterministic simulation: four replicas over the real LedgerApp/ChainDB,
ordered by PBFT on the simulated network. One validator attests fake anchors of every kind, through
consensus, between honest work; two honest validators attest the genuine anchor. Every replica ends with
the same state, the genuine anchor effective, and no trace of the fake one but its refused or lone votes."""

from __future__ import annotations

from ledger.anchor.records import AnchorRecord, get_anchor_record, get_votes, latest_effective_height
from ledger.anchor.settings import AnchoringSettings
from ledger.chain import compute_block_hash
from ledger.codec import encode
from ledger.crypto import SigningKey, derive_id, sha256
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.tx import compute_tx_id, make_tx
from tests.sim.checks import assert_live, finish
from tests.sim.network import Network
from tests.sim.real_app import real_app_network

KEYS = [SigningKey.from_seed(f"anchor-sim-validator-{i}".encode()) for i in range(4)]
ADMIN = SigningKey.from_seed(b"anchor-sim-admin")
CONTRACT = "0x" + "c0" * 20
SUBMITTERS = tuple("0x" + f"{i + 1:02x}" * 20 for i in range(4))
GENESIS = Genesis(
    chain_id="sim-anchor", timestamp=1_767_225_600_000,
    validators=tuple(GenesisValidator(f"v{i}", k.public_key) for i, k in enumerate(KEYS)),
    members=(GenesisMember("admin", ADMIN.public_key, ("admin",)),),
    prefixes=(GenesisPrefix("88.100", derive_id(ADMIN.public_key)),),
    anchoring=AnchoringSettings(31337, CONTRACT, SUBMITTERS),
)


def _network() -> Network:
    return real_app_network(GENESIS, KEYS, 11, config={"batch_size": 8})


def test_fake_attestations_through_consensus_never_take_effect_and_every_replica_agrees() -> None:
    net = _network()
    nonces = {k.id: 0 for k in [*KEYS, ADMIN]}

    def tx(key: SigningKey, kind: str, payload: object) -> bytes:
        nonces[key.id] += 1
        return encode(make_tx(key, GENESIS.chain_id, nonces[key.id], kind, payload))

    work = [tx(ADMIN, "id.register", IdRegister(f"88.100/EQ-{i}", (ValueSpec(1, "URL", "https://t.example"),)))
            for i in range(12)]
    for i in range(0, 12, 4):
        net.submit(work[i:i + 4], 1)
        net.run(6)
    assert_live(net, work)
    chain = net.nodes[0].app.chain  # type: ignore[attr-defined]
    height = chain.height - 1
    block = chain.get_block(height)
    assert block is not None
    genuine = AnchorRecord(height, compute_block_hash(block.header), 31337, CONTRACT, sha256(b"anchor tx"), 40,
                           SUBMITTERS[0])

    # The liar (validator 3) sends every kind of fake through consensus, to another replica than the primary's.
    liar = KEYS[3]
    fakes = [
        AnchorRecord(height, sha256(b"not our block"), 31337, CONTRACT, sha256(b"x"), 41, SUBMITTERS[3]),
        AnchorRecord(height, genuine.block_hash, 31337, "0x" + "66" * 20, sha256(b"x"), 41, SUBMITTERS[3]),
        AnchorRecord(height, genuine.block_hash, 1, CONTRACT, sha256(b"x"), 41, SUBMITTERS[3]),
        AnchorRecord(height, genuine.block_hash, 31337, CONTRACT, sha256(b"x"), 41, "0x" + "77" * 20),
        AnchorRecord(2**64 - 1, sha256(b"huge"), 31337, CONTRACT, sha256(b"x"), 41, SUBMITTERS[3]),
        AnchorRecord(height, genuine.block_hash, 31337, CONTRACT, sha256(b"never sent"), 41, SUBMITTERS[3]),
    ]
    lies = [tx(liar, "anchor.attest", f) for f in fakes]
    net.submit(lies, 2)
    assert_live(net, lies)
    for node in net.honest_running():
        c = node.app.chain  # type: ignore[attr-defined]
        outcomes = [c.get_tx_location(compute_tx_id(raw)) for raw in lies]
        assert [loc.ok for loc in outcomes] == [False, False, False, False, False, True], node.index
        # The one well-formed lie is a lone vote: no effective anchor, anchor/latest unmoved.
        assert latest_effective_height(c.latest) == 0 and get_anchor_record(c.latest, height) is None
        assert [v.validator for v in get_votes(c.latest, height)] == [liar.id]

    # Two honest validators attest the genuine anchor: f+1 of 4, it takes effect everywhere alike.
    honest = [tx(KEYS[0], "anchor.attest", genuine), tx(KEYS[1], "anchor.attest", genuine)]
    net.submit(honest, 0)
    assert_live(net, honest)
    finish(net)
    roots = set()
    for node in net.honest_running():
        c = node.app.chain  # type: ignore[attr-defined]
        assert get_anchor_record(c.latest, height) == genuine and latest_effective_height(c.latest) == height
        assert get_votes(c.latest, height) == ()
        roots.add(c.head_hash)
    assert len(roots) == 1
