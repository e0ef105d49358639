"""The console's log format for training (``conf/hydra/job_logging/mambacsr.yaml``): a message as it is, and a
warning or error marked as the package's command-line tools mark theirs (``error: ...``)."""

from __future__ import annotations

import logging


class ConsoleFormatter(logging.Formatter):
    """``message`` at INFO and below, ``warning: message`` and ``error: message`` above."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {text}"
        if record.levelno >= logging.WARNING:
            return f"warning: {text}"
        return text
