"""The kernels under the tile configuration a GPU runs by default (``TileConfig.gpu_defaults``), against the PyTorch
path, on scans long enough to take every path that configuration opens.

CI runs the interpreter's own defaults (32-step tiles, small blocks), and the hypothesis tests draw the GPU's values
of the newer fields one at a time; a GPU is lent to this project only now and then.  Here they run together, at the
GPU's sizes: 16-step chunks summed in 8-step tiles by chunk_adjoint, the backward's sums over steps kept per 4
chunks, the carry over segments of 64 chunks (a scan of more than 64 chunks), inference chunks of 16 tiles, channel
blocks of 16 and 128 (fitted to 32), the model's gated cross-scale layer in float32 and bfloat16, and the drop-in at
a length of whole 16-step tiles (4-step vectors).
"""

import dataclasses

import pytest
import torch

from directional_cases import gate_on, make_gate, make_layer_inputs
from gradients import assert_gradients_close
from launch_spy import STATE_LOOP_KERNELS, spy_on_launches
from scan2d import ScanDirection, directional_scan, selective_scan, selective_scan_ref
from scan2d._backend import triton_interpreted
from scan2d.triton.tiles import TileConfig, tile_config
from test_selective_scan import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# mamba-ssm's float32 output tolerances; bfloat16's as the layer's hypothesis tests take them.
TOL = {torch.float32: dict(rtol=6e-4, atol=2e-3), torch.bfloat16: dict(rtol=3e-2, atol=5e-2)}
GPU = TileConfig.gpu_defaults()
CARRIES = ("segment_summary_kernel", "chunk_carry_kernel")


def _launches(monkeypatch) -> list:
    """(kernel, BLOCK_T, TILES, ROWWISE) of every state-loop launch, (kernel, HAS_ENTRY) of every carry launch."""
    def record(name, grid, meta):
        if name in CARRIES:
            return name, meta.get("HAS_ENTRY", False)
        return name, meta["BLOCK_T"], meta.get("TILES"), meta["ROWWISE"]
    return spy_on_launches(monkeypatch, STATE_LOOP_KERNELS + CARRIES, record)


def gpu_tiles():
    """A ``tile_config`` block that runs the GPU's defaults."""
    return tile_config(**{f.name: getattr(GPU, f.name) for f in dataclasses.fields(GPU) if f.init})


def test_gpu_defaults_hold_the_values_this_file_relies_on():
    # What the cases below rely on: without these values they would not test what they say.
    assert (GPU.block_t, GPU.forward_block_t, GPU.adjoint_block_t, GPU.carry_segment) == (16, None, 8, 64)
    assert (GPU.inference_tiles, GPU.block_d, GPU.forward_block_d, GPU.backward_chunks) == (16, 16, 128, 4)
    # The defaults themselves: the GPU's on a GPU, CI's own under the interpreter.
    assert (TileConfig() == GPU) == (not triton_interpreted())


def _layer(directions, height, width, dim, gated, grad, seed=0, dtype=torch.float32):
    """Output and input gradients of the Triton layer in ``dtype`` under the GPU's tiles against the float64
    PyTorch path's on the same (rounded) inputs; the upstream gradient is a fixed random tensor."""
    cross = directions[0].cross_scale is not None
    inp = make_layer_inputs(1, height, width, dim, len(directions), n_state=4, rank=4, cross_scale=cross, seed=seed)
    exact = {k: v.to(dtype).double().requires_grad_(grad) for k, v in inp.items()}
    gate = make_gate(dim, len(directions)) if gated else None
    with torch.set_grad_enabled(grad):
        ref = directional_scan(**exact, directions=directions, height=height, width=width, gate=gate,
                               backend="torch")
    low = {k: v.detach().to(DEVICE, dtype).requires_grad_(grad) for k, v in exact.items()}
    low_gate = gate_on(gate, DEVICE)
    with gpu_tiles(), torch.set_grad_enabled(grad):
        out = directional_scan(**low, directions=directions, height=height, width=width, gate=low_gate,
                               backend="triton")
    assert out.dtype == dtype
    torch.testing.assert_close(out.double().cpu(), ref.detach(), **TOL[dtype])
    if grad:
        w = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        names = sorted(exact)
        grads = torch.autograd.grad((out * w.to(DEVICE, dtype)).sum(), [low[n] for n in names])
        assert_gradients_close(names, grads, torch.autograd.grad((ref * w).sum(), [exact[n] for n in names]),
                               TOL[dtype])


