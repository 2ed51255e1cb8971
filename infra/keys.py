"""Where keys live: a directory per installation (FRONTIER_REVIEW_KEYS_DIR, default
~/.frontier-review/keys), never the repository.

    payload-keys.json   AES-256-GCM keys by id, and which one encrypts new payloads
    public-keys.json    every party's Ed25519 public key (goes into each review's input; Treasury's
                        clearinghouse and cases load it on Treasury's worker)
    signing/<party>.pem a party's Ed25519 private key (in production: only on that party's host);
                        `:` in a party id is `_` in its file name (`signing/vendor_acme.pem`)
    codec-token         the bearer token the codec server asks of watchers
    trust-anchors.json  the public keys a worker believes activity results from (domain/attestation.py):
                        the review office (`review`) and each agency, every key still valid per party
                        (old ones stay listed through a rotation). Read by the worker at start, never
                        taken from Temporal; each party's worker signs its results with signing/<party>.pem

`frontier-review keys init` (run by `up` and `demo` when missing) writes a development set: the
agencies, the lab, and the clearinghouse's parties (`development_parties`). `frontier-review keys
add PARTY` enrols one more party (a new vendor or partner).
FRONTIER_REVIEW_PAYLOAD_KEYS may hold the payload keyring's JSON itself (for secret stores).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import tomllib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from domain.agencies import LAB, Agency
from domain.attestation import ResultSigner, TrustAnchors
from domain.sectors import Sector
from domain.signatures import PublicKeyring, Signer
from domain.vulnerability import REVIEW_OFFICE, lab_party, operator_party, parse_party, vendor_party

# The review's parties.
PARTIES: tuple[str, ...] = (*(a.value for a in Agency), LAB)
# Whose activity results a workflow believes (each signs with its own key on its own worker).
ANCHOR_PARTIES: tuple[str, ...] = (REVIEW_OFFICE, *(a.value for a in Agency))
PROJECT_DIR = Path(__file__).resolve().parent.parent
SAMPLE_VULNERABILITIES = PROJECT_DIR / "examples" / "vulnerabilities"


class KeyProblem(Exception):
    """A missing or unusable key, with what to do about it."""


def default_registry_file() -> Path:
    return Path(os.environ.get("FRONTIER_REVIEW_REGISTRY", PROJECT_DIR / "examples" / "registry.toml"))


def development_parties(
    registry_file: Path | None = None, vulnerabilities_dir: Path = SAMPLE_VULNERABILITIES
) -> list[str]:
    """Who gets a development key: the agencies, the labs of the sample disclosures (`lab:<id>`);
    the operators of every sector (the 16 critical-infrastructure sectors, and the others a report
    may name as affected, e.g. cloud providers); each approved party of the trusted-party registry
    (`partner:<id>`); and the vendors of the sample vulnerabilities (`vendor:<id>`). Anyone else is
    enrolled with `keys add`."""
    parties = [*PARTIES, *(operator_party(s) for s in Sector)]
    registry = registry_file or default_registry_file()
    if registry.is_file():
        for p in tomllib.loads(registry.read_text()).get("party", []):
            # A suspended or revoked partner gets no key: it cannot speak to the clearinghouse.
            if p.get("status", "approved") == "approved":
                try:
                    parties.append(parse_party(f"partner:{p['partner_id']}"))
                except (KeyError, ValueError):
                    continue
    # The labs of the sample disclosures (`lab:<id>`): each lab signs its own disclosures and withdrawals.
    for file in sorted(vulnerabilities_dir.parent.glob("*.json")):
        try:
            lab = json.loads(file.read_text()).get("lab")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(lab, str) and lab.strip():
            parties.append(lab_party(lab))
    for file in sorted(vulnerabilities_dir.glob("*.json")):
        try:
            vendor = json.loads(file.read_text()).get("vendor")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(vendor, str) and vendor.strip():
            parties.append(vendor_party(vendor))
    return list(dict.fromkeys(parties))


def party_file_name(party: str) -> str:
    """A party id as a file name: checked (no path tricks), `:` as `_` (ids never contain `_`)."""
    try:
        canonical = parse_party(party)
    except ValueError as e:
        raise KeyProblem(str(e)) from None
    if canonical != party:
        raise KeyProblem(f"party {party!r} is not in canonical form ({canonical!r})")
    return party.replace(":", "_")


def public_key_b64(text: str) -> str:
    """A raw Ed25519 public key, base64 (as `keys add` prints it), checked."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise KeyProblem("not an Ed25519 public key (32 bytes, base64, as `keys add` prints it)") from None
    return base64.b64encode(raw).decode()


