"""The training figures between two log lines: the mean loss and the steps per second."""

from __future__ import annotations

import contextlib
import math
import time
from typing import NamedTuple

import torch


class IntervalFigures(NamedTuple):
    loss: float  # mean training loss over the interval's steps
    rate: float  # steps per second, validation's time left out


class Interval:
    """Sums the steps' losses (0-d tensors, on their device) and times the steps; :meth:`close` reads them and
    starts the next interval."""

    def __init__(self, device: torch.device):
        self.device = device
        self._start()

    def _start(self) -> None:
        self.loss_sum = torch.zeros((), device=self.device)
        self.steps = 0
        self.paused_seconds = 0.0
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        """One step's loss (a 0-d tensor)."""
        self.loss_sum += loss.detach()
        self.steps += 1

    @contextlib.contextmanager
    def paused(self):
        """Time spent inside is not counted as the steps' (validation)."""
        begun = time.perf_counter()
        try:
            yield
        finally:
            self.paused_seconds += time.perf_counter() - begun

    def close(self) -> IntervalFigures:
        """The interval's figures (NaN loss for an interval without steps); starts the next interval."""
        seconds = time.perf_counter() - self.started - self.paused_seconds
        steps = self.steps
        loss = self.loss_sum.item() / steps if steps else float("nan")
        self._start()
        return IntervalFigures(loss, steps / max(seconds, 1e-9))


def duration(seconds: float) -> str:
    """A time left, to the minute: ``'45 s'``, ``'12 min'``, ``'3 h 05 min'``, ``'2 d 04 h'``."""
    if not math.isfinite(seconds):
        return "unknown"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"