@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference"])
def test_layer_over_carry_segments_matches_torch_path(monkeypatch, grad):
    # 36x32 = 1,152 steps per direction: 72 training chunks of 16 (segments of 64 and 8 chunks), 5 inference chunks
    # of 256.  Windows of 8 (tiles inside windows), dt rank 4 (x's columns read in pairs), 9 channels.
    seen = _launches(monkeypatch)
    directions = (ScanDirection(8, False, False), ScanDirection(8, True, True))
    _layer(directions, 36, 32, 9, gated=False, grad=grad)
    tiles = {(name, block_t, count) for name, block_t, count, _ in (r for r in seen if r[0] not in CARRIES)}
    if grad:  # chunk_adjoint in 2 tiles of 8 steps, the others in one of 16; segmented carries
        assert tiles == {("chunk_end_state_kernel", 16, 1), ("forward_output_kernel", 16, 1),
                         ("chunk_adjoint_kernel", 8, 2), ("backward_grads_kernel", 16, None)}, seen
        # Forward and backward carry: each segment's summary, the carry over segments, each segment from its entry.
        assert sorted(r for r in seen if r[0] in CARRIES) == sorted(2 * [("segment_summary_kernel", False),
                                                                         ("chunk_carry_kernel", False),
                                                                         ("chunk_carry_kernel", True)]), seen
    else:  # 256-step chunks in 16 tiles of 16; 5 chunks: one carry launch
        assert tiles == {("chunk_end_state_kernel", 16, 16), ("forward_output_kernel", 16, 16)}, seen
        assert [r for r in seen if r[0] in CARRIES] == [("chunk_carry_kernel", False)], seen


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_gated_aligned_cross_scale_layer_matches_torch_path(dtype):
    # The model's cross-scale block: four window-16 aligned directions with its channel gate, 16x16 high-resolution
    # tokens and 8x8 low ones (20 chunks per direction), forward and backward; in bfloat16 as train.bf16 runs it
    # (direction 0's output normalized as the gated forward stored it, rounded).
    directions = tuple(ScanDirection(16, c, r, "aligned") for c, r in ((False, False), (False, True), (True, False),
                                                                       (True, True)))
    _layer(directions, 16, 16, 6, gated=True, grad=True, seed=1, dtype=dtype)


def test_drop_in_over_carry_segments_matches_reference(monkeypatch):
    # 1,040 steps: 65 chunks of 16 (segments of 64 chunks and of 1), read 4 steps per access.
    seen = _launches(monkeypatch)
    inp = make_inputs(1, 3, 1040, 4, 0)
    exact = {k: v.float().double().requires_grad_() for k, v in inp.items()}
    ref = selective_scan_ref(**exact, delta_softplus=True)
    low = {k: v.detach().to(DEVICE, torch.float32).requires_grad_() for k, v in exact.items()}
    with gpu_tiles():
        out = selective_scan(**low, delta_softplus=True, backend="triton")
    torch.testing.assert_close(out.double().cpu(), ref.detach(), **TOL[torch.float32])
    w = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    names = sorted(exact)
    grads = torch.autograd.grad((out * w.to(DEVICE, torch.float32)).sum(), [low[n] for n in names])
    assert_gradients_close(names, grads, torch.autograd.grad((ref * w).sum(), [exact[n] for n in names]),
                           TOL[torch.float32])
    # Training chunks of one 16-step tile (the drop-in keeps block_t's), read in 4-step vectors (ROWWISE 2).
    state_loops = {r[1:] for r in seen if r[0] not in CARRIES}
    assert state_loops == {(16, 1, 2), (16, None, 2)}, seen
    assert ("segment_summary_kernel", False) in seen and ("chunk_carry_kernel", True) in seen, seen
