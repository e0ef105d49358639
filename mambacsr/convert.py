"""Load checkpoints trained with the authors' released code (BasicSR layout) into our networks.

    python -m mambacsr.convert CHECKPOINT.pth OUTPUT.safetensors +experiment=dis_w8 [key=params_ema]

The released MambaCSR (renyulin-f/MambaCSR) and MambaIR (csguoh/MambaIR) store ``{"params": ..., "params_ema": ...}``
state dicts.  Names map one to one except that the released SSM tensors stack directions differently
(``A_logs`` (K*D, N) and ``Ds`` (K*D,) become (K, D, N) and (K, D)) and the cross-scale block's low-resolution input
projection keeps only its first half (the z half is never used by the released forward pass).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Dict, Tuple

import torch

# (released-name prefix pattern, our prefix, whether block-level names follow); first match wins.
_PREFIXES: Tuple[Tuple[str, str, bool], ...] = (
    (r"^layers\.(\d+)\.residual_group\.blocks\.(\d+)\.", r"groups.\1.blocks.\2.", True),
    (r"^layers\.(\d+)\.conv\.", r"groups.\1.conv.", False),
    (r"^layers2\.0\.residual_group\.blocks\.(\d+)\.", r"low_group.blocks.\1.", True),
    (r"^layers2\.0\.conv\.", "low_group.conv.", False),
    (r"^layers3\.0\.", "cross_block.", True),
    (r"^patch_embed\.norm\.", "embed_norm.", False),
    (r"^patch_embed2\.norm\.", "low_norm.", False),
    (r"^conv_before_upsample\.0\.", "upsampler.conv_before.0.", False),
    (r"^upsample\.", "upsampler.upsample.", False),
    (r"^conv_last\.", "upsampler.conv_last.", False),
)
_BLOCK: Tuple[Tuple[str, str], ...] = (
    (r"ln_1\.", "norm1."),
    (r"ln_2\.", "norm2."),
    (r"self_attention\.multi_scan\.attn\.norm\.", "ss2d.gate.norm."),
    (r"self_attention\.multi_scan\.attn\.global_reduce\.", "ss2d.gate.reduce."),
    (r"self_attention\.multi_scan\.attn\.channel_select\.", "ss2d.gate.expand."),
    (r"self_attention\.x_proj_weight$", "ss2d.ssm.x_proj_weight"),
    (r"self_attention\.dt_projs_weight$", "ss2d.ssm.dt_proj_weight"),
    (r"self_attention\.dt_projs_bias$", "ss2d.ssm.dt_proj_bias"),
    (r"self_attention\.A_logs$", "ss2d.ssm.A_log"),
    (r"self_attention\.Ds$", "ss2d.ssm.D"),
    (r"self_attention\.conv2d\.", "ss2d.conv."),
    (r"self_attention\.", "ss2d."),
    (r"conv_block\.cab\.", "cab.body."),   # MambaCSR's RLMB
    (r"conv_blk\.cab\.", "cab.body."),     # MambaIR's block
    # The cross-scale block (layers3.0) keeps its SSM tensors at the top level.
    (r"multi_scan\.attn\.norm\.", "ss2d.gate.norm."),
    (r"multi_scan\.attn\.global_reduce\.", "ss2d.gate.reduce."),
    (r"multi_scan\.attn\.channel_select\.", "ss2d.gate.expand."),
    (r"x_proj_weight$", "ss2d.ssm.x_proj_weight"),
    (r"dt_projs_weight$", "ss2d.ssm.dt_proj_weight"),
    (r"dt_projs_bias$", "ss2d.ssm.dt_proj_bias"),
    (r"A_logs$", "ss2d.ssm.A_log"),
    (r"Ds$", "ss2d.ssm.D"),
    (r"in_proj_down\.", "ss2d.in_proj_low."),
    (r"in_proj\.", "ss2d.in_proj."),
    (r"conv2d2\.", "ss2d.conv_low."),
    (r"conv2d\.", "ss2d.conv."),
    (r"out_norm\.", "ss2d.out_norm."),
    (r"out_proj\.", "ss2d.out_proj."),
)


def convert_name(name: str) -> str:
    """Our parameter name for a released one (unchanged when no rule applies)."""
    for pattern, repl, block_level in _PREFIXES:
        match = re.match(pattern, name)
        if match is None:
            continue
        head, tail = match.expand(repl), name[match.end():]
        if block_level:
            for block_pattern, block_repl in _BLOCK:
                tail, hits = re.subn("^" + block_pattern, block_repl, tail)
                if hits:
                    break
        return head + tail
    return name


def convert_released_state_dict(state: Dict[str, torch.Tensor], reference: Dict[str, torch.Tensor]
                                ) -> Dict[str, torch.Tensor]:
    """Map a released state dict onto the names and shapes of ``reference`` (our model's state dict).

    Raises ValueError listing the names that do not map, or the tensors whose shapes do not fit: the checkpoint is
    then for another architecture or experiment.
    """
    converted, problems = {}, []
    for name, tensor in state.items():
        ours = convert_name(name)
        if ours not in reference:
            problems.append(f"{name} (as {ours}) is not a parameter of this network")
            continue
        target = reference[ours].shape
        if ours.endswith("ss2d.in_proj_low.weight") and tensor.shape[0] == 2 * target[0]:
            tensor = tensor[: target[0]]  # the z half is computed and never used by the released code
        if tensor.numel() == reference[ours].numel() and tensor.shape != target:
            tensor = tensor.reshape(target)  # A_logs (K*D, N) -> (K, D, N), Ds (K*D,) -> (K, D)
        if tensor.shape != target:
            problems.append(f"{name}: shape {tuple(tensor.shape)} does not fit {ours} {tuple(target)}")
            continue
        converted[ours] = tensor
    missing = sorted(set(reference) - set(converted))
    problems += [f"{name} is missing from the checkpoint" for name in missing]
    if problems:
        shown = "\n  ".join(problems[:12]) + (f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise ValueError(
            "the checkpoint does not match this network (is it for another experiment or architecture?):\n  " + shown
        )
    return converted


def read_checkpoint(path, key: str = "auto") -> Dict[str, torch.Tensor]:
    """The state dict inside a released checkpoint: ``params_ema`` if present (key="auto"), else ``params``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"could not read checkpoint {path} ({type(err).__name__}: {err}): it is truncated, or not a "
                         "PyTorch checkpoint (.pth / .pt) or our .safetensors export.") from err
    if not isinstance(blob, dict):
        raise ValueError(f"checkpoint {path} does not hold a state dict.")
    if key == "auto":
        key = "params_ema" if "params_ema" in blob else "params" if "params" in blob else None
    if key is None:
        return blob
    if key not in blob:
        raise ValueError(f"checkpoint {path} has no {key!r} entry (it has: {', '.join(map(str, blob))}).")
    return blob[key]


