"""Model benchmark: a dis_w8 training step and inference, time and peak memory, per scan backend.

    python bench/model_bench.py --mamba-sdist mamba_ssm-2.3.2.post1.tar.gz   # on a GPU: writes bench/results/
    python bench/model_bench.py --smoke                                       # CPU check of the harness

Backends: ``triton`` (fused kernels), ``torch`` (PyTorch path), ``mamba_ssm`` (the same network with every scan layer
run MambaIR-style: gather copies, mamba-ssm's CUDA scan, scatter back).  Cases: a training step (batch 8 of 64x64
LR patches, 256x256 output; Adam step included) and inference at 256x256 and 1024x1024 output (batch 1).
Goal on a GPU: the dis_w8 training step at least 1.5x faster with ``triton`` than with ``mamba_ssm``.
Inference rows also carry ``fwd_host_ms`` (the host's time to queue one forward) and ``fwd_graph_ms`` (the forward
replayed from a CUDA graph: its GPU work alone), as in scan_bench.py; training rows ``fwdbwd_host_ms``, the host's
time to queue a whole step.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, append_jsonl, graph_fields, host_ms, parse_config, record, time_ms  # noqa: E402

import scan2d  # noqa: E402
from scan2d.triton.tiles import tile_config  # noqa: E402
from mambacsr.config import build_model, load_config  # noqa: E402


@contextlib.contextmanager
def mamba_ssm_scan_layers(module):
    """Route every model scan layer through the MambaIR-style mamba-ssm path."""
    from scan_bench import gated_mambair_path, mamba_fn, mambair_path

    fn = mamba_fn(module)
    original = scan2d.directional_scan

    def patched(u, xdbl, dt_weight, dt_bias, A, D, directions, height, width, *, u_low=None, xdbl_low=None,
                gate=None, direction_weights=None, backend="auto"):
        inp = dict(u=u, xdbl=xdbl, dt_weight=dt_weight, dt_bias=dt_bias, A=A, D=D)
        if u_low is not None:
            inp.update(u_low=u_low, xdbl_low=xdbl_low)
        if gate is None and direction_weights is None:
            return mambair_path(fn, inp, directions, height, width)
        return gated_mambair_path(fn, inp, directions, height, width, gate, direction_weights)

    scan2d.directional_scan = patched
    try:
        yield
    finally:
        scan2d.directional_scan = original


CASES = {"train_step_256": (8, 64), "infer_256": (1, 64), "infer_1024": (1, 256)}  # name: batch, LR side


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mamba-sdist")
    parser.add_argument("--experiment", default="dis_w8")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--backends", nargs="*", choices=["triton", "mamba_ssm", "torch"], help="default: all")
    parser.add_argument("--configs", nargs="*", default=["default"], help="tile configurations of the triton "
                        "backend, each timed: 'default' or key=value pairs joined by commas (scan_bench --configs)")
    parser.add_argument("--cases", nargs="*", choices=list(CASES), help="default: all three")
    parser.add_argument("--append", action="store_true", help="add to the result file instead of replacing it")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda" if cuda else "cpu")
    overrides = [f"+experiment={args.experiment}"]
    if args.smoke:
        overrides += ["model.embed_dim=12", "model.depths=[1]", "model.cross_scale.low_depth=1"]
    module = None
    if cuda and args.mamba_sdist:
        from build_mamba_ssm import load

        module = load(args.mamba_sdist)
    # The comparison that the goal names first: the PyTorch path is the slowest and may not finish in a short lease.
    backends = [b for b in ("triton", "mamba_ssm", "torch")
                if (cuda or b == "torch") and (module is not None or b != "mamba_ssm")]
    backends = [b for b in backends if not args.backends or b in args.backends]
    cases = [(name, *CASES[name]) for name in CASES if not args.cases or name in args.cases]
    if args.smoke:
        cases = [("train_step_smoke", 2, 16), ("infer_smoke", 1, 16)]
    tag = torch.cuda.get_device_name().replace(" ", "-") if cuda else "cpu"
    out_name = f"model-{tag}-{dt.date.today().isoformat()}.jsonl"
    if not args.smoke and not args.append:
        (RESULTS / out_name).unlink(missing_ok=True)
    # The first triton configuration, then the mamba-ssm baseline, then the other configurations: a lease that cuts
    # the run short still has a ratio.
    configs = [parse_config(c) for c in args.configs]
    runs = [("triton", configs[0])] * ("triton" in backends) + [(b, {}) for b in backends if b == "mamba_ssm"]
    runs += [("triton", c) for c in configs[1:] if "triton" in backends] + [(b, {}) for b in backends if b == "torch"]
    for backend, changes in runs:
        cfg = load_config(overrides + [f"model.scan_backend={'torch' if backend == 'mamba_ssm' else backend}"])
        model = build_model(cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=2e-4)
        ctx = mamba_ssm_scan_layers(module) if backend == "mamba_ssm" else contextlib.nullcontext()
        with ctx, tile_config(**changes):
            for name, batch, size in cases:
                x = torch.rand(batch, 3, size, size, device=device)
                if name.startswith("train"):
                    y = torch.rand(batch, 3, 4 * size, 4 * size, device=device)

                    def step():
                        loss = (model(x) - y).abs().mean()
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                    fn = step
                else:
                    def infer():
                        with torch.no_grad():
                            model.eval()(x)
                    fn = infer
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                ms = time_ms(fn, device, warmup=1 if args.smoke else 3, repeats=2 if args.smoke else args.repeats)
                peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
                row = record(name, dict(experiment=args.experiment, batch=batch, lr=size, hr=4 * size), torch.float32,
                             backend, device, fwd_ms=None if name.startswith("train") else ms,
                             fwdbwd_ms=ms if name.startswith("train") else None, peak_mb=peak)
                if name.startswith("train"):
                    # The host's time to queue a whole step (forward, backward, Adam): near fwdbwd_ms, the step is
                    # bound by launching, not by its kernels.
                    row["fwdbwd_host_ms"] = host_ms(fn, device, repeats=3)
                else:
                    # Inference at batch 1 runs small kernels: how much of it is the host launching them.
                    row["fwd_host_ms"] = host_ms(fn, device, repeats=3)
                    row.update(graph_fields(fn, device, repeats=args.repeats))
                if changes:
                    row["tiles"] = changes
                if not args.smoke:
                    append_jsonl(row, out_name)  # as measured: a run cut short keeps its rows
                print(row, flush=True)
    if not args.smoke:
        print("wrote", RESULTS / out_name)


if __name__ == "__main__":
    main()