PAYLOAD_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class PayloadKeyring(BaseModel):
    model_config = ConfigDict(frozen=True)

    current: str
    keys: dict[str, str]  # key id -> 32 bytes, base64

    @model_validator(mode="after")
    def _sane(self) -> PayloadKeyring:
        if self.current not in self.keys:
            raise ValueError(f"current key {self.current!r} is not in the keyring")
        for key_id, b64 in self.keys.items():
            # The codec binds the key id, then "+zlib" when compressed, into each seal: a key id of
            # its own characters keeps those two readings apart.
            if not PAYLOAD_KEY_ID.fullmatch(key_id):
                raise ValueError(f"key id {key_id!r} must be letters, digits, '.', '_' or '-' (1 to 64)")
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
    def anchors_file(self) -> Path:
        return self.path / "trust-anchors.json"

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
        return self.path / "signing" / f"{party_file_name(party)}.pem"

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

    def trust_anchors(self) -> TrustAnchors:
        """The worker's pinned trust anchors; KeyProblem if there are none (a worker never runs
        without: it would believe no activity result at all)."""
        if not self.anchors_file.is_file():
            raise KeyProblem(f"no trust anchors at {self.anchors_file}: run `frontier-review keys init`")
        try:
            anchors = json.loads(self.anchors_file.read_text())
            return {party: [public_key_b64(k) for k in keys] for party, keys in anchors.items()}
        except (ValueError, AttributeError, TypeError):
            raise KeyProblem(f"trust anchors {self.anchors_file} are not {{party: [public key, ...]}}") from None

    def result_signer(self, party: str) -> ResultSigner:
        """The key a party's worker signs its activity results with (its own signing key)."""
        signer = self.signer(party)
        return ResultSigner(party, signer._key)

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

    def init_development(self, parties: list[str] | None = None) -> list[Path]:
        """Create whatever is missing: a payload key, and a signing key per party (by default
        `development_parties()`). Returns what was created."""
        created: list[Path] = []
        if not self.payload_file.is_file():
            self.write_payload_keyring(PayloadKeyring.generate())
            created.append(self.payload_file)
        if not self.token_file.is_file():
            _write_private(self.token_file, secrets.token_urlsafe(32).encode())
            created.append(self.token_file)
        public = self._read_public()
        for party in development_parties() if parties is None else parties:
            if party in public and not self.signing_file(party).is_file():
                continue  # enrolled with a public key made elsewhere (`keys add --public-key`)
            file = self._ensure_signing_key(party)
            if file is not None:
                created.append(file)
            public[party] = self.signer(party).public_key_b64()
        self._write_public(public)
        # Pin each anchor party's current key (older keys stay listed: histories signed with them replay).
        anchors = json.loads(self.anchors_file.read_text()) if self.anchors_file.is_file() else {}
        for party in ANCHOR_PARTIES:
            if party not in public:
                self._ensure_signing_key(party)
                public[party] = self.signer(party).public_key_b64()
                self._write_public(public)
            listed = anchors.setdefault(party, [])
            if public[party] not in listed:
                listed.append(public[party])
                created.append(self.anchors_file)
        _write_private(self.anchors_file, json.dumps(anchors, indent=2, sort_keys=True).encode())
        return list(dict.fromkeys(created))

    def add_party(self, party: str, public_key: str | None = None, *, replace: bool = False) -> tuple[str, Path | None]:
        """Enrol one party: publish its public key in `public-keys.json`. Without `public_key`, a
        key pair is made here (`signing/<party>.pem`); with it (generated on the party's own
        host), only the public key is recorded. Returns the public key and the private key's file."""
        party_file_name(party)
        public = self._read_public()
        if party in public and not replace:
            raise KeyProblem(f"{party} already has a public key in {self.public_file} (--replace to change it)")
        file: Path | None = None
        if public_key is None:
            file = self.signing_file(party)
            if file.is_file() and not replace:
                raise KeyProblem(f"{party} already has a signing key at {file} (--replace to change it)")
            file.unlink(missing_ok=True)
            self._ensure_signing_key(party)
            public_key = self.signer(party).public_key_b64()
        else:
            public_key = public_key_b64(public_key)
            local = self.signing_file(party)
            if local.is_file() and self.signer(party).public_key_b64() != public_key:
                raise KeyProblem(f"{local} holds another key for {party}: remove it first")
        public[party] = public_key_b64(public_key)
        self._write_public(public)
        if party in ANCHOR_PARTIES and self.anchors_file.is_file():
            # A replaced key is added to the anchors, the old one kept (old histories verify with it).
            anchors = json.loads(self.anchors_file.read_text())
            if public[party] not in anchors.setdefault(party, []):
                anchors[party].append(public[party])
                _write_private(self.anchors_file, json.dumps(anchors, indent=2, sort_keys=True).encode())
        return public[party], file

    def _ensure_signing_key(self, party: str) -> Path | None:
        file = self.signing_file(party)
        if file.is_file():
            return None
        key = Ed25519PrivateKey.generate()
        _write_private(file, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        return file

    def _read_public(self) -> PublicKeyring:
        return json.loads(self.public_file.read_text()) if self.public_file.is_file() else {}

    def _write_public(self, public: PublicKeyring) -> None:
        # Written whole, then renamed: a worker reading it meanwhile sees the old or the new keyring.
        self.public_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.public_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(public, indent=2, sort_keys=True))
        tmp.replace(self.public_file)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
