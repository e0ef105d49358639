"""Loading trained weights for evaluation and inference: our training checkpoints, our exported safetensors, or
the authors' released checkpoints (through :mod:`mambacsr.convert`)."""

from __future__ import annotations

from pathlib import Path

import torch


def load_weights(model: torch.nn.Module, path) -> torch.nn.Module:
    """Load ``path`` into ``model``: ``*.safetensors`` (our export), ``iter_*.pt`` (our training checkpoint, EMA
    weights) or a released BasicSR checkpoint (``params_ema`` / ``params``).  Raises ValueError when the weights
    belong to another architecture or experiment."""
    from .convert import convert_released_state_dict, read_checkpoint

    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} is a folder: {_weights_in(path)}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except SafetensorError as err:
            raise ValueError(f"could not read checkpoint {path} ({err}): it is truncated, or not a .safetensors "
                             "file.") from err
    else:
        blob = read_checkpoint(path, key="auto")
        if "ema" in blob and "model" in blob:  # our training checkpoint
            state = {k[len("module."):]: v for k, v in blob["ema"].items() if k.startswith("module.")}
        elif any(k.startswith("layers.") for k in blob):  # the authors' released layout
            state = convert_released_state_dict(blob, model.state_dict())
        else:
            state = blob
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit this network ({len(missing)} parameters missing, {len(unexpected)} unexpected; "
            f"e.g. {sorted(missing or unexpected)[0]}): is it for another experiment? Pass the matching "
            "+experiment=NAME.")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit this network: {err}") from err
    return model


def _weights_in(folder: Path) -> str:
    """What to pass instead of a run folder: its exported EMA weights, else its newest training checkpoint."""
    from .training.checkpoint import latest_checkpoint

    for candidate in (folder / "model_ema.safetensors", latest_checkpoint(folder / "checkpoints")):
        if candidate is not None and candidate.is_file():
            return f"pass the weights in it, e.g. checkpoint={candidate}."
    return "pass a weights file (a run's model_ema.safetensors or checkpoints/iter_*.pt, or an authors' .pth)."
