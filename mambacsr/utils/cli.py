"""Command-line helpers shared by the tools that take Hydra overrides next to their own ``key=value`` options."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple


def split_options(args: Sequence[str], defaults: Dict[str, Optional[str]]) -> Tuple[Dict[str, Optional[str]], List[str]]:
    """Separate the tool's own ``key=value`` options (the keys of ``defaults``) from Hydra overrides."""
    opts, overrides = dict(defaults), []
    for item in args:
        key, sep, value = item.partition("=")
        if sep and key in opts:
            opts[key] = value
        else:
            overrides.append(item)
    return opts, overrides


def parse_tile(value: str) -> Optional[int]:
    """``tile=256`` -> 256; ``tile=null`` (or None, 0) -> None, the whole image at once."""
    return None if value in ("null", "None", "0") else int(value)
