"""The one-pass forward (``TileConfig.one_pass_forward``, ``scan2d.triton.one_pass``) against the float64 PyTorch
path: the layer's summed output and the drop-in scan's output and last state, with and without gradients (a training
forward stores the chunk entry states and delta sums the unchanged backward reads, so every gradient checks them),
over random sizes, windows, orders, reversals, cross-scale modes, K = 1, 2, 4, batch 1-2, channel counts that are
not a multiple of the block, several tiles or one, both tile axis orders, float32, bfloat16 and float16."""

from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from directional_cases import make_layer_inputs
from gradients import assert_gradients_close
from launch_spy import spy_on_launches
from scan2d import ScanDirection, directional_scan, selective_scan, selective_scan_ref
from scan2d.triton.tiles import tile_config
from test_selective_scan import make_inputs
from test_triton_directional import DEVICE, TOL, direction
from test_triton_selective_scan import _run
# (steps per segment without gradients, segments, channels per program, segments first, states per trip): tiles of
# 8 to 512 steps, so that short maps take one tile and longer ones several (the state crossing tiles through the
# carry slots); 32 segments is the GPU's default, one warp's threads.  Two or four states per trip read B and C two
# states per load where x's rows allow it (an even dt rank, ScanOperands.paired_x).
layouts = st.tuples(st.sampled_from([2, 8]), st.sampled_from([4, 8, 32]), st.sampled_from([1, 2, 8]), st.booleans(),
                    st.sampled_from([1, 2, 4]))
dtypes = st.sampled_from([torch.float32, torch.float32, torch.bfloat16, torch.float16])


def one_pass_tiles(layout, block_t):
    steps, segments, block_d, segments_first, unroll = layout
    return dict(one_pass_forward=True, one_pass_steps=steps, one_pass_segments=segments, one_pass_block_d=block_d,
                one_pass_segments_first=segments_first, one_pass_unroll=unroll, block_t=block_t)


def check_layer(tiles, specs, cross_scale, batch, height, width, dim, weighted, grad, dtype, rank):
    """The layer's summed output (and with ``grad`` every input's gradient) under ``tiles`` against the float64
    PyTorch path: ``specs`` (window, column-first, reversed) per direction, 4 states, dt rank ``rank``."""
    K = len(specs)
    directions = tuple(ScanDirection(w, c, r, cross_scale) for w, c, r in specs)
    inp = make_layer_inputs(batch, height, width, dim, K, n_state=4, rank=rank, cross_scale=cross_scale is not None)
    exact = {k: v.to(dtype).double().requires_grad_() for k, v in inp.items()}
    weights = torch.rand(batch, K, dim, dtype=torch.float64) + 0.5 if weighted else None
    ref = directional_scan(**exact, directions=directions, height=height, width=width, direction_weights=weights,
                           backend="torch")
    low = {k: v.detach().to(DEVICE, dtype).requires_grad_(grad) for k, v in exact.items()}
    w = torch.randn(ref.shape, dtype=torch.float64)
    with tile_config(**tiles), torch.set_grad_enabled(grad):
        out = directional_scan(**low, directions=directions, height=height, width=width, backend="triton",
                               direction_weights=weights.to(DEVICE, dtype) if weighted else None)
        if grad:
            grads = torch.autograd.grad((out * w.to(DEVICE, dtype)).sum(), list(low.values()))
    assert out.dtype == dtype and out.shape == (batch, height * width, dim)
    torch.testing.assert_close(out.double().cpu(), ref.detach(), **TOL[dtype])
    if grad:
        names = list(exact)
        assert_gradients_close(names, grads, torch.autograd.grad((ref * w).sum(), [exact[n] for n in names]),
                               TOL[dtype])


def check_drop_in(tiles, opt):
    """The drop-in scan's output and last state (and with opt["grad"] every gradient) under ``tiles`` against the
    float64 reference, on ``make_inputs`` of opt's sizes with its optional inputs (D, z, bias) and dtype."""
    groups = opt["groups"] if opt["dim"] % max(opt["groups"], 1) == 0 else 0
    inp = make_inputs(opt["batch"], opt["dim"], opt["length"], opt["n_state"], groups)
    low = {k: v.to(DEVICE, opt["dtype"]).requires_grad_(opt["grad"]) for k, v in inp.items()}
    exact = {k: v.detach().double().cpu().requires_grad_() for k, v in low.items()}
    names = ["u", "delta", "A", "B", "C"] + [n for n, k in (("D", "D"), ("z", "z"), ("delta_bias", "bias")) if opt[k]]
    ref, ref_last = _run(selective_scan_ref, exact, opt, return_last_state=True)
    weight = torch.randn(ref.shape, dtype=torch.float64)
    with tile_config(**tiles), torch.set_grad_enabled(opt["grad"]):
        out, last = _run(selective_scan, low, opt, backend="triton", return_last_state=True)
        if opt["grad"]:
            grads = torch.autograd.grad((out * weight.to(DEVICE, out.dtype)).sum(), [low[n] for n in names])
    tol = TOL[opt["dtype"]]
    torch.testing.assert_close(out.double().cpu(), ref.detach(), **tol)
    torch.testing.assert_close(last.double().cpu(), ref_last.detach(), **tol)
    if opt["grad"]:
        assert_gradients_close(names, grads, torch.autograd.grad((ref * weight).sum(), [exact[n] for n in names]),
                               tol)


@settings(max_examples=4)  # 8 before 2026-12-06: CI's 20 minutes (README.md)
# Always: two states and two dt ranks per load, the last block of ranks overlapping the one before, several tiles.
@example(specs=[(4, False, False), (8, True, True)], cross_scale=None, batch=1, height=9, width=7, dim=7,
         weighted=False, grad=True, dtype=torch.float32, layout=(8, 4, 2, False, 2), block_t=4, rank=6)
