"""Compile the Gluon kernels for sm_90 in every layout the GPU test step runs them in, on a machine without a GPU.

Under the interpreter the Gluon kernels run with their layouts dropped (``scan2d.triton.gluon_lang``), and the compile
tests build them only in the configurations the benchmarks time (16 states, 8 or 16 channels a program).  The GPU
tests (``gpu_session.sh main``, step 2) run them in the property tests' layouts too: 4- and 16-step tiles, blocks of
8-64 channels in 1-4 warps, 4 states and 1.  A layout Gluon cannot compile fails only there, after mamba-ssm's build,
and costs the lease its tests: on 2026-12-06 this found the backward's adjoint scan mixing layouts with one state
(fixed).  Run it before a lease, under each Triton the GPU may have:

    PYTHONPATH=kernels python bench/gluon_layouts_compile.py
    PYTHONPATH=kernels:.venv/triton-3.6 TRITON_CACHE_DIR=/tmp/tc36 python bench/gluon_layouts_compile.py

Prints the builds, those that spill (the tests' widest blocks do; they are for the tests, not for timing) and every
failure; exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import sys

import torch
import triton

# The property tests' (block_t, (channels per program, warps)) for the layer's 4 states and the drop-in's 1
# (tests/test_triton_one_pass_gluon.py, tests/test_triton_one_pass_gluon_backward.py).
STEPS = (4, 16)
BLOCKS_4_STATES = ((8, 1), (16, 2), (32, 4), (16, 1))
BLOCKS_1_STATE = ((32, 1), (64, 2))


def cases():
    """(name, tile configuration, run): the layer (every order, bfloat16, the gated aligned cross-scale layer) and the
    drop-in, each through the Gluon forward and the Gluon backward in the same block."""
    from scan2d.triton.compile_check import _drop_in_case, _layer_case

    for block_t in STEPS:
        for n_state, blocks in ((4, BLOCKS_4_STATES), (1, BLOCKS_1_STATE)):
            for block_d, warps in blocks:
                tiles = dict(block_t=block_t, one_pass_forward=True, one_pass_lanes=True, one_pass_gluon=True,
                             one_pass_lanes_block_d=block_d, one_pass_lanes_warps=warps, one_pass_lanes_backward=True,
                             one_pass_gluon_backward=True, one_pass_lanes_backward_block_d=block_d,
                             one_pass_lanes_backward_warps=warps)
                where = f"{block_t}-step tiles, {block_d} channels in {warps} warps, {n_state} states"
                yield (f"drop-in, {where}", tiles, _drop_in_case(torch.float16 if n_state == 1 else torch.float32,
                                                                  grouped=True, with_z=True, n_state=n_state))
                if n_state == 1:
                    continue
                for cross_scale in (None, "aligned", "sequential"):
                    yield (f"layer {cross_scale or 'plain'}, {where}", tiles,
                           _layer_case(torch.float32, False, cross_scale, n_state=n_state, rank=6))
                yield f"layer bf16, {where}", tiles, _layer_case(torch.bfloat16, False, None, n_state=n_state, rank=6)
                yield (f"gated aligned layer, {where}", tiles,
                       _layer_case(torch.float32, True, "aligned", n_state=n_state, rank=6))


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    from scan2d.triton.compile_check import compile_instead_of_launch
    from scan2d.triton.tiles import tile_config

    builds, failures = [], []
    for name, tiles, run in cases():
        try:
            with tile_config(**tiles), compile_instead_of_launch([90], builds):
                run()
        except Exception as error:  # a build that does not compile: report it and go on with the others
            failures.append((name, str(error).strip().splitlines()[-1][:300]))
    gluon = [b for b in builds if b.kernel in ("one_pass_gluon_kernel", "one_pass_gluon_backward_kernel")]
    print(f"Triton {triton.__version__}: {len(builds)} builds, {len(gluon)} of the Gluon kernels")
    for b in gluon:
        if b.spill_store_bytes:
            c = b.constexprs
            print(f"spills {b.spill_store_bytes} bytes: {b.kernel}, {c['BLOCK_T']}-step tiles, {c['BLOCK_D']} "
                  f"channels in {b.num_warps} warps, {c['N']} states")
    for name, error in failures:
        print(f"FAILED {name}: {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