def load_released_checkpoint(model: torch.nn.Module, path, key: str = "auto") -> torch.nn.Module:
    state = convert_released_state_dict(read_checkpoint(path, key), model.state_dict())
    model.load_state_dict(state, strict=True)
    return model


def main(argv=None) -> int:
    from safetensors.torch import save_file

    from .config import build_model, load_config
    from .utils.atomic import atomic_path

    args = list(sys.argv[1:] if argv is None else argv)
    key = "auto"
    for item in list(args):
        if item.startswith("key="):
            key = item.split("=", 1)[1]
            args.remove(item)
    paths = [a for a in args if "=" not in a]
    if len(paths) != 2:
        print("usage: python -m mambacsr.convert CHECKPOINT.pth OUTPUT.safetensors +experiment=NAME [key=params]",
              file=sys.stderr)
        return 2
    source, target = Path(paths[0]), Path(paths[1])
    try:
        # The weights are read back by their suffix (checkpoints.load_weights): another name would not load, and the
        # input's own name would replace the checkpoint being converted.
        if target.suffix != ".safetensors":
            raise ValueError(f"{target}: name the output *.safetensors, the format it is written in (e.g. "
                             f"{target.with_suffix('.safetensors')}).")
        model = build_model(load_config([a for a in args if "=" in a]))
        load_released_checkpoint(model, source, key)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        with atomic_path(target) as tmp:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    except OSError as err:
        print(f"error: could not write {target} ({err.strerror or err}); nothing was written there.",
              file=sys.stderr)
        return 1
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
