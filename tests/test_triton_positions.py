"""The kernels' in-kernel scan positions equal the orders of scan2d.orders for every kind of direction."""

import pytest
import torch
import triton
import triton.language as tl
from hypothesis import assume, given
from hypothesis import strategies as st

from directional_cases import make_layer_inputs, run_triton_layer
from launch_spy import STATE_LOOP_KERNELS, spy_on_launches
from scan2d import ScanDirection
from scan2d.directional.triton_op import _operands
from scan2d.directions import _order
from scan2d.triton.direction_table import ORDER_OF, direction_rows, direction_table, division_magic
from scan2d.triton.tiles import tile_config
from scan2d.triton.positions import RASTER, step_positions, tile_positions


@triton.jit
def _positions_kernel(dirs_ptr, pos_ptr, low_ptr, valid_ptr, length, H, W, ORDER: tl.constexpr,
                      BLOCK: tl.constexpr):
    s = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    pos, is_low, valid = step_positions(s, 0, dirs_ptr, H, W, ORDER)
    m = s < length
    tl.store(pos_ptr + s, pos, mask=m)
    tl.store(low_ptr + s, is_low.to(tl.int32), mask=m)
    tl.store(valid_ptr + s, valid.to(tl.int32), mask=m)


def kernel_order(direction: ScanDirection, height: int, width: int) -> torch.Tensor:
    """The valid steps of the kernels' padded sequence, as entries of a scan2d order."""
    table = direction_table([direction], height, width, "cpu")
    length = int(table[0, 4])
    pos, low, valid = (torch.zeros(length, dtype=torch.int32) for _ in range(3))
    _positions_kernel[(triton.cdiv(length, 64),)](table, pos, low, valid, length, height, width,
                                                   ORDER=ORDER_OF[direction.cross_scale], BLOCK=64)
    keep = valid.bool()
    return (pos.long() + low.long() * height * width)[keep]


@given(st.integers(1, 19), st.integers(1, 19), st.sampled_from([None, 1, 2, 3, 4, 8, 16, 64]), st.booleans(),
       st.booleans())
def test_plain_positions_match_scan_order(height, width, window, column_first, reverse):
    d = ScanDirection(window, column_first, reverse)
    assert torch.equal(kernel_order(d, height, width), _order(d, height, width))


@given(st.integers(1, 19), st.integers(1, 19), st.sampled_from([None, 2, 4, 6, 16, 64]), st.booleans(),
       st.booleans(), st.sampled_from(["aligned", "sequential"]))
def test_cross_scale_positions_match_orders(height, width, window, column_first, reverse, mode):
    d = ScanDirection(window, column_first, reverse, mode)
    assert torch.equal(kernel_order(d, height, width), _order(d, height, width))


def test_padding_stays_small_for_windows():
    # Only cut-short windows are padded: a 64x64 map with window 8 has no padded step, 65x64 one padded row band.
    assert int(direction_table([ScanDirection(8)], 64, 64, "cpu")[0, 4]) == 64 * 64
    assert int(direction_table([ScanDirection(8)], 65, 64, "cpu")[0, 4]) == 72 * 64
    assert int(direction_table([ScanDirection(None, True)], 48, 64, "cpu")[0, 4]) == 48 * 64


@given(st.one_of(st.integers(1, 300), st.integers(1, 2**31 - 1)), st.integers(0, 2**31 - 1))
def test_division_magic_divides_every_int32_step_exactly(divisor, n):
    # The kernels divide steps by window sizes as (n * magic) >> shift (positions._divide); the step index is int32.
    magic, shift = division_magic(divisor)
    magic %= 2**32  # stored as int32 bits, read back unsigned
    assert magic < 2**32
    for m in (n, n - n % divisor, n - n % divisor - 1, 2**31 - 1, divisor - 1, divisor):
        if 0 <= m < 2**31:
            assert (m * magic) >> shift == m // divisor, (m, divisor)


def test_a_scan_longer_than_the_int32_step_index_is_refused_clearly():
    with pytest.raises(ValueError, match="int32 step"):
        direction_table([ScanDirection(None)], 50_000, 50_000, "cpu")


def test_direction_table_is_built_once_per_geometry():
    # Building the table copies a host list to the device, which on a GPU waits for the stream: the ops reuse one
    # read-only table per (directions, size, device), and a different geometry gets its own.
    dirs = [ScanDirection(8, False, False), ScanDirection(8, True, True)]
    first = direction_table(dirs, 12, 20, "cpu")
    assert direction_table(tuple(dirs), 12, 20, torch.device("cpu")) is first
    other = direction_table(dirs, 20, 12, "cpu")
    assert other is not first and not torch.equal(other, first)
    assert first.dtype == torch.int32 and first.shape[0] == 2


