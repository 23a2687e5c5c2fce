"""Passphrases of encrypted key files, and the node's key as its configuration names it.

A passphrase comes from an environment variable (`LEDGER_KEY_PASSPHRASE` unless the config names
another), from a file (mode 0600) named in `config.json`, or, for the `ledger` commands, from the
terminal: never from a command-line argument, which every user of the machine can read in the
process list. It is asked for only when a key file is encrypted (`ledger.crypto.SigningKey.load`).
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from ledger.config import NodeConfig
from ledger.crypto import KeyFileError, Passphrase, SigningKey, read_private_file

ENV_PASSPHRASE = "LEDGER_KEY_PASSPHRASE"


def passphrase_from_env(name: str = ENV_PASSPHRASE) -> bytes | None:
    value = os.environ.get(name)
    return value.encode() if value else None


def read_passphrase_file(path: Path) -> bytes:
    """The passphrase in a file (one trailing newline dropped); refused if others may read it, or empty."""
    text = read_private_file(path, "passphrase file")
    text = text[:-1] if text.endswith(b"\n") else text
    text = text[:-1] if text.endswith(b"\r") else text
    if not text:
        raise KeyFileError(f"passphrase file {path} is empty")
    return text


def node_passphrase(config: NodeConfig) -> Passphrase:
    """The node key's passphrase, from the file `node_key_passphrase.file` or else the environment
    variable `node_key_passphrase.env`."""
    source = config.node_key_passphrase

    def ask(path: Path) -> bytes:
        if source.file is not None:
            return read_passphrase_file(source.file)
        secret = passphrase_from_env(source.env)
        if secret is None:
            raise KeyFileError(
                f"key file {path} is encrypted: set its passphrase in the environment variable {source.env}, "
                f"or name a file holding it (mode 0600) in {config.home / 'config.json'} as "
                '"node_key_passphrase": {"file": "..."}'
            )
        return secret

    return ask


def load_node_key(config: NodeConfig) -> SigningKey:
    """The node's key (`node_key`), decrypted with its configured passphrase when encrypted."""
    return SigningKey.load(config.node_key, node_passphrase(config))


def _tty() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def command_passphrase(path: Path) -> bytes:
    """A `ledger` command's passphrase for an encrypted key file: `LEDGER_KEY_PASSPHRASE`, or asked on the terminal."""
    secret = passphrase_from_env()
    if secret is not None:
        return secret
    if not _tty():
        raise KeyFileError(f"key file {path} is encrypted: set its passphrase in {ENV_PASSPHRASE}")
    secret = getpass.getpass(f"passphrase for {path}: ").encode()
    if not secret:
        raise KeyFileError(f"no passphrase given for key file {path}")
    return secret


def new_passphrase(path: Path) -> bytes:
    """The passphrase for a new encrypted key file: `LEDGER_KEY_PASSPHRASE`, or typed twice on the terminal."""
    secret = passphrase_from_env()
    if secret is not None:
        return secret
    if not _tty():
        raise KeyFileError(f"--encrypt needs a passphrase: set {ENV_PASSPHRASE} or run on a terminal")
    first = getpass.getpass(f"passphrase for {path}: ").encode()
    if not first:
        raise KeyFileError("an empty passphrase protects nothing")
    if getpass.getpass("the same passphrase again: ").encode() != first:
        raise KeyFileError("the two passphrases differ")
    return first
