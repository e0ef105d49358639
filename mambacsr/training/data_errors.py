"""A training image that stops a run midway: the error's own message, and the exception the run stops with."""

from __future__ import annotations


class TrainingDataError(ValueError):
    """A training image the data loader could not use (unreadable, too small for the patch); the message says what
    was saved and how to resume."""


def error_message(err: Exception) -> str:
    """``err``'s message; for an error raised in a DataLoader worker (which PyTorch re-raises with the worker's whole
    traceback in the message), the original error's own message, which names the file and what to do."""
    text = str(err)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text
