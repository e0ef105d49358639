"""Where the time goes: GPU time per kernel of the fused scan layer and of the dis_w8 network (torch.profiler).

    python bench/profile_kernels.py                       # on a GPU: writes bench/results/profile-<gpu>-<date>.jsonl
    python bench/profile_kernels.py --cases a_training_w8 --configs default deterministic=True
    python bench/profile_kernels.py --gated     # each case also through the model's channel gate
    python bench/profile_kernels.py --cases --model-inference --configs default inference_programs_per_sm=0

One row per (case, dtype, tile configuration, phase): ``phase`` is ``fwd`` (no autograd: the inference chunks) or
``fwdbwd``; ``kernels`` maps each kernel name to its GPU milliseconds per call, ``gpu_ms`` is their sum
and ``wall_ms`` the median time of a call with CUDA events (the difference is launch gaps and host work);
``launches`` counts the kernels of a call.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, append_jsonl, parse_config, record, time_ms  # noqa: E402
from scan_bench import CASES, N_STATE, RANK, case_directions, layer_inputs, model_gate  # noqa: E402

from scan2d import directional_scan  # noqa: E402
from scan2d._backend import deterministic_algorithms  # noqa: E402
from scan2d.triton.tiles import tile_config  # noqa: E402


def kernel_times(fn, iterations: int) -> tuple:
    """GPU milliseconds per call of ``fn``, per kernel name (after one untimed call), and the kernels it launches per
    call (each costs the host a launch)."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iterations):
            fn()
        torch.cuda.synchronize()
    totals, launches = collections.Counter(), 0
    for event in prof.key_averages():
        us = getattr(event, "device_time_total", None)
        if us is None:
            us = event.cuda_time_total
        if us > 0 and event.device_type == torch.autograd.DeviceType.CUDA:
            totals[event.key] += us / 1e3 / iterations
            launches += event.count
    return {name: round(ms, 4) for name, ms in totals.most_common()}, launches // iterations


def scan_rows(args, out_name):
    device = torch.device("cuda")
    for name in args.cases:
        batch, H, W, D, K, window, xs = CASES[name]
        directions = case_directions(K, window, xs)
        for dtype, gated in [(getattr(torch, d), g) for d in args.dtypes for g in ([False, True] if args.gated
                                                                                   else [False])]:
            inp = layer_inputs(batch, H, W, D, K, N_STATE, RANK, dtype, device, xs is not None)
            gate = model_gate(D, dtype, device) if gated else None

            def fwd():
                with torch.no_grad():
                    return directional_scan(**inp, directions=directions, height=H, width=W, gate=gate,
                                            backend="triton")

            def fwdbwd():
                directional_scan(**inp, directions=directions, height=H, width=W, gate=gate,
                                 backend="triton").float().sum().backward()

            for text in args.configs:
                changes = parse_config(text)
                deterministic = changes.pop("deterministic", False)
                with tile_config(**changes), deterministic_algorithms(deterministic):
                    for label, fn in (("fwd", fwd), ("fwdbwd", fwdbwd)):
                        kernels, launches = kernel_times(fn, args.iterations)
                        wall = time_ms(fn, device, warmup=1, repeats=args.iterations)
                        row = record(name, dict(batch=batch, height=H, width=W, dim=D, directions=K,
                                                cross_scale=xs, gated=gated), dtype, "fused", device, config=text,
                                     phase=label, wall_ms=wall, gpu_ms=round(sum(kernels.values()), 4),
                                     launches=launches, kernels=kernels)
                        append_jsonl(row, out_name)
                        print(json.dumps({k: row[k] for k in ("case", "dtype", "config", "phase", "wall_ms",
                                                                "gpu_ms")} | dict(gated=gated)), flush=True)
                        for kernel, ms in list(kernels.items())[:8]:
                            print(f"    {ms:9.3f} ms  {kernel[:100]}", flush=True)


def model_rows(args, out_name):
    from mambacsr.config import build_model, load_config

    device = torch.device("cuda")
    cfg = load_config([f"+experiment={args.experiment}", "model.scan_backend=triton"])
    model = build_model(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    x = torch.rand(8, 3, 64, 64, device=device)
    y = torch.rand(8, 3, 256, 256, device=device)

    def step():
        loss = (model(x) - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    kernels, launches = kernel_times(step, 2)
    wall = time_ms(step, device, warmup=0, repeats=2)
    row = record("train_step_256", dict(experiment=args.experiment, batch=8, lr=64, hr=256), torch.float32, "triton",
                 device, config="default", phase="fwdbwd", wall_ms=wall, gpu_ms=round(sum(kernels.values()), 4),
                 launches=launches, kernels=dict(list(kernels.items())[:40]))
    _write_model_row(row, kernels, out_name)


def model_inference_rows(args, out_name):
    """The network's inference on a 256x256 output (batch 1, 64x64 input) under each of ``args.configs``: its GPU
    time against its wall time says whether batch-1 inference waits on the host or on its kernels."""
    from mambacsr.config import build_model, load_config

    device = torch.device("cuda")
    cfg = load_config([f"+experiment={args.experiment}", "model.scan_backend=triton"])
    model = build_model(cfg).to(device).eval()
    x = torch.rand(1, 3, 64, 64, device=device)

    def infer():
        with torch.no_grad():
            model(x)

    for text in args.configs:
        changes = parse_config(text)
        deterministic = changes.pop("deterministic", False)
        with tile_config(**changes), deterministic_algorithms(deterministic):
            kernels, launches = kernel_times(infer, args.iterations)
            wall = time_ms(infer, device, warmup=1, repeats=args.iterations)
        row = record("infer_256", dict(experiment=args.experiment, batch=1, lr=64, hr=256), torch.float32, "triton",
                     device, config=text, phase="fwd", wall_ms=wall, gpu_ms=round(sum(kernels.values()), 4),
                     launches=launches, kernels=dict(list(kernels.items())[:40]))
        _write_model_row(row, kernels, out_name)


def _write_model_row(row, kernels, out_name):
    append_jsonl(row, out_name)
    print(json.dumps({k: row[k] for k in ("case", "config", "wall_ms", "gpu_ms", "launches")}), flush=True)
    for kernel, ms in list(kernels.items())[:15]:
        print(f"    {ms:9.3f} ms  {kernel[:100]}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=["a_training_w8", "b_inference_256"], choices=sorted(CASES))
    parser.add_argument("--dtypes", nargs="*", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--configs", nargs="*", default=["default"],
                        help="tile configurations: 'default' or key=value[,key=value] (TileConfig fields, "
                             "deterministic=True)")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--gated", action="store_true",
                        help="also profile each case through the model's channel gate (every RLMB's layer)")
    parser.add_argument("--model", action="store_true", help="also profile a dis_w8 training step")
    parser.add_argument("--model-inference", action="store_true",
                        help="also profile the network's inference on a 256x256 output under each of --configs")
    parser.add_argument("--experiment", default="dis_w8")
    parser.add_argument("--append", action="store_true", help="add to the result file instead of replacing it")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("profile_kernels.py needs a CUDA GPU (the interpreter's timings say nothing about one).")
    out_name = f"profile-{torch.cuda.get_device_name().replace(' ', '-')}-{dt.date.today().isoformat()}.jsonl"
    if not args.append:
        (RESULTS / out_name).unlink(missing_ok=True)
    scan_rows(args, out_name)
    if args.model:
        model_rows(args, out_name)
    if args.model_inference:
        model_inference_rows(args, out_name)
    print("wrote", RESULTS / out_name)


if __name__ == "__main__":
    main()
