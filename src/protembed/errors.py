"""Errors that reach the user as one line saying what is wrong and how to fix it."""


class UserError(Exception):
    """A problem the user can fix (configuration, credentials, input data)."""


class RejectedSequence(ValueError):  # noqa: N818 - a verdict on a record, not a crash
    """A sequence that no model may embed; the message is the reason stored in the rejects."""
