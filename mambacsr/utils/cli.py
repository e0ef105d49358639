"""Command-line helpers shared by the tools that take Hydra overrides next to their own ``key=value`` options."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .atomic import check_writable


def split_options(args: Sequence[str], defaults: Dict[str, Optional[str]]
                  ) -> Tuple[Dict[str, Optional[str]], List[str]]:
    """Separate the tool's own ``key=value`` options (the keys of ``defaults``) from Hydra overrides."""
    opts, overrides = dict(defaults), []
    for item in args:
        key, sep, value = item.partition("=")
        if sep and key in opts:
            opts[key] = value
        else:
            overrides.append(item)
    return opts, overrides


def asks_for_help(args: Sequence[str], doc: str) -> bool:
    """Print ``doc`` (the tool's module docstring, its usage) and return True where ``args`` hold -h or --help."""
    if "-h" in args or "--help" in args:
        print(doc.strip())
        return True
    return False


def output_stem(value: Optional[str], default: Path) -> Path:
    """``out=`` (else ``default``) without its suffix, the stem a tool's outputs are named from, once its folder is
    known to be writable; raises ValueError saying so before any work is done."""
    out = Path(value or default).with_suffix("")
    try:
        check_writable(out.parent)
    except OSError as err:
        raise ValueError(f"out={out}: cannot write in {out.parent} ({err.strerror or err}); pick another out=.")
    return out


def parse_flag(name: str, value: str) -> bool:
    """``overwrite=true`` -> True (also 1, yes; false, 0, no -> False); raises ValueError, saying what to pass, for
    anything else, which would otherwise be taken silently as false."""
    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{name}={value}: pass {name}=true or {name}=false.")
    return value.lower() in ("true", "1", "yes")


def parse_tile(value: str, auto: Optional[int] = None) -> Optional[int]:
    """``tile=256`` -> 256; ``tile=null`` (or None, 0) -> None, the whole image at once; ``tile=auto`` -> ``auto``
    where the tool has such a default.  Raises ValueError, saying what to pass, for anything else."""
    if value in ("null", "None", "0"):
        return None
    if value == "auto" and auto is not None:
        return auto
    tile = _whole_number(value)
    if tile is None or tile < 1:
        raise ValueError(f"tile={value}: pass the tile's side in low-resolution pixels (e.g. tile=256), or tile=null "
                         "to restore each image whole.")
    return tile


def parse_overlap(value: str, tile: Optional[int]) -> int:
    """``overlap=16`` -> 16: the low-resolution pixels that neighbouring tiles share, at least 0 and less than
    ``tile`` (any, without tiles).  Raises ValueError, saying what to pass, for anything else."""
    overlap = _whole_number(value)
    if overlap is None or overlap < 0 or (tile is not None and overlap >= tile):
        bound = f" and less than the tile ({tile})" if tile is not None else ""
        raise ValueError(f"overlap={value}: pass the pixels neighbouring tiles share, a whole number from 0{bound}, "
                         "e.g. overlap=16.")
    return overlap


def whole_number_option(name: str, value: str, low: int, high: Optional[int] = None) -> int:
    """``name=value`` as an int from ``low`` to ``high`` (no upper bound if None); raises ValueError saying so."""
    number = _whole_number(value)
    if number is None or number < low or (high is not None and number > high):
        span = f" from {low} to {high}" if high is not None else f", at least {low}"
        raise ValueError(f"{name}={value}: pass a whole number{span}.")
    return number


def _whole_number(value: str) -> Optional[int]:
    try:
        return int(value)
    except ValueError:
        return None


def parse_device(value: str) -> torch.device:
    """``device=auto`` (the first CUDA GPU where there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``; raises
    ValueError for anything else or for a GPU this machine does not have, saying what it has."""
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={value}: pass device=auto, cpu, cuda or cuda:N.")
    count = torch.cuda.device_count()
    if device.type == "cuda" and (device.index or 0) >= count:
        gpus = f" or cuda:0 to cuda:{count - 1}" if count else ""
        raise ValueError(f"device={value}: this machine has {count} CUDA device(s) visible; pass device=auto, "
                         f"cpu{gpus}.")
    return device
