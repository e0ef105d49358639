"""Shorter tiles in the state-loop kernels.  The forward kernels (``TileConfig.forward_block_t``) scan a chunk of
block_t x tiles-per-chunk steps in tiles of fewer steps, the states carried between them in registers;
``chunk_adjoint`` (``TileConfig.adjoint_block_t``) sums its block_t-step chunk tile by tile.  The chunks, the stored
states and the other kernels stay as they were, so the results are those of block_t's tiles up to the rounding of
the sums over a chunk's steps (summed per tile, then over the tiles): the same within a few float32 ulps, outputs
and every gradient."""

import pytest
import torch

from directional_cases import make_layer_inputs, run_triton_layer
from gradients import assert_same_but_rounding
from launch_spy import STATE_LOOP_KERNELS, spy_on_launches
from scan2d import ScanDirection, selective_scan
from scan2d.triton.tiles import TileConfig, tile_config
from test_selective_scan import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FORWARD_KERNELS = ("chunk_end_state_kernel", "forward_output_kernel")
ADJOINT = "chunk_adjoint_kernel"


def _tiles_seen(monkeypatch) -> list:
    """(kernel, BLOCK_T, TILES) of every launch of a state-loop kernel (TILES None in backward_grads')."""
    return spy_on_launches(monkeypatch, STATE_LOOP_KERNELS,
                           record=lambda name, grid, meta: (name, meta["BLOCK_T"], meta.get("TILES")))


@pytest.mark.parametrize("cross_scale,grad", [(None, True), ("aligned", True), ("sequential", True), (None, False),
                                              ("aligned", False)])
def test_layer_forward_in_shorter_tiles_matches_block_t_tiles(monkeypatch, cross_scale, grad):
    # Training: 16-step chunks (block_t) scanned in 4 tiles of 4 steps by the forward kernels, while the backward's
    # kernels keep 16-step tiles.  Without gradients: 32-step chunks (inference_tiles=2) of 8 such tiles.  A 7x6
    # map in windows of 4: tiles that end inside windows and at the map's padded edges.
    seen = _tiles_seen(monkeypatch)
    directions = (ScanDirection(4, False, False, cross_scale), ScanDirection(4, True, True, cross_scale))
    inp = make_layer_inputs(1, 7, 6, 11, 2, n_state=4, cross_scale=cross_scale is not None, dtype=torch.float32)
    common = dict(block_t=16, block_d=8, forward_block_d=8, inference_tiles=2, inference_programs_per_sm=0,
                  adjoint_block_t=None)
    shorter = run_triton_layer(inp, directions, 7, 6, grad, forward_block_t=4, **common)
    tiles = 1 if grad else 2
    assert {(name, bt, t) for name, bt, t in seen if name in FORWARD_KERNELS} == {
        (name, 4, 4 * tiles) for name in FORWARD_KERNELS}, seen
    assert all(bt == 16 for name, bt, _ in seen if name not in FORWARD_KERNELS), seen
    seen.clear()
    plain = run_triton_layer(inp, directions, 7, 6, grad, forward_block_t=None, **common)
    assert {(name, bt, t) for name, bt, t in seen if name in FORWARD_KERNELS} == {
        (name, 16, tiles) for name in FORWARD_KERNELS}, seen
    assert_same_but_rounding(shorter, plain)


@pytest.mark.parametrize("cross_scale", [None, "aligned", "sequential"])
def test_layer_adjoint_in_shorter_tiles_matches_block_t_tiles(monkeypatch, cross_scale):
    # chunk_adjoint sums each 16-step chunk in 4 tiles of 4 steps (delta summed from the chunk's start) while every
    # other kernel keeps its tiles.  The 7x6 map in windows of 4, as above.
    seen = _tiles_seen(monkeypatch)
    directions = (ScanDirection(4, False, False, cross_scale), ScanDirection(4, True, True, cross_scale))
    inp = make_layer_inputs(1, 7, 6, 11, 2, n_state=4, cross_scale=cross_scale is not None, dtype=torch.float32)
    common = dict(block_t=16, block_d=8, forward_block_d=8, forward_block_t=None)
    shorter = run_triton_layer(inp, directions, 7, 6, True, adjoint_block_t=4, **common)
    assert {(bt, t) for name, bt, t in seen if name == ADJOINT} == {(4, 4)}, seen
    assert all(bt == 16 for name, bt, _ in seen if name != ADJOINT), seen
    seen.clear()
    plain = run_triton_layer(inp, directions, 7, 6, True, adjoint_block_t=None, **common)
    assert {(bt, t) for name, bt, t in seen if name == ADJOINT} == {(16, 1)}, seen
    assert_same_but_rounding(shorter, plain)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("shortened", ["forward_block_t", "adjoint_block_t"])
