"""Parameters and FLOPs of an experiment's network at a 64x64 input, next to the paper's figures.

    python -m mambacsr.complexity +experiment=dis_w8 [size=64]

FLOPs are counted as multiply-accumulates (fvcore's convention, which the paper used) for convolutions and matrix
products; the selective scan's own work (9 * B * L * D * N per direction, mamba-ssm's estimate) is shown
separately because the paper's figures leave it out.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import build_model, load_config
from .models.ss2d import SS2D
from .utils.cli import asks_for_help, split_options, whole_number_option


@dataclass
class Complexity:
    params: int
    macs: int
    scan_flops: int


def count_complexity(model: torch.nn.Module, height: int = 64, width: int = 64) -> Complexity:
    scan_flops = []

    def hook(module: SS2D, args, output):
        x = args[0]
        batch, h, w, _ = x.shape
        inner, n_state = module.ssm.A_log.shape[1:]
        for direction in module.directions:
            scan_flops.append(9 * batch * direction.sequence_length(h, w) * inner * n_state)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, SS2D)]
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model.eval()(torch.rand(1, model.in_chans, height, width))
    finally:
        for handle in handles:
            handle.remove()
    return Complexity(sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2, sum(scan_flops))


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if asks_for_help(args, __doc__):
        return 0
    opts, overrides = split_options(args, {"size": "64"})
    try:
        size = whole_number_option("size", opts["size"], 1)
        cfg = load_config(overrides, tool_options=list(opts))
        model = build_model(cfg)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    result = count_complexity(model, size, size)
    paper = cfg.get("paper") or {}
    print(f"model: {cfg.model._target_}  input: 1x3x{size}x{size}")
    print(f"  parameters (every one counted): {result.params:,} ({result.params / 1e6:.2f} M)"
          + (f"   paper: {paper['params_m']} M (a counter that misses bare nn.Parameters)"
             if paper.get("params_m") else ""))
    print(f"  GFLOPs without the scan (MACs): {result.macs / 1e9:.2f} G"
          + (f"   paper: {paper['gflops']} G" if paper.get("gflops") else ""))
    print(f"  selective-scan FLOPs (9*B*L*D*N): {result.scan_flops / 1e9:.2f} G")
    print(f"  total: {(result.macs + result.scan_flops) / 1e9:.2f} G")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
