"""How far ahead of their first use the state-loop kernels issue their global loads, compiled for sm_90 on the CPU.

A GPU hides a load's latency with what a warp can issue before it needs the value, and with other warps.  On the
H200 (2026-12-04) the forward without gradients ran 1.7x slower with 32-bit offsets than with 64-bit ones, though
compile_check counted fewer registers, no spills and fewer instructions for it: its SASS issues each load a median
29-74 instructions before the value is used, with at most 46-47 loads pending per thread, where the 64-bit build
issues them 231-236 ahead with up to 85-88 pending.  So registers and instruction counts alone mislead here, and this
script measures the load depth of each build:

    python bench/loads_in_flight.py                           # the cases and variants below
    python bench/loads_in_flight.py --case "inference fp32" --variant forward_block_t=8

For each build: its global loads (LDG) in the body that repeats per tile (the tile loop where a chunk has several
tiles, else the whole kernel), the median and mean number of instructions from each load to the first instruction
that reads its register, the most loads pending at once along that straight-line body, and ``pending_per_sm``:
that times the warps that fit on an SM by the registers.  A static projection from the SASS, not a timing.
Results: ``results/loads-in-flight-triton<version>.jsonl``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

import triton

from scan2d.triton.compile_check import NAMED_CASES, compile_all
from scan2d.triton.tiles import tile_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_config, write_jsonl  # noqa: E402
from forward_tiles_compile import programs_per_sm  # noqa: E402
from one_pass_compile import build_listing, sass_loops  # noqa: E402

CASES = ["inference fp32", "training forward fp32", "layer fp32", "layer fp32 gated"]
VARIANTS = [dict(forward_block_t=None), dict(forward_block_t=8), dict(adjoint_block_t=None), dict(adjoint_block_t=8),
            dict(forward_block_t=None, narrow_inference_offsets=True)]
KERNELS = ("chunk_end_state_kernel", "forward_output_kernel", "chunk_adjoint_kernel")
# An instruction: its address, opcode and operands (cuobjdump -sass).
_INSTRUCTION = re.compile(r"\s+/\*([0-9a-f]+)\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)\s*([^;]*);")
_REGISTER = re.compile(r"\bR(\d+)(\.64)?\b")


def _registers(text: str) -> set:
    """The registers an operand list names (a .64 operand names two)."""
    found = set()
    for m in _REGISTER.finditer(text):
        found.add(int(m.group(1)))
        if m.group(2):
            found.add(int(m.group(1)) + 1)
    return found


def load_depth(instructions: list) -> dict:
    """Over a straight-line run of (opcode, operands): each LDG's distance to the first instruction that reads a
    register it writes (its width's registers from the one it names), and the most LDGs pending at once.  Stores and
    reductions read all their operands; other instructions write their first operand and read the rest."""
    pending, distances, most = {}, [], 0
    for i, (op, operands) in enumerate(instructions):
        dest, _, sources = operands.partition(",")
        writes_first = not op.startswith(("ST", "RED", "ATOM"))
        for reg in _registers(sources if writes_first else operands) & pending.keys():
            distances.append(i - pending[reg])
            for other in [r for r, at in pending.items() if at == pending[reg]]:
                del pending[other]  # a load's registers are ready together
        if op.startswith("LDG"):  # LDG.E.64 R4 writes R4 and R5, LDG.E.128 R4 to R7
            first = min(_registers(dest))
            width = 4 if ".128" in op else 2 if ".64" in op else 1
            pending.update((reg, i) for reg in range(first, first + width))
        elif writes_first:
            for reg in _registers(dest):
                pending.pop(reg, None)
        most = max(most, len(set(pending.values())))
    return dict(loads=sum(op.startswith("LDG") for op, _ in instructions),
                load_use_median=statistics.median(distances) if distances else None,
                load_use_mean=round(statistics.mean(distances), 1) if distances else None, most_pending=most)


def row(build, variant: dict, case: str) -> dict:
    listing = build_listing(build)
    instructions = [(int(m.group(1), 16), m.group(2), m.group(3)) for line in listing.splitlines()
                    if (m := _INSTRUCTION.match(line))]
    lines, loops = sass_loops(listing)
    tiles = build.constexprs.get("TILES", 1)
    if tiles > 1 and loops:  # the tile loop, the largest loop, by its addresses
        first, last = max(loops, key=lambda loop: loop[1] - loop[0])
        instructions = [i for i in instructions if lines[first][0] <= i[0] <= lines[last][0]]
    depth = load_depth([(op, operands) for _, op, operands in instructions])
    programs = programs_per_sm(build.registers, build.num_warps)
    return dict(kernel=build.kernel, case=case, arch=build.arch, triton=triton.__version__,
                variant=",".join(f"{k}={v}" for k, v in variant.items()) or "default",
                block_t=build.constexprs.get("BLOCK_T"), tiles=tiles, wide=build.constexprs.get("WIDE"),
                registers=build.registers, spill_bytes=build.spill_store_bytes, programs_per_sm=programs,
                **depth, pending_per_sm=depth["most_pending"] * programs * build.num_warps)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=sorted(NAMED_CASES), help=f"default: {CASES}")
    parser.add_argument("--variant", action="append", metavar="KEY=VALUE[,KEY=VALUE] | default",
                        help=f"TileConfig changes, one variant each (default: {VARIANTS})")
    args = parser.parse_args(argv)
    variants = [parse_config(text) for text in args.variant] if args.variant else VARIANTS
    rows = []
    for case in args.case or CASES:
        for variant in variants:
            with tile_config(**variant):
                builds = compile_all([90], [case])
            for build in builds:
                # The gate's reduction passes (REDUCE > 0) are left out: the same loads as the plain output pass.
                c = build.constexprs
                if build.kernel in KERNELS and c.get("STATE_LOOP") and not c.get("REDUCE"):
                    rows.append(row(build, variant, case))
                    print({k: rows[-1][k] for k in ("case", "kernel", "variant", "registers", "spill_bytes",
                                                     "load_use_median", "most_pending", "pending_per_sm")})
    print(write_jsonl(rows, f"loads-in-flight-triton{triton.__version__}.jsonl"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