@triton.jit
def _tile_positions_kernel(dirs_ptr, pos_ptr, low_ptr, valid_ptr, H, W, tiles, ORDER: tl.constexpr,
                           IN_WINDOW: tl.constexpr, BLOCK: tl.constexpr):
    t = tl.arange(0, BLOCK)
    for i in range(tiles):  # one program: the interpreter's cost is per program
        s0 = i * BLOCK
        pos, is_low, valid = tile_positions(s0, t, 0, dirs_ptr, H, W, ORDER, IN_WINDOW)
        tl.store(pos_ptr + s0 + t, pos)
        tl.store(low_ptr + s0 + t, is_low.to(tl.int32))
        tl.store(valid_ptr + s0 + t, valid.to(tl.int32))


def tile_positions_of(direction, height, width, block, in_window):
    """(pos, is_low, valid) of every tile of ``block`` steps of the padded scan, and of one tile past its end."""
    table = direction_table([direction], height, width, "cpu")
    tiles = triton.cdiv(int(table[0, 4]), block) + 1
    out = [torch.full((tiles * block,), -7, dtype=torch.int32) for _ in range(3)]
    _tile_positions_kernel[(1,)](table, *out, height, width, tiles, ORDER=ORDER_OF[direction.cross_scale],
                                 IN_WINDOW=in_window, BLOCK=block)
    return out


@given(st.integers(1, 24), st.integers(1, 24), st.sampled_from([None, 2, 4, 6, 8, 12, 16, 64]), st.booleans(),
       st.booleans())
def test_positions_worked_out_per_tile_inside_a_window_are_the_same(height, width, window, column_first, reverse):
    # positions.tile_positions' IN_WINDOW path (each tile's window once, each step from it) against the per-step
    # division, on every tile of a direction whose window area is a multiple of the tile (the kernels' condition,
    # ScanOperands.tiles_in_windows), cut-short edge windows and the tile past the end included.  Tiles of 4 to 32
    # steps: the largest that divides the window area.
    d = ScanDirection(window, column_first, reverse)
    _, _, win_h, win_w, *_ = direction_rows([d], height, width)[0]
    area = win_h * win_w
    assume(area % 4 == 0)
    block = 32
    while area % block:
        block //= 2
    per_tile = tile_positions_of(d, height, width, block, in_window=True)
    per_step = tile_positions_of(d, height, width, block, in_window=False)
    for a, b in zip(per_tile, per_step):
        assert torch.equal(a, b)


@given(st.integers(1, 24), st.integers(1, 24), st.sampled_from([None, 2, 4, 8, 16, 32, 64]), st.booleans(),
       st.booleans())
def test_aligned_cross_scale_positions_per_tile_are_the_same(height, width, window, column_first, reverse):
    # The aligned cross-scale order's IN_WINDOW path (positions._aligned_tile_in_window) against the per-step code on
    # every tile, where five times the low-resolution window area is a multiple of the tile: each low window's
    # groups of five then fill whole tiles.  Cut-short low windows, odd maps (a low pixel's missing 2 x 2 block
    # pixels), reversed and column-first scans, and the tile past the end included.
    d = ScanDirection(window, column_first, reverse, "aligned")
    row = direction_rows([d], height, width)[0]
    low_area = row[5] * row[6]
    assume(low_area % 4 == 0)
    block = 32
    while 5 * low_area % block:
        block //= 2
    per_tile = tile_positions_of(d, height, width, block, in_window=True)
    per_step = tile_positions_of(d, height, width, block, in_window=False)
    for a, b in zip(per_tile, per_step):
        assert torch.equal(a, b)


@given(st.integers(1, 24), st.integers(1, 24), st.sampled_from([None, 0, 3, 8]), st.sampled_from([4, 8, 16, 32]))
def test_raster_positions_are_the_steps_of_the_scan(height, width, extra, block):
    # positions.RASTER (step s at position s, no window arithmetic) against the per-step division on every tile of
    # a row-first, unreversed scan whose windows span the width: a global scan, or square windows at least as wide
    # as the map, whose bands of rows may be cut short at the bottom (padded steps past the map, which must come
    # out invalid).  Tiles of any length: no window has to hold whole tiles.
    d = ScanDirection(None if extra is None else width + extra)
    assert direction_rows([d], height, width)[0][3] == width
    raster = tile_positions_of(d, height, width, block, in_window=RASTER.value)
    per_step = tile_positions_of(d, height, width, block, in_window=False)
    for a, b in zip(raster, per_step):
        assert torch.equal(a, b)


def layer_operands(directions, height, width, **tiles):
    cross_scale = directions[0].cross_scale is not None
    inp = make_layer_inputs(1, height, width, 8, len(directions), n_state=4, rank=2, cross_scale=cross_scale,
                            dtype=torch.float32)
    low = {name: inp.pop(name, None) for name in ("u_low", "xdbl_low")}
    with tile_config(**tiles):
        return _operands(**inp, directions=directions, height=height, width=width, **low)


