"""Loading the Hydra configs in conf/ outside ``@hydra.main`` (tools, tests, the evaluator)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Sequence

import hydra
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, InstantiationException, OverrideParseException
from omegaconf import DictConfig

# The Hydra configs: inside the package where it was installed from a wheel (setup.py ships conf/ as mambacsr.conf),
# else the checkout's conf/ beside it (the repository, an editable install).
_PACKAGED_CONF = Path(__file__).resolve().parent / "conf"
CONFIG_DIR = _PACKAGED_CONF if _PACKAGED_CONF.is_dir() else Path(__file__).resolve().parent.parent / "conf"


def available_experiments() -> List[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def load_config(overrides: Iterable[str] = (), tool_options: Sequence[str] = ()) -> DictConfig:
    """Compose conf/config.yaml with command-line style overrides such as ``+experiment=dis_w8``.  Raises ValueError
    for an override Hydra cannot apply, naming ``tool_options`` (the calling tool's own ``key=`` options), since a
    misspelt one arrives here as an override."""
    overrides = list(overrides)
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if key == "experiment" and value not in available_experiments():
            raise ValueError(
                f"experiment {value!r} does not exist; choose one of: {', '.join(available_experiments())} "
                f"(files in {CONFIG_DIR / 'experiment'})."
            )
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        try:
            return compose(config_name="config", overrides=overrides)
        except (ConfigCompositionException, OverrideParseException) as err:
            options = f"\nThis tool's own options: {', '.join(f'{o}=' for o in tool_options)}." if tool_options else ""
            raise ValueError(f"{err}{options}") from None


def build_model(cfg: DictConfig):
    """Instantiate ``cfg.model`` (a MambaCSR or MambaIR network).  A value the network refuses raises its ValueError,
    which says what to pass, rather than Hydra's wrapper around it, so that the tools report it as they report
    their own."""
    try:
        return hydra.utils.instantiate(cfg.model)
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError):
            raise err.__cause__ from None
        raise