@given(specs=st.lists(direction, min_size=1, max_size=4).filter(lambda s: len(s) != 3),
       cross_scale=st.sampled_from([None, None, "aligned", "sequential"]), batch=st.integers(1, 2),
       height=st.integers(1, 9), width=st.integers(1, 9), dim=st.sampled_from([1, 7, 17]), weighted=st.booleans(),
       grad=st.booleans(), dtype=dtypes, layout=layouts, block_t=st.sampled_from([4, 16]),
       rank=st.sampled_from([3, 6]))
def test_layer_forward_and_gradients_match_torch_path(specs, cross_scale, batch, height, width, dim, weighted, grad,
                                                      dtype, layout, block_t, rank):
    # rank 6: the dt ranks two per load in blocks of 4, the last block overlapping the one before (plain orders).
    check_layer(one_pass_tiles(layout, block_t), specs, cross_scale, batch, height, width, dim, weighted, grad, dtype,
                rank)


@settings(max_examples=4)  # 8 before 2026-12-06: CI's 20 minutes (README.md)
@given(st.fixed_dictionaries(dict(
    batch=st.integers(1, 2), dim=st.sampled_from([1, 5, 12]), length=st.integers(1, 150),
    n_state=st.sampled_from([1, 4]), groups=st.sampled_from([0, 1, 2]), D=st.booleans(), z=st.booleans(),
    bias=st.booleans(), grad=st.booleans(), dtype=dtypes, layout=layouts, block_t=st.sampled_from([4, 16]))))
def test_drop_in_forward_last_state_and_gradients_match_reference(opt):
    check_drop_in(one_pass_tiles(opt["layout"], opt["block_t"]), opt)


@pytest.mark.parametrize("grad", [False, True])
def test_one_launch_per_direction_replaces_the_chunked_forward(monkeypatch, grad):
    # The chunked forward's kernels do not run; one program per (batch, channel block) of each direction walks the
    # whole scan.  A training forward stores 16-step chunk states for the backward, whose kernels run unchanged.
    seen = spy_on_launches(monkeypatch, ("chunk_end_state_kernel", "forward_output_kernel", "chunk_carry_kernel",
                                         "one_pass_forward_kernel", "chunk_adjoint_kernel"),
                           record=lambda name, grid, meta: (name, grid, meta.get("STORE_STATES"),
                                                            meta.get("STEPS")))
    directions = (ScanDirection(4, False, False), ScanDirection(8, True, True))
    inp = {k: v.to(DEVICE).requires_grad_(grad) for k, v in
           make_layer_inputs(2, 9, 7, 11, 2, n_state=4, dtype=torch.float32).items()}
    ref = directional_scan(**{k: v.detach() for k, v in inp.items()}, directions=directions, height=9, width=7,
                           backend="torch")
    with tile_config(one_pass_forward=True, one_pass_block_d=4, one_pass_steps=8, block_t=16), \
            torch.set_grad_enabled(grad):
        out = directional_scan(**inp, directions=directions, height=9, width=7, backend="triton")
        if grad:
            out.sum().backward()
    torch.testing.assert_close(out.detach(), ref, **TOL[torch.float32])
    launches = [(name, grid, store, steps) for name, grid, store, steps in seen]
    expected = [("one_pass_forward_kernel", (2, 3), grad, 16 if grad else 8)] * 2  # 11 channels: 3 blocks of 4
    if grad:
        expected += [("chunk_adjoint_kernel", launches[-2][1], None, None), ("chunk_carry_kernel", launches[-1][1],
                                                                              None, None)]
    assert launches == expected


@pytest.mark.parametrize("dtype, block_d", [(torch.float32, 1), (torch.bfloat16, 2)])
def test_channels_per_program_follow_the_input_width(monkeypatch, dtype, block_d):
    # TileConfig.one_pass_block_d = None (the GPU's default): one channel per program for 32-bit inputs, two for
    # 16-bit ones, whose B and C are converted per step and so are shared by more channels.
    seen = spy_on_launches(monkeypatch, ("one_pass_forward_kernel",),
                           record=lambda name, grid, meta: (grid, meta.get("BLOCK_D")))
    inp = {k: v.to(DEVICE, dtype) for k, v in make_layer_inputs(1, 3, 5, 5, 1, n_state=2).items()}
    directions = (ScanDirection(4, False, False),)
    ref = directional_scan(**{k: v.double() for k, v in inp.items()}, directions=directions, height=3, width=5,
                           backend="torch")
    with tile_config(one_pass_forward=True, one_pass_block_d=None, one_pass_segments=4):
        out = directional_scan(**inp, directions=directions, height=3, width=5, backend="triton")
    torch.testing.assert_close(out.double(), ref, **TOL[dtype])
    assert seen == [((1, -(-5 // block_d)), block_d)]


def test_no_kernel_calls_tl_reduce():
    # On a GPU tl.reduce may combine out of order: it is written for commutative operators (triton-lang/triton#4962).
    # The recurrence's combine is not commutative, and the interpreter reduces in order, so CI passed a one-pass
    # forward that the H200's tests of 2026-12-04 found wrong wherever Triton spread a segment's steps over lanes.
    # Commutative sums have tl.sum / tl.max; the recurrence takes tl.associative_scan, which keeps the order.
    root = Path(__file__).resolve().parents[1]
    sources = sorted((root / "kernels" / "scan2d" / "triton").glob("*.py")) + sorted((root / "bench").glob("*.py"))
    calls = [f"{path.relative_to(root)}:{number}" for path in sources
             for number, line in enumerate(path.read_text().splitlines(), 1) if "tl.reduce(" in line.split("#")[0]]
    assert len(sources) > 20 and not calls, calls
