"""The state-loop forward kernels (``chunk_end_state_kernel``, ``forward_output_kernel``) compiled for sm_90 on the
CPU with shorter tiles (``TileConfig.forward_block_t``): registers, spills, and the instructions a thread executes
per (step, channel, state) element, for the layer's forward without gradients (cases a and b: 16-tile chunks,
64-bit offsets), its training forward (one 16-step chunk per program) and the drop-in's, at 4,096 steps.

    python bench/forward_tiles_compile.py
    python bench/forward_tiles_compile.py --case "inference fp32" --variant forward_block_t=4

Results: ``results/forward-tiles-compile-triton<version>.jsonl``, one row per build and variant.  Executed counts
(``one_pass_compile.executed_per_tile``): a chunk's tiles, each with its loops once per trip (the state loop
N / STATE_UNROLL times, a rolled dt rank loop once per block of 4 ranks), plus what runs once per chunk.  Programs per
SM from the registers alone (65,536 per SM, allocated per thread in multiples of 8).  A projection from instruction
counts and registers, not a timing: ``scan_bench.py`` times the variants on a GPU.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import triton

from scan2d.triton.compile_check import NAMED_CASES, compile_all
from scan2d.triton.tiles import tile_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backward_compile import rank_blocks  # noqa: E402
from common import parse_config, write_jsonl  # noqa: E402
from one_pass_compile import build_listing, executed_per_tile, sass_loops  # noqa: E402

CASES = ["inference fp32", "training forward fp32", "training forward bf16",
         "inference drop-in fp32 z grouped, whole tiles", "training forward drop-in fp32 z grouped, whole tiles"]
VARIANTS = [dict(forward_block_t=None), dict(forward_block_t=8), dict(forward_block_t=4)]
KERNELS = ("chunk_end_state_kernel", "forward_output_kernel")
REGISTERS_PER_SM = 65536


def executed_per_chunk(listing: str, c: dict) -> int:
    """Instructions one thread executes per chunk of TILES tiles: without a tile loop (one tile) the whole kernel,
    each loop once per trip; else what lies outside the tile loop once and its body TILES times."""
    trips_r, trips_n = rank_blocks(c), c["N"] // c.get("STATE_UNROLL", 1)
    if c["TILES"] == 1:
        return executed_per_tile(listing, trips_r, trips_n, tile_loop=False)
    lines, loops = sass_loops(listing)
    tile = max(loops, key=lambda loop: loop[1] - loop[0])
    body = tile[1] - tile[0] + 1
    return len(lines) - body + c["TILES"] * executed_per_tile(listing, trips_r, trips_n)


def programs_per_sm(registers: int, warps: int) -> int:
    """Programs of ``warps`` warps that fit on one SM of sm_90 by their registers, at most 32 programs and 64 warps
    (these kernels use little shared memory)."""
    per_thread = -(-registers // 8) * 8
    return min(REGISTERS_PER_SM // (per_thread * 32 * warps), 32, 64 // warps)


def row(build, variant: dict, case: str) -> dict:
    c = build.constexprs
    executed = executed_per_chunk(build_listing(build), c)
    elements = c["BLOCK_T"] * c["TILES"] * c["N"]  # one channel per thread
    return dict(asdict(build), triton=triton.__version__, case=case,
                variant=",".join(f"{k}={v}" for k, v in variant.items()) or "default",
                programs_per_sm=programs_per_sm(build.registers, build.num_warps),
                sass_executed_per_element=round(executed / elements, 2))


def tile_rows(cases, variants, kernels) -> list:
    """One ``row`` per state-loop build of ``kernels`` in each case under each variant (TileConfig changes)."""
    rows = []
    for case in cases:
        for variant in variants:
            with tile_config(**variant):
                builds = compile_all([90], [case])
            for build in builds:
                if build.kernel in kernels and build.constexprs.get("STATE_LOOP"):
                    rows.append(row(build, variant, case))
                    print({k: rows[-1][k] for k in ("case", "kernel", "variant", "registers", "spill_store_bytes",
                                                     "programs_per_sm", "sass_executed_per_element")})
    return rows


def tiles_main(argv, description: str, cases: list, variants: list, kernels, stem: str) -> int:
    """The command line of this script and of ``adjoint_tiles_compile.py``: ``kernels``' rows for ``cases`` (or
    --case) under ``variants`` (or --variant), written to ``results/<stem>-triton<version>.jsonl``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--case", action="append", choices=sorted(NAMED_CASES), help=f"default: {cases}")
    parser.add_argument("--variant", action="append", metavar="KEY=VALUE[,KEY=VALUE] | default",
                        help=f"TileConfig changes, one variant each (default: {variants})")
    args = parser.parse_args(argv)
    chosen = [parse_config(text) for text in args.variant] if args.variant else variants
    rows = tile_rows(args.case or cases, chosen, kernels)
    print(write_jsonl(rows, f"{stem}-triton{triton.__version__}.jsonl"))
    return 0


def main(argv=None) -> int:
    return tiles_main(argv, __doc__.splitlines()[0], CASES, VARIANTS, KERNELS, "forward-tiles-compile")


if __name__ == "__main__":
    raise SystemExit(main())
