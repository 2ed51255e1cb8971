"""Workflow ids and party ids, made in one place so the CLI, the agencies' API and tests agree.

Ids are readable (a slug of the names) and can never collide: where the slug loses information
(spaces, punctuation, accents, the boundary between lab and model), a hash of the names follows
it. Names are compared as people compare them: case, runs of spaces and Unicode compatibility
forms aside ("Acme AI" and "acme  ai" are one lab; "Acme AI" + "Nova" and "Acme" + "AI Nova" are
two reviews).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

from domain.disclosure import Disclosure

# 16 hex digits (64 bits): finding two name sets with the same id is out of reach, even on purpose.
HASH_DIGITS = 16
# A vendor id is part of a party id, which names a key file: long names keep a prefix and the hash.
MAX_VENDOR_SLUG = 80


def canonical_name(text: str) -> str:
    """A name as compared: NFKC, case-folded, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def slug(text: str) -> str:
    """Lowercase ASCII letters and digits, dash-separated; accents transliterated ("Ñandú" -> "nandu").
    Lossy: never an id on its own where two names could meet (see `review_id`, `vendor_slug`)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return s or "x"


def name_hash(*names: str) -> str:
    """A short hash of the canonical names, in order (the list keeps the boundaries between them)."""
    key = json.dumps([canonical_name(n) for n in names], ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_DIGITS]


def review_id(lab: str, model_name: str, model_version: str) -> str:
    """`review-<lab>-<model>-<version>-<hash>`: the slug to read, the hash to be unique."""
    readable = f"{slug(lab)}-{slug(model_name)}-{slug(model_version)}"
    return f"review-{readable}-{name_hash(lab, model_name, model_version)}"


def review_id_for(disclosure: Disclosure) -> str:
    return review_id(disclosure.lab, disclosure.model_name, disclosure.model_version)


def vendor_slug(vendor: str) -> str:
    """A vendor's id: its slug when the slug says everything the name says (letters and digits in
    words; `TLSKit Foundation` is `tlskit-foundation`), else the slug and a hash of the name
    (`Ñandú Systèmes` is `nandu-systemes-<hash>`, `株式会社` is `x-<hash>`)."""
    canonical = canonical_name(vendor)
    s = slug(vendor)
    lossless = re.fullmatch(r"[a-z0-9]+(?:[ -][a-z0-9]+)*", canonical) and canonical.replace(" ", "-") == s
    if lossless and len(s) <= MAX_VENDOR_SLUG:
        return s
    return f"{s[:MAX_VENDOR_SLUG].strip('-')}-{name_hash(vendor)}"
