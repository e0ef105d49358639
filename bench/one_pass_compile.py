"""A one-pass forward in Triton, compiled for sm_90 on the CPU: what it would cost per element (tried, not adopted).

The fused forward makes two passes over the recurrence (chunk end states, then outputs from the carried entry
states), so it computes every exponential twice.  One pass would need a program to walk a whole sequence with its
state in registers; to keep enough programs, the N states would then have to be spread over warps (the state loops
spread channels over threads, bench/README.md).  This prototype does that: a (steps, states, channels) tile with
the steps in each thread's registers, the states across warps and the channels across lanes, the dt low-rank
projection, softplus and the D skip fused, walking the sequence tile by tile (one direction in raster order: the
layer's positions would only add to its cost).

    python bench/one_pass_compile.py            # compile each layout for sm_90, one JSON line per layout
    TRITON_INTERPRET=1 python bench/one_pass_compile.py --check   # the prototype against a step-by-step scan

Results: ``results/one-pass-forward-compile-triton<version>.jsonl`` (bench/README.md, "A one-pass forward").
Static counts cannot say whether a few warps per SM, each walking a whole sequence, keep an SM busy:
``one_pass_bench.py`` times the layouts on a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_jsonl  # noqa: E402

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _combine(a1, b1, a2, b2):
    return a1 * a2, b1 * a2 + b2


@triton.jit
def one_pass_forward_kernel(u_ptr, x_ptr, w_ptr, bias_ptr, A_ptr, Dskip_ptr, y_ptr, L, Dm, s_xl,
                            R: tl.constexpr, N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                            NS: tl.constexpr):
    """y = selective scan of one raster-order direction, one program per (batch, channel block) over all L steps.

    u, y: (batch, L, Dm) contiguous; x: (batch, L, R + 2N) rows [dt_low | B | C], s_xl apart; w: (Dm, R); bias, Dskip:
    (Dm,); A: (Dm, N).  The (BLOCK_T, NS, BLOCK_D) tiles put NS states across warps (num_warps = NS for one state per
    warp and trip), N // NS trips per tile; the (NS, BLOCK_D) state stays in registers from tile to tile.
    """
    b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d < Dm
    t = tl.arange(0, BLOCK_T)
    n = tl.arange(0, NS)
    trips = tl.arange(0, N // NS)[:, None, None]
    Dk = tl.load(Dskip_ptr + d, mask=d_mask, other=0.0)
    bias = tl.load(bias_ptr + d, mask=d_mask, other=0.0)
    states = tl.zeros([N // NS, NS, BLOCK_D], tl.float32)
    first = (t == 0)[:, None, None]
    last = (t == BLOCK_T - 1)[:, None, None]
    for tile in range(0, tl.cdiv(L, BLOCK_T)):
        s = tile * BLOCK_T + t
        valid = s < L
        mask_td = valid[:, None] & d_mask[None, :]
        row = (b * L + s).to(tl.int64)
        xrow = x_ptr + row * s_xl
        delta_pre = tl.zeros([BLOCK_T, BLOCK_D], tl.float32) + bias[None, :]
        for r in range(R):
            col = tl.load(xrow + r, mask=valid, other=0.0)
            w = tl.load(w_ptr + d * R + r, mask=d_mask, other=0.0)
            delta_pre += col[:, None] * w[None, :]
        delta = tl.where(mask_td, tl.where(delta_pre > 20.0, delta_pre, tl.log(1.0 + tl.exp(delta_pre))), 0.0)
        u = tl.load(u_ptr + row[:, None] * Dm + d[None, :], mask=mask_td, other=0.0)
        du = delta * u
        y = tl.zeros([BLOCK_T, NS, BLOCK_D], tl.float32)
        for j in tl.static_range(N // NS):
            nn = j * NS + n
            a = tl.load(A_ptr + d[None, :] * N + nn[:, None], mask=d_mask[None, :], other=0.0) * LOG2E  # (NS, D)
            Bm = tl.load(xrow[:, None] + R + nn[None, :], mask=valid[:, None], other=0.0)  # (T, NS)
            Cm = tl.load(xrow[:, None] + R + N + nn[None, :], mask=valid[:, None], other=0.0)
            decay = tl.exp2(delta[:, None, :] * a[None, :, :])
            h0 = tl.sum(tl.where(trips == j, states, 0.0), axis=0)
            drive = du[:, None, :] * Bm[:, :, None] + tl.where(first, decay * h0[None, :, :], 0.0)
            _, h = tl.associative_scan((decay, drive), 0, _combine)
            y += h * Cm[:, :, None]
            states = tl.where(trips == j, tl.sum(tl.where(last, h, 0.0), axis=0)[None, :, :], states)
        tl.store(y_ptr + row[:, None] * Dm + d[None, :], tl.sum(y, axis=1) + u * Dk[None, :], mask=mask_td)


# (states across warps, channels per program, warps): one state per warp and trip.
LAYOUTS = [(16, 32, 16), (8, 32, 8), (4, 32, 4), (4, 64, 8), (2, 32, 2)]
# All N states in each thread, one warp per 32 channels: the fewest instructions, and the fewest warps.
STATES_IN_THREAD = (1, 32, 1)


def inputs(batch, L, Dm, R, N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(u=torch.randn(batch, L, Dm, generator=g), x=torch.randn(batch, L, R + 2 * N, generator=g) * 0.5,
                w=torch.randn(Dm, R, generator=g) * 0.2, bias=torch.randn(Dm, generator=g) * 0.5 - 3.0,
                A=-torch.rand(Dm, N, generator=g) * 4 - 0.5, Dk=torch.randn(Dm, generator=g))


def launch(inp, R, N, ns, block_d, warps, block_t=16):
    u = inp["u"]
    batch, L, Dm = u.shape
    y = torch.empty_like(u)
    one_pass_forward_kernel[(batch, triton.cdiv(Dm, block_d))](
        u, inp["x"], inp["w"], inp["bias"], inp["A"], inp["Dk"], y, L, Dm, inp["x"].stride(1),
        R=R, N=N, BLOCK_T=block_t, BLOCK_D=block_d, NS=ns, num_warps=warps)
    return y


def reference(inp, R, N):
    """The same recurrence step by step in float64."""
    u, x = inp["u"].double(), inp["x"].double()
    delta = torch.nn.functional.softplus(x[..., :R] @ inp["w"].double().T + inp["bias"].double())
    Bm, Cm = x[..., R:R + N], x[..., R + N:]
    h = torch.zeros(u.shape[0], u.shape[2], N, dtype=torch.float64)
    ys = []
    for step in range(u.shape[1]):
        h = torch.exp(delta[:, step, :, None] * inp["A"].double()) * h \
            + (delta[:, step] * u[:, step])[..., None] * Bm[:, step, None, :]
        ys.append((h * Cm[:, step, None, :]).sum(-1) + inp["Dk"].double() * u[:, step])
    return torch.stack(ys, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run under TRITON_INTERPRET=1 against the reference")
    args = parser.parse_args(argv)
    R, N = 23, 16  # the model's dt rank and state size
    if args.check:
        if os.environ.get("TRITON_INTERPRET") != "1":
            parser.error("--check needs TRITON_INTERPRET=1")
        inp = inputs(2, 37, 40, R, N)
        expected = reference(inp, R, N)
        for ns, block_d, warps in [STATES_IN_THREAD] + LAYOUTS:
            got = launch(inp, R, N, ns, block_d, warps)
            err = ((got.double() - expected).norm() / expected.norm()).item()
            print(f"states across {ns} warps, {block_d} channels: relative error {err:.1e}")
            if not err < 1e-5:
                return 1
        return 0
    from scan2d.triton.compile_check import compile_instead_of_launch

    rows = []
    inp = inputs(8, 4096, 360, R, N)  # case (a)'s shape, one direction
    for ns, block_d, warps in [STATES_IN_THREAD] + LAYOUTS:
        builds = []
        with compile_instead_of_launch([90], builds):
            launch(inp, R, N, ns, block_d, warps)
        (build,) = builds
        elements = 16 * (N // ns) * block_d * ns // (32 * warps)  # (step, channel, state) per thread and tile
        programs = 8 * triton.cdiv(360, block_d)
        row = dict(kernel=build.kernel, arch=build.arch, triton=triton.__version__, states_across_warps=ns,
                   block_d=block_d, num_warps=warps, registers=build.registers, spill_bytes=build.spill_store_bytes,
                   shared_bytes=build.shared_bytes, shuffles=build.shuffles, exp_log=build.exp_log,
                   sass_static=build.sass_instructions, elements_per_thread_and_tile=elements,
                   sass_static_per_element=round(build.sass_instructions / elements, 1),
                   warps_case_a_two_directions=2 * programs * warps)
        print(row)
        rows.append(row)
    print(write_jsonl(rows, f"one-pass-forward-compile-triton{triton.__version__}.jsonl"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