def test_kernels_take_positions_per_tile_where_every_window_holds_whole_tiles():
    pair = lambda w: (ScanDirection(w), ScanDirection(w, True, True))  # noqa: E731
    assert layer_operands(pair(8), 20, 12, block_t=16).tiles_in_windows  # area 64, edge windows cut short
    assert layer_operands(pair(4), 9, 9, block_t=16).tiles_in_windows  # area 16
    assert not layer_operands(pair(4), 9, 9, block_t=32).tiles_in_windows
    assert not layer_operands(pair(8), 5, 12, block_t=16).tiles_in_windows  # windows cut to 5 x 8 (area 40)
    assert not layer_operands((ScanDirection(8), ScanDirection(6)), 16, 16, block_t=16).tiles_in_windows
    assert layer_operands(pair(None), 4, 12, block_t=16).tiles_in_windows  # a global scan of 48 pixels
    assert not layer_operands(pair(8), 16, 16, block_t=16, window_tiles=False).tiles_in_windows


def test_kernels_take_raster_positions_where_every_direction_scans_in_raster_order():
    raster = RASTER.value
    assert layer_operands((ScanDirection(None),), 6, 10).tiles_in_windows == raster
    assert layer_operands((ScanDirection(12),), 30, 10).tiles_in_windows == raster  # bands of 10 rows, the last cut
    assert layer_operands((ScanDirection(None), ScanDirection(16)), 20, 16).tiles_in_windows == raster
    assert layer_operands((ScanDirection(None),), 6, 10).in_windows(8) == raster  # the one-pass forward's segments
    assert layer_operands((ScanDirection(8),), 16, 16).tiles_in_windows != raster  # windows narrower than the map
    assert layer_operands((ScanDirection(None), ScanDirection(None, True)), 16, 16).tiles_in_windows != raster
    assert layer_operands((ScanDirection(None, False, True),), 16, 16).tiles_in_windows != raster  # reversed
    # Column-first: here the same order as the raster one, which the host does not work out.
    assert layer_operands((ScanDirection(None, True),), 1, 16).tiles_in_windows != raster
    assert layer_operands((ScanDirection(None),), 16, 16, raster_tiles=False).tiles_in_windows != raster
    assert layer_operands((ScanDirection(None, cross_scale="aligned"),), 16, 16).tiles_in_windows != raster


def test_aligned_cross_scale_kernels_take_positions_per_tile_where_low_windows_hold_whole_tiles():
    def pair(window, mode="aligned"):
        return ScanDirection(window, False, False, mode), ScanDirection(window, True, True, mode)

    assert layer_operands(pair(16), 32, 32, block_t=16).tiles_in_windows  # low windows 8 x 8: 320 steps each
    assert layer_operands(pair(8), 10, 7, block_t=16).tiles_in_windows  # 4 x 4 (80 steps), cut short at the edge
    assert not layer_operands(pair(4), 16, 16, block_t=16).tiles_in_windows  # 2 x 2: 20 steps
    assert not layer_operands(pair(8), 6, 6, block_t=16).tiles_in_windows  # cut to the 3 x 3 low map: 45 steps
    assert not layer_operands(pair(16), 32, 32, block_t=16, window_tiles=False).tiles_in_windows
    assert not layer_operands(pair(16, "sequential"), 32, 32, block_t=16).tiles_in_windows


@pytest.mark.parametrize("cross_scale", [None, "aligned"])
def test_layer_results_are_bit_identical_with_positions_per_tile(monkeypatch, cross_scale):
    # The same integers reach the same loads: output and every gradient equal with TileConfig.window_tiles on and
    # off.  16-step tiles on a 10 x 7 map (cut-short edge windows), both orders, one reversed: windows of 4 in the
    # plain scan; in the aligned cross-scale one windows of 8, whose 4 x 4 low-resolution windows hold 80 steps.
    seen = spy_on_launches(monkeypatch, STATE_LOOP_KERNELS, record=lambda name, grid, meta: meta["IN_WINDOW"])
    window = 4 if cross_scale is None else 8
    directions = (ScanDirection(window, False, False, cross_scale), ScanDirection(window, True, True, cross_scale))
    inp = make_layer_inputs(2, 10, 7, 9, 2, n_state=4, rank=3, cross_scale=cross_scale is not None,
                            dtype=torch.float32)
    per_tile = run_triton_layer(inp, directions, 10, 7, True, block_t=16)
    assert seen and all(seen), seen
    seen.clear()
    per_step = run_triton_layer(inp, directions, 10, 7, True, block_t=16, window_tiles=False)
    assert seen and not any(seen), seen
    for a, b in zip(per_tile, per_step):
        assert torch.equal(a, b), (a - b).abs().max()
