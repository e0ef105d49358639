"""The backward in one pass with the states across the lanes (``TileConfig.one_pass_lanes_backward``,
``scan2d.triton.one_pass_lanes_backward``) against the float64 PyTorch path: every gradient of the layer and of the
drop-in scan, after either training forward (the chunked one or the one pass with the states across the lanes:
both store the entry state of each block_t-step chunk, which is all the backward reads), over random sizes, windows,
orders, reversals, cross-scale modes, K = 1, 2, 4, batch 1-2, channel counts that are not a multiple of the block,
one tile or several, 1-4 warps, float32, bfloat16 and float16, and the gated layer's; which kernels run, and where
the chunked backward stays."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from directional_cases import gate_on, make_gate, make_layer_inputs
from gradients import assert_gradients_close
from launch_spy import spy_on_launches
from scan2d import ScanDirection, directional_scan
from scan2d._backend import deterministic_algorithms
from scan2d.triton.tiles import TileConfig, tile_config
from test_triton_directional import DEVICE, TOL, check_against_torch_path, direction
from test_triton_one_pass import check_drop_in, check_layer

dtypes = st.sampled_from([torch.float32, torch.float32, torch.bfloat16, torch.float16])
# (steps per tile, channels per program, warps, the forward's layout): 4-step tiles give several tiles even on the
# smallest maps.
layouts = st.tuples(st.sampled_from([4, 16]), st.sampled_from([1, 2, 8]), st.sampled_from([1, 2, 4]),
                    st.sampled_from(["chunked", "lanes"]))
BACKWARD_KERNELS = ("chunk_adjoint_kernel", "chunk_carry_kernel", "backward_grads_kernel",
                    "one_pass_lanes_backward_kernel", "one_pass_gluon_backward_kernel")


def lanes_backward_tiles(layout):
    block_t, block_d, warps, forward = layout
    lanes_forward = dict(one_pass_forward=True, one_pass_lanes=True) if forward == "lanes" else {}
    return dict(block_t=block_t, one_pass_lanes_backward=True, one_pass_lanes_backward_block_d=block_d,
                one_pass_lanes_backward_warps=warps, **lanes_forward)


@settings(max_examples=1)  # 5 before 2026-12-06: CI's 20 minutes; the Gluon kernel's tests run the same cases
# Always: two cross-scale directions reversed and not, a partial channel block, several tiles; 16-step tiles; and four
# directions (one launch each, du added in order).
@example(specs=[(4, False, False), (8, True, True)], cross_scale="aligned", batch=2, height=6, width=5, dim=7,
         weighted=True, dtype=torch.float32, layout=(4, 4, 2, "chunked"), rank=6)
@example(specs=[(8, False, False), (8, True, True)], cross_scale=None, batch=1, height=9, width=7, dim=17,
         weighted=True, dtype=torch.float32, layout=(16, 8, 4, "lanes"), rank=6)  # 16 steps: the dt dot (DT_DOT)
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


@settings(max_examples=3)  # 8 before 2026-12-06 (above)
@example(dict(batch=2, dim=5, length=37, n_state=4, groups=2, D=True, z=True, bias=True, grad=True,
              dtype=torch.float32, layout=(4, 4, 2, "chunked")))
@given(st.fixed_dictionaries(dict(
    batch=st.integers(1, 2), dim=st.sampled_from([1, 5, 12]), length=st.integers(1, 150),
    n_state=st.sampled_from([1, 4]), groups=st.sampled_from([0, 1, 2]), D=st.booleans(), z=st.booleans(),
    bias=st.booleans(), grad=st.just(True), dtype=dtypes, layout=layouts)))
def test_drop_in_gradients_match_reference(opt):
    check_drop_in(lanes_backward_tiles(opt["layout"]), opt)


def _layer_backward_launches(monkeypatch, K, tiles, gate=False):
    """The backward kernels a training step of a 2-batch, 11-channel layer of K directions on a 5 x 4 map launches
    under ``tiles``: (name, grid, DU_OWNED)."""
    seen = spy_on_launches(monkeypatch, BACKWARD_KERNELS,
                           record=lambda name, grid, meta: (name, grid, meta.get("DU_OWNED")))
    directions = (ScanDirection(4, False, False), ScanDirection(8, True, True), ScanDirection(4, True, False),
                  ScanDirection(8, False, True))[:K]
    inp = make_layer_inputs(2, 5, 4, 11, K, n_state=4, dtype=torch.float32)
    leaves = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
    with tile_config(**tiles):
        out = directional_scan(**leaves, directions=directions, height=5, width=4, backend="triton",
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
    # one_pass_lanes_backward_maxnreg: case (a)'s 720 programs at 3 per SM of an H200 instead of 2 (bench/JOURNAL.md).
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
    together, apart = du_together_and_apart(lanes_backward_tiles((4, 4, 2, "chunked")))
    assert torch.equal(together, apart)


def du_together_and_apart(tiles):
    """u's gradient of a two-direction float32 layer under ``tiles``: (both directions in one backward, the same
    layer as two one-direction layers, whose du is then added one direction at a time, in order)."""
    directions = (ScanDirection(4, False, False), ScanDirection(8, True, True))
    inp = make_layer_inputs(2, 5, 4, 11, 2, n_state=4, dtype=torch.float32)
    du = []
    for K in (2, 1):
        leaves = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
        with tile_config(**tiles):
            if K == 2:
                out = directional_scan(**leaves, directions=directions, height=5, width=4, backend="triton")
            else:
                out = sum(directional_scan(**_one_direction(leaves, k), directions=directions[k:k + 1], height=5,
                                           width=4, backend="triton") for k in range(2))
            out.sum().backward()
        du.append(leaves["u"].grad)
    return du


def _one_direction(layer_inputs, k):
    """The layer's inputs of direction k alone: its parameters' rows and its columns of xdbl."""
    sliced = {name: layer_inputs[name][k:k + 1] for name in ("dt_weight", "dt_bias", "A", "D")}
    return {**layer_inputs, **sliced, "xdbl": layer_inputs["xdbl"][:, :, k:k + 1]}


def test_deterministic_mode_keeps_the_chunked_backward(monkeypatch):
    # Deterministic mode adds no sums over channel blocks with atomics: chunk_adjoint, the reversed carry and
    # backward_grads (with its per-block copies of dx) stay.
    with deterministic_algorithms(True):
        seen = _layer_backward_launches(monkeypatch, 2, lanes_backward_tiles((4, 4, 2, "chunked")))
    names = {name for name, _, _ in seen}
    assert "one_pass_lanes_backward_kernel" not in names
    assert {"chunk_adjoint_kernel", "chunk_carry_kernel", "backward_grads_kernel"} <= names


@pytest.mark.parametrize("K,cross_scale,dtype", [(2, None, torch.bfloat16), (1, None, torch.float32),
                                                 (2, "aligned", torch.float32)])
def test_gated_layer_gradients_match_torch_path(monkeypatch, K, cross_scale, dtype):
    # The gated layer (every RLMB's): each tile's recomputed outputs give the gate's LayerNorm gradient beside the
    # output's, in the one-pass backward too.  A 16-bit layer with two directions takes direction 0's outputs
    # rounded as its forward stored them (ROUND_FIRST).  Against the float64 PyTorch path, every gradient.
    seen = check_gated_layer(monkeypatch, lanes_backward_tiles((4, 4, 2, "chunked")), K, cross_scale, dtype)
    assert seen == [("one_pass_lanes_backward_kernel", True, dtype != torch.float32 and K > 1)]


def check_gated_layer(monkeypatch, tiles, K, cross_scale, dtype) -> list:
    """The gated layer's output and every gradient under ``tiles`` against the float64 PyTorch path (K directions,
    2 x 6 x 5, 7 channels, 4 states, dt rank 6); returns the backward kernels launched, (name, LN_UPSTREAM,
    ROUND_FIRST) each (the carry runs in the forward too, so it is not spied on)."""
    seen = spy_on_launches(monkeypatch, ("chunk_adjoint_kernel", "backward_grads_kernel",
                                         "one_pass_lanes_backward_kernel", "one_pass_gluon_backward_kernel"),
                           record=lambda name, grid, meta: (name, meta.get("LN_UPSTREAM"), meta.get("ROUND_FIRST")))
    directions = tuple(ScanDirection(w, c, r, cross_scale) for w, c, r in ((4, False, False), (8, True, True))[:K])
    inp = make_layer_inputs(2, 6, 5, 7, K, n_state=4, rank=6, cross_scale=cross_scale is not None)
    exact = {k: v.to(dtype).double().requires_grad_() for k, v in inp.items()}
    ref = directional_scan(**exact, directions=directions, height=6, width=5, gate=make_gate(7, K), backend="torch")
    leaves = {k: v.detach().to(DEVICE, dtype).requires_grad_() for k, v in exact.items()}
    w = torch.randn(ref.shape, dtype=torch.float64)
    with tile_config(**tiles):
        out = directional_scan(**leaves, directions=directions, height=6, width=5,
                               gate=gate_on(make_gate(7, K), DEVICE), backend="triton")
        grads = torch.autograd.grad((out * w.to(DEVICE, dtype)).sum(), list(leaves.values()))
    torch.testing.assert_close(out.detach().double().cpu(), ref.detach(), **TOL[dtype])
    names = list(exact)
    assert_gradients_close(names, grads, torch.autograd.grad((ref * w).sum(), [exact[n] for n in names]), TOL[dtype])
    return seen


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gated_16_bit_layer_normalizes_direction_zero_as_it_stored_it(dtype):
    # test_triton_directional's case of the same name (one channel: LayerNorm's rstd = 1 / sqrt(eps) amplifies any
    # rounding of y 316-fold), through the one-pass backward, which takes direction 0's recomputed outputs rounded as
    # the 16-bit gated forward stored them (ROUND_FIRST), as the chunked backward does.  (Here that rounding stays
    # within the tolerances either way: what this case caught was the forward's statistics.)
    with tile_config(one_pass_lanes_backward=True, one_pass_lanes_backward_warps=1):
        check_against_torch_path(batch=1, height=8, width=3, dim=1, specs=[(None, True, True), (None, False, True)],
                                 cross_scale="aligned", gated=True, weighted=False, dtype=dtype, blocks=(16, 16),
                                 deterministic=False, state_loop=True, state_unroll=1, backward_sums={},
                                 forward_block_t=None)


def test_a_channel_block_that_is_no_power_of_two_is_refused():
    with pytest.raises(ValueError, match="one_pass_lanes_backward_block_d = 6.*power of two.*choose e.g. 8 or 16"):
        TileConfig(one_pass_lanes_backward=True, one_pass_lanes_backward_block_d=6)
    with pytest.raises(ValueError, match="one_pass_lanes_backward_warps = 3"):
        TileConfig(one_pass_lanes_backward=True, one_pass_lanes_backward_warps=3)
