"""The one-pass forward with the states across the lanes (``TileConfig.one_pass_lanes``,
``scan2d.triton.one_pass_lanes``) against the float64 PyTorch path: the layer's summed output and the drop-in scan's
output and last state, with and without gradients (a training forward stores the chunk entry states and delta sums
the unchanged backward reads, so every gradient checks them), over random sizes, windows, orders, reversals,
cross-scale modes, K = 1, 2, 4, batch 1-2, channel counts that are not a multiple of the block, one tile or several,
1-4 warps, float32, bfloat16 and float16."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from directional_cases import gate_on, make_gate, make_layer_inputs
from gradients import assert_gradients_close
from launch_spy import spy_on_launches
from scan2d import ScanDirection, directional_scan
from scan2d.triton.tiles import TileConfig, tile_config
from test_triton_directional import DEVICE, TOL, direction
from test_triton_one_pass import check_drop_in, check_layer

dtypes = st.sampled_from([torch.float32, torch.float32, torch.bfloat16, torch.float16])
# (steps per tile, channels per program, warps): 4-step tiles give several tiles even on the smallest maps.
layouts = st.tuples(st.sampled_from([4, 16]), st.sampled_from([1, 2, 8]), st.sampled_from([1, 2, 4]))


def lanes_tiles(layout):
    block_t, block_d, warps = layout
    return dict(one_pass_forward=True, one_pass_lanes=True, block_t=block_t, one_pass_lanes_block_d=block_d,
                one_pass_lanes_warps=warps)


@settings(max_examples=4)  # 8 before 2026-12-06: CI's 20 minutes; the Gluon kernel's tests run the same cases
# Always: two cross-scale directions reversed and not, gradients, a partial channel block, several tiles.
@example(specs=[(4, False, False), (8, True, True)], cross_scale="aligned", batch=1, height=6, width=5, dim=7,
         weighted=True, grad=True, dtype=torch.float32, layout=(4, 8, 4), rank=6)
@given(specs=st.lists(direction, min_size=1, max_size=4).filter(lambda s: len(s) != 3),
       cross_scale=st.sampled_from([None, None, "aligned", "sequential"]), batch=st.integers(1, 2),
       height=st.integers(1, 9), width=st.integers(1, 9), dim=st.sampled_from([1, 7, 17]), weighted=st.booleans(),
       grad=st.booleans(), dtype=dtypes, layout=layouts, rank=st.sampled_from([3, 6]))
def test_layer_forward_and_gradients_match_torch_path(specs, cross_scale, batch, height, width, dim, weighted, grad,
                                                      dtype, layout, rank):
    # rank 6: the dt ranks two per load in blocks of 4, the last block overlapping the one before (plain orders).
    check_layer(lanes_tiles(layout), specs, cross_scale, batch, height, width, dim, weighted, grad, dtype, rank)


@settings(max_examples=4)  # 8 before 2026-12-06 (above)
@given(st.fixed_dictionaries(dict(
    batch=st.integers(1, 2), dim=st.sampled_from([1, 5, 12]), length=st.integers(1, 150),
    n_state=st.sampled_from([1, 4]), groups=st.sampled_from([0, 1, 2]), D=st.booleans(), z=st.booleans(),
    bias=st.booleans(), grad=st.booleans(), dtype=dtypes, layout=layouts)))
def test_drop_in_forward_last_state_and_gradients_match_reference(opt):
    check_drop_in(lanes_tiles(opt["layout"]), opt)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_pass_launches_with_the_states_across_the_lanes(monkeypatch, grad, dtype):
    # Neither the chunked forward's kernels nor the segmented one-pass kernel run: one program per (batch, block of
    # one_pass_lanes_block_d channels) of each direction walks the whole scan in tiles of block_t steps.  The two
    # directions' float32 sum is one launch with atomics (ATOMIC); a bfloat16 one, rounded after each add, one launch
    # per direction in order.  A training forward stores each tile's entry state for the unchanged backward.
    seen = spy_on_launches(monkeypatch, ("chunk_end_state_kernel", "forward_output_kernel", "chunk_carry_kernel",
                                         "one_pass_forward_kernel", "one_pass_lanes_kernel", "chunk_adjoint_kernel"),
                           record=lambda name, grid, meta: (name, grid, meta.get("STORE_STATES"),
                                                            meta.get("BLOCK_T"), meta.get("ATOMIC")))
    directions = (ScanDirection(4, False, False), ScanDirection(8, True, True))
    inp = make_layer_inputs(2, 9, 7, 11, 2, n_state=4, dtype=torch.float32)
    ref = directional_scan(**{k: v.to(dtype).double() for k, v in inp.items()}, directions=directions, height=9,
                           width=7, backend="torch")
    leaves = {k: v.to(DEVICE, dtype).requires_grad_(grad) for k, v in inp.items()}
    with tile_config(**lanes_tiles((16, 4, 2))), torch.set_grad_enabled(grad):
        out = directional_scan(**leaves, directions=directions, height=9, width=7, backend="triton")
        if grad:
            out.sum().backward()
    torch.testing.assert_close(out.detach().double().cpu(), ref, **TOL[dtype])
    if dtype == torch.float32:  # 11 channels: 3 blocks of 4
        expected = [("one_pass_lanes_kernel", (4, 3), grad, 16, True)]
    else:
        expected = [("one_pass_lanes_kernel", (2, 3), grad, 16, False)] * 2
    if grad:
        expected += [("chunk_adjoint_kernel", seen[-2][1], None, seen[-2][3], None),
                     ("chunk_carry_kernel", seen[-1][1], None, None, None)]
    assert seen == expected


@pytest.mark.parametrize("weighted", [False, True])
def test_two_directions_in_one_launch_sum_exactly_as_one_at_a_time(weighted):
    # 0 + a + b and 0 + b + a are the same float: the atomics of one launch give, bit for bit, what two launches one
    # after another give, whichever direction's program adds first.
    directions = (ScanDirection(4, False, False), ScanDirection(8, True, True))
    inp = {k: v.to(DEVICE) for k, v in make_layer_inputs(2, 9, 7, 11, 2, n_state=4, dtype=torch.float32).items()}
    weights = torch.rand(2, 2, 11, device=DEVICE) + 0.5 if weighted else None
    outs = []
    for together in (True, False):
        with tile_config(**lanes_tiles((16, 4, 2)), one_pass_lanes_together=together), torch.no_grad():
            outs.append(directional_scan(**inp, directions=directions, height=9, width=7, direction_weights=weights,
                                         backend="triton"))
    assert torch.equal(outs[0], outs[1])


def test_a_channel_block_that_is_no_power_of_two_is_refused():
    # The channels are a tile axis (tl.arange): the error says which setting and what to choose instead, when the
    # configuration is made, before any kernel runs.  So does the layout asked for without the one pass it lays out.
    with pytest.raises(ValueError, match="one_pass_lanes_block_d = 6.*power of two.*choose e.g. 8 or 16"):
        with tile_config(**lanes_tiles((16, 6, 4))):
            pass
    with pytest.raises(ValueError, match="one_pass_lanes_warps = 3"):
        TileConfig(one_pass_forward=True, one_pass_lanes=True, one_pass_lanes_warps=3)
    with pytest.raises(ValueError, match="one_pass_lanes=True.*only with one_pass_forward=True: set both"):
        TileConfig(one_pass_lanes=True)


@pytest.mark.parametrize("lanes", [False, True], ids=["segments", "lanes"])
def test_the_gated_layer_keeps_the_chunked_kernels(monkeypatch, lanes):
    # The channel gate's passes (LayerNorm statistics over all channels of a token, pooling over all tokens) need
    # the chunked kernels: one_pass_forward, either layout, leaves the gated layer's forward and backward to them.
    seen = spy_on_launches(monkeypatch, ("one_pass_forward_kernel", "one_pass_lanes_kernel", "chunk_end_state_kernel"),
                           record=lambda name, grid, meta: name)
    directions = (ScanDirection(4, False, False), ScanDirection(4, True, True))
    inp = make_layer_inputs(1, 5, 6, 7, 2, n_state=4, dtype=torch.float32)
    exact = {k: v.double().requires_grad_() for k, v in inp.items()}
    ref = directional_scan(**exact, directions=directions, height=5, width=6, gate=make_gate(7, 2), backend="torch")
    leaves = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
    tiles = lanes_tiles((4, 8, 4)) if lanes else dict(one_pass_forward=True, block_t=4)
    with tile_config(**tiles):
        out = directional_scan(**leaves, directions=directions, height=5, width=6,
                               gate=gate_on(make_gate(7, 2), DEVICE), backend="triton")
        grads = torch.autograd.grad(out.sum(), list(leaves.values()))
    assert seen == ["chunk_end_state_kernel"]  # one set of chunk entry states for every pass of the gate
    torch.testing.assert_close(out.detach().double().cpu(), ref.detach(), **TOL[torch.float32])
    assert_gradients_close(list(exact), grads, torch.autograd.grad(ref.sum(), list(exact.values())), TOL[torch.float32])
