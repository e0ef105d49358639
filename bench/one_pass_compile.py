"""One-pass forwards in Triton, compiled for sm_90 on the CPU: what each would cost per element.

The fused forward makes two passes over the recurrence (chunk end states, then outputs from the carried entry
states), so it computes every exponential twice.  One pass needs a program to walk a whole sequence with its state
in registers, and enough such programs to fill the GPU.  Two prototypes, each fusing the dt low-rank projection,
softplus and the D skip and walking one raster-order direction tile by tile (the layer's positions would only add
to their cost):
- ``one_pass_forward_kernel`` spreads the N states over warps: (steps, states, channels) tiles, the steps in each
  thread's registers, the channels across lanes (tried, not adopted: bench/JOURNAL.md, "A one-pass forward"); with
  all N states in one trip and 8-16 channels per program it puts the states across lanes and warps, the layout of
  the reference's 40-line prototype (``STATES_ACROSS_LANES``; bench/JOURNAL.md, "The states across the lanes, a few
  channels per program");
- ``segments_across_threads_kernel`` loops over the states, as mamba-ssm's kernel does, with few channels per
  program, and cuts each tile's steps into segments across the threads, a segment's steps in its thread's
  registers (bench/JOURNAL.md, "A one-pass forward with the segments across the threads");
- ``gluon_lanes.gluon_lanes_kernel``, the states across the lanes again, written in Gluon with every layout chosen
  (``GLUON_LANES``; bench/JOURNAL.md, "The states across the lanes in Gluon").

    python bench/one_pass_compile.py            # compile each layout for sm_90, one JSON line per layout
    TRITON_INTERPRET=1 python bench/one_pass_compile.py --check   # the prototypes against a step-by-step scan
    python bench/one_pass_compile.py --op       # the op's one-pass kernel (TileConfig.one_pass_forward) instead
    python bench/one_pass_compile.py --gluon    # only the Gluon layouts (-gluon- in the file name)

Results: ``results/one-pass-forward-compile-triton<version>.jsonl`` (``--op``: ``one-pass-op-compile-...``).
Instruction counts cannot say whether a few warps per SM, each walking a whole sequence, keep an SM busy:
``one_pass_bench.py`` times the layouts on a GPU, and ``scan_bench.py --configs one_pass_forward=True`` the op.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

from scan2d.triton.sass_count import sass_listing
from scan2d.triton.tiles import rowwise_by_default

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gluon_lanes  # noqa: E402
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
    warp and trip), N // NS trips per tile; the (NS, BLOCK_D) state stays in registers from tile to tile.  With
    NS = N and BLOCK_D of 8 or 16, Triton spreads the states over lanes and warps, the steps in each thread.
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


@triton.jit
def segments_across_threads_kernel(u_ptr, x_ptr, w_ptr, bias_ptr, A_ptr, Dskip_ptr, y_ptr, carry_ptr, states_ptr,
                                   dsum_ptr, L, Dm: tl.constexpr, s_xl: tl.constexpr, R: tl.constexpr,
                                   N: tl.constexpr, STEPS: tl.constexpr, SEGMENTS: tl.constexpr,
                                   BLOCK_D: tl.constexpr, SEGMENTS_FIRST: tl.constexpr, STEP_AXIS: tl.constexpr,
                                   SEG_AXIS: tl.constexpr, STORE_STATES: tl.constexpr):
    """The same scan with each tile's steps cut into segments across the threads, a segment's steps in its thread.

    Arguments as ``one_pass_forward_kernel``'s (Dm and s_xl compile-time, so that a thread's steps are constant
    offsets from its segment's first row), and carry: (programs, 2, N, BLOCK_D) float32 scratch.  With STORE_STATES
    it also writes what a training forward keeps for the backward: each segment's entering state, states (batch,
    segments, Dm, N) float32 (the fused op's chunk entry states, at STEPS = 16 its 16-step chunks), and its delta
    sum, dsum (batch, segments, Dm) float32.  One program per
    (batch, block of BLOCK_D channels) walks all L steps in tiles of SEGMENTS x STEPS consecutive steps, held as
    (STEPS, BLOCK_D, SEGMENTS) tensors, or (SEGMENTS, BLOCK_D, STEPS) where SEGMENTS_FIRST (STEP_AXIS 2, SEG_AXIS 0
    in the (SEGMENTS, BLOCK_D) tensors of a step each; else 0 and 1): the segments across the threads, a segment's
    steps and channels in registers.  Both Tritons put the threads along the axes that are neither contiguous in
    memory nor known to be in order, 3.7 taking the last such axis and 3.6 the first: hence the two orders.
    The N states go one after another (a loop, as in mamba-ssm's kernel).  For each:
    - each segment's steps are scanned in registers;
    - the segments' (decay product, state from zero) pairs are scanned across the threads: once per state and tile,
      not once per step as with the steps themselves across the threads;
    - the state entering a segment is the one leaving the segment before it (``tl.gather``), or the tile's for the
      first, and each step's state its partial scan plus its decay product times that state.
    The parallelism comes from the channels, as in mamba-ssm (one block per channel there), and every exponential
    is computed once.  A state crosses tiles through the program's slots of ``carry``: the thread of the last segment
    stores it and every thread reads it at the next tile (``tl.debug_barrier`` between).  Tiles alternate between
    two slots, so a tile's stores never overwrite what a slower thread of the same tile has still to read.
    """
    b = tl.program_id(0)
    channels = tl.arange(0, BLOCK_D)
    if SEGMENTS_FIRST:
        seg = tl.arange(0, SEGMENTS)[:, None]  # (SEGMENTS, 1)
        lane_d = channels[None, :]
        p = tl.arange(0, STEPS)[None, None, :]
    else:
        seg = tl.arange(0, SEGMENTS)[None, :]  # (1, SEGMENTS)
        lane_d = channels[:, None]
        p = tl.arange(0, STEPS)[:, None, None]
    d = tl.program_id(1) * BLOCK_D + lane_d
    d3 = tl.expand_dims(d, STEP_AXIS)
    seg3 = tl.expand_dims(seg, STEP_AXIS)
    carry = carry_ptr + (b * tl.num_programs(1) + tl.program_id(1)) * (2 * N * BLOCK_D) + lane_d
    Dk = tl.load(Dskip_ptr + d3, mask=d3 < Dm, other=0.0)
    bias = tl.load(bias_ptr + d3, mask=d3 < Dm, other=0.0)
    previous = tl.maximum(seg - 1, 0) + 0 * d  # (SEGMENTS, BLOCK_D) or its transpose: the segment before each
    last_segment = (seg == SEGMENTS - 1) & (d >= 0)
    for tile in range(0, tl.cdiv(L, STEPS * SEGMENTS)):
        s = tile * (STEPS * SEGMENTS) + seg3 * STEPS + p
        valid = s < L
        mask = valid & (d3 < Dm)
        first_row = (b * L + tile * (STEPS * SEGMENTS) + seg3 * STEPS).to(tl.int64)
        xrow = x_ptr + first_row * s_xl + p * s_xl
        delta_pre = tl.where(mask, bias, 0.0)  # bias, broadcast to the tile
        for r in range(R):
            col = tl.load(xrow + r, mask=valid, other=0.0)
            w = tl.load(w_ptr + d3 * R + r, mask=d3 < Dm, other=0.0)
            delta_pre += col * w
        # Steps past L get delta 0: decay 1 and no drive, so the last segment carries the state unchanged.
        delta = tl.where(mask, tl.where(delta_pre > 20.0, delta_pre, tl.log(1.0 + tl.exp(delta_pre))), 0.0)
        u = tl.load(u_ptr + first_row * Dm + p * Dm + d3, mask=mask, other=0.0)
        du = delta * u
        y = u * Dk
        tl.debug_barrier()  # the last tile's carry stores, visible to every thread
        carry_in = carry + (tile % 2) * (N * BLOCK_D)
        carry_out = carry + ((tile + 1) % 2) * (N * BLOCK_D)
        entering = (d < Dm) & ((d * 0 + tile) > 0)  # the first tile enters from a zero state
        if STORE_STATES:
            chunk = b * tl.cdiv(L, STEPS) + tile * SEGMENTS + seg  # this segment's row in states and dsum
            chunk_valid = (tile * (STEPS * SEGMENTS) + seg * STEPS < L) & (d < Dm)
            tl.store(dsum_ptr + chunk * Dm + d, tl.sum(delta, axis=STEP_AXIS), mask=chunk_valid)
        for n in range(N):
            a = tl.load(A_ptr + d3 * N + n, mask=d3 < Dm, other=0.0) * LOG2E
            Bn = tl.load(xrow + R + n, mask=valid, other=0.0)
            Cn = tl.load(xrow + R + N + n, mask=valid, other=0.0)
            decays, partial = tl.associative_scan((tl.exp2(delta * a), du * Bn), STEP_AXIS, _combine)  # registers
            seg_decay = tl.sum(tl.where(p == STEPS - 1, decays, 0.0), axis=STEP_AXIS)
            seg_state = tl.sum(tl.where(p == STEPS - 1, partial, 0.0), axis=STEP_AXIS)
            reach, from_zero = tl.associative_scan((seg_decay, seg_state), SEG_AXIS, _combine)  # across threads
            h0 = tl.load(carry_in + n * BLOCK_D, mask=entering, other=0.0)
            leaving = from_zero + reach * h0  # the state at each segment's last step
            entered = tl.where(seg == 0, h0, tl.gather(leaving, previous, SEG_AXIS))
            if STORE_STATES:
                tl.store(states_ptr + (chunk * Dm + d) * N + n, entered, mask=chunk_valid)
            y += (partial + decays * tl.expand_dims(entered, STEP_AXIS)) * Cn
            tl.store(carry_out + n * BLOCK_D + 0 * seg, leaving, mask=last_segment)
        tl.store(y_ptr + first_row * Dm + p * Dm + d3, y, mask=mask)


# (states across warps, channels per program, warps): one state per warp and trip.
LAYOUTS = [(16, 32, 16), (8, 32, 8), (4, 32, 4), (4, 64, 8), (2, 32, 2)]
# All N states in each thread, one warp per 32 channels: the fewest instructions, and the fewest warps.
STATES_IN_THREAD = (1, 32, 1)
# (states, channels per program, warps, steps per tile): all N states in one trip, spread over the lanes and warps
# with few channels per program, as in the reference's 40-line prototype (tiles of 32 steps, 8 channels a program:
# 0.61 ms at case (a)'s shape on an H200, ../shared/design/mambacsr-reference.md).  LAYOUTS kept 32 channels per
# program: 192 programs in case (a), under 1.5 per SM.  Here 4-8x the warps (bench/JOURNAL.md, "The states across
# the lanes, a few channels per program").
STATES_ACROSS_LANES = [(16, 8, 4, 32), (16, 8, 4, 16), (16, 8, 2, 16), (16, 16, 4, 16), (16, 8, 1, 16)]
# (channels per program, warps, steps per tile) of the same layout in Gluon, every layout explicit (gluon_lanes.py).
# 16 channels in 2 warps spill at rank 23.
GLUON_LANES = [(8, 4, 16), (16, 4, 16), (8, 2, 16)]
# (steps per segment, segments, channels per program, warps): one segment per thread.
SEGMENTED = [(8, 32, 2, 1), (4, 32, 4, 1), (16, 32, 1, 1), (8, 128, 2, 4)]
# The same, storing the entry state of every 16 steps for the backward, as the fused op's training forward does.
SEGMENTED_TRAINING = [(16, 32, 1, 1), (16, 64, 1, 2)]


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


def launch_segmented(inp, R, N, steps, segments, block_d, warps, segments_first=None, store_states=False):
    """``segments_across_threads_kernel`` on ``inputs``: y, and with ``store_states`` (y, states, dsum), what a
    training forward keeps for the backward.  segments_first: the tiles' axis order (default: the one this Triton
    lays out with the segments across the threads)."""
    if segments_first is None:  # the tie Triton's coalescing breaks as for the drop-in's row-wise tiles
        segments_first = rowwise_by_default(triton.__version__)
    u = inp["u"]
    batch, L, Dm = u.shape
    if u.stride() != (L * Dm, Dm, 1) or inp["x"].stride(2) != 1:
        raise ValueError("the segmented prototype needs contiguous u and x rows")
    y = torch.empty_like(u)
    grid = (batch, triton.cdiv(Dm, block_d))
    carry = torch.empty(grid[0] * grid[1], 2, N, block_d, device=u.device)
    chunks = triton.cdiv(L, steps) if store_states else 0
    states = torch.empty(batch, chunks, Dm, N, device=u.device)
    dsum = torch.empty(batch, chunks, Dm, device=u.device)
    segments_across_threads_kernel[grid](
        u, inp["x"], inp["w"], inp["bias"], inp["A"], inp["Dk"], y, carry, states, dsum, L, Dm, inp["x"].stride(1),
        R=R, N=N, STEPS=steps, SEGMENTS=segments, BLOCK_D=block_d, SEGMENTS_FIRST=segments_first,
        STEP_AXIS=2 if segments_first else 0, SEG_AXIS=0 if segments_first else 1, STORE_STATES=store_states,
        num_warps=warps)
    return (y, states, dsum) if store_states else y


def reference(inp, R, N, states_every=None):
    """The same recurrence step by step in float64; with ``states_every`` (a step count S) also the state entering
    every S-th step, (batch, chunks, Dm, N), and the sums of delta over each S steps, (batch, chunks, Dm)."""
    u, x = inp["u"].double(), inp["x"].double()
    delta = torch.nn.functional.softplus(x[..., :R] @ inp["w"].double().T + inp["bias"].double())
    Bm, Cm = x[..., R:R + N], x[..., R + N:]
    h = torch.zeros(u.shape[0], u.shape[2], N, dtype=torch.float64)
    ys, entering = [], []
    for step in range(u.shape[1]):
        if states_every and step % states_every == 0:
            entering.append(h)
        h = torch.exp(delta[:, step, :, None] * inp["A"].double()) * h \
            + (delta[:, step] * u[:, step])[..., None] * Bm[:, step, None, :]
        ys.append((h * Cm[:, step, None, :]).sum(-1) + inp["Dk"].double() * u[:, step])
    if not states_every:
        return torch.stack(ys, 1)
    chunks = len(entering)
    padded = torch.nn.functional.pad(delta, (0, 0, 0, chunks * states_every - delta.shape[1]))
    dsum = padded.view(delta.shape[0], chunks, states_every, -1).sum(2)
    return torch.stack(ys, 1), torch.stack(entering, 1), dsum


_SASS_LINE = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)[^;]*;")
_BRANCH_TARGET = re.compile(r"\bBRA\b.*?0x([0-9a-f]+)")


def sass_loops(listing: str) -> tuple:
    """A kernel's ``cuobjdump -sass`` listing as (instructions, loops): the (address, opcode) of every instruction,
    and the (first, last) index of each loop's body (a backward branch and what it jumps back over)."""
    lines = [(int(m.group(1), 16), m.group(2), line) for line in listing.splitlines()
             if (m := _SASS_LINE.match(line))]
    address = {addr: i for i, (addr, _, _) in enumerate(lines)}
    loops = []
    for i, (addr, op, line) in enumerate(lines):
        target = _BRANCH_TARGET.search(line) if op == "BRA" else None
        if target and int(target.group(1), 16) < addr and int(target.group(1), 16) in address:
            loops.append((address[int(target.group(1), 16)], i))
    return [(addr, op) for addr, op, _ in lines], loops


def is_state_loop(lines: list, loop: tuple) -> bool:
    """Whether ``loop`` (``sass_loops``) computes exponentials (MUFU), as the state loops do and the dt rank loops
    do not."""
    first, last = loop
    return any(op == "MUFU" for _, op in lines[first:last + 1])


def executed_per_tile(listing: str, R: int, N: int, tile_loop: bool = True) -> int:
    """SASS instructions one thread executes per tile, from a kernel's ``cuobjdump -sass`` listing: the tile loop's
    body (the largest loop), with each loop inside it counted once per trip: N for a loop that computes exponentials
    (MUFU: the state loop), R for one that does not (the dt rank loop; ``rank_loop_trips``).  Static counts hold each
    loop once.  Without ``tile_loop`` (a program per tile, as ``backward_grads_kernel``): the whole kernel, with
    each of its loops (none nested) counted the same way."""
    lines, loops = sass_loops(listing)
    if not tile_loop:
        tile, executed = (-1, len(lines)), len(lines)
    elif not loops:
        raise ValueError("no loop in the listing: expected a tile loop")
    else:
        tile = max(loops, key=lambda loop: loop[1] - loop[0])
        executed = tile[1] - tile[0] + 1
    for first, last in loops:
        if tile[0] <= first and last < tile[1]:
            trips = N if is_state_loop(lines, (first, last)) else R
            executed += (trips - 1) * (last - first + 1)
    return executed


def build_listing(build) -> str:
    """The ``cuobjdump -sass`` listing of a compile_check build, from its cubin in Triton's cache."""
    from triton.runtime.cache import get_cache_manager

    return sass_listing(Path(get_cache_manager(build.cache_key).get_file(f"{build.kernel}.cubin")).read_bytes())


def executed_by_build(build, R: int, N: int) -> int:
    """``executed_per_tile`` of a compile_check build, from its cubin in Triton's cache."""
    return executed_per_tile(build_listing(build), R, N)


def compile_row(build, R, N, layout: dict, elements: int, programs_case_a: int, warps: int) -> dict:
    """One result row: the build's resources and its instructions per (step, channel, state) element."""
    executed = executed_by_build(build, R, N)
    return dict(kernel=build.kernel, arch=build.arch, triton=triton.__version__, **layout, num_warps=warps,
                registers=build.registers, spill_bytes=build.spill_store_bytes, shared_bytes=build.shared_bytes,
                shuffles=build.shuffles, exp_log=build.exp_log, sass_static=build.sass_instructions,
                elements_per_thread_and_tile=elements,
                sass_static_per_element=round(build.sass_instructions / elements, 1),
                sass_executed_per_tile=executed, sass_executed_per_element=round(executed / elements, 1),
                warps_case_a_two_directions=2 * programs_case_a * warps)


# The op's one-pass forward (TileConfig.one_pass_forward): compile_check's cases under each tile configuration.  The
# default takes 1 channel per program for 32-bit inputs and 2 for 16-bit ones; the other count follows it.
FP32_CASES = ("layer fp32", "inference cross-scale aligned fp32", "drop-in fp32 z grouped",
              "cross-scale sequential fp32")
OP_CASES = (*FP32_CASES[:1], "layer bf16", *FP32_CASES[1:])
BACKWARD_CASES = ("layer fp32", "layer bf16", "layer fp32 rank 23", "cross-scale sequential fp32",
                  "drop-in fp32 z grouped", "layer fp32 gated", "layer bf16 gated", "cross-scale aligned fp32 gated")
OP_VARIANTS = [(dict(one_pass_forward=True), OP_CASES),
               (dict(one_pass_forward=True, one_pass_block_d=1), ("layer bf16",)),
               (dict(one_pass_forward=True, one_pass_block_d=2), FP32_CASES),
               (dict(one_pass_forward=True, one_pass_unroll=1), ("layer fp32",)),
               (dict(one_pass_forward=True, one_pass_block_d=2, one_pass_unroll=4), ("layer fp32",)),
               # The states across the lanes (TileConfig.one_pass_lanes): 8 channels and 4 warps, capped at 80
               # registers (6 programs per SM) and not, then 16 and 4, 8 and 2.
               (dict(one_pass_forward=True, one_pass_lanes=True), OP_CASES),
               (dict(one_pass_forward=True, one_pass_lanes=True, one_pass_lanes_maxnreg=80), OP_CASES),
               (dict(one_pass_forward=True, one_pass_lanes=True, one_pass_lanes_block_d=16), ("layer fp32",)),
               (dict(one_pass_forward=True, one_pass_lanes=True, one_pass_lanes_warps=2), ("layer fp32",)),
               # The same written in Gluon (TileConfig.one_pass_gluon): 8 channels and 4 warps, then 16.
               (dict(one_pass_forward=True, one_pass_lanes=True, one_pass_gluon=True), OP_CASES),
               (dict(one_pass_forward=True, one_pass_lanes=True, one_pass_gluon=True, one_pass_lanes_block_d=16),
                ("layer fp32", "inference fp32")),
               # The backward in one pass (TileConfig.one_pass_lanes_backward) after the chunked forward: 8 channels
               # and 4 warps, capped at 168 registers (3 programs per SM) and not, then 16 and 4, 8 and 2.
               (dict(one_pass_lanes_backward=True), BACKWARD_CASES),
               (dict(one_pass_lanes_backward=True, one_pass_lanes_backward_maxnreg=168), BACKWARD_CASES[:1]),
               (dict(one_pass_lanes_backward=True, one_pass_lanes_backward_block_d=16), BACKWARD_CASES[:1]),
               (dict(one_pass_lanes_backward=True, one_pass_lanes_backward_warps=2), BACKWARD_CASES[:1]),
               # The same backward written in Gluon (TileConfig.one_pass_gluon_backward): 8 channels and 4 warps,
               # then 16 channels in 8 warps (the same registers a thread).
               (dict(one_pass_lanes_backward=True, one_pass_gluon_backward=True), BACKWARD_CASES),
               (dict(one_pass_lanes_backward=True, one_pass_gluon_backward=True, one_pass_lanes_backward_block_d=16,
                     one_pass_lanes_backward_warps=8), BACKWARD_CASES[:1])]
ONE_PASS_KERNELS = ("one_pass_forward_kernel", "one_pass_lanes_kernel", "one_pass_lanes_backward_kernel",
                    "one_pass_gluon_kernel", "one_pass_gluon_backward_kernel")
LANES_KERNELS = ONE_PASS_KERNELS[1:]  # no state loop: a thread holds its share of each (steps, states, channels) tile


def rank_loop_trips(c: dict) -> int:
    """Trips of the one-pass kernel's dt rank loop for its constexprs ``c``: blocks of 4 ranks where it reads them
    two per load (PAIRED, plain orders, R >= 4; no loop left to count where UNROLL_RANKS unrolls them), else one
    rank per trip."""
    if not c["LOWRANK"] or "PAIRED" not in c:  # no rank loop (the Gluon kernel holds the ranks in registers)
        return 1
    return -(-c["R"] // 4) if c["PAIRED"] and c["ORDER"] == 0 and c["R"] >= 4 else c["R"]


def op_rows() -> list:
    """compile_check's rows (sm_90) of the op's one-pass kernel under each of OP_VARIANTS, with the tile
    configuration (``variant``) and the instructions a thread executes per tile and per (step, channel, state)."""
    from dataclasses import asdict

    from scan2d.triton.compile_check import compile_all
    from scan2d.triton.tiles import tile_config

    rows = []
    for changes, cases in OP_VARIANTS:
        with tile_config(**changes):
            builds = compile_all([90], cases)
        for build in builds:
            if build.kernel not in ONE_PASS_KERNELS:
                continue
            c = build.constexprs
            if build.kernel in LANES_KERNELS:
                executed = executed_by_build(build, rank_loop_trips(c), 1)
                elements = c["BLOCK_T"] * c["N"] * c["BLOCK_D"] / (32 * build.num_warps)
            else:
                executed = executed_by_build(build, rank_loop_trips(c), c["N"] // c["UNROLL"])
                elements = c["STEPS"] * c["BLOCK_D"] * c["N"]
            rows.append(dict(asdict(build), triton=triton.__version__,
                             variant=",".join(f"{k}={v}" for k, v in changes.items()),
                             sass_executed_per_tile=executed,
                             sass_executed_per_element=round(executed / elements, 1)))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run under TRITON_INTERPRET=1 against the reference")
    parser.add_argument("--op", action="store_true", help="the op's one-pass kernel (TileConfig.one_pass_forward) "
                        "in compile_check's cases instead of the prototypes")
    parser.add_argument("--gluon", action="store_true", help="only the Gluon prototype's layouts (GLUON_LANES), "
                        "to one-pass-forward-gluon-compile-triton<version>.jsonl")
    args = parser.parse_args(argv)
    if args.op:
        rows = op_rows()
        for row in rows:
            print({k: row[k] for k in ("variant", "registers", "spill_store_bytes", "sass_executed_per_element")})
        print(write_jsonl(rows, f"one-pass-op-compile-triton{triton.__version__}.jsonl"))
        return 0
    R, N = 23, 16  # the model's dt rank and state size
    if args.check:
        if os.environ.get("TRITON_INTERPRET") != "1":
            parser.error("--check needs TRITON_INTERPRET=1")
        inp = inputs(2, 37, 40, R, N)
        expected = reference(inp, R, N)
        for ns, block_d, warps, block_t in [(*layout, 16) for layout in [STATES_IN_THREAD] + LAYOUTS] + \
                STATES_ACROSS_LANES:
            got = launch(inp, R, N, ns, block_d, warps, block_t)
            err = ((got.double() - expected).norm() / expected.norm()).item()
            print(f"{ns} states per trip, {block_d} channels, {warps} warps, {block_t}-step tiles: "
                  f"relative error {err:.1e}")
            if not err < 1e-5:
                return 1
        for steps, segments, block_d, warps in SEGMENTED + SEGMENTED_TRAINING:
            got = launch_segmented(inp, R, N, steps, segments, block_d, warps)
            err = ((got.double() - expected).norm() / expected.norm()).item()
            print(f"{segments} segments of {steps} steps, {block_d} channels: relative error {err:.1e}")
            if not err < 1e-5:
                return 1
        for block_d, warps, block_t in GLUON_LANES:
            got = gluon_lanes.launch(inp, R, N, block_d, warps, block_t)
            err = ((got.double() - expected).norm() / expected.norm()).item()
            print(f"Gluon, {block_d} channels, {warps} warps, {block_t}-step tiles: relative error {err:.1e}")
            if not err < 1e-5:
                return 1
        return 0
    from scan2d.triton.compile_check import compile_instead_of_launch

    rows = []
    inp = inputs(8, 4096, 360, R, N)  # case (a)'s shape, one direction
    # (launcher, its configuration, the row's layout fields, channels per program, warps, elements per thread and
    # tile): the (step, channel, state) elements a thread computes per tile.
    layouts = [(gluon_lanes.launch, (block_d, warps, block_t), dict(gluon=True, block_d=block_d, block_t=block_t),
                block_d, warps, block_t * N * block_d // (32 * warps))
               for block_d, warps, block_t in GLUON_LANES]
    if not args.gluon:
        layouts = [(launch, (ns, block_d, warps, block_t),
                    dict(states_across_warps=ns, block_d=block_d, block_t=block_t),
                    block_d, warps, block_t * N * block_d // (32 * warps))
                   for ns, block_d, warps, block_t in [(*layout, 16) for layout in [STATES_IN_THREAD] + LAYOUTS]
                   + STATES_ACROSS_LANES] + [
                   (launch_segmented, (steps, segments, block_d, warps),
                    dict(steps_per_segment=steps, segments=segments, block_d=block_d, stores_states=training),
                    block_d, warps, steps * block_d * N)
                   for training, segmented in ((False, SEGMENTED), (True, SEGMENTED_TRAINING))
                   for steps, segments, block_d, warps in segmented] + layouts
    for launcher, config, layout, block_d, warps, elements in layouts:
        builds = []
        with compile_instead_of_launch([90], builds):
            launcher(inp, R, N, *config, **({"store_states": True} if layout.get("stores_states") else {}))
        (build,) = builds
        row = compile_row(build, R, N, layout, elements, 8 * triton.cdiv(360, block_d), warps)
        print(row)
        rows.append(row)
    kind = "-gluon" if args.gluon else ""
    print(write_jsonl(rows, f"one-pass-forward{kind}-compile-triton{triton.__version__}.jsonl"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
