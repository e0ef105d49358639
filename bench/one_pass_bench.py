"""The one-pass forward prototype timed on a GPU beside our two-pass drop-in scan and mamba-ssm, on the same work.

    python bench/one_pass_bench.py [--mamba-sdist mamba_ssm-2.3.2.post1.tar.gz]   # on a GPU
    TRITON_INTERPRET=1 python bench/one_pass_bench.py --smoke                      # CPU check of the harness

The prototypes (``one_pass_compile.py``) walk each sequence once with its state in registers, so they compute each
exponential once where the fused op's forward computes it twice.  To keep programs in flight, the first spreads the
N states over warps, which costs shared-memory transposes and barriers: its layouts that issue fewer instructions
than the two passes leave 3-6 warps per SM, each walking thousands of steps in a row.  The second cuts each tile's
steps into segments across the threads, with few channels per program (bench/JOURNAL.md, "A one-pass forward"):
about as many instructions per element as the two passes together, 1-warp programs of 96-128 registers.  The
first again with all N states in one trip and 8-16 channels per program (``STATES_ACROSS_LANES``) puts the states
across lanes and warps: the layout of the reference's 40-line prototype, 4-8x the warps of the first's layouts timed
on 2026-12-04 (bench/JOURNAL.md, "The states across the lanes, a few channels per program").  Whether an SM stays
busy in each is what this times (``--lanes-only``: that layout alone, beside mamba-ssm and the drop-in).  The same
layout in Gluon (``gluon_lanes``, every layout chosen: 14.6-17 instructions per element where Triton's choice
takes 21-31; bench/JOURNAL.md, "The states across the lanes in Gluon") runs in both.

Work (float32, forward without autograd, one raster-order scan per sequence, state 16, rank 23, 360 channels):
  a_training: 16 sequences of 4,096 steps (case (a): batch 8, two directions, 64x64)
  b_inference: 2 sequences of 65,536 steps (case (b): batch 1, two directions, 256x256)
Backends: ``segmented``, ``one_pass`` and ``gluon_lanes`` per layout (dt projection, softplus and the D skip inside),
``drop_in`` (scan2d's selective_scan on the state loops, delta projected beforehand as mamba-ssm needs it) and
``mamba_ssm`` (its CUDA op on the drop-in's inputs); and two training forwards, which keep what the backward reads:
``drop_in_training`` (the drop-in with u requiring grad: its 16-step chunks' entry states) and
``segmented_training`` (each 16-step segment's entering state and delta sum).  Each row has ``fwd_ms`` (median
of CUDA events), ``rel_err_vs_drop_in`` (relative L2 distance of the output) and ``fwd_speedup_vs_mamba_ssm``.
Rows go to ``one-pass-forward-<gpu>-<date>.jsonl``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, append_jsonl, record, time_ms  # noqa: E402
import gluon_lanes  # noqa: E402
from one_pass_compile import (GLUON_LANES, LAYOUTS, SEGMENTED, SEGMENTED_TRAINING, STATES_ACROSS_LANES,  # noqa
                              STATES_IN_THREAD, inputs, launch, launch_segmented)

import scan2d  # noqa: E402

R, N, DIM = 23, 16, 360
CASES = {"a_training": (16, 4096), "b_inference": (2, 65536)}  # sequences, steps
SMOKE_CASES = {"smoke": (2, 37)}


def drop_in_inputs(inp: dict) -> dict:
    """mamba-ssm's layout of the prototype's work: u and the projected delta (batch, dim, L), B and C as one group
    (batch, 1, N, L); the bias and softplus left to the scan, as the prototype leaves them to its kernel."""
    x = inp["x"]
    delta = (x[..., :R] @ inp["w"].T).transpose(1, 2).contiguous()
    bc = x[..., R:].transpose(1, 2)
    return dict(u=inp["u"].transpose(1, 2).contiguous(), delta=delta, A=inp["A"].contiguous(),
                B=bc[:, None, :N].contiguous(), C=bc[:, None, N:].contiguous(), D=inp["Dk"].contiguous(),
                bias=inp["bias"].contiguous())


def relative_error(y, ref) -> float:
    return float(f"{((y.double() - ref.double()).norm() / ref.double().norm()).item():.3g}")


def run(args, out_name: str, module=None) -> list:
    """Times every backend on every case; ``module`` is mamba-ssm's built ``selective_scan_cuda`` (or None)."""
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    rows = []
    cases = SMOKE_CASES if args.smoke else {case: CASES[case] for case in args.cases}
    for case, (batch, L) in cases.items():
        dim = 40 if args.smoke else DIM
        inp = {k: v.to(device) for k, v in inputs(batch, L, dim, R, N).items()}
        pre = drop_in_inputs(inp)

        def drop_in():
            y = scan2d.selective_scan(pre["u"], pre["delta"], pre["A"], pre["B"], pre["C"], pre["D"],
                                      delta_bias=pre["bias"], delta_softplus=True, backend="triton")
            return y.transpose(1, 2)  # a view: the timing does not include a copy

        u_grad = pre["u"].detach().clone().requires_grad_()

        def drop_in_training():
            # The fused op's forward when autograd records: one-tile chunks, their entry states kept for the backward.
            with torch.enable_grad():
                y = scan2d.selective_scan(u_grad, pre["delta"], pre["A"], pre["B"], pre["C"], pre["D"],
                                          delta_bias=pre["bias"], delta_softplus=True, backend="triton")
            return y.detach().transpose(1, 2)

        backends = {}
        if module is not None:
            def mamba_ssm():
                out, *_ = module.fwd(pre["u"], pre["delta"], pre["A"], pre["B"], pre["C"], pre["D"].float(), None,
                                     pre["bias"].float(), True)
                return out.transpose(1, 2)

            backends["mamba_ssm"] = (mamba_ssm, {})
        backends["drop_in"] = (drop_in, {})
        if not args.lanes_only:  # else mamba-ssm and the drop-in beside the lanes layouts, for the ratios
            # The segments across the threads first: the fewest instructions with the most warps (bench/JOURNAL.md).
            for steps, segments, block_d, warps in SEGMENTED[1:2] if args.smoke else SEGMENTED:
                layout = dict(steps_per_segment=steps, segments=segments, block_d=block_d, num_warps=warps)
                backends[f"segmented {steps}/{segments}/{block_d}/{warps}"] = (
                    lambda cfg=(steps, segments, block_d, warps): launch_segmented(inp, R, N, *cfg), layout)
            # A training forward each: the two passes keeping their chunk entry states, one pass storing each
            # segment's.
            backends["drop_in_training"] = (drop_in_training, {})
            for steps, segments, block_d, warps in SEGMENTED[1:2] if args.smoke else SEGMENTED_TRAINING:
                layout = dict(steps_per_segment=steps, segments=segments, block_d=block_d, num_warps=warps)
                backends[f"segmented_training {steps}/{segments}/{block_d}/{warps}"] = (
                    lambda cfg=(steps, segments, block_d, warps): launch_segmented(inp, R, N, *cfg,
                                                                                   store_states=True)[0],
                    layout)
        # The Gluon layouts first: the lease's step may end before the last rows.
        for block_d, warps, block_t in GLUON_LANES[:1] if args.smoke else GLUON_LANES:
            layout = dict(gluon=True, block_d=block_d, num_warps=warps, block_t=block_t)
            backends[f"gluon_lanes {block_d}/{warps}/{block_t}"] = (
                lambda cfg=(block_d, warps, block_t): gluon_lanes.launch(inp, R, N, *cfg), layout)
        layouts = [] if args.lanes_only else \
            [(*layout, 16) for layout in [STATES_IN_THREAD] + (LAYOUTS[2:3] if args.smoke else LAYOUTS)]
        for ns, block_d, warps, block_t in layouts + (STATES_ACROSS_LANES[:1] if args.smoke else STATES_ACROSS_LANES):
            layout = dict(states_across_warps=ns, block_d=block_d, num_warps=warps, block_t=block_t)
            backends[f"one_pass {ns}/{block_d}/{warps}/{block_t}"] = (
                lambda cfg=(ns, block_d, warps, block_t): launch(inp, R, N, *cfg), layout)
        with torch.no_grad():
            reference = drop_in()
            mamba_ms = None
            for name, (fn, layout) in backends.items():
                if args.smoke:  # one call: the interpreter takes seconds per call
                    start = time.perf_counter()
                    y = fn()
                    ms = (time.perf_counter() - start) * 1e3
                else:
                    y = fn()
                    ms = time_ms(fn, device, warmup=5, repeats=args.repeats)
                row = record(case, dict(sequences=batch, steps=L, dim=dim, state=N, rank=R), torch.float32,
                             name.split()[0], device, fwd_ms=ms,
                             programs=None if not layout else batch * -(-dim // layout["block_d"]), **layout)
                row["rel_err_vs_drop_in"] = relative_error(y, reference)  # record() would round it to 0.0
                if name == "mamba_ssm":
                    mamba_ms = ms
                elif mamba_ms is not None:
                    row["fwd_speedup_vs_mamba_ssm"] = float(f"{mamba_ms / ms:.3g}")
                rows.append(row)
                if not args.smoke:
                    append_jsonl(row, out_name)
                print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mamba-sdist", help="mamba_ssm-2.3.2.post1.tar.gz to build the CUDA baseline from")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run on the CPU (TRITON_INTERPRET=1), two layouts: checks the harness")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--lanes-only", action="store_true",
                        help="only the states across the lanes (GLUON_LANES, STATES_ACROSS_LANES), mamba-ssm and "
                        "the drop-in")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    args = parser.parse_args(argv)
    device = torch.cuda.get_device_name().replace(" ", "-") if torch.cuda.is_available() else "cpu"
    out_name = f"one-pass-forward-{device}-{dt.date.today().isoformat()}.jsonl"
    if not args.smoke:
        (RESULTS / out_name).unlink(missing_ok=True)
    module = None
    if args.mamba_sdist and torch.cuda.is_available():
        from build_mamba_ssm import load

        module = load(args.mamba_sdist)
    rows = run(args, out_name, module)
    worst = max(row["rel_err_vs_drop_in"] for row in rows)
    print(f"largest relative distance from the drop-in: {worst:.2g}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
