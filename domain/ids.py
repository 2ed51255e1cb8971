"""Workflow ids, made in one place so the CLI, the agencies' API and tests agree."""

from __future__ import annotations

import re

from domain.disclosure import Disclosure


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "x"


def review_id(lab: str, model_name: str, model_version: str) -> str:
    return f"review-{slug(lab)}-{slug(model_name)}-{slug(model_version)}"


def review_id_for(disclosure: Disclosure) -> str:
    return review_id(disclosure.lab, disclosure.model_name, disclosure.model_version)
