"""Key files at rest: encrypted with a passphrase, refused when others can read them, and the node's
key loaded with the passphrase its config names (environment or file), never a command-line argument."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.config import NodeConfig, write_config
from ledger.crypto import DOMAIN_TX, KDF_ROUNDS, KeyFileError, SigningKey, verify
from ledger.keyfiles import ENV_PASSPHRASE, load_node_key, read_passphrase_file

PASSPHRASE = b"correct horse battery staple"


def never_asked(path: Path) -> bytes:
    raise AssertionError(f"asked for a passphrase of the plain key file {path}")


def test_an_encrypted_key_file_loads_only_with_its_passphrase(tmp_path: Path) -> None:
    key = SigningKey.from_seed(b"encrypted")
    path = tmp_path / "node.pem"
    key.save(path, PASSPHRASE)
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    body = base64.b64decode(b"".join(data.splitlines()[1:-1]))
    assert body.startswith(b"openssh-key-v1\0\0\0\0\x0aaes256-ctr\0\0\0\x06bcrypt")  # cipher and KDF
    assert body[63:67] == KDF_ROUNDS.to_bytes(4, "big")  # after the 16-byte salt
    asked: list[Path] = []

    def give(p: Path) -> bytes:
        asked.append(p)
        return PASSPHRASE

    loaded = SigningKey.load(path, give)
    assert loaded.id == key.id and asked == [path]
    assert verify(key.public_key, DOMAIN_TX, b"m", loaded.sign(DOMAIN_TX, b"m"))
    with pytest.raises(KeyFileError, match=f"wrong passphrase for key file {path}"):
        SigningKey.load(path, lambda p: b"wrong horse")
    with pytest.raises(KeyFileError, match="is encrypted, and no passphrase was given"):
        SigningKey.load(path)


def test_a_plain_key_file_never_asks_for_a_passphrase(tmp_path: Path) -> None:
    key = SigningKey.from_seed(b"plain")
    key.save(tmp_path / "k.pem")
    assert SigningKey.load(tmp_path / "k.pem", never_asked).id == key.id


def test_an_empty_passphrase_is_refused() -> None:
    with pytest.raises(ValueError, match="empty passphrase"):
        SigningKey.generate().to_file_bytes(b"")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_a_key_file_others_may_read_or_write_is_refused_saying_how_to_fix_it(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.pem"
    SigningKey.from_seed(b"k").save(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        SigningKey.load(path)
    assert str(info.value) == (
        f"key file {path} has mode {mode:04o}: others may read it. Restrict it with `chmod 600 {path}`")
    path.chmod(0o400)  # read-only for its owner is fine
    assert SigningKey.load(path).id == SigningKey.from_seed(b"k").id


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
def test_a_key_encrypted_by_openssl_with_scrypt_loads(tmp_path: Path) -> None:
    key = SigningKey.from_seed(b"openssl")
    plain = tmp_path / "plain.pem"
    key.save(plain)
    out = tmp_path / "enc.pem"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-scrypt", "-in", str(plain), "-out", str(out),
                    "-passout", "env:PW"], check=True, env={**os.environ, "PW": PASSPHRASE.decode()},
                   capture_output=True)
    out.chmod(0o600)
    assert b"ENCRYPTED PRIVATE KEY" in out.read_bytes()
    assert SigningKey.load(out, lambda p: PASSPHRASE).id == key.id


# --- the node's key --------------------------------------------------------------------------------


def _home(tmp_path: Path, extra: dict[str, object] | None = None) -> NodeConfig:
    write_config(tmp_path, {"http": {"port": 1}, **(extra or {})})
    return NodeConfig.load(tmp_path)


def test_the_node_key_passphrase_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = SigningKey.from_seed(b"node")
    key.save(tmp_path / "node.pem", PASSPHRASE)
    config = _home(tmp_path)
    monkeypatch.delenv(ENV_PASSPHRASE, raising=False)
    with pytest.raises(KeyFileError) as info:
        load_node_key(config)
    assert ENV_PASSPHRASE in str(info.value) and "node_key_passphrase" in str(info.value)
    monkeypatch.setenv(ENV_PASSPHRASE, PASSPHRASE.decode())
    assert load_node_key(config).id == key.id
    monkeypatch.setenv("OTHER_VAR", PASSPHRASE.decode())
    monkeypatch.delenv(ENV_PASSPHRASE)
    assert load_node_key(_home(tmp_path, {"node_key_passphrase": {"env": "OTHER_VAR"}})).id == key.id


def test_the_node_key_passphrase_comes_from_a_private_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = SigningKey.from_seed(b"node")
    key.save(tmp_path / "node.pem", PASSPHRASE)
    secret = tmp_path / "secret" / "pass"
    secret.parent.mkdir()
    secret.write_bytes(PASSPHRASE + b"\n")
    secret.chmod(0o600)
    monkeypatch.setenv(ENV_PASSPHRASE, "not this one")  # a named file wins over the environment
    config = _home(tmp_path, {"node_key_passphrase": {"file": "secret/pass"}})
    assert load_node_key(config).id == key.id
    secret.chmod(0o644)
    with pytest.raises(KeyFileError, match=f"chmod 600 {secret}"):
        load_node_key(config)
    secret.write_bytes(b"\n")
    secret.chmod(0o600)
    with pytest.raises(KeyFileError, match="is empty"):
        read_passphrase_file(secret)


def _ledger(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledger.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env, stdin=subprocess.DEVNULL)


def test_keygen_encrypt_takes_the_passphrase_from_the_environment_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_PASSPHRASE}
    refused = _ledger("keygen", "--encrypt", "--out", str(tmp_path / "a.pem"), env=env)
    assert refused.returncode == 2 and ENV_PASSPHRASE in refused.stderr and not (tmp_path / "a.pem").exists()
    made = _ledger("keygen", "--encrypt", "--out", str(tmp_path / "a.pem"),
                   env={**env, ENV_PASSPHRASE: PASSPHRASE.decode()})
    assert made.returncode == 0, made.stderr
    assert '"encrypted": true' in made.stdout
    assert (tmp_path / "a.pem").stat().st_mode & 0o777 == 0o600
    assert SigningKey.load(tmp_path / "a.pem", lambda p: PASSPHRASE).id in made.stdout
    with pytest.raises(KeyFileError):
        SigningKey.load(tmp_path / "a.pem")
