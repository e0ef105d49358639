"""Scan orders, checked by hand on small maps and as permutations on random sizes."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scan2d import ScanDirection, cross_scale_order, inverse_order, scan_order, sequential_cross_scale_order


def test_row_first_window_matches_reference_example():
    # The example from the design reference: 4x4 map, window 2.
    assert scan_order(4, 4, 2).tolist() == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]


def test_column_first_is_the_transpose():
    assert scan_order(4, 4, 2, column_first=True).tolist() == [0, 4, 1, 5, 8, 12, 9, 13, 2, 6, 3, 7, 10, 14, 11, 15]


def test_global_orders():
    assert scan_order(2, 3, None).tolist() == [0, 1, 2, 3, 4, 5]
    assert scan_order(2, 3, None, column_first=True).tolist() == [0, 3, 1, 4, 2, 5]
    assert scan_order(2, 3, None, reverse=True).tolist() == [5, 4, 3, 2, 1, 0]


def test_odd_non_square_windows_are_cut_short():
    # 3x5 map, window 2: windows (0,0) (0,1) (0,2)-cut (1,0)-cut ...
    assert scan_order(3, 5, 2).tolist() == [0, 1, 5, 6, 2, 3, 7, 8, 4, 9, 10, 11, 12, 13, 14]
    # column-first on 3x5 with window 2: window columns first, each window column-major.
    assert scan_order(3, 5, 2, column_first=True).tolist() == [0, 5, 1, 6, 10, 11, 2, 7, 3, 8, 12, 13, 4, 9, 14]


def test_window_larger_than_map_is_a_global_scan():
    assert torch.equal(scan_order(5, 3, 8), scan_order(5, 3, None))
    assert torch.equal(scan_order(5, 3, 8, column_first=True), scan_order(5, 3, None, column_first=True))


def test_reverse_reverses_the_whole_sequence():
    assert torch.equal(scan_order(6, 7, 4, True, True), scan_order(6, 7, 4, True).flip(0))


def test_cross_scale_row_first_by_hand():
    # 4x4 high-res, 2x2 low-res (tokens 16..19), window 4 -> low window 2: one low window, groups in raster order.
    assert cross_scale_order(4, 4, 4).tolist() == [
        16, 0, 1, 4, 5,
        17, 2, 3, 6, 7,
        18, 8, 9, 12, 13,
        19, 10, 11, 14, 15,
    ]


def test_cross_scale_column_first_by_hand():
    # Groups in column-major low-res order, pixels TL, BL, TR, BR.
    assert cross_scale_order(4, 4, 4, column_first=True).tolist() == [
        16, 0, 4, 1, 5,
        18, 8, 12, 9, 13,
        17, 2, 6, 3, 7,
        19, 10, 14, 11, 15,
    ]


def test_cross_scale_reversed_keeps_low_token_first():
    assert cross_scale_order(4, 4, 4, reverse=True).tolist() == [
        19, 15, 14, 11, 10,
        18, 13, 12, 9, 8,
        17, 7, 6, 3, 2,
        16, 5, 4, 1, 0,
    ]


def test_cross_scale_odd_size_has_short_groups():
    # 3x3 high-res -> 2x2 low-res (tokens 9..12); column-first, window 4 -> low window 2.
    assert cross_scale_order(3, 3, 4, column_first=True).tolist() == [
        9, 0, 3, 1, 4,
        11, 6, 7,
        10, 2, 5,
        12, 8,
    ]
    assert cross_scale_order(3, 3, 4, column_first=True, reverse=True).tolist() == [
        12, 8,
        10, 5, 2,
        11, 7, 6,
        9, 4, 1, 3, 0,
    ]


def test_cross_scale_windows_move_together():
    # 8x8 with window 4: low-res windows of 2 cover the same 4x4 high-res region, so the first 20 steps stay in the
    # top-left 4x4 block and its 2x2 low-res tokens.
    order = cross_scale_order(8, 8, 4)
    first = order[:20]
    high = first[first < 64]
    low = first[first >= 64] - 64
    assert sorted(high.tolist()) == [r * 8 + c for r in range(4) for c in range(4)]
    assert sorted(low.tolist()) == [0, 1, 4, 5]


def test_sequential_cross_scale_puts_low_tokens_first():
    assert sequential_cross_scale_order(2, 4, None).tolist() == [8, 9, 0, 1, 2, 3, 4, 5, 6, 7]
    assert sequential_cross_scale_order(2, 4, None, reverse=True).tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]


@given(st.integers(1, 23), st.integers(1, 23), st.sampled_from([None, 1, 2, 3, 4, 8, 16, 64]), st.booleans(),
       st.booleans())
def test_scan_order_is_a_permutation(height, width, window, column_first, reverse):
    order = scan_order(height, width, window, column_first, reverse)
    assert order.dtype == torch.int64
    assert torch.equal(order.sort().values, torch.arange(height * width))


@given(st.integers(1, 21), st.integers(1, 21), st.sampled_from([None, 2, 4, 6, 16]), st.booleans(), st.booleans(),
       st.sampled_from([cross_scale_order, sequential_cross_scale_order]))
def test_cross_scale_orders_are_permutations_of_both_scales(height, width, window, column_first, reverse, fn):
    order = fn(height, width, window, column_first, reverse)
    total = height * width + ((height + 1) // 2) * ((width + 1) // 2)
    assert order.dtype == torch.int64
    assert torch.equal(order.sort().values, torch.arange(total))


@given(st.integers(1, 17), st.integers(1, 17), st.sampled_from([2, 4, 8]), st.booleans(), st.booleans())
def test_aligned_groups_are_led_by_their_low_token(height, width, window, column_first, reverse):
    order = cross_scale_order(height, width, window, column_first, reverse).tolist()
    n, low_w = height * width, (width + 1) // 2
    current = None
    for entry in order:
        if entry >= n:
            current = entry - n
            continue
        row, col = divmod(entry, width)
        assert current is not None and (row // 2) * low_w + col // 2 == current


def test_inverse_order_puts_outputs_back():
    order = cross_scale_order(3, 5, 4, True, True)
    inverse = inverse_order(order, 15)
    assert torch.equal(order[inverse], torch.arange(15))


@pytest.mark.parametrize("bad", [0, -3, 2.5, "8", True])
def test_bad_window_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="window"):
        scan_order(8, 8, bad)


def test_bad_size_and_tiny_cross_window():
    with pytest.raises(ValueError, match="height"):
        scan_order(0, 4, 2)
    with pytest.raises(ValueError, match="window // 2"):
        cross_scale_order(4, 4, 1)


def test_direction_names_round_trip():
    for name in ["w8", "w8_flip", "c_w64", "c_w16_flip", "global", "c_global_flip"]:
        assert ScanDirection.parse(name).name == name
    assert ScanDirection.parse("c_w8_flip") == ScanDirection(8, True, True)
    with pytest.raises(ValueError, match="not understood"):
        ScanDirection.parse("diagonal")
