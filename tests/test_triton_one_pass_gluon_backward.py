"""The one-pass lanes backward written in Gluon (``TileConfig.one_pass_gluon_backward``,
``scan2d.triton.one_pass_gluon_backward``) against the float64 PyTorch path, as ``test_triton_one_pass_lanes_backward``
checks the Triton kernel it rewrites: every gradient of the layer and of the drop-in scan after any training forward
(the chunked one, the one pass with the states across the lanes, or its Gluon kernel: each stores the entry state of
every block_t-step chunk, which is all the backward reads), over random sizes, windows, orders, reversals,
cross-scale modes, K = 1, 2, 4, batch 1-2, channel counts that are not a multiple of the block, one tile or several,
1-4 warps, float32, bfloat16 and float16, and the gated layer's; which kernels run, with what grid.  Under the
interpreter the kernel runs with its layouts dropped (``gluon_lang``); the compile tests build it as Gluon for
sm_90."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from directional_cases import make_layer_inputs
from scan2d import ScanDirection, directional_scan
from scan2d.triton.one_pass_gluon_backward import backward_layouts
from scan2d.triton.tiles import TileConfig, tile_config
from test_triton_directional import DEVICE, direction
from test_triton_one_pass import check_drop_in, check_layer
from test_triton_one_pass_lanes_backward import _layer_backward_launches, check_gated_layer, du_together_and_apart

dtypes = st.sampled_from([torch.float32, torch.float32, torch.bfloat16, torch.float16])
steps = st.sampled_from([4, 16])  # 4-step tiles give several tiles even on the smallest maps
# (channels per program, warps) that the layouts fill with the layer's 4 states (8 lanes of channels a warp).
blocks = st.sampled_from([(8, 1), (16, 2), (32, 4), (16, 1)])
forwards = st.sampled_from(["chunked", "lanes", "gluon"])


def gluon_backward_tiles(block_t, block, forward="chunked", **more):
    """The Gluon backward in blocks of (channels, warps) ``block`` after the ``forward`` named: the chunked one, or
    the lanes forward in Triton's layouts or in Gluon in the same blocks."""
    block_d, warps = block
    lanes = dict(one_pass_forward=True, one_pass_lanes=True, one_pass_lanes_block_d=block_d,
                 one_pass_lanes_warps=warps, one_pass_gluon=forward == "gluon")
    return dict(block_t=block_t, one_pass_lanes_backward=True, one_pass_gluon_backward=True,
                one_pass_lanes_backward_block_d=block_d, one_pass_lanes_backward_warps=warps,
                **(lanes if forward != "chunked" else {}), **more)


@settings(max_examples=5)
# Always: two cross-scale directions reversed and not, a partial channel block, several tiles; 16-step tiles after
# the Gluon forward; and four directions (one launch each, du added in order).
@example(specs=[(4, False, False), (8, True, True)], cross_scale="aligned", batch=2, height=6, width=5, dim=7,
         weighted=True, dtype=torch.float32, block_t=4, block=(8, 1), forward="chunked", rank=6)
@example(specs=[(8, False, False), (8, True, True)], cross_scale=None, batch=1, height=9, width=7, dim=17,
         weighted=True, dtype=torch.float32, block_t=16, block=(16, 2), forward="gluon", rank=6)
@example(specs=[(4, False, False), (8, True, True), (4, True, False), (8, False, True)], cross_scale="sequential",
         batch=1, height=5, width=5, dim=7, weighted=False, dtype=torch.bfloat16, block_t=4, block=(8, 1),
         forward="lanes", rank=3)
@given(specs=st.lists(direction, min_size=1, max_size=4).filter(lambda s: len(s) != 3),
       cross_scale=st.sampled_from([None, None, "aligned", "sequential"]), batch=st.integers(1, 2),
       height=st.integers(1, 9), width=st.integers(1, 9), dim=st.sampled_from([1, 7, 17]), weighted=st.booleans(),
       dtype=dtypes, block_t=steps, block=blocks, forward=forwards, rank=st.sampled_from([3, 6]))
