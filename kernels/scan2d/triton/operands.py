""":class:`ScanOperands`: where the kernels read every input (pointers and strides), and what each launch takes.

The drop-in ``selective_scan`` (channels-first, given delta and B/C) and ``directional_scan`` (channels-last tokens,
delta from the dt low-rank projection) describe their inputs this way and so share one set of kernels.  The
operands also decide, per call, what the tile configuration leaves open: chunk lengths, channel blocks, which
kernels run the state loops, whether offsets need 64 bits.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import triton

from .direction_table import direction_rows, direction_table, scan_length
from .positions import ORDER_ALIGNED, ORDER_PLAIN, ORDER_SEQUENTIAL, RASTER
from .tile_io import STEP_VECTORS
from .tiles import TileConfig, current_tiles, rowwise_by_default


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


# Where a launch's tensors pass this many elements, offsets that grow with batch or length are 64-bit in the kernels
# (``tile_io.offset``'s WIDE); the others (channels, states, one tile) are 32-bit and stay below it.
# tests/test_triton_int64_offsets.py checks both, lowering it to take the wide paths.
INT32_OFFSET_LIMIT = 2 ** 31


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
    tiles_per_chunk: int = field(init=False)  # tiles of block_t steps per chunk
    n_chunks: int = field(init=False)
    forward_tile_steps: int = field(init=False)  # steps per tile of the state-loop forward kernels (_forward_tile)
    adjoint_tile_steps: int = field(init=False)  # steps per tile of the state-loop chunk_adjoint (_adjoint_tile)
    state_loop_block: int = field(init=False)
    paired_x: bool = field(init=False)
    raster: bool = field(init=False)  # every direction visits the map in raster order (_raster)
    tiles_in_windows: int = field(init=False)  # in_windows(block_t): False, True or positions.RASTER
    rowwise: int = field(init=False)  # how the state loops access channels-first tiles (_tile_access)
    wide_offsets: bool = field(init=False)  # the inputs' or the state buffers' offsets need 64 bits (launch_meta)
    dirs: torch.Tensor = field(init=False)  # (K, positions.DIRECTION_COLUMNS) int32 direction_table, on u's device
    length: int = field(init=False)  # steps of the longest direction's scan (padded windows included)

    def __post_init__(self):
        self.dirs = direction_table(self.directions, self.height, self.width, self.u.device)
        self.forward_tile_steps = self._forward_tile()
        self.adjoint_tile_steps = self._adjoint_tile()
        self.length = scan_length(self.directions, self.height, self.width)
        self.state_loop_block = self._fitted_state_loop_block()
        self.paired_x = self._pairs_aligned()  # once: launch_meta() runs at every launch
        self.raster = self._raster()
        self.tiles_in_windows = self.in_windows(self.tiles.block_t)
        self.rowwise = self._tile_access()  # once, as paired_x
        self.tiles_per_chunk = 1 if self.for_backward else self.inference_chunk_tiles(
            self.length, self.batch * self.channel_blocks(self.forward_block_d))
        self.n_chunks = cdiv(self.length, self.tiles.block_t * self.tiles_per_chunk)
        self.wide_offsets = self._wide_offsets()

    def _forward_tile(self) -> int:
        """``forward_tile_steps``: block_t, or TileConfig.forward_block_t where that is fewer (``_shorter_tile``).
        The drop-in scan's training forward keeps block_t: its channels-first tiles are read 4 steps per access and
        already lean (compile_check, sm_90, 4,096 steps: chunk_end_state at 63 registers), and splitting a chunk
        into tiles carries all N states across them in registers (156)."""
        return self._shorter_tile("forward_block_t", keep=self.for_backward and not self.lowrank)

    def _adjoint_tile(self) -> int:
        """``adjoint_tile_steps``: block_t, or TileConfig.adjoint_block_t where that is fewer (``_shorter_tile``).
        The drop-in scan keeps block_t, for its training forward's reason (``_forward_tile``; its chunk_adjoint
        takes 72 registers in 16-step tiles)."""
        return self._shorter_tile("adjoint_block_t", keep=not self.lowrank)

    def _shorter_tile(self, name: str, keep: bool) -> int:
        """Steps per tile of a state-loop kernel: block_t (where ``keep``, or the TileConfig field ``name`` is
        None), or that field where it is fewer: a power of two, as block_t is, so that it splits block_t's tiles
        evenly."""
        block_t, steps = self.tiles.block_t, getattr(self.tiles, name)
        if steps is not None and (steps < 1 or steps & (steps - 1)):
            raise ValueError(f"TileConfig.{name} = {steps}: tiles must be a power of two of steps that splits "
                             f"block_t's; choose e.g. 8, or None for block_t's own")
        if steps is None or keep:
            return block_t
        return min(steps, block_t)

    def forward_tiles(self, state_loop: bool) -> dict:
        """BLOCK_T and TILES of a forward kernel's launch: with the state loop, chunks of ``forward_tile_steps``-step
        tiles (``TileConfig.forward_block_t``); else of block_t-step ones.  Either way a chunk is block_t x
        tiles_per_chunk steps."""
        steps = self.forward_tile_steps if state_loop else self.tiles.block_t
        return dict(BLOCK_T=steps, TILES=self.tiles_per_chunk * self.tiles.block_t // steps)

    def adjoint_tiles(self, state_loop: bool) -> dict:
        """BLOCK_T and TILES of ``chunk_adjoint``'s launch: with the state loop, one-tile chunks in tiles of
        ``adjoint_tile_steps`` (``TileConfig.adjoint_block_t``); else one tile of block_t steps."""
        steps = self.adjoint_tile_steps if state_loop else self.tiles.block_t
        return dict(BLOCK_T=steps, TILES=self.tiles.block_t // steps)

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
                    IN_WINDOW=self.tiles_in_windows, WIDE=self.wide_offsets or spans_past_int32(*tensors),
                    STAGES=self.tiles.state_loop_stages)

    def _wide_offsets(self) -> bool:
        """``wide_offsets``: without ``TileConfig.narrow_offsets``, or where an input, or the largest buffer of one
        value per (batch, direction, chunk, channel) and state or dt rank (``state_buffer``), can pass int32.  The
        parameters (A, D, the dt projection), contiguous (K, dim[, N or R]) tensors, hold fewer values than that
        buffer; unused inputs point at u.  A forward without gradients takes 64 bits unless
        ``TileConfig.narrow_inference_offsets`` says otherwise (32 bits ran slower there on an H200)."""
        if not self.tiles.narrow_offsets or not (self.for_backward or self.tiles.narrow_inference_offsets):
            return True
        states = self.batch * self.K * self.n_chunks * self.dim * max(self.n_state, self.rank, 1)
        inputs = (self.u, self.x) + tuple(t for t in (self.u_low, self.x_low, self.delta, self.B, self.C, self.z)
                                          if t is not None and t is not self.u and t is not self.x)
        return states >= INT32_OFFSET_LIMIT or spans_past_int32(*inputs)

    def in_windows(self, steps: int) -> int:
        """``positions.RASTER`` (2) where every direction's order is the raster order (``raster``), else whether
        every tile of ``steps`` steps lies inside one window (``positions.tile_positions``' IN_WINDOW;
        ``tiles_in_windows`` for block_t, the one-pass forward's segments for theirs).  Tiles start at multiples of
        their length, so that holds for a plain windowed scan where every direction's window area (padded, in the
        scan frame) is a multiple of it: with 16-step tiles windows of 4, 8, 12, 16, ... (unless the map is smaller
        than the window, which is then cut to it), global scans where height x width is a multiple of 16.  The
        aligned cross-scale order visits each low-resolution window's groups of five together, so there five times
        the low window area must be one: the model's windows of 16 (low windows of 8 x 8) and any low window of
        4 x 4 or 2 x 8.  Never the sequential cross-scale order."""
        if self.raster:
            return RASTER.value
        if self.order == ORDER_SEQUENTIAL or not self.tiles.window_tiles:
            return False
        rows = direction_rows(self.directions, self.height, self.width)
        if self.order == ORDER_ALIGNED:
            return all(5 * low_h * low_w % steps == 0 for _, _, _, _, _, low_h, low_w, *_ in rows)
        return all(win_h * win_w % steps == 0 for _, _, win_h, win_w, *_ in rows)

    def _raster(self) -> bool:
        """``raster``: whether every direction visits the map in raster order (``TileConfig.raster_tiles``): plain,
        row-first and unreversed, with windows as wide as the map (rows of whole-width bands are the raster order).
        The drop-in scan, a 1 x L map, always is."""
        if self.order != ORDER_PLAIN or not self.tiles.raster_tiles:
            return False
        rows = direction_rows(self.directions, self.height, self.width)
        return all(not column_first and not reverse and win_w == self.width
                   for column_first, reverse, _, win_w, *_ in rows)

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

    def _tile_access(self) -> int:
        """``rowwise``: how the state loops read and write the drop-in scan's channels-first (steps, channels) tiles
        (``tile_io.load_td``; the 2D layer's are channels-last): ``tile_io.STEP_VECTORS``, 4 steps per access, where
        ``TileConfig.step_vectors`` and the steps lie one after another in memory four valid or four invalid at a
        time (raster positions, a length that is a multiple of 16, tiles of block_t and of forward_tile_steps that
        are multiples of 4 steps, position stride 1: the drop-in's wrapper makes u, delta, z, the output and every
        gradient contiguous and 16-byte aligned, and B and C below 2^31 elements), B and C too
        (``tile_io.state_column``); else a row at a time per ``TileConfig.rowwise_tiles``."""
        if self.lowrank:
            return False
        strides = [self.u_strides[1], self.delta_strides[1], self.B_strides[3], self.C_strides[3]]
        strides += [self.z_strides[1]] if self.z is not None else []
        # The kernels tell Triton so (tile_io._step_vectors' hints): each condition must hold, or a GPU reads wrong
        # addresses; the interpreter ignores the hints, so no CPU test would notice.
        # A length that is a multiple of 16 and 16-byte aligned tensors also let Triton prove the vectors' alignment
        # (contiguous strides are then multiples of 16 too); where it cannot, it would not just read one step at a
        # time, it would lay the steps across lanes (compile_check: 1,944 shuffles in the backward at 200 steps).
        tensors = [t for t in (self.u, self.delta, self.z, self.B, self.C) if t is not None]
        if (self.tiles.step_vectors and self.raster and self.length % 16 == 0
                and self.tiles.block_t % 4 == 0 and self.forward_tile_steps % 4 == 0
                and all(s == 1 for s in strides) and all(t.data_ptr() % 16 == 0 for t in tensors)):
            return STEP_VECTORS.value
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
    def backward_chunk_group(self) -> int:
        """Consecutive chunks whose sums over steps the state-loop ``backward_grads`` adds into one (its CHUNKS):
        ``TileConfig.backward_chunks``, 1 in deterministic mode (the adds are atomics) or without the state loop."""
        if self.deterministic or not self.backward_state_loop:
            return 1
        return min(self.tiles.backward_chunks, self.n_chunks)

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

    def state_buffer(self, *tail, chunks: Optional[int] = None):
        """(batch*K, chunks (n_chunks), dim, *tail) fp32, uninitialized."""
        return torch.empty(self.batch * self.K, self.n_chunks if chunks is None else chunks, self.dim, *tail,
                           device=self.u.device, dtype=torch.float32)

    @property
    def carry_segment(self) -> int:
        """Chunks per segment of the carry (``launch.carry``): TileConfig.carry_segment, or all of them (one
        launch) where that is None or not fewer."""
        segment = self.tiles.carry_segment
        if segment is None:
            return self.n_chunks
        if segment < 1:
            raise ValueError(f"TileConfig.carry_segment = {segment}: the carry's segments must hold at least one "
                             f"chunk; choose e.g. 64 (a multiple of carry_chunks), or None for one launch")
        return min(segment, self.n_chunks)