def test_gated_layer_in_shorter_tiles_matches_block_t_tiles(monkeypatch, shortened, deterministic):
    # The channel gate's passes (statistics, pooling, the weighted sum) run the output kernel too; in deterministic
    # mode its statistics pass keeps the (steps, channels, states) tiles, which take block_t.  chunk_adjoint
    # recomputes the chunk's outputs for the LayerNorm gradient, its states carried from tile to tile.
    from directional_cases import make_gate
    from scan2d import directional_scan
    from scan2d._backend import deterministic_algorithms

    seen = _tiles_seen(monkeypatch)
    directions = (ScanDirection(4, False, False, "aligned"), ScanDirection(4, True, True, "aligned"))
    inp = make_layer_inputs(1, 5, 6, 9, 2, n_state=4, cross_scale=True, dtype=torch.float32)
    gate = make_gate(9, 2, dtype=torch.float32, device=DEVICE)

    def run(steps):
        leaves = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
        tiles = dict(block_t=8, block_d=8, forward_block_d=8, forward_block_t=None, adjoint_block_t=None)
        with tile_config(**dict(tiles, **{shortened: steps})), deterministic_algorithms(deterministic):
            out = directional_scan(**leaves, directions=directions, height=5, width=6, gate=gate, backend="triton")
            grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out).to(DEVICE)).sum(),
                                        list(leaves.values()))
        return [out, *grads]

    shorter = run(4)
    if shortened == "forward_block_t":
        assert {bt for name, bt, _ in seen if name == "chunk_end_state_kernel"} == {4}, seen
        assert {bt for name, bt, _ in seen if name == "forward_output_kernel"} == ({4, 8} if deterministic else {4})
        assert {bt for name, bt, _ in seen if name == ADJOINT} == {8}, seen
    else:
        assert {(bt, t) for name, bt, t in seen if name == ADJOINT} == {(4, 2)}, seen
        assert all(bt == 8 for name, bt, _ in seen if name != ADJOINT), seen
    assert_same_but_rounding(shorter, run(None))


def test_drop_in_takes_shorter_forward_tiles_without_gradients(monkeypatch):
    # The drop-in's forward without gradients scans its chunks in shorter tiles; its training forward and its
    # chunk_adjoint keep block_t (ScanOperands._forward_tile, _adjoint_tile).  32 steps: 4-step vectors (ROWWISE 2)
    # in 16- and 4-step tiles, none in 2-step ones.
    seen = spy_on_launches(monkeypatch, STATE_LOOP_KERNELS,
                           record=lambda name, grid, meta: (name, meta["BLOCK_T"], meta.get("TILES"), meta["ROWWISE"]))
    inp = make_inputs(1, 5, 32, 4, 0)

    def run(**tiles):
        low = {k: v.float().to(DEVICE).requires_grad_() for k, v in inp.items()}
        with tile_config(block_t=16, inference_tiles=2, inference_programs_per_sm=0, **tiles):
            with torch.no_grad():
                plain = selective_scan(**low, delta_softplus=True, backend="triton")
            out = selective_scan(**low, delta_softplus=True, backend="triton")
            grads = torch.autograd.grad(out.square().sum(), list(low.values()))
        return [plain, out, *grads]

    for steps, vectors in ((4, 2), (2, False)):
        seen.clear()
        shorter = run(forward_block_t=steps, adjoint_block_t=steps)
        forward = {(bt, tiles, rowwise) for name, bt, tiles, rowwise in seen if name in FORWARD_KERNELS}
        # Without gradients 32-step chunks (2 tiles of block_t) in tiles of `steps`; with them 16-step ones, in
        # vectors either way.
        assert forward == {(steps, 32 // steps, vectors), (16, 1, 2)}, seen
        assert {(bt, tiles) for name, bt, tiles, _ in seen if name == ADJOINT} == {(16, 1)}, seen
        assert_same_but_rounding(shorter, run(forward_block_t=None, adjoint_block_t=None))


@pytest.mark.parametrize("field", ["forward_block_t", "adjoint_block_t"])
@pytest.mark.parametrize("steps", [0, 3, 12])
def test_tiles_that_are_not_a_power_of_two_are_refused(field, steps):
    inp = make_layer_inputs(1, 4, 4, 3, 1, n_state=4, cross_scale=False, dtype=torch.float32)
    with pytest.raises(ValueError, match=f"{field} = {steps}: .*power of two"):
        run_triton_layer(inp, (ScanDirection(4, False, False),), 4, 4, False, **{field: steps})


def test_tiles_longer_than_block_t_take_block_t():
    from scan2d.directional.triton_op import _operands as layer_operands
    from scan2d.selective_scan.triton_op import _operands

    inp = make_inputs(1, 4, 32, 4, 0)
    ops = _operands(**inp, delta_softplus=True, tiles=TileConfig(block_t=4, forward_block_t=8), for_backward=False)
    assert ops.forward_tile_steps == 4 and ops.forward_tiles(True) == dict(BLOCK_T=4, TILES=ops.tiles_per_chunk)
    inp = make_layer_inputs(1, 4, 4, 3, 1, n_state=4, cross_scale=False, dtype=torch.float32)
    ops = layer_operands(**inp, directions=(ScanDirection(4),), height=4, width=4, u_low=None, xdbl_low=None,
                         tiles=TileConfig(block_t=4, adjoint_block_t=8))
    assert ops.adjoint_tile_steps == 4 and ops.adjoint_tiles(True) == dict(BLOCK_T=4, TILES=1)
