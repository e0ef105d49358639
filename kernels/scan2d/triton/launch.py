"""Host side of the Triton scan: argument layout, launches, and the reductions of per-chunk partial sums.

:class:`ScanOperands` describes where the kernels read every input (pointers and strides), so the drop-in
``selective_scan`` (channels-first, given delta and B/C) and ``directional_scan`` (channels-last tokens, delta from
the dt low-rank projection) share one set of kernels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import triton

from .._backend import triton_interpreted
from ..directions import ScanDirection
from . import backward_kernels, chunk_carry, forward_kernels
from .positions import DIRECTION_COLUMNS, ORDER_ALIGNED, ORDER_PLAIN, ORDER_SEQUENTIAL


@dataclass(frozen=True)
class TileConfig:
    """How the kernels split the work.  Under the interpreter every program costs Python overhead, so fewer, larger
    programs test the same code far faster; on a GPU small chunks give the parallelism that long sequences need.

    Attributes:
        block_t: steps per tile (a chunk is one tile with gradients, inference_tiles tiles without).
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
            holds two programs of each launch.  Long maps keep their 16-tile chunks (case (b): 768 programs).
        carry_chunks: chunks that ``chunk_carry_kernel`` loads and scans at once (a power of two).  Small under
            the interpreter so that the tests cross several such blocks.
        forward_state_loop: the forward kernels (``chunk_end_state``, ``forward_output``) of the 2D layer and of the
            drop-in scan solve the recurrence one state at a time on (steps, channels) tiles
            (``state_loop.state_loop_tile``) instead of on (steps, channels, states) tiles.
            compile_check: 18-21 SASS instructions per element and no shuffles, barriers or shared memory, against
            29-39 per element with 128 shuffles and 17 barriers per tile (bench/README.md).  H200, case (a) with
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
            program and at most 32 steps per tile.  Not timed on a GPU yet.
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
            channels-first tensors a row at a time (``tile_io.load_td``).  None: where Triton lays such a tile's
            steps across lanes otherwise, that is, before 3.7 (``rowwise_by_default``).  compile_check (sm_90, the
            drop-in cases): under Triton 3.6 the forward kernels and chunk_adjoint go from 336-960 shuffles to none,
            the backward from 2 KB of shared memory to 64 bytes and 312-372 bytes of spills to 156-304, with 12-39%
            fewer static SASS instructions in the forward kernels and the backward (chunk_adjoint: -0.4%, +9%);
            under 3.7.1, which lays these tiles out right either way, it would cost 1-7% more static SASS in the
            forward kernels and chunk_adjoint, 3-9% and 124-148 bytes more spills in the backward (bench/README.md).
        paired_loads: where the 2D layer's x_proj rows allow it (``ScanOperands.paired_x``: contiguous rows, an even
            rank and state size, even strides, word-aligned tensors; the model's rank 12 and 44-column rows do), the
            state-loop kernels read two adjacent columns (dt ranks, the B and C of two states) per load, as one 64-bit
            word (32-bit for 16-bit inputs; ``tile_io.load_pair``), where Triton would make two 32-bit loads.
            The values and the order of every sum are the same, so results are bit for bit those without it.
        window_tiles: where every tile lies inside one window of a plain windowed scan (``ScanOperands.
            tiles_in_windows``: window areas that are multiples of block_t, e.g. the model's windows of 8 at 16-step
            tiles, and the drop-in scan's sequences of a multiple of block_t steps), the kernels work out each tile's
            window once and each step's position from it (``positions.tile_positions``) instead of dividing every
            step's index by the window's sizes.  The positions are the same integers either way.
        narrow_offsets: the kernels compute their pointer offsets in 32 bits wherever every tensor of a launch spans
            fewer than 2^31 elements (``ScanOperands.launch_meta``), else in 64 (``tile_io.offset``): row
            pointers then take one register instead of two, and the address arithmetic no 64-bit multiplies.
            compile_check (sm_90, Triton 3.7.1, dt rank 12): 5-9% fewer static SASS instructions in the training
            forward kernels, forward_output 164 registers instead of 184, the backward's spills halved.  The
            offsets are the same numbers, so results are bit for bit the same.
    """

    block_t: int = 32 if triton_interpreted() else 16
    block_d: int = 32 if triton_interpreted() else 16
    num_warps: int = 4
    backward_num_warps: Optional[int] = 8
    backward_maxnreg: Optional[int] = None
    inference_tiles: int = 2 if triton_interpreted() else 16
    inference_programs_per_sm: int = 2
    carry_chunks: int = 4 if triton_interpreted() else 8
    forward_state_loop: bool = True
    forward_block_d: int = 32 if triton_interpreted() else 128
    forward_block_fit: bool = True
    forward_maxnreg: Optional[int] = None
    backward_state_loop: bool = True
    backward_block_d: int = 32
    backward_dx_copies: bool = False
    backward_direction_launches: bool = False
    backward_lane_sums: bool = False
    state_unroll: int = 4
    carry_in_registers: bool = True
    rowwise_tiles: Optional[bool] = None
    paired_loads: bool = True
    window_tiles: bool = True
    narrow_offsets: bool = True

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


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) of non-negative ints.  The host's own: ``triton.cdiv`` is a constexpr function, whose wrapper costs
    about 1.7 us a call on the host (this VM), and a layer call needs a dozen."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1), like ``triton.next_power_of_2`` without its wrapper."""
    return 1 << max(0, n - 1).bit_length()


def multiprocessors(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device; 0 elsewhere (the interpreter runs on CPU tensors)."""
    if device.type != "cuda":
        return 0
    return _multiprocessors(torch.cuda.current_device() if device.index is None else device.index)


@functools.lru_cache(maxsize=None)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def chunk_tiles(steps: int, block_t: int, most: int, programs_per_chunk: int, min_programs: int) -> int:
    """Tiles of ``block_t`` steps per chunk of a ``steps``-step scan: ``most``, halved (down to 1) while a launch of
    ``programs_per_chunk`` programs per chunk would have fewer than ``min_programs``.  Longer chunks store fewer
    entry states and carry fewer chunks; shorter ones give short scans at batch 1 the programs that fill a GPU."""
    tiles = max(1, most)
    while tiles > 1 and programs_per_chunk * cdiv(steps, block_t * tiles) < min_programs:
        tiles //= 2
    return tiles


def _padded(extent: int, window: int) -> int:
    return math.ceil(extent / window) * window


def division_magic(divisor: int) -> tuple:
    """(magic, shift) with n // divisor == (n * magic) >> shift for every 0 <= n < 2^31, magic < 2^32 (as int32
    bits): shift = 31 + ceil(log2 divisor), magic = ceil(2^shift / divisor), so 2^shift <= magic * divisor <=
    2^shift + 2^(shift - 31) (Granlund and Montgomery 1994, theorem 4.2).  The kernels divide scan steps by window
    sizes this way: one wide multiply and a shift instead of a division routine (``positions._divide``)."""
    if divisor < 1:
        raise ValueError(f"division_magic needs a positive divisor, got {divisor}")
    shift = 31 + (divisor - 1).bit_length()
    magic = -(-(1 << shift) // divisor)
    return (magic - (1 << 32) if magic >= 1 << 31 else magic), shift


def _frame_divisions(frame_w: int, win_h: int, win_w: int) -> list:
    """Magic numbers of a windowed scan's divisors: window area, windows per row, window width."""
    out = []
    for divisor in (win_h * win_w, math.ceil(frame_w / win_w), win_w):
        out += division_magic(divisor)
    return out


def direction_rows(directions: Sequence[ScanDirection], height: int, width: int) -> tuple:
    """Per-direction parameters of :func:`positions.step_positions`: [column_first, reverse, window h, window w,
    scan length, low-res window h, low-res window w, low-res length] for each direction, then the (magic, shift)
    pairs of :func:`division_magic` for the high-resolution window area, windows per row and window width, and the
    same three for the low-resolution frame.  Cached per geometry: every layer call needs its scan length, and
    working the rows out took a quarter of a gated forward's host time (bench/host_overhead.py)."""
    return _direction_rows(tuple(directions), height, width)


def scan_length(directions: Sequence[ScanDirection], height: int, width: int) -> int:
    """Steps of the longest of these directions' scans (padded windows included)."""
    return max(row[4] for row in direction_rows(directions, height, width))


@functools.lru_cache(maxsize=512)
def _direction_rows(directions: tuple, height: int, width: int) -> tuple:
    rows = []
    low_h, low_w = (height + 1) // 2, (width + 1) // 2
    for d in directions:
        frame = (width, height) if d.column_first else (height, width)
        wh, ww = frame if d.window is None else (min(d.window, frame[0]), min(d.window, frame[1]))
        high_len = _padded(frame[0], wh) * _padded(frame[1], ww)
        lwh = lww = 1
        low_len = 0
        if d.cross_scale is not None:
            lframe = (low_w, low_h) if d.column_first else (low_h, low_w)
            lwin = None if d.window is None else d.window // 2
            lwh, lww = lframe if lwin is None else (min(lwin, lframe[0]), min(lwin, lframe[1]))
            low_len = _padded(lframe[0], lwh) * _padded(lframe[1], lww)
        else:
            lframe = (1, 1)
        length = {None: high_len, "aligned": 5 * low_len, "sequential": low_len + high_len}[d.cross_scale]
        if length >= 2 ** 31:
            raise ValueError(f"a {height}x{width} map scans {length} steps, more than the Triton kernels' int32 step "
                             "index holds (2^31 - 1); use backend='torch' or tile the image (mambacsr's tiled "
                             "inference).")
        rows.append((int(d.column_first), int(d.reverse), wh, ww, length, lwh, lww, low_len,
                     *_frame_divisions(frame[1], wh, ww), *_frame_divisions(lframe[1], lwh, lww)))
        assert len(rows[-1]) == DIRECTION_COLUMNS
    return tuple(rows)


def direction_table(directions: Sequence[ScanDirection], height: int, width: int, device) -> torch.Tensor:
    """int32 (K, positions.DIRECTION_COLUMNS) :func:`direction_rows` on ``device``, as the kernels read it.

    Cached per geometry and device, and read-only: copying a host list to a GPU (``torch.tensor(..., device=)``)
    waits for everything queued on the stream, so building the table per call stalled the host at every layer of
    the model and left the GPU idle while Python launched the next kernels."""
    return _direction_table(tuple(directions), height, width, torch.device(device))


@functools.lru_cache(maxsize=512)
def _direction_table(directions: tuple, height: int, width: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(direction_rows(directions, height, width), dtype=torch.int32, device=device)


def spans_past_int32(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether an offset into one of ``tensors`` (None skipped) can reach ``INT32_OFFSET_LIMIT`` elements.  Bounded
    by the tensor's storage, past whose end no view of it reaches: a cheap check (the launches run it on every call)
    that errs toward 64 bits only for small views of very large storages."""
    for t in tensors:
        if t is not None:
            nbytes = t.untyped_storage().nbytes()
            # The first comparison settles it for all but the largest tensors, without element_size's call.
            if nbytes >= INT32_OFFSET_LIMIT and nbytes >= INT32_OFFSET_LIMIT * t.element_size():
                return True
    return False


ORDER_OF = {None: ORDER_PLAIN, "aligned": ORDER_ALIGNED, "sequential": ORDER_SEQUENTIAL}

# Where a launch's tensors pass this many elements, offsets that grow with batch or length are 64-bit in the kernels
# (``tile_io.offset``'s WIDE); the others (channels, states, one tile) are 32-bit and stay below it.
# tests/test_triton_int64_offsets.py checks both, lowering it to take the wide paths.
INT32_OFFSET_LIMIT = 2 ** 31
# A compile option of every launch.  The recurrences are chains of multiply-adds, which Triton fuses into FMAs by
# default; Triton 3.9 warns that this default turns off in 3.10, which would add instructions to every step and
# change the rounding.  Asked for explicitly, it stays.
COMPILE_OPTIONS = dict(enable_fp_fusion=True)
# CUDA's largest grid along y and z.  The chunks lie along z: one launch covers this many at most
# (``chunk_launches``), which training chunks of 16 steps pass beyond 1,048,560 steps (a 1024 x 1024 map, or a
# million-token sequence in the drop-in scan).
MAX_GRID_CHUNKS = 65535


@dataclass
class ScanOperands:
    """Everything the kernels read.  Unused tensors point at ``u`` (never dereferenced)."""

    u: torch.Tensor
    u_strides: tuple            # (batch, position, channel)
    u_low: torch.Tensor
    u_low_batch_stride: int
    x: torch.Tensor             # xdbl (batch, L, K, R+2N) when lowrank
    x_strides: tuple            # (batch, position, direction, column)
    x_low: torch.Tensor
    x_low_batch_stride: int
    delta: torch.Tensor         # given delta when not lowrank
    delta_strides: tuple        # (batch, position, channel)
    B: torch.Tensor
    C: torch.Tensor
    B_strides: tuple            # (batch, group, state, position)
    C_strides: tuple
    per_group: int
    dt_weight: torch.Tensor     # (K, D, R) contiguous
    dt_bias: torch.Tensor       # (K, D) contiguous
    A: torch.Tensor             # (K, D, N) float32 contiguous
    D: Optional[torch.Tensor]   # (K, D)
    z: Optional[torch.Tensor]
    z_strides: tuple
    directions: tuple           # ScanDirection of each of the K directions
    batch: int
    K: int
    dim: int
    height: int
    width: int
    n_state: int
    rank: int
    order: int
    lowrank: bool
    grouped: bool
    has_bias: bool
    softplus: bool
    tiles: TileConfig = field(default_factory=current_tiles)
    for_backward: bool = True   # False: forward only, several tiles per chunk (TileConfig.inference_tiles)
    # torch.use_deterministic_algorithms(True): sums that cross programs (the gate's statistics, dB, dC, the dt
    # low-rank and du gradients) run in a fixed order instead of through atomics (``tile_io.channel_blocks``).
    deterministic: bool = field(default_factory=torch.are_deterministic_algorithms_enabled)
    tiles_per_chunk: int = field(init=False)
    n_chunks: int = field(init=False)
    state_loop_block: int = field(init=False)
    paired_x: bool = field(init=False)
    tiles_in_windows: bool = field(init=False)
    wide_offsets: bool = field(init=False)  # the inputs' or the state buffers' offsets need 64 bits (launch_meta)
    dirs: torch.Tensor = field(init=False)  # (K, positions.DIRECTION_COLUMNS) int32 direction_table, on u's device
    length: int = field(init=False)  # steps of the longest direction's scan (padded windows included)

    def __post_init__(self):
        self.dirs = direction_table(self.directions, self.height, self.width, self.u.device)
        self.length = scan_length(self.directions, self.height, self.width)
        self.state_loop_block = self._fitted_state_loop_block()
        self.paired_x = self._pairs_aligned()  # once: launch_meta() runs at every launch
        self.tiles_in_windows = self._tiles_in_windows()
        self.tiles_per_chunk = 1 if self.for_backward else self.inference_chunk_tiles(
            self.length, self.batch * self.channel_blocks(self.forward_block_d))
        self.n_chunks = cdiv(self.length, self.tiles.block_t * self.tiles_per_chunk)
        self.wide_offsets = self._wide_offsets()

    def _fitted_state_loop_block(self) -> int:
        """Channels per program of the state-loop kernels (one per thread): TileConfig.forward_block_d, or with
        forward_block_fit whichever of it and its halvings (down to 32) pads the channels least, the larger on a tie."""
        block = best = self.tiles.forward_block_d
        while self.tiles.forward_block_fit and block % 2 == 0 and block // 2 >= 32:
            block //= 2
            if self.channel_blocks(block) * block < self.channel_blocks(best) * best:
                best = block
        return best

    @property
    def state_loop_warps(self) -> int:
        """Warps of the state-loop forward kernels and chunk_adjoint: TileConfig.num_warps scaled with the fitted
        block, so that each thread keeps its channel."""
        return max(1, self.tiles.num_warps * self.state_loop_block // self.tiles.forward_block_d)

    def forward_options(self, state_loop: bool) -> dict:
        """Launch options of ``chunk_end_state_kernel`` and ``forward_output_kernel``: TileConfig's, with the
        fitted block's warps in the state loop."""
        options = self.tiles.forward_options(state_loop, self.tiles_per_chunk)
        if state_loop:
            options["num_warps"] = self.state_loop_warps
        return options

    def inference_chunk_tiles(self, steps: int, programs_per_chunk: int) -> int:
        """Tiles per chunk of a forward without gradients whose launches (of one direction) have
        ``programs_per_chunk`` programs per chunk: ``TileConfig.inference_tiles``, fewer where the GPU would not
        be filled (``TileConfig.inference_programs_per_sm``)."""
        # Smaller fitted blocks (fewer warps each) count in proportion: the target is in programs of forward_block_d.
        scale = self.tiles.forward_block_d // self.state_loop_block if self.forward_state_loop else 1
        min_programs = self.tiles.inference_programs_per_sm * multiprocessors(self.u.device) * scale
        return chunk_tiles(steps, self.tiles.block_t, self.tiles.inference_tiles, programs_per_chunk, min_programs)

    def common_args(self):
        """What every kernel takes after its own leading arguments: load_chunk's inputs as tuples (U, X, DELTA,
        BC, PROJ; see ``tile_io.load_chunk``), then A, the direction table and the sizes."""
        return ((self.u, self.u_low, *self.u_strides, self.u_low_batch_stride),
                (self.x, self.x_low, *self.x_strides, self.x_low_batch_stride),
                (self.delta, *self.delta_strides),
                (self.B, self.C, *self.B_strides, *self.C_strides, self.group_size),
                (self.dt_weight, self.dt_bias),
                self.A, self.dirs, self.K, self.height, self.width, self.dim, self.n_chunks)

    def launch_meta(self, *tensors: Optional[torch.Tensor]) -> dict:
        """The compile-time arguments every kernel but the carry takes, for a launch that also addresses
        ``tensors`` (outputs, gradients, per-chunk buffers; None skipped) beyond the inputs and the state buffers.
        WIDE (64-bit offsets, ``tile_io.offset``) where one of them, an input or a state buffer can pass
        int32, or without ``TileConfig.narrow_offsets``."""
        return dict(ORDER=self.order, LOWRANK=self.lowrank, HAS_BIAS=self.has_bias,
                    SOFTPLUS=self.softplus, R=self.rank, N=self.n_state, ROWWISE=self.rowwise, PAIRED=self.paired_x,
                    IN_WINDOW=self.tiles_in_windows, WIDE=self.wide_offsets or spans_past_int32(*tensors))

    def _wide_offsets(self) -> bool:
        """``wide_offsets``: without ``TileConfig.narrow_offsets``, or where an input, or the largest buffer of one
        value per (batch, direction, chunk, channel) and state or dt rank (``state_buffer``), can pass int32.  The
        parameters (A, D, the dt projection), contiguous (K, dim[, N or R]) tensors, hold fewer values than that
        buffer; unused inputs point at u."""
        if not self.tiles.narrow_offsets:
            return True
        states = self.batch * self.K * self.n_chunks * self.dim * max(self.n_state, self.rank, 1)
        inputs = (self.u, self.x) + tuple(t for t in (self.u_low, self.x_low, self.delta, self.B, self.C, self.z)
                                          if t is not None and t is not self.u and t is not self.x)
        return states >= INT32_OFFSET_LIMIT or spans_past_int32(*inputs)

    def _tiles_in_windows(self) -> bool:
        """``tiles_in_windows``: whether every tile of block_t steps lies inside one window of a plain windowed scan
        (``positions.tile_positions``' IN_WINDOW), which holds where every direction's window area (padded, in the
        scan frame) is a multiple of block_t: tiles start at multiples of block_t.  With 16-step tiles windows of
        4, 8, 12, 16, ... qualify (unless the map is smaller than the window, which is then cut to it), global scans
        where height x width is a multiple of 16, cross-scale scans never (their steps come in groups of five)."""
        if self.order != ORDER_PLAIN or not self.tiles.window_tiles:
            return False
        rows = direction_rows(self.directions, self.height, self.width)
        return all(win_h * win_w % self.tiles.block_t == 0 for _, _, win_h, win_w, *_ in rows)

    def _pairs_aligned(self) -> bool:
        """``paired_x``: whether the state-loop kernels may read x's rows two columns per load
        (``TileConfig.paired_loads``, ``tile_io.load_pair``): every pair they read (ranks 2i and 2i + 1, states
        2i and 2i + 1 of B and of C) must start at a word of twice the element size. So: contiguous columns, an even
        rank and state size, even batch, position and direction strides (of x_low too) and word-aligned tensors."""
        if not (self.lowrank and self.tiles.paired_loads):
            return False
        word = 2 * self.x.element_size()
        strides = (*self.x_strides[:3], self.x_low_batch_stride)
        return (self.x_strides[3] == 1 and self.rank % 2 == 0 and self.n_state % 2 == 0
                and all(stride % 2 == 0 for stride in strides) and self.x_low.dtype == self.x.dtype
                and self.x.data_ptr() % word == 0 and self.x_low.data_ptr() % word == 0)

    @property
    def rowwise(self) -> bool:
        """Whether the state loops read and write the (steps, channels) tiles a row at a time: the drop-in scan's
        channels-first tensors, per ``TileConfig.rowwise_tiles`` (the 2D layer's are channels-last)."""
        if self.lowrank:
            return False
        chosen = self.tiles.rowwise_tiles
        return rowwise_by_default(triton.__version__) if chosen is None else chosen

    @property
    def group_size(self) -> int:
        """Channels that share B and C: per_group with grouped B/C, else all of them."""
        return self.per_group if self.grouped else self.dim

    def channel_blocks(self, block: int) -> int:
        """Programs of ``block`` channels that cover the channels: the blocks tile each group of channels that share
        B and C, the last block of a group masked (``tile_io.block_channels``)."""
        return self.dim // self.group_size * cdiv(self.group_size, block)

    @property
    def block_d(self) -> int:
        """Channels per program of the tile kernels and the carry."""
        return self.tiles.block_d

    @property
    def forward_state_loop(self) -> bool:
        """Whether the forward kernels run the state loop (``TileConfig.forward_state_loop``).  The drop-in scan's
        channels-first inputs compile to the same layout as the layer's tokens, one channel per thread with the
        steps in its registers (compile_check: no shuffles or shared memory in either)."""
        return self.tiles.forward_state_loop

    @property
    def backward_state_loop(self) -> bool:
        """Whether ``backward_grads`` runs the state loop (``TileConfig.backward_state_loop``), with tiles of at least
        16 steps and 16 channels (tl.dot's smallest, for the layer's dt gradients).  In deterministic mode too: there
        each channel block stores into its own copy of the x-projection gradient (the drop-in's dB and dC), one
        direction per launch (``backward``)."""
        return (self.tiles.backward_state_loop and self.tiles.block_t >= 16 and self.tiles.backward_block_d >= 16)

    @property
    def backward_dx_copies(self) -> bool:
        """Whether the state-loop backward stores its sums over channels into one copy of dx (the drop-in's dB and
        dC) per channel block (``TileConfig.backward_dx_copies``, and always in deterministic mode)."""
        return self.backward_state_loop and (self.deterministic or self.tiles.backward_dx_copies)

    @property
    def backward_one_direction_per_launch(self) -> bool:
        """Whether ``backward_grads`` runs one launch per direction, so that du's sum over directions needs no
        atomics: in deterministic mode, and with ``TileConfig.backward_direction_launches`` in the state loop."""
        return self.deterministic or (self.backward_state_loop and self.tiles.backward_direction_launches)

    @property
    def backward_du_owned(self) -> bool:
        """Whether each program of the state-loop backward owns its tile of du (a plain read-add-write): one direction
        per launch, or only one direction (the drop-in scan), visits every token once."""
        return self.backward_one_direction_per_launch or self.K == 1

    @property
    def backward_lane_sums(self) -> bool:
        """Whether the state-loop backward reduce-scatters dB's and dC's sums over the warp's lanes
        (``TileConfig.backward_lane_sums``): one-warp programs of 32 channels, at most 32 steps per tile."""
        return (self.backward_state_loop and self.tiles.backward_lane_sums
                and self.tiles.backward_block_d == 32 and self.tiles.block_t <= 32)

    @property
    def adjoint_state_loop(self) -> bool:
        """Whether ``chunk_adjoint`` runs the state loop: with ``TileConfig.backward_state_loop``.  It sums over steps
        only, inside each thread, so it needs neither atomics nor tl.dot (and runs on ``forward_block_d``
        channels)."""
        return self.tiles.backward_state_loop

    @property
    def state_unroll(self) -> int:
        """States per trip of the forward and adjoint state loops: the greatest divisor of N in tiles.state_unroll."""
        return math.gcd(max(1, self.tiles.state_unroll), self.n_state)

    @property
    def forward_block_d(self) -> int:
        """Channels per program of the forward kernels: state_loop_block with the state loop, else block_d."""
        return self.state_loop_block if self.forward_state_loop else self.block_d

    def grid(self, directions: Optional[int] = None, channel_blocks: bool = True, block_d: Optional[int] = None,
             chunks: Optional[int] = None):
        """(batch x ``directions`` (default all K), channel blocks of ``block_d`` (default ``self.block_d``; 1
        where one program loops over them), ``chunks`` (default all))."""
        blocks = self.channel_blocks(block_d or self.block_d) if channel_blocks else 1
        return (self.batch * (self.K if directions is None else directions), blocks,
                self.n_chunks if chunks is None else chunks)

    def carry_grid(self):
        """(batch x K, blocks of ``block_d`` channels) of ``chunk_carry_kernel``; it reads no B or C: plain blocks."""
        return (self.batch * self.K, cdiv(self.dim, self.block_d))

    def state_buffer(self, *tail):
        return torch.empty(self.batch * self.K, self.n_chunks, self.dim, *tail, device=self.u.device,
                           dtype=torch.float32)


def forward_states(ops: ScanOperands):
    """The state entering every chunk (batch*K, chunks, dim, N), the chunks' delta sums and the final state."""
    local = ops.state_buffer(ops.n_state)
    dsum = ops.state_buffer()
    for chunk_first, chunks in chunk_launches(ops.n_chunks):
        forward_kernels.chunk_end_state_kernel[ops.grid(block_d=ops.forward_block_d, chunks=chunks)](
            local, dsum, *ops.common_args(), chunk_first, **ops.launch_meta(), BLOCK_T=ops.tiles.block_t,
            BLOCK_D=ops.forward_block_d, TILES=ops.tiles_per_chunk, STATE_LOOP=ops.forward_state_loop,
            STATE_UNROLL=ops.state_unroll, CARRY_IN_REGISTERS=ops.tiles.carry_in_registers,
            **ops.forward_options(ops.forward_state_loop), **COMPILE_OPTIONS)
    # The carry turns the chunk end states into entry states in place.
    entry = local
    final = torch.empty(ops.batch * ops.K, ops.dim, ops.n_state, device=ops.u.device, dtype=torch.float32)
    chunk_carry.chunk_carry_kernel[ops.carry_grid()](
        entry, final, local, dsum, ops.A, ops.K, ops.dim, ops.n_chunks, REVERSE=False, N=ops.n_state,
        BLOCK_D=ops.block_d, BLOCK_C=ops.tiles.carry_chunks, num_warps=ops.tiles.num_warps, **COMPILE_OPTIONS)
    return entry, dsum, final


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
                last_use: bool = False, store_first: bool = False, first_direction: int = 0):
    """Recompute each chunk's outputs from its entry state and write them (reduce=0) or reduce them for the
    channel gate (see ``forward_output_kernel``).

    The gated layer's forward computes direction 0's output once (``directional.triton_op``): ``store_first`` makes
    the statistics pass (reduce=1) also write it into ``out``; ``first_direction=1`` then leaves direction 0 out of
    a pass (its pooling: ``first_direction_pool``), and the summed output's first launch multiplies what ``out``
    holds by direction 0's weight.

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
    carried = state_loop and ops.tiles_per_chunk > 1 and not ops.tiles.carry_in_registers  # else in registers
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
            DETERMINISTIC=deterministic, BLOCK_T=ops.tiles.block_t, BLOCK_D=block_d, TILES=ops.tiles_per_chunk,
            STATE_LOOP=state_loop, STATE_UNROLL=ops.state_unroll, CARRY_IN_REGISTERS=ops.tiles.carry_in_registers,
            STORE_FIRST=store_first, SCALE_FIRST=reduce == 0 and first_direction > 0 and k_first == first_direction,
            **ops.forward_options(state_loop), **COMPILE_OPTIONS)


def forward(ops: ScanOperands, out: torch.Tensor, out_strides: tuple, sum_directions: bool,
            weight: Optional[torch.Tensor]):
    """Run the forward.  Returns (entry states, chunk delta sums, final state) for the backward; without one
    (``ops.for_backward`` False) the state-loop kernels may have used the entry states' memory (``output_pass``)."""
    entry, dsum, final = forward_states(ops)
    output_pass(ops, entry, out, out_strides, sum_directions, weight, last_use=not ops.for_backward)
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
    """Per-chunk sums (batch*K, chunks, dim) added up over the chunks: (batch, K, dim)."""
    return part.view(ops.batch, ops.K, ops.n_chunks, ops.dim).sum(2)


def direction_weight_grad(ops: ScanOperands, entry: torch.Tensor, dout: torch.Tensor,
                          dout_strides: tuple) -> torch.Tensor:
    """The direction weights' gradient (batch, K, dim), the sum over high-resolution tokens of dout * y_k, from one
    output pass (``reduce=4``) and no backward: the gated layer's output backward, which leaves the inputs' gradient
    to one backward pass with both upstreams (``directional.triton_op``)."""
    part = ops.state_buffer()
    output_pass(ops, entry, dout, dout_strides, False, None, reduce=4, part=part)
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


def _zeroed_copies(buffer: torch.Tensor, count: int) -> torch.Tensor:
    """(count, *buffer.shape) zeros, each copy laid out like ``buffer`` (dense, any strides): the kernels address a
    copy with the strides of the tensor it is the gradient of, one copy ``buffer.numel()`` elements after another."""
    numel = buffer.numel()
    return buffer.new_zeros(count * numel).as_strided((count, *buffer.shape), (numel, *buffer.stride()))


def backward(ops: ScanOperands, dout: torch.Tensor, dout_strides: tuple, sum_directions: bool,
             weight: Optional[torch.Tensor], entry: torch.Tensor, dsum: torch.Tensor,
             grad_buffers: dict, ln_upstream: Optional[tuple] = None) -> Grads:
    """Run the backward; ``grad_buffers`` holds zeroed fp32 buffers laid out like the inputs they belong to
    (du, du_low, ddelta, dx, dx_low, dB, dC, dz).

    ``ln_upstream = (tok, vec, gbar)``: instead of an output gradient, back-propagate the gate's pooled LayerNorm
    statistic (tok: (batch*K, L, 3) mean, rstd, m per token; vec: (batch*K, dim) g; gbar: (batch*K,) mean of g);
    with ``sum_directions`` as well as the output gradient (the gated layer's fused backward, whose direction weights'
    gradient a ``reduce=4`` output pass has computed: ``Grads.dweight`` is None).
    """
    if not ops.for_backward:
        raise RuntimeError("internal error: backward on operands made for a forward-only run (for_backward=False).")
    has_z = ops.z is not None
    z = ops.z if has_z else ops.u
    wt = weight if weight is not None else dsum
    tok, vec, gbar = ln_upstream if ln_upstream is not None else (dsum, dsum, dsum)
    ln_args = (tok, vec, gbar, ops.height * ops.width)
    Dskip = ops.D if ops.D is not None else dsum
    meta = dict(**ops.launch_meta(dout, weight, *(ln_upstream or ()), *grad_buffers.values()), HAS_Z=has_z,
                SUM_DIRECTIONS=sum_directions, HAS_WEIGHT=weight is not None,
                LN_UPSTREAM=ln_upstream is not None, BLOCK_T=ops.tiles.block_t, BLOCK_D=ops.block_d)
    local = ops.state_buffer(ops.n_state)
    adjoint_loop = ops.adjoint_state_loop
    adjoint_block = ops.state_loop_block if adjoint_loop else ops.block_d
    for chunk_first, chunks in chunk_launches(ops.n_chunks):
        backward_kernels.chunk_adjoint_kernel[ops.grid(block_d=adjoint_block, chunks=chunks)](
            local, dout, *dout_strides, wt, z, *ops.z_strides, entry, Dskip, *ln_args, *ops.common_args(),
            chunk_first, HAS_D=ops.D is not None, **dict(meta, BLOCK_D=adjoint_block), STATE_LOOP=adjoint_loop,
            STATE_UNROLL=ops.state_unroll, num_warps=ops.state_loop_warps if adjoint_loop else ops.tiles.num_warps,
            **COMPILE_OPTIONS)
    arrive = local  # in place, as in forward_states
    chunk_carry.chunk_carry_kernel[ops.carry_grid()](
        arrive, arrive, local, dsum, ops.A, ops.K, ops.dim, ops.n_chunks, REVERSE=True, N=ops.n_state,
        BLOCK_D=ops.block_d, BLOCK_C=ops.tiles.carry_chunks, num_warps=ops.tiles.num_warps, **COMPILE_OPTIONS)
    dA_part = ops.state_buffer(ops.n_state)
    dD_part = ops.state_buffer()
    dbias_part = ops.state_buffer()
    dW_part = ops.state_buffer(ops.rank) if ops.lowrank else dD_part
    wants_dweight = weight is not None and ln_upstream is None
    dweight_part = ops.state_buffer() if wants_dweight else dD_part
    # Buffers a configuration does not use are never written (their constexpr branch is off): any tensor will do.
    gb = {name: grad_buffers.get(name) if grad_buffers.get(name) is not None else dD_part
          for name in ("du", "du_low", "ddelta", "dx", "dx_low", "dB", "dC", "dz")}
    state_loop = ops.backward_state_loop
    launch_buffers, copies, part_strides = gb, {}, (0, 0)
    if state_loop:  # one warp per 32 channels, one channel per thread; tl.dot needs RP >= 16
        block_d = ops.tiles.backward_block_d
        grads_meta = dict(meta, BLOCK_D=block_d, RP=max(16, next_power_of_2(ops.rank)), STATE_LOOP=True,
                          num_warps=max(1, block_d // 32))
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
            *(launch_buffers[name] for name in ("du", "du_low", "ddelta", "dx", "dx_low", "dB", "dC", "dz")),
            dA_part, dD_part, dbias_part, dW_part, dweight_part,
            dout, *dout_strides, wt, entry, arrive, Dskip, z, *ops.z_strides, *ln_args,
            *ops.common_args(), k_first, k_count, chunk_first, *part_strides, HAS_D=ops.D is not None,
            DETERMINISTIC=ops.deterministic, DX_COPIES=ops.backward_dx_copies, DU_OWNED=ops.backward_du_owned,
            LANE_SUMS=ops.backward_lane_sums, **grads_meta, **COMPILE_OPTIONS)
    for name, copy in copies.items():  # added, as the kernels add into every other buffer
        gb[name].add_(copy.sum(0))

    def per_direction(part):
        return part.view(ops.batch, ops.K, ops.n_chunks, *part.shape[2:]).sum(dim=(0, 2))

    gb = grad_buffers
    return Grads(
        du=gb["du"], du_low=gb.get("du_low"), ddelta=gb.get("ddelta"), dx=gb.get("dx"), dx_low=gb.get("dx_low"),
        dB=gb.get("dB"), dC=gb.get("dC"), dz=gb.get("dz"),
        dweight=chunk_sums(ops, dweight_part) if wants_dweight else None,
        dA=per_direction(dA_part), dD=per_direction(dD_part), dbias=per_direction(dbias_part),
        dW=per_direction(dW_part) if ops.lowrank else None,
    )