def test_layer_gradients_match_torch_path(specs, cross_scale, batch, height, width, dim, weighted, dtype, block_t,
                                          block, forward, rank):
    # rank 3 and 6: the ranks a thread holds padded to 4 and 8, the padding masked.
    check_layer(gluon_backward_tiles(block_t, block, forward), specs, cross_scale, batch, height, width, dim,
                weighted, True, dtype, rank)


@settings(max_examples=5)
@example(opt=dict(batch=2, dim=5, length=37, n_state=4, groups=2, D=True, z=True, bias=True, grad=True,
                  dtype=torch.float32, block_t=4), block=(8, 1))
@given(opt=st.fixed_dictionaries(dict(
    batch=st.integers(1, 2), dim=st.sampled_from([1, 5, 12]), length=st.integers(1, 150),
    n_state=st.sampled_from([1, 4]), groups=st.sampled_from([0, 1, 2]), D=st.booleans(), z=st.booleans(),
    bias=st.booleans(), grad=st.just(True), dtype=dtypes, block_t=steps)),
    block=st.sampled_from([(32, 1), (64, 2)]))  # blocks the layouts fill with 1 state and with 4
def test_drop_in_gradients_match_reference(opt, block):
    # Grouped B and C: a block never straddles two groups (channels past a group's end are masked).
    check_drop_in(gluon_backward_tiles(opt["block_t"], block), opt)


@pytest.mark.parametrize("K", [2, 4])
def test_the_gluon_kernel_takes_the_lanes_kernels_launches(monkeypatch, K):
    # One program per (batch, direction, block of 8 channels), as one_pass_lanes_backward_kernel: two directions in
    # one launch adding du with atomics, four in a launch each adding du by a read-add-write in order.
    seen = _layer_backward_launches(monkeypatch, K, gluon_backward_tiles(4, (8, 1)))
    if K == 2:
        assert seen == [("one_pass_gluon_backward_kernel", (4, 2), False)]
    else:
        assert seen == [("one_pass_gluon_backward_kernel", (2, 2), True)] * 4


def test_two_directions_add_du_exactly_as_one_at_a_time():
    # The float32 du of two directions' atomics is, bit for bit, what one direction per launch gives.
    together, apart = du_together_and_apart(gluon_backward_tiles(4, (8, 1)))
    assert torch.equal(together, apart)


@pytest.mark.parametrize("K,cross_scale,dtype", [(2, None, torch.float32), (2, None, torch.bfloat16),
                                                 (2, "aligned", torch.float32)])
def test_gated_layer_gradients_match_torch_path(monkeypatch, K, cross_scale, dtype):
    # The gated layer (every RLMB's): each tile's recomputed outputs give the gate's LayerNorm gradient beside the
    # output's; a 16-bit layer takes direction 0's outputs rounded as its forward stored them (ROUND_FIRST).
    seen = check_gated_layer(monkeypatch, gluon_backward_tiles(4, (8, 1)), K, cross_scale, dtype)
    assert seen == [("one_pass_gluon_backward_kernel", True, dtype != torch.float32)]


def test_layouts_that_cannot_hold_the_block_are_refused_with_what_to_choose():
    tile, rows, cols = backward_layouts(8, 4, 16, 16)  # the configuration the lease times first
    assert list(cols.size_per_thread) == [1, 1, 8] and list(cols.threads_per_warp) == [16, 2, 1]
    with pytest.raises(ValueError, match="8 channels of 4 states over 4 warps: choose a multiple of 32 channels"):
        backward_layouts(8, 4, 4, 16)
    with pytest.raises(ValueError, match="one_pass_gluon_backward=True.*only with one_pass_lanes_backward=True: "
                                         "set both"):
        TileConfig(one_pass_gluon_backward=True)
    # At run time, before any kernel: the layer's 4 states in 8 channels over 4 warps.
    inp = make_layer_inputs(1, 4, 4, 8, 1, n_state=4, dtype=torch.float32)
    inp = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
    with tile_config(**gluon_backward_tiles(16, (8, 4))), pytest.raises(ValueError, match="choose a multiple of 32"):
        directional_scan(**inp, directions=(ScanDirection(4, False, False),), height=4, width=4,
                         backend="triton").sum().backward()
