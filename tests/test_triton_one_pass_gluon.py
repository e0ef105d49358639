"""The states-across-lanes forward written in Gluon (``TileConfig.one_pass_gluon``,
``scan2d.triton.one_pass_gluon``) against the float64 PyTorch path, as ``test_triton_one_pass_lanes`` checks the
Triton kernel it rewrites: the layer's summed output and the drop-in scan's output and last state, with and without
gradients (a training forward stores the chunk entry states and delta sums the unchanged backward reads), over random
sizes, windows, orders, reversals, cross-scale modes, K = 1, 2, 4, batch 1-2, channel counts that are not a multiple
of the block, one tile or several, 1-4 warps, float32, bfloat16 and float16.  Under the interpreter the kernel runs
with its layouts dropped (``gluon_lang``); the compile tests build it as Gluon for sm_90."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from directional_cases import make_layer_inputs
from launch_spy import spy_on_launches
from scan2d import ScanDirection, directional_scan
from scan2d.triton.one_pass_gluon import fits, lanes_layouts
from scan2d.triton.tiles import TileConfig, tile_config
from test_triton_directional import DEVICE, TOL, direction
from test_triton_one_pass import check_drop_in, check_layer

dtypes = st.sampled_from([torch.float32, torch.float32, torch.bfloat16, torch.float16])
steps = st.sampled_from([4, 16])  # 4-step tiles give several tiles even on the smallest maps
# (channels per program, warps) that Gluon's layout fills with 4 states (8 lanes of channels a warp), and with 1.
blocks = {4: st.sampled_from([(8, 1), (16, 2), (32, 4), (16, 1)]), 1: st.sampled_from([(32, 1), (64, 2)])}


def gluon_tiles(block_t, block, **more):
    block_d, warps = block
    return dict(one_pass_forward=True, one_pass_lanes=True, one_pass_gluon=True, block_t=block_t,
                one_pass_lanes_block_d=block_d, one_pass_lanes_warps=warps, **more)


@settings(max_examples=8)
# Always: two cross-scale directions reversed and not, gradients, a partial channel block, several tiles.
@example(specs=[(4, False, False), (8, True, True)], cross_scale="aligned", batch=1, height=6, width=5, dim=7,
         weighted=True, grad=True, dtype=torch.float32, block_t=4, block=(8, 1), rank=6)
@given(specs=st.lists(direction, min_size=1, max_size=4).filter(lambda s: len(s) != 3),
       cross_scale=st.sampled_from([None, None, "aligned", "sequential"]), batch=st.integers(1, 2),
       height=st.integers(1, 9), width=st.integers(1, 9), dim=st.sampled_from([1, 7, 17]), weighted=st.booleans(),
       grad=st.booleans(), dtype=dtypes, block_t=steps, block=blocks[4], rank=st.sampled_from([3, 6]))
def test_layer_forward_and_gradients_match_torch_path(specs, cross_scale, batch, height, width, dim, weighted, grad,
                                                      dtype, block_t, block, rank):
    # rank 3 and 6: the ranks a thread holds padded to 4 and 8, the padding masked.
    check_layer(gluon_tiles(block_t, block), specs, cross_scale, batch, height, width, dim, weighted, grad, dtype, rank)


@settings(max_examples=8)
@given(st.data(), st.fixed_dictionaries(dict(
    batch=st.integers(1, 2), dim=st.sampled_from([1, 5, 12]), length=st.integers(1, 150),
    n_state=st.sampled_from([1, 4]), groups=st.sampled_from([0, 1, 2]), D=st.booleans(), z=st.booleans(),
    bias=st.booleans(), grad=st.booleans(), dtype=dtypes, block_t=steps)))
def test_drop_in_forward_last_state_and_gradients_match_reference(data, opt):
    # Grouped B and C: a block never straddles two groups (channels past a group's end are masked).
    check_drop_in(gluon_tiles(opt["block_t"], data.draw(blocks[opt["n_state"]])), opt)


@pytest.mark.parametrize("grad", [False, True])
def test_the_gluon_kernel_takes_the_lanes_kernels_launches(monkeypatch, grad):
    # The Gluon kernel replaces one_pass_lanes_kernel launch for launch: one program per (batch, block of channels)
    # of the two directions, summed with atomics in float32; a training forward stores each tile's entry state.
    def record(name, grid, meta):
        return name, grid, meta.get("STORE_STATES"), meta.get("ATOMIC"), meta.get("RP")

    seen = spy_on_launches(monkeypatch, ("one_pass_lanes_kernel", "one_pass_gluon_kernel", "chunk_end_state_kernel"),
                           record=record)
    directions = (ScanDirection(4, False, False), ScanDirection(8, True, True))
    inp = make_layer_inputs(2, 9, 7, 11, 2, n_state=4, rank=5, dtype=torch.float32)
    ref = directional_scan(**{k: v.double() for k, v in inp.items()}, directions=directions, height=9, width=7,
                           backend="torch")
    leaves = {k: v.to(DEVICE).requires_grad_(grad) for k, v in inp.items()}
    with tile_config(**gluon_tiles(16, (8, 1))), torch.set_grad_enabled(grad):
        out = directional_scan(**leaves, directions=directions, height=9, width=7, backend="triton")
    torch.testing.assert_close(out.detach().double().cpu(), ref.detach(), **TOL[torch.float32])
    assert seen == [("one_pass_gluon_kernel", (4, 2), grad, True, 8)]  # 11 channels: 2 blocks of 8; rank 5 in 8


def test_two_directions_in_one_launch_sum_exactly_as_one_at_a_time():
    # 0 + a + b and 0 + b + a are the same float: the atomics of one launch give, bit for bit, what two launches one
    # after another give.
    directions = (ScanDirection(4, False, False), ScanDirection(8, True, True))
    inp = {k: v.to(DEVICE) for k, v in make_layer_inputs(2, 9, 7, 11, 2, n_state=4, dtype=torch.float32).items()}
    weights = torch.rand(2, 2, 11, device=DEVICE) + 0.5
    outs = []
    for together in (True, False):
        with tile_config(**gluon_tiles(16, (8, 1), one_pass_lanes_together=together)), torch.no_grad():
            outs.append(directional_scan(**inp, directions=directions, height=9, width=7, direction_weights=weights,
                                         backend="triton"))
    assert torch.equal(outs[0], outs[1])


def test_layouts_that_cannot_hold_the_block_are_refused_with_what_to_choose():
    # 4 states leave 8 lanes of each warp to channels: 4 warps need 32 channels a program.
    assert fits(32, 4, 4) and fits(8, 4, 16) and not fits(8, 4, 4) and not fits(8, 1, 64) and not fits(12, 1, 4)
    with pytest.raises(ValueError, match="8 channels of 4 states over 4 warps: choose a multiple of 32 channels"):
        lanes_layouts(8, 4, 4, 16)
    with pytest.raises(ValueError, match="choose a state size that divides 32"):
        lanes_layouts(8, 1, 12, 16)
    with pytest.raises(ValueError, match="one_pass_gluon=True.*only with one_pass_forward=True and "
                                         "one_pass_lanes=True: set all three"):
        TileConfig(one_pass_forward=True, one_pass_gluon=True)
    # At run time, before any kernel: the layer's 4 states in 8 channels over 4 warps.
    inp = {k: v.to(DEVICE) for k, v in make_layer_inputs(1, 4, 4, 8, 1, n_state=4, dtype=torch.float32).items()}
    with tile_config(**gluon_tiles(16, (8, 4))), pytest.raises(ValueError, match="choose a multiple of 32"):
        directional_scan(**inp, directions=(ScanDirection(4, False, False),), height=4, width=4, backend="triton")
