"""Shorter tiles in the state-loop forward kernels (``TileConfig.forward_block_t``): a chunk of block_t x
tiles-per-chunk steps is scanned in tiles of fewer steps, the states carried between them in registers.  The
chunks, the stored states and the backward's kernels stay as they were, so the results are those of block_t's tiles
up to the rounding of each chunk's delta sum (summed per tile, then over the tiles): the same within a few float32
ulps, outputs and every gradient."""

import pytest
import torch

from directional_cases import make_layer_inputs, run_triton_layer
from launch_spy import STATE_LOOP_KERNELS, spy_on_launches
from scan2d import ScanDirection, selective_scan
from scan2d.triton.tiles import TileConfig, tile_config
from test_selective_scan import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FORWARD_KERNELS = ("chunk_end_state_kernel", "forward_output_kernel")
# Two runs that differ only in how the chunks' delta sums round: a few float32 ulps of the values' scale.
SAME = dict(rtol=1e-5, atol=1e-5)


def _tiles_seen(monkeypatch) -> list:
    """(kernel, BLOCK_T, TILES) of every launch of a state-loop kernel (TILES None in the backward's)."""
    return spy_on_launches(monkeypatch, STATE_LOOP_KERNELS,
                           record=lambda name, grid, meta: (name, meta["BLOCK_T"], meta.get("TILES")))


def _assert_close(shorter, plain):
    assert len(shorter) == len(plain)
    for a, b in zip(shorter, plain):
        scale = b.abs().max().clamp_min(1)
        torch.testing.assert_close(a / scale, b / scale, **SAME)


@pytest.mark.parametrize("cross_scale,grad", [(None, True), ("aligned", True), ("sequential", True), (None, False),
                                              ("aligned", False)])
def test_layer_forward_in_shorter_tiles_matches_block_t_tiles(monkeypatch, cross_scale, grad):
    # Training: 16-step chunks (block_t) scanned in 4 tiles of 4 steps by the forward kernels, while the backward's
    # kernels keep 16-step tiles.  Without gradients: 32-step chunks (inference_tiles=2) of 8 such tiles.  A 7x6
    # map in windows of 4: tiles that end inside windows and at the map's padded edges.
    seen = _tiles_seen(monkeypatch)
    directions = (ScanDirection(4, False, False, cross_scale), ScanDirection(4, True, True, cross_scale))
    inp = make_layer_inputs(1, 7, 6, 11, 2, n_state=4, cross_scale=cross_scale is not None, dtype=torch.float32)
    common = dict(block_t=16, block_d=8, forward_block_d=8, inference_tiles=2, inference_programs_per_sm=0)
    shorter = run_triton_layer(inp, directions, 7, 6, grad, forward_block_t=4, **common)
    tiles = 1 if grad else 2
    assert {(name, bt, t) for name, bt, t in seen if name in FORWARD_KERNELS} == {
        (name, 4, 4 * tiles) for name in FORWARD_KERNELS}, seen
    assert all(bt == 16 for name, bt, _ in seen if name not in FORWARD_KERNELS), seen
    seen.clear()
    plain = run_triton_layer(inp, directions, 7, 6, grad, forward_block_t=None, **common)
    assert {(name, bt, t) for name, bt, t in seen if name in FORWARD_KERNELS} == {
        (name, 16, tiles) for name in FORWARD_KERNELS}, seen
    _assert_close(shorter, plain)


@pytest.mark.parametrize("deterministic", [False, True])
def test_gated_layer_forward_in_shorter_tiles_matches_block_t_tiles(monkeypatch, deterministic):
    # The channel gate's passes (statistics, pooling, the weighted sum) run the output kernel too; in deterministic
    # mode its statistics pass keeps the (steps, channels, states) tiles, which take block_t.
    from directional_cases import make_gate
    from scan2d import directional_scan
    from scan2d._backend import deterministic_algorithms

    seen = _tiles_seen(monkeypatch)
    directions = (ScanDirection(4, False, False, "aligned"), ScanDirection(4, True, True, "aligned"))
    inp = make_layer_inputs(1, 5, 6, 9, 2, n_state=4, cross_scale=True, dtype=torch.float32)
    gate = make_gate(9, 2, dtype=torch.float32, device=DEVICE)

    def run(**tiles):
        leaves = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
        with tile_config(block_t=8, block_d=8, forward_block_d=8, **tiles), deterministic_algorithms(deterministic):
            out = directional_scan(**leaves, directions=directions, height=5, width=6, gate=gate, backend="triton")
            grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out).to(DEVICE)).sum(),
                                        list(leaves.values()))
        return [out, *grads]

    shorter = run(forward_block_t=4)
    assert {bt for name, bt, _ in seen if name == "chunk_end_state_kernel"} == {4}, seen
    assert {bt for name, bt, _ in seen if name == "forward_output_kernel"} == ({4, 8} if deterministic else {4}), seen
    _assert_close(shorter, run(forward_block_t=None))


def test_drop_in_takes_shorter_forward_tiles_without_gradients(monkeypatch):
    # The drop-in's forward without gradients scans its chunks in shorter tiles; its training forward keeps block_t
    # (ScanOperands._forward_tile).  32 steps: 4-step vectors (ROWWISE 2) in 16- and 4-step tiles, none in 2-step
    # ones.
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
        shorter = run(forward_block_t=steps)
        forward = {(bt, tiles, rowwise) for name, bt, tiles, rowwise in seen if name in FORWARD_KERNELS}
        # Without gradients 32-step chunks (2 tiles of block_t) in tiles of `steps`; with them 16-step ones, in
        # vectors either way.
        assert forward == {(steps, 32 // steps, vectors), (16, 1, 2)}, seen
        _assert_close(shorter, run(forward_block_t=None))


@pytest.mark.parametrize("steps", [0, 3, 12])
def test_forward_tiles_that_are_not_a_power_of_two_are_refused(steps):
    inp = make_layer_inputs(1, 4, 4, 3, 1, n_state=4, cross_scale=False, dtype=torch.float32)
    with pytest.raises(ValueError, match=f"forward_block_t = {steps}: .*power of two"):
        run_triton_layer(inp, (ScanDirection(4, False, False),), 4, 4, False, forward_block_t=steps)


def test_forward_tiles_longer_than_block_t_take_block_t():
    from scan2d.selective_scan.triton_op import _operands

    inp = make_inputs(1, 4, 32, 4, 0)
    ops = _operands(**inp, delta_softplus=True, tiles=TileConfig(block_t=4, forward_block_t=8), for_backward=False)
    assert ops.forward_tile_steps == 4 and ops.forward_tiles(True) == dict(BLOCK_T=4, TILES=ops.tiles_per_chunk)
