"""Where keys live: a directory per installation (FRONTIER_REVIEW_KEYS_DIR, default
~/.frontier-review/keys), never the repository.

    payload-keys.json   AES-256-GCM keys by id, and which one encrypts new payloads
    public-keys.json    every party's Ed25519 public key (goes into each review's input)
    signing/<party>.pem a party's Ed25519 private key (in production: only on that party's host)
    codec-token         the bearer token the codec server asks of watchers

`frontier-review keys init` (run by `up` and `demo` when missing) writes a development set.
FRONTIER_REVIEW_PAYLOAD_KEYS may hold the payload keyring's JSON itself (for secret stores).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from domain.agencies import LAB, Agency
from domain.signatures import PublicKeyring, Signer

PARTIES: tuple[str, ...] = (*(a.value for a in Agency), LAB)


class KeyProblem(Exception):
    """A missing or unusable key, with what to do about it."""


class PayloadKeyring(BaseModel):
    model_config = ConfigDict(frozen=True)

    current: str
    keys: dict[str, str]  # key id -> 32 bytes, base64

    @model_validator(mode="after")
    def _sane(self) -> PayloadKeyring:
        if self.current not in self.keys:
            raise ValueError(f"current key {self.current!r} is not in the keyring")
        for key_id, b64 in self.keys.items():
            if len(base64.b64decode(b64)) != 32:
                raise ValueError(f"key {key_id!r} is not 32 bytes (AES-256)")
        return self

    def key(self, key_id: str) -> bytes:
        return base64.b64decode(self.keys[key_id])

    def rotated(self, new_id: str | None = None) -> PayloadKeyring:
        """A keyring with a fresh current key; old keys stay for decoding old histories."""
        new_id = new_id or f"k{len(self.keys) + 1}"
        keys = {**self.keys, new_id: base64.b64encode(secrets.token_bytes(32)).decode()}
        return PayloadKeyring(current=new_id, keys=keys)

    @classmethod
    def generate(cls, key_id: str = "k1") -> PayloadKeyring:
        return cls(current=key_id, keys={key_id: base64.b64encode(secrets.token_bytes(32)).decode()})


def default_keys_dir() -> Path:
    return Path(os.environ.get("FRONTIER_REVIEW_KEYS_DIR", Path.home() / ".frontier-review" / "keys"))


class KeyDirectory:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_keys_dir()

    @property
    def payload_file(self) -> Path:
        return self.path / "payload-keys.json"

    @property
    def public_file(self) -> Path:
        return self.path / "public-keys.json"

    @property
    def token_file(self) -> Path:
        return self.path / "codec-token"

    def codec_token(self) -> str:
        token = os.environ.get("FRONTIER_REVIEW_CODEC_TOKEN")
        if token:
            return token
        if not self.token_file.is_file():
            raise KeyProblem(f"no codec token at {self.token_file}: run `frontier-review keys init`")
        return self.token_file.read_text().strip()

    def signing_file(self, party: str) -> Path:
        return self.path / "signing" / f"{party}.pem"

    def payload_keyring(self) -> PayloadKeyring:
        inline = os.environ.get("FRONTIER_REVIEW_PAYLOAD_KEYS")
        source = "FRONTIER_REVIEW_PAYLOAD_KEYS"
        if not inline:
            if not self.payload_file.is_file():
                raise KeyProblem(
                    f"no payload keyring at {self.payload_file}: run `frontier-review keys init` "
                    "or set FRONTIER_REVIEW_KEYS_DIR / FRONTIER_REVIEW_PAYLOAD_KEYS"
                )
            inline, source = self.payload_file.read_text(), str(self.payload_file)
        try:
            return PayloadKeyring.model_validate_json(inline)
        except ValidationError as e:
            raise KeyProblem(f"payload keyring {source} is invalid: {e.errors()[0]['msg']}") from None

    def public_keys(self) -> PublicKeyring:
        if not self.public_file.is_file():
            raise KeyProblem(f"no public keyring at {self.public_file}: run `frontier-review keys init`")
        return json.loads(self.public_file.read_text())

    def signer(self, party: str) -> Signer:
        file = self.signing_file(party)
        if not file.is_file():
            raise KeyProblem(f"no signing key for {party} at {file}")
        key = load_pem_private_key(file.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyProblem(f"{file} is not an Ed25519 private key")
        return Signer(party, key)

    def write_payload_keyring(self, keyring: PayloadKeyring) -> None:
        _write_private(self.payload_file, keyring.model_dump_json(indent=2).encode())

    def init_development(self) -> list[Path]:
        """Create whatever is missing: a payload key, and a signing key per party. Returns what was created."""
        created: list[Path] = []
        if not self.payload_file.is_file():
            self.write_payload_keyring(PayloadKeyring.generate())
            created.append(self.payload_file)
        if not self.token_file.is_file():
            _write_private(self.token_file, secrets.token_urlsafe(32).encode())
            created.append(self.token_file)
        public = json.loads(self.public_file.read_text()) if self.public_file.is_file() else {}
        for party in PARTIES:
            file = self.signing_file(party)
            if not file.is_file():
                key = Ed25519PrivateKey.generate()
                _write_private(file, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
                created.append(file)
            public[party] = self.signer(party).public_key_b64()
        self.public_file.parent.mkdir(parents=True, exist_ok=True)
        self.public_file.write_text(json.dumps(public, indent=2, sort_keys=True))
        return created


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
