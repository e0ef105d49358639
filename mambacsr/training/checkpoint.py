"""Training checkpoints: written atomically, the last N kept, loaded with ``weights_only=True``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import torch

from ..utils.atomic import atomic_path

_NAME = re.compile(r"^iter_(\d+)\.pt$")


def checkpoint_path(folder, iteration: int) -> Path:
    return Path(folder) / f"iter_{iteration:08d}.pt"


def list_checkpoints(folder) -> list:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder) -> Optional[Path]:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def save_checkpoint(folder, iteration: int, state: dict, keep_last: int) -> Path:
    """Write ``state`` to ``iter_<iteration>.pt`` (temporary file, fsync, rename), then drop all but the newest
    ``keep_last`` checkpoints.  A crash at any point leaves the previous checkpoints intact."""
    path = checkpoint_path(folder, iteration)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in list_checkpoints(folder)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).strip().rstrip(".")  # torch's own message may end in one
        raise ValueError(f"could not load checkpoint {path}: {reason}. It may be truncated; delete it to resume "
                         "from the previous one.") from err
