"""The launches of the Triton scan and the reductions of their per-chunk partial sums.

``forward_states`` and ``output_pass`` (with ``forward``) run the forward's kernels, ``backward`` the backward's, on
the :class:`~.operands.ScanOperands` of a call; grids over chunks past CUDA's limit are split into several launches
(``chunk_launches``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import triton

from . import (backward_kernels, chunk_carry, forward_kernels, one_pass, one_pass_gluon, one_pass_gluon_backward,
               one_pass_lanes, one_pass_lanes_backward)
from .operands import ScanOperands, cdiv, next_power_of_2, spans_past_int32
from .tile_io import STEP_VECTORS
from .tiles import rowwise_by_default


# A compile option of every launch.  The recurrences are chains of multiply-adds, which Triton fuses into FMAs by
# default; Triton 3.9 warns that this default turns off in 3.10, which would add instructions to every step and
# change the rounding.  Asked for explicitly, it stays.
COMPILE_OPTIONS = dict(enable_fp_fusion=True)
# CUDA's largest grid along y and z.  The chunks lie along z: one launch covers this many at most
# (``chunk_launches``), which training chunks of 16 steps pass beyond 1,048,560 steps (a 1024 x 1024 map, or a
# million-token sequence in the drop-in scan).
MAX_GRID_CHUNKS = 65535


def forward_states(ops: ScanOperands):
    """The state entering every chunk (batch*K, chunks, dim, N), the chunks' delta sums and the final state."""
    local = ops.state_buffer(ops.n_state)
    dsum = ops.state_buffer()
    for chunk_first, chunks in chunk_launches(ops.n_chunks):
        forward_kernels.chunk_end_state_kernel[ops.grid(block_d=ops.forward_block_d, chunks=chunks)](
            local, dsum, *ops.common_args(), chunk_first, **ops.launch_meta(),
            **ops.forward_tiles(ops.forward_state_loop), BLOCK_D=ops.forward_block_d,
            STATE_LOOP=ops.forward_state_loop, STATE_UNROLL=ops.state_unroll,
            CARRY_IN_REGISTERS=ops.tiles.carry_in_registers, UNROLL_RANKS=ops.tiles.unroll_rank_blocks,
            **ops.forward_options(ops.forward_state_loop), **COMPILE_OPTIONS)
    # The carry turns the chunk end states into entry states in place.
    final = torch.empty(ops.batch * ops.K, ops.dim, ops.n_state, device=ops.u.device, dtype=torch.float32)
    carry(ops, local, dsum, reverse=False, final=final)
    return local, dsum, final


def carry(ops: ScanOperands, states: torch.Tensor, dsum: torch.Tensor, reverse: bool,
          final: Optional[torch.Tensor] = None):
    """``chunk_carry``, in place: ``states`` (batch*K, chunks, dim, N) fp32 holds each chunk's local state and then
    the state entering it (reversed: the adjoint arriving at its end); ``final`` (batch*K, dim, N), where given, the
    state after the last chunk.  In one launch, or in three over segments of ``ops.carry_segment`` chunks."""
    common = dict(N=ops.n_state, BLOCK_D=ops.block_d, BLOCK_C=ops.tiles.carry_chunks, num_warps=ops.tiles.num_warps,
                  **COMPILE_OPTIONS)
    out = final if final is not None else dsum
    # The segments lie along the grid's z, as the chunks do elsewhere: at most MAX_GRID_CHUNKS of them.
    segment = max(ops.carry_segment, cdiv(ops.n_chunks, MAX_GRID_CHUNKS))
    if segment >= ops.n_chunks:
        chunk_carry.chunk_carry_kernel[ops.carry_grid()](
            states, out, states, dsum, ops.A, dsum, ops.K, ops.dim, ops.n_chunks, ops.n_chunks, REVERSE=reverse,
            STORE_FINAL=final is not None, **common)
        return
    n_segments = cdiv(ops.n_chunks, segment)
    seg_states = ops.state_buffer(ops.n_state, chunks=n_segments)
    seg_dsum = ops.state_buffer(chunks=n_segments)
    chunk_carry.segment_summary_kernel[(*ops.carry_grid(), n_segments)](
        seg_states, seg_dsum, states, dsum, ops.A, ops.K, ops.dim, ops.n_chunks, segment, REVERSE=reverse, **common)
    # Over the segments, in visiting order either way: seg_states then holds the state entering each.
    chunk_carry.chunk_carry_kernel[ops.carry_grid()](
        seg_states, out, seg_states, seg_dsum, ops.A, seg_dsum, ops.K, ops.dim, n_segments, n_segments,
        REVERSE=False, STORE_FINAL=final is not None, **common)
    chunk_carry.chunk_carry_kernel[(*ops.carry_grid(), n_segments)](
        states, out, states, dsum, ops.A, seg_states, ops.K, ops.dim, ops.n_chunks, segment, REVERSE=reverse,
        HAS_ENTRY=True, **common)


