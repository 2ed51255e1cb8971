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


class Unavailable(ReviewError):
    """The Temporal server did not answer (down, restarting, overloaded) for as long as we retried;
    the message may or may not have been applied: sending it again with the same id applies it once."""
