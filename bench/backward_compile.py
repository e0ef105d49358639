"""The state-loop backward (``backward_grads_kernel``) compiled for sm_90 on the CPU: what a thread executes per
(step, channel, state) element, with the sums over channels reduce-scattered across the lanes (the default,
``TileConfig.backward_lane_sums``) and reduced over the whole warp at every step.  ``--kernel`` takes the other
kernels that scan one tile per program with the state loop as well (``chunk_end_state_kernel`` and
``forward_output_kernel`` of training chunks, ``chunk_adjoint_kernel``), ``--variant`` other tile configurations.

    python bench/backward_compile.py                 # every compile_check case
    python bench/backward_compile.py --case "layer fp32"
    python bench/backward_compile.py --case "layer fp32" --kernel chunk_adjoint_kernel \
        --variant unroll_rank_blocks=False --variant default

Results: ``results/backward-compile-triton<version>.jsonl`` (with ``--kernel`` or ``--variant``:
``one-tile-compile-...``), one row per
build and variant: compile_check's report (registers, spills, shuffles, static SASS), the state loop's trip, the
instructions a thread executes per element (``one_pass_compile.executed_per_tile``: the whole program, the state
loop once per trip, a rolled dt rank loop once per block of 4 ranks) and the local loads and stores inside the loops
(spills that would cost in every trip).  A projection from instruction counts, not a timing: ``scan_bench.py`` times
the variants on a GPU.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import triton

from scan2d.triton.compile_check import CASES, NAMED_CASES, compile_all
from scan2d.triton.tiles import tile_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_config, write_jsonl  # noqa: E402
from one_pass_compile import build_listing, executed_per_tile, is_state_loop, sass_loops  # noqa: E402

VARIANTS = [dict(backward_lane_sums=False), dict()]  # the sums over the whole warp, then the default


ONE_TILE_KERNELS = ("backward_grads_kernel", "chunk_end_state_kernel", "forward_output_kernel", "chunk_adjoint_kernel")


def rank_blocks(c: dict) -> int:
    """Trips of ``tile_io.load_steps``' dt rank loop with the steps in registers, where it is a loop: blocks of 4
    ranks (R >= 4).  Unrolled blocks (``UNROLL_RANKS``) leave no loop to count."""
    return -(-c["R"] // 4) if c["LOWRANK"] and c["R"] >= 4 else 1


def one_tile(build) -> bool:
    """Whether ``build`` scans one tile per program with the state loop (the forward kernels: training chunks)."""
    c = build.constexprs
    return bool(c.get("STATE_LOOP")) and c.get("TILES", 1) == 1


def row(build, variant: dict) -> dict:
    """One result row of a ``backward_grads_kernel`` state-loop build."""
    c = build.constexprs
    listing = build_listing(build)
    lines, loops = sass_loops(listing)
    state_loops = [loop for loop in loops if is_state_loop(lines, loop)]
    executed = executed_per_tile(listing, rank_blocks(c), c["N"] // c.get("STATE_UNROLL", 1), tile_loop=False)
    elements = c["BLOCK_T"] * c["N"]  # one channel per thread
    return dict(asdict(build), triton=triton.__version__,
                variant=",".join(f"{k}={v}" for k, v in variant.items()) or "default",
                state_loop_trip=max(last - first + 1 for first, last in state_loops),
                local_in_loops=sum(op in ("LDL", "STL") for first, last in loops for _, op in lines[first:last + 1]),
                sass_executed_per_element=round(executed / elements, 1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=sorted(NAMED_CASES),
                        help="default: every case compile_check builds by default")
    parser.add_argument("--kernel", action="append", choices=ONE_TILE_KERNELS,
                        help="default: backward_grads_kernel")
    parser.add_argument("--variant", action="append", metavar="KEY=VALUE[,KEY=VALUE] | default",
                        help="TileConfig changes, one variant each (default: without and with the lane sums)")
    args = parser.parse_args(argv)
    kernels = args.kernel or ["backward_grads_kernel"]
    variants = [parse_config(text) for text in args.variant] if args.variant else VARIANTS
    rows = []
    for variant in variants:
        with tile_config(**variant):
            builds = compile_all([90], args.case or tuple(CASES))
        for build in builds:
            if build.kernel in kernels and one_tile(build):
                rows.append(row(build, variant))
                print({k: rows[-1][k] for k in ("kernel", "variant", "registers", "spill_store_bytes", "shuffles",
                                                 "state_loop_trip", "local_in_loops", "sass_executed_per_element")})
    stem = "one-tile" if args.kernel or args.variant else "backward"
    print(write_jsonl(rows, f"{stem}-compile-triton{triton.__version__}.jsonl"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