def chunk_launches(n_chunks: int) -> list:
    """(first chunk, chunks) of each launch of a kernel whose grid runs over chunks: one launch, or several of at
    most ``MAX_GRID_CHUNKS`` (CUDA's grid limit along z).  The chunks of one launch are independent of the others'
    (entry states come from the carry), so splitting changes no result."""
    return [(first, min(MAX_GRID_CHUNKS, n_chunks - first)) for first in range(0, n_chunks, MAX_GRID_CHUNKS)]


def direction_launches(K: int, one_at_a_time: bool, first: int = 0) -> list:
    """(first direction, directions) of each launch over directions first .. K-1: all in one, or one direction per
    launch, so that what the directions share (the summed output, du) is added in a fixed order without atomics: one
    direction visits every token once, so no two programs of such a launch touch the same element."""
    if one_at_a_time:
        return [(k, 1) for k in range(first, K)]
    return [(first, K - first)] if K > first else []


def direction_and_chunk_launches(ops: ScanOperands, one_direction_at_a_time: bool,
                                 first_direction: int = 0) -> list:
    """(first direction, directions, first chunk, chunks) of each launch of a kernel over directions and chunks:
    ``direction_launches`` times ``chunk_launches``."""
    return [(k_first, k_count, chunk_first, chunks)
            for k_first, k_count in direction_launches(ops.K, one_direction_at_a_time, first_direction)
            for chunk_first, chunks in chunk_launches(ops.n_chunks)]


def output_pass(ops: ScanOperands, entry: torch.Tensor, out: torch.Tensor, out_strides: tuple, sum_directions: bool,
                weight: Optional[torch.Tensor], reduce: int = 0, red=None, tok=None, vec=None, part=None,
                last_use: bool = False, store_first: bool = False, first_direction: int = 0,
                round_first: bool = False):
    """Recompute each chunk's outputs from its entry state and write them (reduce=0) or reduce them for the
    channel gate (see ``forward_output_kernel``).

    The gated layer's forward computes direction 0's output once (``directional.triton_op``): ``store_first`` makes
    the statistics pass (reduce=1) also write it into ``out``; ``first_direction=1`` then leaves direction 0 out of
    a pass (its pooling: ``first_direction_pool``), and the summed output's first launch multiplies what ``out``
    holds by direction 0's weight.  What was stored is rounded to the layer's dtype, so a 16-bit layer's statistics
    pass and the gate's backward passes (``round_first``) take direction 0's recomputed output rounded alike
    (``rounds_first``).

    The state-loop kernels carry the state between the tiles of a multi-tile chunk through memory: through
    ``entry`` itself when ``last_use`` (nothing reads the entry states afterwards), else through a scratch copy's
    worth of memory; with ``TileConfig.carry_in_registers``, in registers.

    Summed directions are written one launch per direction, each adding to what the last left (one direction
    visits every output token once, so no two programs of a launch touch the same element): the sum needs no
    atomics, is deterministic, and accumulates in ``out``'s own dtype without an fp32 buffer.  The gate's sums
    over channels (reduce 1 and 3) use atomics unless ``ops.deterministic``.
    """
    has_z = ops.z is not None
    dummy = entry
    deterministic = ops.deterministic and reduce in (1, 3)
    # The deterministic gate passes loop over every channel block in one program: with the state loop's tiles that
    # reaches 255 registers and spills (compile_check), so they keep the (steps, channels, states) tiles.
    state_loop = ops.forward_state_loop and not deterministic
    block_d = ops.forward_block_d if state_loop else ops.block_d
    tiles = ops.forward_tiles(state_loop)
    carried = state_loop and tiles["TILES"] > 1 and not ops.tiles.carry_in_registers  # else in registers
    scratch = torch.empty_like(entry) if carried and not last_use else entry
    if first_direction and not (reduce == 2 or (reduce == 0 and sum_directions and weight is not None)):
        raise ValueError("first_direction: only the pooling pass and the weighted summed output leave directions out")
    meta = ops.launch_meta(out, weight, red, tok, vec, part)
    for k_first, k_count, chunk_first, chunks in direction_and_chunk_launches(ops, sum_directions and reduce == 0,
                                                                              first_direction):
        grid = ops.grid(k_count, channel_blocks=not deterministic, block_d=block_d, chunks=chunks)
        forward_kernels.forward_output_kernel[grid](
            out, *out_strides, weight if weight is not None else dummy, red if red is not None else dummy,
            tok if tok is not None else dummy, vec if vec is not None else dummy,
            part if part is not None else dummy, ops.height * ops.width, entry, scratch,
            ops.D if ops.D is not None else dummy, ops.z if has_z else ops.u, *ops.z_strides, *ops.common_args(),
            k_first, k_count, chunk_first, **meta, HAS_D=ops.D is not None, HAS_Z=has_z,
            SUM_DIRECTIONS=sum_directions, ACCUMULATE=k_first > 0, HAS_WEIGHT=weight is not None, REDUCE=reduce,
            DETERMINISTIC=deterministic, **tiles, BLOCK_D=block_d, STATE_LOOP=state_loop,
            STATE_UNROLL=ops.state_unroll, CARRY_IN_REGISTERS=ops.tiles.carry_in_registers,
            STORE_FIRST=store_first, SCALE_FIRST=reduce == 0 and first_direction > 0 and k_first == first_direction,
            ROUND_FIRST=rounds_first(ops, store_first or round_first), **ops.forward_options(state_loop),
            **COMPILE_OPTIONS)


