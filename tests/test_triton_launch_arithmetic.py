"""The launch code's host arithmetic: its own ceil division and powers of two (Triton's cost a wrapper call each),
and how many tiles an inference chunk gets."""

import triton
from hypothesis import given
from hypothesis import strategies as st

from scan2d.triton.launch import cdiv, chunk_tiles, next_power_of_2


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
