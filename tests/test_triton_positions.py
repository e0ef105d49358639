"""The kernels' in-kernel scan positions equal the orders of scan2d.orders for every kind of direction."""

import pytest
import torch
import triton
import triton.language as tl
from hypothesis import given
from hypothesis import strategies as st

from scan2d import ScanDirection
from scan2d.directions import _order
from scan2d.triton.launch import ORDER_OF, direction_table, division_magic
from scan2d.triton.positions import step_positions


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
