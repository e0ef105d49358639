"""The launch code's host arithmetic: its own ceil division and powers of two (Triton's cost a wrapper call each),
how many tiles an inference chunk gets, for which Triton the drop-in's tiles go a row at a time, and which forward
launches take the register cap."""

import pytest
import triton
from hypothesis import given
from hypothesis import strategies as st

from scan2d.triton.operands import cdiv, chunk_tiles, next_power_of_2

from scan2d.triton.tiles import TileConfig, rowwise_by_default


@given(st.integers(0, 2**40), st.integers(1, 2**20))
def test_cdiv_equals_triton_cdiv(a, b):
    assert cdiv(a, b) == triton.cdiv(a, b)


@given(st.integers(1, 2**40))
def test_next_power_of_2_equals_tritons(n):
    assert next_power_of_2(n) == triton.next_power_of_2(n)


@given(steps=st.integers(1, 2**20), block_t=st.sampled_from([4, 16, 32]), most=st.sampled_from([1, 2, 3, 16, 32]),
       programs_per_chunk=st.integers(1, 64), min_programs=st.integers(0, 2048))
def test_chunk_tiles_are_the_longest_halving_that_fills_the_launch(steps, block_t, most, programs_per_chunk,
                                                                   min_programs):
    tiles = chunk_tiles(steps, block_t, most, programs_per_chunk, min_programs)

    def programs(t):
        return programs_per_chunk * cdiv(steps, block_t * t)

    halvings = {most >> i for i in range(most.bit_length())}
    assert tiles in halvings
    assert tiles == 1 or programs(tiles) >= min_programs  # one tile per chunk is as many programs as there can be
    # The next longer chunks (the halving before) would not fill it.
    assert tiles == most or programs(min(h for h in halvings if h > tiles)) < min_programs


@pytest.mark.parametrize("version,rowwise", [("3.6.0", True), ("3.5.1", True), ("3.6.0+git9f3e1a2", True),
                                             ("3.7.1", False), ("3.9.0", False), ("3.10.0", False), ("4.0.0", False)])
def test_tiles_go_a_row_at_a_time_by_default_before_triton_3_7(version, rowwise):
    # Before 3.7 Triton breaks the coalescing tie of a channels-first (steps, channels) tile toward the steps
    # (compile_check under 3.6.0: 960 shuffles in the drop-in's chunk_end_state; none under 3.7.1, 3.8.0, 3.9.0).
    assert rowwise_by_default(version) is rowwise


def test_forward_register_cap_spares_multi_tile_chunks():
    # Multi-tile (inference) chunks carry all N states per channel in registers: capping them would spill.
    capped = TileConfig(forward_maxnreg=168)
    assert capped.forward_options(True, tiles_per_chunk=1) == dict(num_warps=4, maxnreg=168)
    assert capped.forward_options(True, tiles_per_chunk=16) == dict(num_warps=4)
    assert capped.forward_options(False, tiles_per_chunk=1) == dict(num_warps=4)  # the tile kernels
    assert TileConfig().forward_options(True) == dict(num_warps=4)
