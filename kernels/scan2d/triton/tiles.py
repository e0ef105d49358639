"""How the Triton kernels split the work: :class:`TileConfig` and the ``tile_config`` block that changes it.

Tests run the kernels under other tiles with it (many chunk boundaries in short scans), the benchmarks sweep it, and
a model may tune it; an op's backward uses the tiles its forward ran with.
"""

import contextlib
import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Optional

from .._backend import triton_interpreted


def _device_default(interpreter, gpu):
    """A TileConfig field whose default is ``interpreter`` under TRITON_INTERPRET and ``gpu`` elsewhere (kept in
    the field's metadata for ``TileConfig.gpu_defaults``)."""
    return field(default=interpreter if triton_interpreted() else gpu, metadata={"gpu": gpu})


@dataclass(frozen=True)
class TileConfig:
    """How the kernels split the work.  Under the interpreter every program costs Python overhead, so fewer, larger
    programs test the same code far faster; on a GPU small chunks give the parallelism that long sequences need.

    Attributes:
        block_t: steps per tile (a chunk is one tile with gradients, inference_tiles tiles without).
        forward_block_t: steps per tile of the state-loop forward kernels (chunk_end_state, forward_output) at most,
            a power of two (block_t's own where that is fewer); None: block_t.  The chunks stay block_t x tiles per
            chunk steps (the stored states, the backward's tiles): the forward scans each in shorter tiles, the
            states carried in registers between them.  A thread holds its tile's steps in registers (u, delta, the
            dt projection's inputs, B and C), so a shorter tile takes fewer.  compile_check (sm_90, Triton 3.7.1 and
            3.6.0, bench/JOURNAL.md "Shorter tiles in the forward kernels"), 8 steps against 16: the forward without
            gradients (cases a and b) at 130-150 registers without spills against 191-255 with 136-140 bytes of
            spills in forward_output, 3 programs of 128 threads per SM instead of 2, as many or 4-5% fewer
            instructions executed per element; in training forward_output at 112-120 registers against 164, 14%
            fewer instructions.  The drop-in's training forward keeps block_t (``ScanOperands._forward_tile``).
            Each chunk's delta sum is added per tile, so results differ from block_t's tiles in the last bits.  Not
            timed on a GPU, and off by default again since 2026-12-05: in 8-step tiles forward_output issues its
            loads a median 34-35 instructions before their use, at most 23-29 pending per thread, where in 16-step
            tiles (the configuration the H200 timed at 1.02 ms in case a) it issues them 231-236 ahead, up to 85-88
            pending; the 32-bit-offset build that ran 1.7x slower on the H200 had 29-74 and 46-47
            (bench/loads_in_flight.py, Triton 3.6.0; bench/JOURNAL.md "Loads in flight").
        adjoint_block_t: steps per tile of the state-loop chunk_adjoint at most (a power of two; None: block_t):
            each 16-step chunk is summed in shorter tiles, each adding its terms to what the tiles before stored
            (``backward_kernels._adjoint_state_loop``).  The gated layer's LayerNorm gradient recomputes the
            chunk's outputs, its states carried in registers between the tiles.  compile_check (sm_90, Triton 3.7.1
            and 3.6.0, dt rank 12, bench/JOURNAL.md "Shorter tiles in chunk_adjoint"), 8 steps against 16: the plain
            layer at 80 registers against 142-146 (6 programs of 128 threads per SM instead of 3) for 11-18% more
            instructions executed per element; the gated layer at 128-168 against 206-255 (3-4 programs instead
            of 2), within -4% to +5% of the instructions.  The drop-in scan keeps block_t (72 registers).  The
            sums over steps round differently, in the last bits.  Not timed on a GPU.
        block_d: channels per program of the tile kernels and the carry.  With grouped B/C (the drop-in scan) every
            kind of block tiles each group, the last block of a group masked (``tile_io.block_channels``).
        num_warps: warps per program of every kernel but backward_grads.
        backward_num_warps: warps of ``backward_grads_kernel``, the kernel with the most live tiles (None: num_warps).
            compile_check: at 4 warps it needs about 232-255 registers (triton 3.6 spills up to 260 bytes in the gated
            backward), at 8 warps 143-254 without spills; either way 8 warps fit on an SM at once.
        backward_maxnreg: register cap for ``backward_grads_kernel``, the state loop's too (None: ptxas's choice).
            Its one-warp programs at 255 registers fit 8 to an SM; at 224, 200 and 168, 9, 10 and 12.  compile_check
            (sm_90, Triton 3.7.1, dt rank 12, 32-bit offsets, the layer's cases): spills of 8-64 bytes uncapped,
            156-184 at 224, 264-276 at 200, 412-580 at 168.  Not timed.
        inference_tiles: tiles of block_t steps per chunk when no gradient is needed (at most: see
            inference_programs_per_sm).  The forward stores one state (dim x N fp32) per direction and chunk; with
            K = 2, N = 16 and 16-step chunks that is twice a float32 output, with 16 tiles an eighth.  The backward
            recomputes each chunk from its stored state, so training keeps one tile per chunk.
        inference_programs_per_sm: inference chunks are halved (down to one tile) until a forward launch of one
            direction has at least this many programs of forward_block_d channels per SM of the GPU (``chunk_tiles``;
            programs of a smaller fitted block count in proportion, see forward_block_fit); 0 keeps inference_tiles.
            The summed output is written one direction per launch, so a 64x64 map at batch 1 with 180 channels
            (the model's inference on a 256x256 output) had 16 chunks x 2 channel blocks = 32 programs on an H200's
            132 SMs.  2: the state-loop forward's 128 threads at up to 255 registers fit twice on an SM, so every SM
            holds two programs of each launch (in 8-step tiles, forward_block_t, they take 130-150 and 3 fit: kept
            at 2 until a GPU times it, since more programs mean shorter chunks and a longer carry).  Long maps keep
            their 16-tile chunks (case (b): 768 programs).
        carry_chunks: chunks that ``chunk_carry_kernel`` loads and scans at once (a power of two).  Small under
            the interpreter so that the tests cross several such blocks.
        carry_segment: chunks per segment of the carry, where a scan has more (None: one launch).  One program per
            (batch x direction, channel block) walks the chunks a block of carry_chunks at a time, a chain of
            dependent loads: on the H200 (2026-11-27) case (b)'s training step spent 1.40 of 7.63 ms in the carry,
            46 programs each walking 4,096 chunks in 512 steps.  Over segments the carry takes three launches
            (``launch.carry``): each segment's own effect on a state (one program per segment), the carry over the
            segments, then each segment's chunks from the state entering it.  At 64 chunks and carry_chunks 8, case
            (b)'s chains are 8 + 8 + 8 steps instead of 512, with 64x the programs, for one more read of the
            states.  Results differ from one launch in the last bits (a segment decays by the exponential of its
            delta sum).  Not timed on a GPU.
        forward_state_loop: the forward kernels (``chunk_end_state``, ``forward_output``) of the 2D layer and of the
            drop-in scan solve the recurrence one state at a time on (steps, channels) tiles
            (``state_loop.state_loop_tile``) instead of on (steps, channels, states) tiles.
            compile_check: 18-21 SASS instructions per element and no shuffles, barriers or shared memory, against
            29-39 per element with 128 shuffles and 17 barriers per tile (bench/JOURNAL.md).  H200, case (a) with
            gradients: forward_output 0.44 ms against 0.72 (results/h200-2026-11-27-state-loops/).
        forward_block_d: channels per program of the state-loop forward: 128 puts one channel on each of 4 warps'
            threads with the tile's steps in its registers.
        forward_block_fit: the state-loop forward kernels and chunk_adjoint take forward_block_d channels per
            program, or a half of it (down to 32, with num_warps scaled alike: still one channel per thread), whichever
            pads the channels least (``ScanOperands.state_loop_block``).  The dis_w8 model's 180 channels take 3
            blocks of 64 (192 threads) instead of 2 of 128 (256: 30% of the threads idle); 360 keep 128.
        forward_maxnreg: register cap for the state-loop forward kernels of one-tile chunks, those of training (None:
            ptxas's choice); multi-tile chunks carry all N states per channel in registers and keep ptxas's choice.
            compile_check (sm_90, Triton 3.7.1, dt rank 12, 32-bit offsets): ptxas gives chunk_end_state 184
            registers and forward_output 164, so 2 and 3 programs of 4 warps fit on an SM; at 168 both fit 3 times,
            without spills in the plain layer (the gated layer's statistics pass spills 60-88 bytes).  Not timed.
        backward_state_loop: ``backward_grads`` of the 2D layer and of the drop-in scan one state at a time
            (``backward_kernels._backward_state_loop``), in one-warp programs of backward_block_d = 32 channels, one
            per thread: no barriers, dB and dC summed over the warp's lanes and added with atomics (or see
            backward_dx_copies, backward_direction_launches).  Only with tiles of at least 16 steps and channels (the
            layer's dt gradients' tl.dot).  ``chunk_adjoint`` then runs one state at a time too, on forward_block_d
            channels.  H200, case (a): backward_grads 1.6 ms against 7.7, forward+backward 3.9 ms
            against 10.2.
        backward_dx_copies: the state-loop backward stores its sums over channels (dB, dC, the dt low-rank input's
            gradient) into one zeroed copy of the x-projection gradient (the drop-in scan: of dB and dC) per channel
            block, which the host then sums, instead of adding them with atomics, at the price of the copies (case
            (a): 12 copies of 14 MB) and their sum.  compile_check (sm_90, Triton 3.7.1): 16 atomic instructions
            instead of 34 (dt rank 23; 26 at the model's rank 12), spills within 16 bytes.
        backward_direction_launches: the state-loop backward runs one launch per direction, so that du, which the
            directions share, is added with a plain read-add-write instead of atomics (each launch still has a
            program per chunk and channel block).  compile_check (dt rank 23): 18 atomic instructions instead of 34
            (rank 12: 10 instead of 26), 92-196 bytes of spills against 232-464: the atomics on du's (steps,
            channels) tile held the most registers.
            Deterministic mode turns on both (72-176 bytes, no atomics).  Neither is timed on a GPU yet
            (bench/gpu_session.sh's sweep has both and deterministic mode).
        backward_lane_sums: the state-loop backward reduce-scatters dB's and dC's sums over the channels across the
            warp's lanes (``lane_sums.lane_sums``; each lane then adds one step's sum) instead of reducing every
            step over the whole warp: per state and tile, 2 x 16 shuffles instead of 2 x 80.  With 32 channels per
            program and at most 32 steps per tile.  bench/backward_compile.py (sm_90, the layer's float32
            backward, dt rank 12, Triton 3.7.1 and 3.6.0): about 440 instructions per trip of the state loop instead
            of 640, 40 executed per (step, channel, state) instead of 52.5, no spill inside the loop.  The default
            since 2026-12-03 on that count; not timed on a GPU yet (bench/gpu_session.sh times it switched off).
        backward_chunks: the state-loop backward (``backward_grads_kernel``'s CHUNKS) keeps its sums over steps
            (dA, dD, dbias, dW, the direction weights') per group of this many consecutive chunks instead of per
            chunk, each program adding its chunk's into its group's with relaxed fp32 atomics: the buffers it
            writes and that the host reads and sums are that many times smaller.  Case (a)'s hold 177 MB at one
            chunk per sum (dA 94 MB, dW 71 MB at dt rank 12), which PyTorch's sums read again (about 0.1 ms of the
            2026-11-27 profile's 3.2).  A group's programs run at about the same time (consecutive chunks are
            one batch x directions x channel blocks apart in the grid), so their adds meet in L2.  The order of the
            adds varies from run to run, as it does for dB, dC and du; deterministic mode keeps a sum per chunk.
            compile_check (sm_90, Triton 3.7.1 and 3.6.0): the same registers, spills within a few bytes or fewer,
            0.3-1 more instruction executed per element (under 2%; bench/JOURNAL.md, "The backward's sums over steps
            per group of chunks").  Not timed on a GPU.
        backward_keeps_dy: in the gated layer's backward, ``chunk_adjoint`` stores the gradient reaching each
            direction's output at each step, which the LayerNorm gradient makes it form from recomputed outputs, and
            ``backward_grads`` reads it instead of recomputing the outputs (one of its two passes over the
            recurrence): a (batch x K, steps, dim) float32 buffer for the backward's duration, written and read
            once (94 MB at case (a)'s shape, the size of the layer's float32 output per direction).  With the state
            loops, without a z gate in the scan (the 2D layer has none).  compile_check (sm_90, Triton 3.7.1 and
            3.6.0): the gated backward_grads executes 20-25% fewer instructions per element, chunk_adjoint 2-3% more
            (bench/JOURNAL.md, "The gated backward reads the output gradient chunk_adjoint kept").  Not timed on a
            GPU.
        backward_outputs_in_loop: the drop-in scan's backward with a z gate (as mamba-ssm's callers pass it)
            needs the outputs only for dz, which it stores at the end: its state loop sums them as it goes (y += C h,
            one multiply-add per element) instead of a state loop of their own before it, with its exponentials.
            Where its tiles are read 4 steps per access (``step_vectors``): compile_check (sm_90, 4,096 steps,
            Triton 3.7.1 and 3.6.0) 35.1 instructions executed per element instead of 41.1-41.2, without spills;
            read a row at a time (200 steps) the kernel spilled 264-364 bytes, 4 local accesses in the state loop
            under 3.7.1, so those keep the separate loop.  The same sums in the same order: bit for bit.
        state_unroll: states per trip of the state loops in the forward kernels and chunk_adjoint (its greatest
            common divisor with N is used), so that ptxas can overlap one state's loads and exponentials with
            another's scan.  compile_check (Triton 3.7.1, sm_90): at 4, chunk_adjoint needs 145-250 registers
            instead of 183-255 and the training forward_output up to 253 instead of 226, without spills; at 16 the
            latter spills.  H200 (results/h200-2026-11-27-unrolled/): case (b) forward 2.08 ms against 2.54 at 1.
        carry_in_registers: the state-loop forward kernels of multi-tile (inference) chunks unroll all N states
            and carry them between tiles in registers, N per channel, instead of through memory
            (``state_loop.state_loop_tile``).  H200: forward without gradients 1.17 ms against 1.52 in case
            (a), 1.78 against 2.54 in case (b) with state_unroll 4 (mamba-ssm 0.81 and 1.85).  At 255 registers the
            output kernel spills this way (Triton 3.7.1, sm_90, dt rank 12): 12-56 bytes in the plain order, 136-140
            in the aligned cross-scale one, outside the state loop.
        rowwise_tiles: the state-loop kernels of the drop-in scan read and write their (steps, channels) tiles of its
            channels-first tensors a row at a time (``tile_io.load_td``), where they do not read 4-step vectors
            (``step_vectors``).  None: where Triton lays such a tile's
            steps across lanes otherwise, that is, before 3.7 (``rowwise_by_default``).  compile_check (sm_90, the
            drop-in cases): under Triton 3.6 the forward kernels and chunk_adjoint go from 336-960 shuffles to none,
            the backward from 2 KB of shared memory to 64 bytes and 312-372 bytes of spills to 156-304, with 12-39%
            fewer static SASS instructions in the forward kernels and the backward (chunk_adjoint: -0.4%, +9%);
            under 3.7.1, which lays these tiles out right either way, it would cost 1-7% more static SASS in the
            forward kernels and chunk_adjoint, 3-9% and 124-148 bytes more spills in the backward (bench/JOURNAL.md).
        paired_loads: where the 2D layer's x_proj rows allow it (``ScanOperands.paired_x``: contiguous rows, an even
            rank and state size, even strides, word-aligned tensors; the model's rank 12 and 44-column rows do), the
            state-loop kernels read two adjacent columns (dt ranks, the B and C of two states) per load, as one 64-bit
            word (32-bit for 16-bit inputs; ``tile_io.load_pair``), where Triton would make two 32-bit loads.
            The values and the order of every sum are the same, so results are bit for bit those without it.
        unroll_rank_blocks: with paired_loads, the dt rank blocks (``tile_io.paired_rank_blocks``) unrolled in
            chunk_end_state, chunk_adjoint and the one-pass forward, so that each rank's load
            takes a constant offset instead of the address added again in every trip.  compile_check (sm_90, the
            layer's fp32 training step at dt rank 12, Triton 3.7.1 and 3.6.0): 9-11% fewer instructions executed per
            tile in chunk_end_state and chunk_adjoint, at 156 and 142 registers instead of 184 and 155; the one-pass
            forward 17.3 to 16.8 per element.  Kept rolled: forward_output (unrolled, 192 registers instead of 164)
            and the backward (0-8% fewer instructions for up to 92 bytes more of spills) (bench/JOURNAL.md, "The dt
            rank blocks unrolled").  Multi-tile chunks (chunk_end_state without gradients, and with 8-step tiles,
            forward_block_t, with gradients too) unroll them as well, at 128-130 registers without spills ("Shorter
            tiles in the forward kernels"); where their states go through memory between tiles
            (carry_in_registers off) they spill, and keep the loop.  The same products in the same order: bit for
            bit.
        window_tiles: where every tile lies inside one window (``ScanOperands.tiles_in_windows``: in plain scans,
            window areas that are multiples of block_t, e.g. the model's windows of 8 at 16-step tiles, and the
            drop-in scan's sequences of a multiple of block_t steps; in the aligned cross-scale order, five times
            the low-resolution window area, e.g. the model's cross-scale windows of 16), the kernels work out each
            tile's window once and each step's position from it (``positions.tile_positions``) instead of dividing
            every step's index by the window's sizes.  The positions are the same integers either way.
        raster_tiles: where every direction visits the map in raster order (``ScanOperands.raster``: the drop-in
            scan; row-first, unreversed scans whose windows span the width), a step's position is the step itself
            and the kernels do no window arithmetic (``positions.RASTER``).  compile_check (sm_90, the drop-in's
            training step at 4,096 steps, Triton 3.7.1 and 3.6.0): 11-13% fewer instructions executed per element
            in chunk_end_state, forward_output and chunk_adjoint, 2-4% in the backward, chunk_adjoint at 96
            registers instead of 116-117 (bench/JOURNAL.md, "Raster scans take their positions from the step").  The
            same integers: bit for bit.
        step_vectors: with raster positions, the drop-in scan's state loops read and write their (steps, channels)
            tiles of its contiguous channels-first tensors, and B's and C's columns, 4 steps per access
            (``tile_io.STEP_VECTORS``, ``tile_io.state_column``): one 16-byte vector in float32 where each step was
            an access of its own, each lane's in a 32-byte sector of its own.  Where the scan's length is a multiple
            of 16 and the tensors 16-byte aligned (``ScanOperands.rowwise``).  compile_check (sm_90, the training
            step at 4,096 steps, Triton 3.7.1 and 3.6.0): 5-16% fewer instructions executed per element, 63-128
            registers instead of 96-249 in the three lean kernels, no spills left in the backward.  The same values:
            bit for bit.
        narrow_offsets: the kernels compute their pointer offsets in 32 bits wherever every tensor of a launch spans
            fewer than 2^31 elements (``ScanOperands.launch_meta``), else in 64 (``tile_io.offset``): row
            pointers then take one register instead of two, and the address arithmetic no 64-bit multiplies.
            compile_check (sm_90, Triton 3.7.1, dt rank 12): 5-9% fewer static SASS instructions in the training
            forward kernels, forward_output 164 registers instead of 184, the backward's spills halved.  The
            offsets are the same numbers, so results are bit for bit the same.  The training kernels only (the
            forward that records for the backward, and the backward), unless ``narrow_inference_offsets``.
        narrow_inference_offsets: 32-bit offsets in the forward without gradients too.  Off: on the H200
            (2026-12-04, Triton 3.6, bench/README.md "GPU results (NVIDIA H200, 2026-12-04)") they made it 1.5x
            (case a) and 1.7x (case b) slower, for all of compile_check's fewer registers and instructions; the
            training forward and backward were no slower with them.
        state_loop_stages: software pipelining of the state loops' trips over the states (Triton's ``num_stages``
            on those loops; 1: none): Triton then copies the next trip's A, entry states, B and C into shared
            memory with cp.async while one trip scans, instead of ptxas hoisting the unrolled states' loads into
            registers.  The arithmetic is the same, so results are bit for bit the same.  compile_check (sm_90, dt
            rank 12, the training kernels), at 2: under Triton 3.7.1 the gated forward_output passes take 154-188
            registers instead of 160-250 (two of five fit 3 programs per SM instead of 2) and the float32 backward
            stops spilling, but the plain layer's chunk_adjoint takes 192 instead of 155; under the device image's
            Triton 3.6.0 the forward kernels mostly take more registers and the backward spills more
            (bench/JOURNAL.md).  Not timed on a GPU: the lease's step 3b times it.
        one_pass_forward: the forward of a call with the summed or per-direction output and no channel gate (the
            ungated layer, the drop-in scan) runs in one pass over the recurrence (``one_pass``): one program per
            (batch, direction, one_pass_block_d channels) walks the whole scan, computing every exponential once,
            and a training forward stores the chunk entry states and delta sums the backward reads.  The chunked
            forward computes them twice (chunk end states, then outputs) and launches a carry between.  The gate's
            passes keep the chunked kernels.  compile_check (sm_90, the layer's training forward at dt rank 12, the
            defaults below): 17.8 executed SASS instructions per (step, channel, state) at 254 registers and no
            spills under Triton 3.7.1 and 3.6.0, against about 24 for the chunked forward's two passes.  Off: on the
            H200 (2026-12-04) the layer's ran 1.5-5.4x slower than its two passes; the drop-in's, with
            one_pass_block_d=2, 2.4x faster than its two passes at case (a)'s shape, but its kernel then failed the
            GPU tests (fixed since, not yet rerun there).
        one_pass_steps: steps per segment (per thread) of the one-pass forward without gradients; a training forward
            takes block_t, so that its segments are the backward's chunks.
        one_pass_segments: segments per tile of the one-pass forward, across the threads (32 per warp).
        one_pass_block_d: channels per program of the one-pass forward (each thread holds its segment's steps for all
            of them); None: 1 for 32-bit inputs, 2 for 16-bit ones.  compile_check (sm_90, the layer's training
            forward, 2 states per trip), executed SASS instructions per element, Triton 3.7.1 / 3.6.0: float32, 1
            channel 17.3 / 17.3 at 254 registers without spills, 2 channels 17.5 / 18.5 with 124 / 296 bytes of
            spills (3.6.0's in the state loop); bfloat16, 1 channel 22.8 / 22.8 (B and C converted per step and
            channel), 2 channels 19.6 / 20.4 (bench/JOURNAL.md, "The one-pass forward in the op").
        one_pass_unroll: states per trip of the one-pass forward's state loop: their B and C lie at constant offsets
            from one address per step, and with ``paired_loads`` two states' come in one load.  compile_check (the
            float32 training forward, Triton 3.7.1): 1 channel, 17.3 executed instructions per element at 2, 19.7
            at 1; 2 channels, 17.5 at 2, 18.1 at 4 with 396 bytes of spills.
        one_pass_segments_first: the one-pass forward's tiles as (segments, channels, steps) tensors instead of
            (steps, channels, segments) (``one_pass.one_pass_forward_kernel``).  None: the order this Triton lays
            out with the segments across the threads (``rowwise_by_default``: the same tie in its coalescing pass).
            The other order compiles to 250-255 registers (the prototype, Triton 3.6.0); the tests run both.
        one_pass_lanes: with one_pass_forward, the one pass lays each tile out as (steps, states, channels), all N
            states across the lanes and warps and each thread's steps in its registers
            (``one_pass_lanes.one_pass_lanes_kernel``), instead of cutting the steps into segments across the
            threads: the layout of the reference's 40-line prototype (0.61 ms at case (a)'s shape on an H200, against
            mamba-ssm's 0.79).  Tiles of block_t steps; the other one_pass_* fields do not apply.  Untimed
            (bench/JOURNAL.md, "The states across the lanes in the op").
        one_pass_lanes_block_d: channels per program of that layout (a power of two): 8 as in the reference's
            prototype, 720 programs of 4 warps for case (a)'s 2 x 8 scans of 360 channels (one_pass_lanes_together).
        one_pass_lanes_warps: warps per program of that layout.
        one_pass_lanes_together: that layout's two summed float32 directions in one launch, added into a zeroed output
            with atomics (exactly the sum of the launches one after another: 0 + a + b = 0 + b + a), for twice the
            programs in flight; off: one launch per direction.
        one_pass_lanes_maxnreg: register cap for that layout's kernel (None: ptxas's choice).  Its programs each walk a
            whole scan, so a launch that does not fit the GPU at once takes about twice as long: case (a)'s 720
            programs of 4 warps fit an H200's 132 SMs at 6 per SM, which takes at most 80 registers, where ptxas
            takes 96 for the float32 training forward with atomics (compile_check, sm_90: at 80 no spills, 5% more
            instructions; the drop-in's 16 bytes of spills).
        one_pass_gluon: with one_pass_lanes, that forward's kernel written in Gluon with every layout explicit
            (``one_pass_gluon.one_pass_gluon_kernel``): the dt projection, softplus and u once per (step, channel)
            instead of once per state, y summed over the states in each thread's registers.  The same outputs; the
            states must divide 32 and one_pass_lanes_block_d be a multiple of (32 / states) x one_pass_lanes_warps.
            Untimed (bench/JOURNAL.md, "The states across the lanes in Gluon").
        one_pass_lanes_backward: the backward in one pass, the states across the lanes as in one_pass_lanes
            (``one_pass_lanes_backward.one_pass_lanes_backward_kernel``): one program per (batch, direction,
            channel block) walks its scan backwards from the training forward's chunk entry states (either
            forward's: their chunks are tiles of block_t steps), instead of chunk_adjoint, the reversed carry and
            backward_grads, and keeps its sums over steps in registers; the gated layer's too (each tile's
            recomputed outputs give the gate's LayerNorm gradient).  Not in deterministic mode, which keeps the
            chunked backward.  Untimed (bench/JOURNAL.md, "The backward in one pass, the states across the lanes").
        one_pass_gluon_backward: with one_pass_lanes_backward, that backward's kernel written in Gluon with every
            layout explicit (``one_pass_gluon_backward.one_pass_gluon_backward_kernel``): delta and its gradient once
            per (step, channel), the sums over the states in each thread's registers, the sums over the channels (dB,
            dC, the dt input's) too, one atomic per (step, state) and program.  The same gradients; the states must
            divide 32 and one_pass_lanes_backward_block_d be a multiple of (32 / states) x
            one_pass_lanes_backward_warps.  Untimed (bench/JOURNAL.md, "The backward in one pass in Gluon").
        one_pass_lanes_backward_block_d: channels per program of that backward (a power of two).
        one_pass_lanes_backward_warps: warps per program of that backward.
        one_pass_lanes_backward_maxnreg: register cap for that backward (None: ptxas's choice).  Case (a)'s 720
            programs of 4 warps take 3 waves at 2 per SM on an H200; at 168 registers or fewer, 3 per SM, 2 waves
            (compile_check, sm_90, the float32 layer: 217 registers uncapped; capped at 168, 5% more instructions
            and no spills under Triton 3.7.1, 12 bytes under 3.6.0).
    """

    block_t: int = _device_default(32, 16)
    forward_block_t: Optional[int] = None
    adjoint_block_t: Optional[int] = _device_default(None, 8)
    block_d: int = _device_default(32, 16)
    num_warps: int = 4
    backward_num_warps: Optional[int] = 8
    backward_maxnreg: Optional[int] = None
    inference_tiles: int = _device_default(2, 16)
    inference_programs_per_sm: int = 2
    carry_chunks: int = _device_default(4, 8)
    carry_segment: Optional[int] = _device_default(None, 64)
    forward_state_loop: bool = True
    forward_block_d: int = _device_default(32, 128)
    forward_block_fit: bool = True
    forward_maxnreg: Optional[int] = None
    backward_state_loop: bool = True
    backward_block_d: int = 32
    backward_dx_copies: bool = False
    backward_direction_launches: bool = False
    backward_lane_sums: bool = True
    backward_chunks: int = _device_default(2, 4)
    backward_keeps_dy: bool = True
    backward_outputs_in_loop: bool = True
    state_unroll: int = 4
    carry_in_registers: bool = True
    rowwise_tiles: Optional[bool] = None
    paired_loads: bool = True
    unroll_rank_blocks: bool = True
    window_tiles: bool = True
    raster_tiles: bool = True
    step_vectors: bool = True
    narrow_offsets: bool = True
    narrow_inference_offsets: bool = False
    state_loop_stages: int = 1
    one_pass_forward: bool = False
    one_pass_steps: int = 8
    one_pass_segments: int = _device_default(4, 32)
    one_pass_block_d: Optional[int] = _device_default(8, None)
    one_pass_unroll: int = 2
    one_pass_segments_first: Optional[bool] = None
    one_pass_lanes: bool = False
    one_pass_lanes_block_d: int = 8
    one_pass_lanes_warps: int = 4
    one_pass_lanes_together: bool = True
    one_pass_lanes_maxnreg: Optional[int] = None
    one_pass_gluon: bool = False
    one_pass_lanes_backward: bool = False
    one_pass_gluon_backward: bool = False
    one_pass_lanes_backward_block_d: int = 8
    one_pass_lanes_backward_warps: int = 4
    one_pass_lanes_backward_maxnreg: Optional[int] = None
    # The fields as a JSON string, worked out once: torch.compile passes a custom op strings, not objects
    # (``selective_scan.triton_op``), and reads this attribute while tracing without running json.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.backward_chunks < 1:
            raise ValueError(f"TileConfig.backward_chunks = {self.backward_chunks}: a group holds at least one chunk; "
                             f"choose e.g. 4, or 1 for a sum per chunk")
        if self.one_pass_lanes and not self.one_pass_forward:
            raise ValueError("TileConfig.one_pass_lanes=True lays out the one-pass forward, which runs only with "
                             "one_pass_forward=True: set both, or neither for the chunked forward")
        if self.one_pass_gluon and not self.one_pass_lanes:
            raise ValueError("TileConfig.one_pass_gluon=True writes the states-across-lanes forward in Gluon, which "
                             "runs only with one_pass_forward=True and one_pass_lanes=True: set all three")
        if self.one_pass_gluon_backward and not self.one_pass_lanes_backward:
            raise ValueError("TileConfig.one_pass_gluon_backward=True writes the one-pass lanes backward in Gluon, "
                             "which runs only with one_pass_lanes_backward=True: set both")
        for name in ("one_pass_lanes_block_d", "one_pass_lanes_warps", "one_pass_lanes_backward_block_d",
                     "one_pass_lanes_backward_warps"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"TileConfig.{name} = {value}: the one-pass kernels' (steps, states, channels) "
                                 "tiles need a power of two (tl.arange, warps); choose e.g. 8 or 16 channels, 4 warps")
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        object.__setattr__(self, "key", json.dumps(values, sort_keys=True))

    @classmethod
    def gpu_defaults(cls) -> "TileConfig":
        """The configuration a GPU runs by default, also under the interpreter: the tests run it there, on scans
        long enough to take the paths (carry segments, shorter tiles) that the interpreter's own defaults leave to
        the hypothesis tests one at a time."""
        return cls(**{f.name: f.metadata["gpu"] for f in dataclasses.fields(cls) if "gpu" in f.metadata})

    @classmethod
    def from_key(cls, key: str) -> "TileConfig":
        """The configuration whose ``key`` this is (cached: the custom ops read it at every call, and parsing it
        took 36 us on the CI machine)."""
        return _tiles_from_key(key)

    def forward_options(self, state_loop: bool, tiles_per_chunk: int = 1) -> dict:
        """Launch options of ``chunk_end_state_kernel`` and ``forward_output_kernel`` (with the state loop or not)."""
        options = dict(num_warps=self.num_warps)
        if state_loop and tiles_per_chunk == 1 and self.forward_maxnreg is not None:
            options["maxnreg"] = self.forward_maxnreg
        return options

    def backward_options(self) -> dict:
        """Launch options of ``backward_grads_kernel``."""
        options = dict(num_warps=self.backward_num_warps or self.num_warps)
        if self.backward_maxnreg is not None:
            options["maxnreg"] = self.backward_maxnreg
        return options


CONFIG = TileConfig()


@functools.lru_cache(maxsize=64)
def _tiles_from_key(key: str) -> TileConfig:
    return TileConfig(**json.loads(key))


@functools.lru_cache(maxsize=None)
def rowwise_by_default(version: str) -> bool:
    """``TileConfig.rowwise_tiles``'s default under Triton ``version``.  A (steps, channels) tile of a channels-first
    tensor has no axis Triton can prove contiguous, and its coalescing pass breaks that tie toward the first axis
    before 3.7 (the steps: across lanes, so every scan over them crosses lanes) and toward the last from 3.7 on."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) < (3, 7)


@contextlib.contextmanager
def tile_config(**changes):
    """Run the kernels with other tiles inside the block (tests cross many chunk boundaries with it; the
    benchmarks sweep it).  An op's backward uses the tiles its forward ran with."""
    global CONFIG
    saved = CONFIG
    CONFIG = dataclasses.replace(CONFIG, **changes)
    try:
        yield CONFIG
    finally:
        CONFIG = saved


def current_tiles() -> TileConfig:
    return CONFIG