def forward(ops: ScanOperands, out: torch.Tensor, out_strides: tuple, sum_directions: bool,
            weight: Optional[torch.Tensor]):
    """Run the forward.  Returns (entry states, chunk delta sums, final state) for the backward; without one
    (``ops.for_backward`` False) the state-loop kernels may have used the entry states' memory (``output_pass``), and
    the one-pass forward (``TileConfig.one_pass_forward``) returns empty entry states and delta sums."""
    if ops.tiles.one_pass_forward:
        return one_pass_forward(ops, out, out_strides, sum_directions, weight)
    entry, dsum, final = forward_states(ops)
    output_pass(ops, entry, out, out_strides, sum_directions, weight, last_use=not ops.for_backward)
    return entry, dsum, final


def one_pass_meta(ops: ScanOperands, *tensors: Optional[torch.Tensor]) -> dict:
    """The compile-time arguments of ``launch_meta`` (for a launch that also addresses ``tensors``) that the one-pass
    kernels take: they have no state loop, row-wise tiles or unrolled rank blocks to choose."""
    return {name: value for name, value in ops.launch_meta(*tensors).items()
            if name in ("ORDER", "LOWRANK", "HAS_BIAS", "SOFTPLUS", "R", "N", "WIDE", "PAIRED")}


def one_pass_forward(ops: ScanOperands, out: torch.Tensor, out_strides: tuple, sum_directions: bool,
                     weight: Optional[torch.Tensor]):
    """``forward`` in one pass over the recurrence (``one_pass.one_pass_forward_kernel``): the same outputs, entry
    states and delta sums (for a training forward, ``ops.for_backward``; else empty) and final state.  Summed
    directions are written one launch per direction, each adding to what the last left, as in ``output_pass``."""
    tiles = ops.tiles
    if ops.for_backward and ops.tiles_per_chunk != 1:
        raise RuntimeError("internal error: a training forward's chunks are one tile each")
    if tiles.one_pass_lanes:
        return one_pass_lanes_forward(ops, out, out_strides, sum_directions, weight)
    # A training forward's segments are the backward's chunks (one tile of block_t steps each).
    steps = tiles.block_t if ops.for_backward else tiles.one_pass_steps
    segments, block_d = tiles.one_pass_segments, tiles.one_pass_block_d
    if block_d is None:  # 16-bit B and C are converted per step: over 2 channels (TileConfig.one_pass_block_d)
        block_d = 1 if ops.u.element_size() == 4 else 2
    for name, value in (("one_pass_steps", steps), ("one_pass_segments", segments), ("one_pass_block_d", block_d)):
        if value < 1 or value & (value - 1):
            raise ValueError(f"TileConfig.{name} (or block_t) = {value}: the one-pass forward's tile sides must be "
                             "powers of two (tl.arange); choose e.g. 8, 32 or 2")
    segments_first = tiles.one_pass_segments_first
    if segments_first is None:
        segments_first = rowwise_by_default(triton.__version__)
    entry = ops.state_buffer(ops.n_state) if ops.for_backward else ops.u.new_empty(0, dtype=torch.float32)
    dsum = ops.state_buffer() if ops.for_backward else entry
    final = torch.empty(ops.batch * ops.K, ops.dim, ops.n_state, device=ops.u.device, dtype=torch.float32)
    blocks = ops.channel_blocks(block_d)
    dummy = final
    meta = one_pass_meta(ops, out, weight, entry, final)
    launches = direction_launches(ops.K, sum_directions)
    # Each program's two slots for the state crossing its tiles; the launches run one after another and share them.
    carry = torch.empty(ops.batch * launches[0][1] * blocks, 2, ops.n_state, block_d, device=ops.u.device,
                        dtype=torch.float32)
    for k_first, k_count in launches:
        grid = (ops.batch * k_count, blocks)
        one_pass.one_pass_forward_kernel[grid](
            out, *out_strides, weight if weight is not None else dummy, entry, dsum, final, carry,
            ops.D if ops.D is not None else dummy, ops.z if ops.z is not None else ops.u, *ops.z_strides,
            *ops.common_args(), k_first, k_count, ops.length, **meta, HAS_D=ops.D is not None,
            HAS_Z=ops.z is not None, HAS_WEIGHT=weight is not None, ACCUMULATE=sum_directions and k_first > 0,
            STORE_STATES=ops.for_backward, STEPS=steps, SEGMENTS=segments, BLOCK_D=block_d,
            SEGMENTS_FIRST=segments_first, IN_WINDOW=ops.in_windows(steps),
            UNROLL=math.gcd(max(1, tiles.one_pass_unroll), ops.n_state), UNROLL_RANKS=tiles.unroll_rank_blocks,
            num_warps=max(1, segments // 32),
            **COMPILE_OPTIONS)
    return entry, dsum, final


def one_pass_lanes_forward(ops: ScanOperands, out: torch.Tensor, out_strides: tuple, sum_directions: bool,
                           weight: Optional[torch.Tensor]):
    """``one_pass_forward`` with the N states across the lanes (``one_pass_lanes.one_pass_lanes_kernel``,
    ``TileConfig.one_pass_lanes``): tiles of block_t steps, so that a training forward's tiles are the backward's
    chunks, one_pass_lanes_block_d channels per program."""
    tiles = ops.tiles
    block_d = tiles.one_pass_lanes_block_d  # a power of two (TileConfig.__post_init__)
    entry = ops.state_buffer(ops.n_state) if ops.for_backward else ops.u.new_empty(0, dtype=torch.float32)
    dsum = ops.state_buffer() if ops.for_backward else entry
    final = torch.empty(ops.batch * ops.K, ops.dim, ops.n_state, device=ops.u.device, dtype=torch.float32)
    dummy = final
    meta = one_pass_meta(ops, out, weight, entry, final)
    # A program walks a whole scan, so a launch of one direction has only batch x channel blocks of them: 360 at case
    # (a), 11 warps per SM.  Two directions summed in float32 add into a zeroed out alike in either order (0 + a + b
    # and 0 + b + a are the same float), so they go in one launch with atomics, twice the programs in flight; more
    # directions, or a 16-bit out (rounded after each add), take one launch per direction, in order.
    together = tiles.one_pass_lanes_together and sum_directions and ops.K == 2 and out.dtype == torch.float32
    if together:
        out.zero_()
    kernel, layout = one_pass_lanes.one_pass_lanes_kernel, {}
    if tiles.one_pass_gluon:  # the same kernel with its layouts explicit (raises where they cannot hold the block)
        tile, rows = one_pass_gluon.lanes_layouts(block_d, tiles.one_pass_lanes_warps, ops.n_state, tiles.block_t)
        kernel = one_pass_gluon.one_pass_gluon_kernel
        layout = dict(RP=one_pass_gluon.rank_block(ops.rank), TILE=tile, ROWS=rows)
        meta = {name: value for name, value in meta.items() if name != "PAIRED"}  # ranks in registers, not pairs
    for k_first, k_count in direction_launches(ops.K, sum_directions and not together):
        kernel[(ops.batch * k_count, ops.channel_blocks(block_d))](
            out, *out_strides, weight if weight is not None else dummy, entry, dsum, final,
            ops.D if ops.D is not None else dummy, ops.z if ops.z is not None else ops.u, *ops.z_strides,
            *ops.common_args(), k_first, k_count, ops.length, **meta, HAS_D=ops.D is not None,
            HAS_Z=ops.z is not None, HAS_WEIGHT=weight is not None, ACCUMULATE=sum_directions and k_first > 0,
            STORE_STATES=ops.for_backward, BLOCK_T=tiles.block_t, BLOCK_D=block_d,
            IN_WINDOW=ops.in_windows(tiles.block_t), ATOMIC=together, num_warps=tiles.one_pass_lanes_warps,
            **layout, **({} if tiles.one_pass_lanes_maxnreg is None else dict(maxnreg=tiles.one_pass_lanes_maxnreg)),
            **COMPILE_OPTIONS)
    return entry, dsum, final


def first_direction_pool(ops: ScanOperands, first: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """(batch, dim) fp32: the sum over high-resolution tokens of first * rstd of direction 0, where ``first``
    (batch, L, dim) is direction 0's output written by the statistics pass and tok (batch*K, L, 2) holds (mean, rstd)
    per token (``forward_kernels.first_direction_pool_kernel``)."""
    batch, length, dim = first.shape
    # The forward's tiles: one channel per thread, chunks as long as fill the GPU, up to inference_tiles tiles.
    block_t, block_d = ops.tiles.block_t, ops.forward_block_d
    tiles = ops.inference_chunk_tiles(length, batch * cdiv(dim, block_d))
    chunks = cdiv(length, block_t * tiles)
    part = torch.empty(batch, chunks, dim, device=first.device, dtype=torch.float32)
    for chunk_first, count in chunk_launches(chunks):
        forward_kernels.first_direction_pool_kernel[(batch, cdiv(dim, block_d), count)](
            first, first.stride(0), first.stride(1), first.stride(2), tok, part, ops.K, length, dim, chunks,
            chunk_first, BLOCK_T=block_t, BLOCK_D=block_d, TILES=tiles,
            num_warps=ops.forward_options(ops.forward_state_loop)["num_warps"], **COMPILE_OPTIONS)
    return part.sum(1)


def chunk_sums(ops: ScanOperands, part: torch.Tensor) -> torch.Tensor:
    """Per-chunk sums (batch*K, chunks or groups of them, dim) added up over the chunks: (batch, K, dim)."""
    return part.view(ops.batch, ops.K, part.shape[1], ops.dim).sum(2)


def rounds_first(ops: ScanOperands, stored: bool) -> bool:
    """The kernels' ROUND_FIRST (``tile_io.as_stored``): where the gated forward ``stored`` direction 0's output
    in a 16-bit dtype (its own rounding; in float32 the stored values are the computed ones)."""
    return stored and ops.u.element_size() < 4


def direction_weight_grad(ops: ScanOperands, entry: torch.Tensor, dout: torch.Tensor,
                          dout_strides: tuple, round_first: bool = False) -> torch.Tensor:
    """The direction weights' gradient (batch, K, dim), the sum over high-resolution tokens of dout * y_k, from one
    output pass (``reduce=4``) and no backward: the gated layer's output backward, which leaves the inputs' gradient
    to one backward pass with both upstreams (``directional.triton_op``).  ``round_first``: its forward stored
    direction 0's output (``output_pass``)."""
    part = ops.state_buffer()
    output_pass(ops, entry, dout, dout_strides, False, None, reduce=4, part=part, round_first=round_first)
    return chunk_sums(ops, part)


@dataclass
class Grads:
    du: torch.Tensor
    du_low: Optional[torch.Tensor]
    ddelta: Optional[torch.Tensor]
    dx: Optional[torch.Tensor]
    dx_low: Optional[torch.Tensor]
    dB: Optional[torch.Tensor]
    dC: Optional[torch.Tensor]
    dz: Optional[torch.Tensor]
    dweight: Optional[torch.Tensor]
    dA: torch.Tensor          # (K, D, N)
    dD: torch.Tensor          # (K, D)
    dbias: torch.Tensor       # (K, D)
    dW: Optional[torch.Tensor]  # (K, D, R)


def lanes_backward_serves(ops: ScanOperands) -> bool:
    """Whether ``backward`` runs in one pass with the states across the lanes (``TileConfig.one_pass_lanes_backward``):
    asked for, and not in deterministic mode (its sums over channel blocks are atomics), which keeps the chunked
    backward."""
    return ops.tiles.one_pass_lanes_backward and not ops.deterministic


def one_pass_lanes_backward_launch(ops: ScanOperands, dout: torch.Tensor, dout_strides: tuple, sum_directions: bool,
                                   weight: Optional[torch.Tensor], entry: torch.Tensor, grad_buffers: dict,
                                   ln_upstream: Optional[tuple] = None, round_first: bool = False) -> Grads:
    """``backward`` in one pass per direction (``one_pass_lanes_backward.one_pass_lanes_backward_kernel``): one
    program per (batch, direction, one_pass_lanes_backward_block_d channels) walks its scan backwards from the entry
    states of the training forward's chunks, and stores its sums over steps once, one row per (batch, direction).
    ``ln_upstream`` and ``round_first`` as ``backward`` takes them: each tile's recomputed outputs give the gated
    layer's LayerNorm gradient, so that layer runs it too."""
    tiles = ops.tiles
    block_d = tiles.one_pass_lanes_backward_block_d  # a power of two (TileConfig.__post_init__)
    dA_part = ops.state_buffer(ops.n_state, chunks=1)
    dD_part = ops.state_buffer(chunks=1)
    dbias_part = ops.state_buffer(chunks=1)
    dW_part = ops.state_buffer(ops.rank, chunks=1) if ops.lowrank else dD_part
    wants_dweight = weight is not None and sum_directions and ln_upstream is None  # else a gate pass has it
    dweight_part = ops.state_buffer(chunks=1) if wants_dweight else dD_part
    tok, vec, gbar = ln_upstream if ln_upstream is not None else (dD_part, dD_part, dD_part)
    gb = _launch_buffers(grad_buffers, dD_part)
    has_z = ops.z is not None
    meta = one_pass_meta(ops, dout, weight, *(ln_upstream or ()), *grad_buffers.values())
    # du is what the directions share.  Two float32 directions add into the zeroed du alike in either order (0 + a + b
    # and 0 + b + a are the same float): one launch, atomics.  More take one launch each, a read-add-write in order.
    together = ops.K <= 2
    kernel = one_pass_lanes_backward.one_pass_lanes_backward_kernel
    if tiles.one_pass_gluon_backward:  # the same kernel with its layouts explicit (raises where they cannot hold it)
        tile, rows, cols = one_pass_gluon_backward.backward_layouts(block_d, tiles.one_pass_lanes_backward_warps,
                                                                    ops.n_state, tiles.block_t)
        kernel = one_pass_gluon_backward.one_pass_gluon_backward_kernel
        meta = {name: value for name, value in meta.items() if name != "PAIRED"}  # ranks in registers, not pairs
        layout = dict(RP=one_pass_gluon.rank_block(ops.rank), TILE=tile, ROWS=rows, COLS=cols)
    else:
        dt_dot = ops.lowrank and tiles.block_t >= 16  # tl.dot's smallest M (tile_io.dot_fp32)
        layout = dict(RP=max(16 if dt_dot else 1, next_power_of_2(ops.rank)), DT_DOT=dt_dot)
    for k_first, k_count in direction_launches(ops.K, not together):
        kernel[(ops.batch * k_count, ops.channel_blocks(block_d))](
            *(gb[name] for name in GRAD_BUFFERS), dA_part, dD_part, dbias_part, dW_part, dweight_part,
            dout, *dout_strides, weight if weight is not None else dD_part, entry,
            ops.D if ops.D is not None else dD_part, ops.z if has_z else ops.u, *ops.z_strides,
            tok, vec, gbar, ops.height * ops.width, *ops.common_args(), k_first, k_count, ops.length, **meta,
            HAS_D=ops.D is not None, HAS_Z=has_z, SUM_DIRECTIONS=sum_directions, HAS_WEIGHT=weight is not None,
            LN_UPSTREAM=ln_upstream is not None, ROUND_FIRST=rounds_first(ops, round_first),
            DU_OWNED=ops.K == 1 or not together,
            BLOCK_T=tiles.block_t, BLOCK_D=block_d, **layout,
            IN_WINDOW=ops.in_windows(tiles.block_t), num_warps=tiles.one_pass_lanes_backward_warps,
            **({} if tiles.one_pass_lanes_backward_maxnreg is None
               else dict(maxnreg=tiles.one_pass_lanes_backward_maxnreg)), **COMPILE_OPTIONS)
    return _grads(ops, grad_buffers, dA_part, dD_part, dbias_part, dW_part, dweight_part if wants_dweight else None)


# The gradient buffers of ``backward``'s grad_buffers, in the order the backward kernels take them.
GRAD_BUFFERS = ("du", "du_low", "ddelta", "dx", "dx_low", "dB", "dC", "dz")


def _launch_buffers(grad_buffers: dict, dummy: torch.Tensor) -> dict:
    """``grad_buffers`` with ``dummy`` for those a call lacks: a configuration that does not use a buffer never
    writes it (its constexpr branch is off), so any tensor will do."""
    return {name: grad_buffers.get(name) if grad_buffers.get(name) is not None else dummy for name in GRAD_BUFFERS}


def _grads(ops: ScanOperands, grad_buffers: dict, dA_part, dD_part, dbias_part, dW_part,
           dweight_part: Optional[torch.Tensor]) -> Grads:
    """``Grads`` of the buffers the kernels added into and of the per-(batch, direction) sums over steps, each
    (batch*K, groups of chunks, dim, ...): summed over the batch and the groups, and the direction weights' (where
    ``dweight_part`` is given) over the groups only."""

    def per_direction(part):
        return part.view(ops.batch, ops.K, *part.shape[1:]).sum(dim=(0, 2))

    gb = grad_buffers
    return Grads(
        du=gb["du"], du_low=gb.get("du_low"), ddelta=gb.get("ddelta"), dx=gb.get("dx"), dx_low=gb.get("dx_low"),
        dB=gb.get("dB"), dC=gb.get("dC"), dz=gb.get("dz"),
        dweight=chunk_sums(ops, dweight_part) if dweight_part is not None else None,
        dA=per_direction(dA_part), dD=per_direction(dD_part), dbias=per_direction(dbias_part),
        dW=per_direction(dW_part) if ops.lowrank else None,
    )


def _zeroed_copies(buffer: torch.Tensor, count: int) -> torch.Tensor:
    """(count, *buffer.shape) zeros, each copy laid out like ``buffer`` (dense, any strides): the kernels address a
    copy with the strides of the tensor it is the gradient of, one copy ``buffer.numel()`` elements after another."""
    numel = buffer.numel()
    return buffer.new_zeros(count * numel).as_strided((count, *buffer.shape), (numel, *buffer.stride()))


def backward(ops: ScanOperands, dout: torch.Tensor, dout_strides: tuple, sum_directions: bool,
             weight: Optional[torch.Tensor], entry: torch.Tensor, dsum: torch.Tensor,
             grad_buffers: dict, ln_upstream: Optional[tuple] = None, round_first: bool = False) -> Grads:
    """Run the backward; ``grad_buffers`` holds zeroed fp32 buffers laid out like the inputs they belong to
    (du, du_low, ddelta, dx, dx_low, dB, dC, dz).

    ``ln_upstream = (tok, vec, gbar)``: instead of an output gradient, back-propagate the gate's pooled LayerNorm
    statistic (tok: (batch*K, L, 3) mean, rstd, m per token; vec: (batch*K, dim) g; gbar: (batch*K,) mean of g);
    with ``sum_directions`` as well as the output gradient (the gated layer's fused backward, whose direction weights'
    gradient a ``reduce=4`` output pass has computed: ``Grads.dweight`` is None).  ``round_first``: the gated forward
    stored direction 0's output, which the LayerNorm gradient then takes as stored (``output_pass``).
    """
    if not ops.for_backward:
        raise RuntimeError("internal error: backward on operands made for a forward-only run (for_backward=False).")
    if lanes_backward_serves(ops):
        return one_pass_lanes_backward_launch(ops, dout, dout_strides, sum_directions, weight, entry, grad_buffers,
                                              ln_upstream, round_first)
    has_z = ops.z is not None
    z = ops.z if has_z else ops.u
    wt = weight if weight is not None else dsum
    tok, vec, gbar = ln_upstream if ln_upstream is not None else (dsum, dsum, dsum)
    ln_args = (tok, vec, gbar, ops.height * ops.width)
    Dskip = ops.D if ops.D is not None else dsum
    # The gated layer's LayerNorm gradient forms each step's dy from recomputed outputs: chunk_adjoint keeps it for
    # backward_grads, which then recomputes no outputs (TileConfig.backward_keeps_dy).
    keep_dy = (ln_upstream is not None and not has_z and ops.adjoint_state_loop and ops.backward_state_loop
               and ops.tiles.backward_keeps_dy)
    dy = (torch.empty(ops.batch * ops.K, ops.n_chunks * ops.tiles.block_t, ops.dim, device=ops.u.device,
                      dtype=torch.float32) if keep_dy else dsum)
    meta = dict(**ops.launch_meta(dout, weight, *(ln_upstream or ()), *grad_buffers.values(), dy), HAS_Z=has_z,
                SUM_DIRECTIONS=sum_directions, HAS_WEIGHT=weight is not None,
                LN_UPSTREAM=ln_upstream is not None, BLOCK_T=ops.tiles.block_t, BLOCK_D=ops.block_d,
                ROUND_FIRST=rounds_first(ops, round_first))
    local = ops.state_buffer(ops.n_state)
    adjoint_loop = ops.adjoint_state_loop
    adjoint_block = ops.state_loop_block if adjoint_loop else ops.block_d
    for chunk_first, chunks in chunk_launches(ops.n_chunks):
        backward_kernels.chunk_adjoint_kernel[ops.grid(block_d=adjoint_block, chunks=chunks)](
            local, dout, *dout_strides, wt, z, *ops.z_strides, entry, Dskip, *ln_args, dy, *ops.common_args(),
            chunk_first, HAS_D=ops.D is not None, KEEP_DY=keep_dy,
            **dict(meta, BLOCK_D=adjoint_block, **ops.adjoint_tiles(adjoint_loop)), STATE_LOOP=adjoint_loop,
            STATE_UNROLL=ops.state_unroll, UNROLL_RANKS=ops.tiles.unroll_rank_blocks,
            num_warps=ops.state_loop_warps if adjoint_loop else ops.tiles.num_warps,
            **COMPILE_OPTIONS)
    arrive = local  # in place, as in forward_states
    carry(ops, arrive, dsum, reverse=True)
    state_loop = ops.backward_state_loop
    # backward_grads' sums over steps: one per chunk, or one per group of chunks, zeroed, that its programs add to.
    group = ops.backward_chunk_group
    groups = cdiv(ops.n_chunks, group)

    def part_buffer(*tail):
        part = ops.state_buffer(*tail, chunks=groups)
        return part.zero_() if group > 1 else part

    dA_part = part_buffer(ops.n_state)
    dD_part = part_buffer()
    dbias_part = part_buffer()
    dW_part = part_buffer(ops.rank) if ops.lowrank else dD_part
    wants_dweight = weight is not None and ln_upstream is None
    dweight_part = part_buffer() if wants_dweight else dD_part
    gb = _launch_buffers(grad_buffers, dD_part)
    launch_buffers, copies, part_strides = gb, {}, (0, 0)
    if state_loop:  # one warp per 32 channels, one channel per thread; tl.dot needs RP >= 16
        block_d = ops.tiles.backward_block_d
        # The drop-in's dz needs the outputs, which the state loop can sum as it goes
        # (TileConfig.backward_outputs_in_loop): where its tiles are read 4 steps per access, whose kernel keeps
        # its registers for it (compile_check, sm_90: no spills; a row at a time it spilled 264-364 bytes).
        y_in_loop = (ops.tiles.backward_outputs_in_loop and ln_upstream is None and has_z
                     and not (sum_directions and weight is not None) and ops.rowwise == STEP_VECTORS.value)
        grads_meta = dict(meta, BLOCK_D=block_d, RP=max(16, next_power_of_2(ops.rank)), STATE_LOOP=True,
                          num_warps=max(1, block_d // 32), CHUNKS=group, Y_IN_LOOP=y_in_loop)
        if ops.tiles.backward_maxnreg is not None:
            grads_meta["maxnreg"] = ops.tiles.backward_maxnreg
        if ops.backward_dx_copies:
            # The channel blocks' sums (dB, dC and the dt low-rank input: columns of dx and dx_low in the layer,
            # the drop-in's own dB and dC) go to one copy per block, added up below in a fixed order: the programs
            # stay one per channel block, without atomics.
            blocks = ops.channel_blocks(block_d)
            sums = ("dx", "dx_low") if ops.lowrank else ("dB", "dC")
            copies = {name: _zeroed_copies(gb[name], blocks) for name in sums if grad_buffers.get(name) is not None}
            part_strides = tuple(copies[name][0].numel() if name in copies else 0 for name in sums)
            launch_buffers = {**gb, **copies}
            grads_meta["WIDE"] = grads_meta["WIDE"] or spans_past_int32(*copies.values())
    else:
        block_d = ops.block_d
        grads_meta = dict(meta, RP=next_power_of_2(ops.rank), **ops.tiles.backward_options())
    # One direction per launch: du, which the directions share, without atomics.  The deterministic tile kernels run
    # one program per chunk that visits every channel block.
    channel_blocks = state_loop or not ops.deterministic
    for k_first, k_count, chunk_first, chunks in direction_and_chunk_launches(ops,
                                                                              ops.backward_one_direction_per_launch):
        grid = ops.grid(k_count, channel_blocks=channel_blocks, block_d=block_d, chunks=chunks)
        backward_kernels.backward_grads_kernel[grid](
            *(launch_buffers[name] for name in GRAD_BUFFERS),
            dA_part, dD_part, dbias_part, dW_part, dweight_part,
            dout, *dout_strides, wt, entry, arrive, Dskip, z, *ops.z_strides, *ln_args, dy,
            *ops.common_args(), k_first, k_count, chunk_first, *part_strides, HAS_D=ops.D is not None, DY_KEPT=keep_dy,
            DETERMINISTIC=ops.deterministic, DX_COPIES=ops.backward_dx_copies, DU_OWNED=ops.backward_du_owned,
            LANE_SUMS=ops.backward_lane_sums, **grads_meta, **COMPILE_OPTIONS)
    for name, copy in copies.items():  # added, as the kernels add into every other buffer
        gb[name].add_(copy.sum(0))
    return _grads(ops, grad_buffers, dA_part, dD_part, dbias_part, dW_part, dweight_part if wants_dweight else None)
