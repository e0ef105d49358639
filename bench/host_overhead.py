"""Host time of one scan-layer call: Python, argument checks, buffer allocation and the kernels' launches.

    python bench/host_overhead.py             # CPU: each Triton launch replaced by Triton's own argument binding
    python bench/host_overhead.py --shape a   # on a GPU: the real launches, at case (a)'s shape

A layer call queues 4 (forward) to 11 (gated forward and backward) Triton kernels.  On a GPU its kernels run
asynchronously, but the GPU idles until the host has queued the first one, and when kernels are short (batch-1
inference) the host's time is the call's time.  Without a GPU (no driver, so ``JITFunction.run`` cannot launch) this
replaces each launch with what Triton's launcher does on the host before the driver call: binding and specializing
the arguments (the generated binder), the cache key, the grid.  The driver call itself is not counted, so on a GPU
add a few microseconds per launch.  The PyTorch ops around the kernels (allocations, the gate's LayerNorm statistics
and excitation, the backward's sums) run for real on small CPU tensors, where they cost about their dispatch.

Writes ``results/host-<device>-<date>.jsonl``: per mode, ``host_us`` (median over calls) and launches per call.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import host_ms, record, write_jsonl  # noqa: E402

from scan2d import ChannelGate, ScanDirection  # noqa: E402
from scan2d.directional import check_directional_args  # noqa: E402
from scan2d.directional.triton_op import directional_scan_triton  # noqa: E402
from scan2d.triton import launch_hooks  # noqa: E402

SHAPES = {"tiny": (1, 16, 16, 32, 8), "a": (8, 64, 64, 360, 23)}  # batch, height, width, channels, dt rank
MODES = ("fwd", "fwdbwd", "gated_fwd", "gated_fwdbwd")


class LaunchBinding:
    """Within the block, ``kernel[grid](...)`` binds its arguments as Triton does before launching, and launches
    nothing; ``launches`` counts the calls per kernel."""

    def __enter__(self):
        from triton.runtime.jit import compute_cache_key

        key_caches, self.launches = collections.defaultdict(dict), collections.Counter()

        def bind(fn, args, kwargs, grid):
            kwargs.update(debug=False, instrumentation_mode="")
            bound, specialization, options = launch_hooks.binder(fn, 90)(*args, **kwargs)
            compute_cache_key(key_caches[fn], specialization, options)
            if callable(grid):
                grid(bound)
            self.launches[fn.fn.__name__] += 1

        self.hook = launch_hooks.instead_of_launch(bind)
        self.hook.__enter__()
        return self

    def __exit__(self, *exc):
        return self.hook.__exit__(*exc)


def layer_call(mode: str, shape, device):
    """A function running one layer call of ``mode`` on fresh inputs of ``shape`` (two window-8 directions)."""
    batch, H, W, D, R = shape
    K, N = 2, 16
    grad = mode.endswith("fwdbwd")

    def leaf(*size, scale=1.0, shift=0.0):
        return (torch.randn(*size, device=device) * scale + shift).requires_grad_(grad)

    args = (leaf(batch, H * W, D), leaf(batch, H * W, K, R + 2 * N, scale=0.5), leaf(K, D, R, scale=0.2),
            leaf(K, D, shift=-3.0), (-torch.rand(K, D, N, device=device) - 0.5).requires_grad_(grad), leaf(K, D))
    directions = (ScanDirection(8), ScanDirection(8, column_first=True, reverse=True))
    gate = None
    if mode.startswith("gated"):
        excite = torch.nn.Linear(D, D).to(device)
        gate = ChannelGate(torch.ones(D, device=device, requires_grad=grad),
                           torch.zeros(D, device=device, requires_grad=grad), 1e-5,
                           lambda pooled: torch.sigmoid(excite(pooled)))

    def scan():
        # What directional_scan(..., backend="triton") runs (its backend check refuses CPU tensors).
        check_directional_args(*args, directions, H, W, None, None)
        return directional_scan_triton(*args, directions, H, W, gate=gate)

    def call():
        if grad:
            scan().sum().backward()
        else:
            with torch.no_grad():
                scan()
    return call


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), help="default: a on a GPU, tiny on a CPU")
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES))
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", help="result file name under bench/results/ (or $BENCH_RESULTS)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    shape_name = args.shape or ("a" if cuda else "tiny")
    rows = []
    for mode in args.modes:
        call = layer_call(mode, SHAPES[shape_name], device)
        binding = None if cuda else LaunchBinding()
        with binding or contextlib.nullcontext():
            for _ in range(5):
                call()
            if binding is not None:
                binding.launches.clear()
            host_us = host_ms(call, device, repeats=args.calls, on_cpu=True) * 1e3
        launches = dict(binding.launches) if binding is not None else None
        row = record(f"host_{mode}", dict(zip(("batch", "height", "width", "dim", "rank"), SHAPES[shape_name])),
                     torch.float32, "fused", device, host_us=host_us,
                     launches_per_call=None if launches is None else
                     {k: v // args.calls for k, v in sorted(launches.items())},
                     launch="real" if cuda else "Triton's argument binding, no driver call")
        print(row, flush=True)
        rows.append(row)
    tag = torch.cuda.get_device_name().replace(" ", "-") if cuda else "cpu"
    print(write_jsonl(rows, args.out or f"host-{tag}-{dt.date.today().isoformat()}.jsonl"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
