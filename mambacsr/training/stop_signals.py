"""Stopping a run cleanly on SIGTERM or SIGINT: a checkpoint at the step reached, then exit.

A cluster that preempts a job sends SIGTERM (SLURM, Kubernetes), and Ctrl-C sends SIGINT. Checkpoints are written
only every ``train.ckpt_every`` steps (5,000 in the paper's recipe), so without this a preempted run lost up to that
many steps. The handler only records the signal. The training loop asks after each step, saves, and raises
:class:`TrainingStopped`, so the same command resumes exactly where the run stopped.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

import torch
import torch.distributed as dist

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(Exception):
    """A signal stopped training after a checkpoint was written; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int, iteration: int, checkpoint_dir):
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"{name} at iteration {iteration}: checkpoint saved in {checkpoint_dir}; run the same "
                         "command again to resume from it.")


class StopSignals:
    """Within ``with StopSignals():`` SIGTERM and SIGINT are recorded instead of ending the process;
    :meth:`received` says whether one came, on every process of a distributed run alike.

    Outside the main thread (where Python cannot install handlers) it records nothing and the signals act as usual.
    """

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _record(self, signum, frame) -> None:
        self.signum = signum

    def received(self, device: torch.device) -> Optional[int]:
        """The signal received by this process or, in a distributed run, by any process (all agree, so that all
        join the checkpoint's collective calls at the same step); None if none."""
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.signum
        flag = torch.tensor([self.signum or 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None


def ignore_in_data_workers(_worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: a signal sent to the whole process group (a cluster's SIGTERM to the job,
    Ctrl-C's SIGINT) leaves the data workers running. The main process stops after its current step. A worker killed
    by the signal would instead make PyTorch raise "DataLoader worker exited unexpectedly" in the main process,
    before it could save."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
