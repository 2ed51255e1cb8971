"""Errors an operator, agency or lab can act on, each with a one-line message."""

from __future__ import annotations


class ReviewError(Exception):
    """Base: the message names what is wrong."""


class UnknownReview(ReviewError):
    pass


class DuplicateDisclosure(ReviewError):
    pass


class Rejected(ReviewError):
    """The review turned a message away (wrong party, wrong stage, ...); nothing was recorded."""
