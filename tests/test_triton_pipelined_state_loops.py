"""Software-pipelined state loops (``TileConfig.state_loop_stages``) change where a trip's loads land, not what is
computed: the layer's and the drop-in scan's outputs and every gradient are bit for bit those of the plain loops.
Under the interpreter this checks that the stage count reaches every state-loop launch and runs; on a GPU it checks
the pipelined builds themselves (the compile test checks that they copy through shared memory)."""

import pytest
import torch

from directional_cases import make_layer_inputs, run_triton_layer
from launch_spy import STATE_LOOP_KERNELS, spy_on_launches
from scan2d import ScanDirection, selective_scan
from scan2d.triton.tiles import tile_config
from test_selective_scan import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("cross_scale,dtype,tiles", [
    (None, torch.float32, {}),                          # the training layer: 4 states per trip
    ("aligned", torch.bfloat16, dict(state_unroll=1)),  # a trip per state, low-resolution rows
])
def test_pipelined_layer_gives_bit_identical_results(monkeypatch, cross_scale, dtype, tiles):
    seen = spy_on_launches(monkeypatch, STATE_LOOP_KERNELS, record=lambda name, grid, meta: (name, meta["STAGES"]))
    directions = (ScanDirection(4, False, False, cross_scale), ScanDirection(4, True, True, cross_scale))
    inp = {k: v.to(DEVICE, dtype) for k, v in make_layer_inputs(1, 5, 7, 9, 2, n_state=8, rank=4,
                                                                cross_scale=cross_scale is not None).items()}
    staged = run_triton_layer(inp, directions, 5, 7, True, state_loop_stages=2, **tiles)
    assert {name for name, _ in seen} == set(STATE_LOOP_KERNELS) and {s for _, s in seen} == {2}, seen
    seen.clear()
    plain = run_triton_layer(inp, directions, 5, 7, True, **tiles)
    assert {s for _, s in seen} == {1}, seen
    for a, b in zip(staged, plain):
        assert torch.equal(a, b), (a - b).abs().max()


def test_pipelined_drop_in_gives_bit_identical_results(monkeypatch):
    seen = spy_on_launches(monkeypatch, STATE_LOOP_KERNELS, record=lambda name, grid, meta: meta["STAGES"])
    inp = make_inputs(1, 12, 37, 8, 2, dtype=torch.float32)

    def run():
        leaves = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
        out = selective_scan(**leaves, delta_softplus=True, backend="triton")
        out.backward(torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out))
        return [out] + [leaves[k].grad for k in sorted(leaves)]

    with tile_config(state_loop_stages=2):
        staged = run()
    assert seen and set(seen) == {2}, seen
    plain = run()
    for a, b in zip(staged, plain):
        assert torch.equal(a, b), (a - b).abs().max()
