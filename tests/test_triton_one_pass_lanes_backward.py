"""The backward in one pass with the states across the lanes (``TileConfig.one_pass_lanes_backward``,
``scan2d.triton.one_pass_lanes_backward``) against the float64 PyTorch path: every gradient of the layer and of the
drop-in scan, after either training forward (the chunked one or the one pass with the states across the lanes:
both store the entry state of each block_t-step chunk, which is all the backward reads), over random sizes, windows,
orders, reversals, cross-scale modes, K = 1, 2, 4, batch 1-2, channel counts that are not a multiple of the block,
one tile or several, 1-4 warps, float32, bfloat16 and float16; which kernels run, and where the chunked backward
stays."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from directional_cases import gate_on, make_gate, make_layer_inputs
from launch_spy import spy_on_launches
from scan2d import ScanDirection, directional_scan
from scan2d._backend import deterministic_algorithms
from scan2d.triton.tiles import TileConfig, tile_config
from test_triton_directional import DEVICE, direction
from test_triton_one_pass import check_drop_in, check_layer

dtypes = st.sampled_from([torch.float32, torch.float32, torch.bfloat16, torch.float16])
# (steps per tile, channels per program, warps, the forward's layout): 4-step tiles give several tiles even on the
# smallest maps.
layouts = st.tuples(st.sampled_from([4, 16]), st.sampled_from([1, 2, 8]), st.sampled_from([1, 2, 4]),
                    st.sampled_from(["chunked", "lanes"]))
BACKWARD_KERNELS = ("chunk_adjoint_kernel", "chunk_carry_kernel", "backward_grads_kernel",
                    "one_pass_lanes_backward_kernel")


def lanes_backward_tiles(layout):
    block_t, block_d, warps, forward = layout
    lanes_forward = dict(one_pass_forward=True, one_pass_lanes=True) if forward == "lanes" else {}
    return dict(block_t=block_t, one_pass_lanes_backward=True, one_pass_lanes_backward_block_d=block_d,
                one_pass_lanes_backward_warps=warps, **lanes_forward)


@settings(max_examples=5)
# Always: two cross-scale directions reversed and not, a partial channel block, several tiles; and four directions
# (one launch each, du added in order).
@example(specs=[(4, False, False), (8, True, True)], cross_scale="aligned", batch=2, height=6, width=5, dim=7,
         weighted=True, dtype=torch.float32, layout=(4, 4, 2, "chunked"), rank=6)
@example(specs=[(4, False, False), (8, True, True), (4, True, False), (8, False, True)], cross_scale="sequential",
         batch=1, height=5, width=5, dim=7, weighted=False, dtype=torch.bfloat16, layout=(4, 8, 4, "lanes"), rank=3)
@given(specs=st.lists(direction, min_size=1, max_size=4).filter(lambda s: len(s) != 3),
       cross_scale=st.sampled_from([None, None, "aligned", "sequential"]), batch=st.integers(1, 2),
       height=st.integers(1, 9), width=st.integers(1, 9), dim=st.sampled_from([1, 7, 17]), weighted=st.booleans(),
       dtype=dtypes, layout=layouts, rank=st.sampled_from([3, 6]))
def test_layer_gradients_match_torch_path(specs, cross_scale, batch, height, width, dim, weighted, dtype, layout,
                                          rank):
    # rank 6: the dt ranks two per load in blocks of 4, the last block overlapping the one before (plain orders).
    check_layer(lanes_backward_tiles(layout), specs, cross_scale, batch, height, width, dim, weighted, True, dtype,
                rank)


@settings(max_examples=8)
@example(dict(batch=2, dim=5, length=37, n_state=4, groups=2, D=True, z=True, bias=True, grad=True,
              dtype=torch.float32, layout=(4, 4, 2, "chunked")))
@given(st.fixed_dictionaries(dict(
    batch=st.integers(1, 2), dim=st.sampled_from([1, 5, 12]), length=st.integers(1, 150),
    n_state=st.sampled_from([1, 4]), groups=st.sampled_from([0, 1, 2]), D=st.booleans(), z=st.booleans(),
    bias=st.booleans(), grad=st.just(True), dtype=dtypes, layout=layouts)))
def test_drop_in_gradients_match_reference(opt):
    check_drop_in(lanes_backward_tiles(opt["layout"]), opt)


def _layer_backward_launches(monkeypatch, K, tiles, gate=False):
    """The backward kernels a training step of a 2-batch, 11-channel layer of K directions launches under
    ``tiles``: (name, grid, DU_OWNED)."""
    seen = spy_on_launches(monkeypatch, BACKWARD_KERNELS,
                           record=lambda name, grid, meta: (name, grid, meta.get("DU_OWNED")))
    directions = (ScanDirection(4, False, False), ScanDirection(8, True, True), ScanDirection(4, True, False),
                  ScanDirection(8, False, True))[:K]
    inp = make_layer_inputs(2, 9, 7, 11, K, n_state=4, dtype=torch.float32)
    leaves = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
    with tile_config(**tiles):
        out = directional_scan(**leaves, directions=directions, height=9, width=7, backend="triton",
                               gate=gate_on(make_gate(11, K), DEVICE) if gate else None)
        seen.clear()  # the chunked forward's carry
        out.sum().backward()
    return seen


@pytest.mark.parametrize("K", [2, 4])
def test_one_pass_backward_replaces_the_three_chunked_passes(monkeypatch, K):
    # No chunk_adjoint, reversed carry or backward_grads: one program per (batch, direction, block of 4 channels).
    # Two directions share one launch, adding du with atomics (0 + a + b = 0 + b + a); four take one launch each,
    # adding du by a read-add-write in order.
    seen = _layer_backward_launches(monkeypatch, K, lanes_backward_tiles((4, 4, 2, "chunked")))
    if K == 2:
        assert seen == [("one_pass_lanes_backward_kernel", (4, 3), False)]
    else:
        assert seen == [("one_pass_lanes_backward_kernel", (2, 3), True)] * 4


@pytest.mark.parametrize("cap", [None, 168])
def test_the_register_cap_reaches_the_launch(monkeypatch, cap):
    # one_pass_lanes_backward_maxnreg: case (a)'s 720 programs at 3 per SM of an H200 instead of 2 (bench/README.md).
    seen = spy_on_launches(monkeypatch, ("one_pass_lanes_backward_kernel",),
                           record=lambda name, grid, meta: ("maxnreg" in meta, meta.get("maxnreg")))
    inp = make_layer_inputs(1, 5, 6, 7, 1, n_state=4, dtype=torch.float32)
    leaves = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
    with tile_config(**lanes_backward_tiles((4, 4, 2, "chunked")), one_pass_lanes_backward_maxnreg=cap):
        directional_scan(**leaves, directions=(ScanDirection(4, False, False),), height=5, width=6,
                         backend="triton").sum().backward()
    assert seen == [(cap is not None, cap)]


def test_two_directions_add_du_exactly_as_one_at_a_time():
    # The float32 du of two directions' atomics is, bit for bit, what one direction per launch gives.
    directions = (ScanDirection(4, False, False), ScanDirection(8, True, True))
    inp = make_layer_inputs(2, 9, 7, 11, 2, n_state=4, dtype=torch.float32)
    du = []
    for K in (2, 1):
        leaves = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
        with tile_config(**lanes_backward_tiles((4, 4, 2, "chunked"))):
            if K == 2:
                out = directional_scan(**leaves, directions=directions, height=9, width=7, backend="triton")
            else:  # the same layer as two one-direction layers: du is then one direction at a time, added in order
                out = sum(directional_scan(**_one_direction(leaves, k), directions=directions[k:k + 1], height=9,
                                           width=7, backend="triton") for k in range(2))
            out.sum().backward()
        du.append(leaves["u"].grad)
    assert torch.equal(du[0], du[1])


def _one_direction(layer_inputs, k):
    """The layer's inputs of direction k alone: its parameters' rows and its columns of xdbl."""
    sliced = {name: layer_inputs[name][k:k + 1] for name in ("dt_weight", "dt_bias", "A", "D")}
    return {**layer_inputs, **sliced, "xdbl": layer_inputs["xdbl"][:, :, k:k + 1]}


@pytest.mark.parametrize("keep", ["gate", "deterministic"])
def test_the_gated_layer_and_deterministic_mode_keep_the_chunked_backward(monkeypatch, keep):
    # The gate's LayerNorm upstream needs every channel's outputs of a token; deterministic mode adds no sums over
    # channel blocks with atomics.  Both keep chunk_adjoint, the reversed carry and backward_grads.
    tiles = lanes_backward_tiles((4, 4, 2, "chunked"))
    if keep == "gate":
        seen = _layer_backward_launches(monkeypatch, 2, tiles, gate=True)
    else:
        with deterministic_algorithms(True):
            seen = _layer_backward_launches(monkeypatch, 2, tiles)
    names = {name for name, _, _ in seen}
    assert "one_pass_lanes_backward_kernel" not in names
    assert {"chunk_adjoint_kernel", "chunk_carry_kernel", "backward_grads_kernel"} <= names


def test_a_channel_block_that_is_no_power_of_two_is_refused():
    with pytest.raises(ValueError, match="one_pass_lanes_backward_block_d = 6.*power of two.*choose e.g. 8 or 16"):
        TileConfig(one_pass_lanes_backward=True, one_pass_lanes_backward_block_d=6)
    with pytest.raises(ValueError, match="one_pass_lanes_backward_warps = 3"):
        TileConfig(one_pass_lanes_backward=True, one_pass_lanes_backward_warps=3)
