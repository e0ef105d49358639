"""Triton selective scan (drop-in for mamba-ssm's selective_scan_fn) against the float64 reference.

Runs on the GPU when there is one, else under TRITON_INTERPRET=1 (set by conftest.py): each example takes a few
seconds in the interpreter, hence short sequences and a bounded example count.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scan2d import selective_scan, selective_scan_ref
from scan2d._backend import deterministic_algorithms
from scan2d.triton.tiles import TileConfig, tile_config
from gradients import assert_gradients_close
from launch_spy import STATE_LOOP_KERNELS, spy_on_launches
from test_selective_scan import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# mamba-ssm's own tolerances per dtype; float16 and bfloat16 inputs are compared against the reference computed on
# the same rounded inputs, so only the output rounding and fp32 accumulation remain.
TOL = {torch.float32: dict(rtol=6e-4, atol=2e-3), torch.float16: dict(rtol=3e-3, atol=5e-3),
       torch.bfloat16: dict(rtol=3e-2, atol=5e-2)}


def _run(fn, inp, opt, **kw):
    return fn(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"] if opt["D"] else None,
              inp["z"] if opt["z"] else None, inp["delta_bias"] if opt["bias"] else None, True, **kw)


# Which kernels run: the state loops (the default, the backward's sums over lanes reduce-scattered), with those sums
# reduced over the whole warp at every step or stored into one copy of dB and dC per channel block, or with the
# (steps, channels) tiles read and written a row at a time (the default under Triton < 3.7), or the (steps, channels,
# states) tile kernels.
KERNELS = [{}, dict(backward_lane_sums=False), dict(backward_dx_copies=True), dict(rowwise_tiles=True),
           dict(step_vectors=False), dict(raster_tiles=False),
           dict(forward_state_loop=False, backward_state_loop=False)]


@settings(max_examples=12)
@given(st.fixed_dictionaries(dict(
    batch=st.integers(1, 3), dim=st.sampled_from([1, 5, 17, 24]), length=st.integers(1, 70),
    n_state=st.sampled_from([1, 4, 16]), groups=st.sampled_from([0, 1, 2]), D=st.booleans(), z=st.booleans(),
    bias=st.booleans(), dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    deterministic=st.booleans(), kernels=st.sampled_from(KERNELS))))
def test_forward_and_every_gradient_match_reference(opt):
    groups = opt["groups"] if opt["dim"] % max(opt["groups"], 1) == 0 else 0
    inp = make_inputs(opt["batch"], opt["dim"], opt["length"], opt["n_state"], groups)
    low = {k: v.to(DEVICE, opt["dtype"]).requires_grad_() for k, v in inp.items()}
    exact = {k: v.detach().double().cpu().requires_grad_() for k, v in low.items()}
    ref, ref_last = _run(selective_scan_ref, exact, opt, return_last_state=True)
    weight = torch.randn(ref.shape, dtype=torch.float64)
    names = ["u", "delta", "A", "B", "C"] + [n for n, k in (("D", "D"), ("z", "z"), ("delta_bias", "bias")) if opt[k]]
    with deterministic_algorithms(opt["deterministic"]), tile_config(**opt["kernels"]):
        out, last = _run(selective_scan, low, opt, backend="triton", return_last_state=True)
        grads = torch.autograd.grad((out * weight.to(DEVICE, out.dtype)).sum(), [low[n] for n in names])
    assert out.dtype == opt["dtype"]
    tol = TOL[opt["dtype"]]
    torch.testing.assert_close(out.double().cpu(), ref, **tol)
    torch.testing.assert_close(last.double().cpu(), ref_last, **tol)
    assert_gradients_close(names, grads, torch.autograd.grad((ref * weight).sum(), [exact[n] for n in names]), tol)


def test_long_sequence_spans_many_chunks():
    # The adjoint crosses 18 chunk boundaries backwards, each through the next chunk's first decay.
    inp = make_inputs(1, 6, 300, 16, 0)
    low = {k: v.float().to(DEVICE).requires_grad_() for k, v in inp.items()}
    exact = {k: v.detach().double().cpu().requires_grad_() for k, v in low.items()}
    opt = dict(D=True, z=False, bias=True)
    names = ["u", "delta", "A", "B", "C", "D", "delta_bias"]
    weight = torch.randn(1, 6, 300, dtype=torch.float64)
    with tile_config(block_t=16, block_d=16):  # 19 chunks, 1 channel block
        out = _run(selective_scan, low, opt, backend="triton")
        grads = torch.autograd.grad((out * weight.to(DEVICE, out.dtype)).sum(), [low[n] for n in names])
    ref = _run(selective_scan_ref, exact, opt)
    torch.testing.assert_close(out.detach().double().cpu(), ref, **TOL[torch.float32])
    assert_gradients_close(names, grads, torch.autograd.grad((ref * weight).sum(), [exact[n] for n in names]),
                            TOL[torch.float32])


def _drop_in_results(inp, **tiles) -> tuple:
    """The drop-in's output without gradients, then its output, last state and the gradient of every input (for a
    squared loss) with them, float32, with D, z and delta_bias, under ``tile_config(**tiles)``."""
    low = {k: v.float().to(DEVICE).requires_grad_() for k, v in inp.items()}
    opt = dict(D=True, z=True, bias=True)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    with tile_config(**tiles):
        with torch.no_grad():
            plain = _run(selective_scan, low, opt, backend="triton")
        out, last = _run(selective_scan, low, opt, backend="triton", return_last_state=True)
        grads = torch.autograd.grad(out.square().sum(), [low[n] for n in names])
    return (plain, out, last, *grads)


def test_raster_positions_give_the_same_bits_as_the_window_arithmetic(monkeypatch):
    # The drop-in scans one 1 x L map in raster order, so its kernels take step s at position s (positions.RASTER)
    # instead of dividing by the window: the same integers reach the same loads, so the output, the last state and
    # every gradient are bit for bit those of TileConfig.raster_tiles=False, with and without gradients.  45 steps:
    # the last 16-step tile runs past the end; 3 tiles per chunk without gradients.
    seen = spy_on_launches(monkeypatch, STATE_LOOP_KERNELS, record=lambda name, grid, meta: meta["IN_WINDOW"])
    inp = make_inputs(2, 5, 45, 4, 0)
    results = []
    for raster in (True, False):
        seen.clear()
        results.append(_drop_in_results(inp, block_t=16, raster_tiles=raster, inference_tiles=3,
                                        inference_programs_per_sm=0))
        assert seen and all((mode == 2) == raster for mode in seen), seen
    for a, b in zip(*results):
        assert torch.equal(a, b), (a - b).abs().max()


@pytest.mark.parametrize("length,block_t,vectors", [(48, 32, True), (64, 8, True), (44, 16, False), (48, 2, False)])
def test_four_step_vectors_give_the_same_bits_as_rows(monkeypatch, length, block_t, vectors):
    # TileConfig.step_vectors (tile_io.STEP_VECTORS): where the drop-in's length is a multiple of 16 and its tiles of
    # 4, its state loops read and write u, delta, z, B, C, the output and the gradients 4 steps per access.  The
    # same values must land on the same steps: the output, the last state and every gradient bit for bit those of
    # rows (rowwise_tiles=True, step_vectors=False), forward with and without gradients.  48 steps in 32-step tiles:
    # the last tile holds 4 valid vectors and 4 past the end; 44 steps or 2-step tiles: no vectors.
    seen = spy_on_launches(monkeypatch, STATE_LOOP_KERNELS, record=lambda name, grid, meta: meta["ROWWISE"])
    inp = make_inputs(2, 5, length, 4, 0)
    results = []
    for changes in (dict(), dict(rowwise_tiles=True, step_vectors=False)):
        seen.clear()
        results.append(_drop_in_results(inp, block_t=block_t, **changes))
        step_vectors = not changes and vectors
        assert seen and all((mode == 2) == step_vectors for mode in seen), seen
    for a, b in zip(*results):
        assert torch.equal(a, b), (a - b).abs().max()


@pytest.mark.parametrize("length,in_loop", [(48, True), (44, False)])
def test_backward_sums_the_outputs_for_dz_in_its_state_loop(monkeypatch, length, in_loop):
    # TileConfig.backward_outputs_in_loop: with a z gate the backward needs the outputs only for dz, and where the
    # drop-in's tiles are read 4 steps per access (48 steps) its state loop sums them as it goes instead of a loop
    # of their own: the same sums in the same order, so every result bit for bit that of the separate loop.  Rows
    # (44 steps) keep the separate loop.
    seen = spy_on_launches(monkeypatch, ["backward_grads_kernel"], record=lambda name, grid, meta: meta["Y_IN_LOOP"])
    inp = make_inputs(2, 5, length, 4, 0)
    results = []
    for flag in (True, False):
        seen.clear()
        results.append(_drop_in_results(inp, block_t=16, backward_outputs_in_loop=flag))
        assert seen == [flag and in_loop], seen
    for a, b in zip(*results):
        assert torch.equal(a, b), (a - b).abs().max()


def test_four_step_vectors_only_where_every_step_lies_next_to_the_last():
    # The kernels tell Triton that 4 steps lie one after another (tile_io._step_vectors' hints), which the
    # interpreter ignores: the host must pick STEP_VECTORS only where that holds, here not for a u, delta, z, B or C
    # whose steps are not adjacent (channels or states contiguous) or that starts off a 16-byte boundary, a length
    # that is not a multiple of 16 or a tile that is not one of 4.
    from scan2d.selective_scan.triton_op import _operands

    inp = make_inputs(1, 4, 32, 4, 0)
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    rest = lambda **kw: {**{n: inp[n] for n in names}, **kw}  # noqa: E731
    apart = lambda x: x.transpose(1, 2).contiguous().transpose(1, 2)  # noqa: E731
    assert _operands(**rest(), delta_softplus=True).rowwise == 2
    off = lambda x: torch.cat([x.new_zeros(1), x.flatten()])[1:].view(x.shape)  # noqa: E731  (one element in)
    changed = [dict(u=apart(inp["u"])), dict(delta=apart(inp["delta"])), dict(z=apart(inp["z"])),
               dict(B=apart(inp["B"])), dict(C=apart(inp["C"]))]
    changed += [{name: off(inp[name])} for name in ("u", "delta", "z", "B", "C")]
    for change in changed:
        assert _operands(**rest(**change), delta_softplus=True).rowwise != 2, change
    short = make_inputs(1, 4, 40, 4, 0)
    assert _operands(**{n: short[n] for n in rest()}, delta_softplus=True).rowwise != 2
    assert _operands(**rest(), delta_softplus=True, tiles=TileConfig(block_t=2)).rowwise != 2


def test_backward_uses_the_tiles_its_forward_ran_with():
    # Stored chunk states are per forward chunk: a backward outside the forward's tile_config must still match.
    inp = make_inputs(1, 5, 50, 4, 0)
    low = {k: v.float().to(DEVICE).requires_grad_() for k, v in inp.items()}
    exact = {k: v.detach().double().cpu().requires_grad_() for k, v in low.items()}
    opt = dict(D=True, z=False, bias=True)
    with tile_config(block_t=8, block_d=4):  # 7 chunks, 2 channel blocks
        out = _run(selective_scan, low, opt, backend="triton")
    du, = torch.autograd.grad(out.sum(), [low["u"]])
    ref_du, = torch.autograd.grad(_run(selective_scan_ref, exact, opt).sum(), [exact["u"]])
    torch.testing.assert_close(du.double().cpu(), ref_du, **TOL[torch.float32])


def test_forward_without_gradients_carries_state_and_last_state_across_tiles():
    inp = make_inputs(2, 6, 50, 4, 0)
    dev = {k: v.float().to(DEVICE) for k, v in inp.items()}
    opt = dict(D=True, z=True, bias=True)
    # 5 chunks of 3 tiles (inference_programs_per_sm=0: on a GPU too, whose SMs would make them 1-tile chunks)
    with torch.no_grad(), tile_config(block_t=4, block_d=4, inference_tiles=3, inference_programs_per_sm=0):
        out, last = _run(selective_scan, dev, opt, backend="triton", return_last_state=True)
    ref, ref_last = _run(selective_scan_ref, {k: v.double().cpu() for k, v in dev.items()}, opt,
                         return_last_state=True)
    torch.testing.assert_close(out.double().cpu(), ref, **TOL[torch.float32])
    torch.testing.assert_close(last.double().cpu(), ref_last, **TOL[torch.float32])


def _assert_output_and_every_gradient_match(inp, **tiles):
    """The Triton scan of ``inp`` (float32, with D, z and delta_bias) under ``tile_config(**tiles)`` against the
    float64 reference: output, last state and the gradient of every input for a squared loss, which it returns."""
    low = {k: v.float().to(DEVICE).requires_grad_() for k, v in inp.items()}
    exact = {k: v.detach().double().cpu().requires_grad_() for k, v in low.items()}
    opt = dict(D=True, z=True, bias=True)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    with tile_config(**tiles):
        out, last = _run(selective_scan, low, opt, backend="triton", return_last_state=True)
        grads = torch.autograd.grad(out.square().sum(), [low[n] for n in names])
    ref, ref_last = _run(selective_scan_ref, exact, opt, return_last_state=True)
    torch.testing.assert_close(out.detach().double().cpu(), ref, **TOL[torch.float32])
    torch.testing.assert_close(last.double().cpu(), ref_last, **TOL[torch.float32])
    assert_gradients_close(names, grads, torch.autograd.grad(ref.square().sum(), [exact[n] for n in names]),
                           TOL[torch.float32])
    return dict(zip(names, grads))


@pytest.mark.parametrize("groups,kernels", [(0, {}), (2, dict(backward_dx_copies=True)),
                                            (2, dict(forward_state_loop=False, backward_state_loop=False))],
                         ids=["state-loops", "grouped-dx-copies", "grouped-tile-kernels"])
def test_states_adjacent_layout_of_b_and_c_past_the_32_bit_offsets(monkeypatch, groups, kernels):
    # Where state n of B or C would lie past 2^31 elements (N x L), the wrapper copies them with each step's states
    # adjacent (strides (..., 1, N)) and the kernels read them, and write dB, dC (and their per-block copies) through
    # those strides.  The limit lowered to 0 takes that path at a testable size.
    import scan2d.triton.operands as operands

    monkeypatch.setattr(operands, "INT32_OFFSET_LIMIT", 0)
    inp = make_inputs(2, 8, 37, 4, groups)
    grads = _assert_output_and_every_gradient_match(inp, block_t=16, block_d=4, **kernels)  # 3 chunks, 2 blocks
    assert grads["B"].shape == inp["B"].shape and grads["C"].shape == inp["C"].shape


def test_chunks_past_the_grid_limit_run_in_several_launches(monkeypatch):
    # A million-token sequence has 65,536 training chunks, one more than a CUDA grid holds along z: the kernels then
    # run in launches of at most MAX_GRID_CHUNKS chunks (lowered to 4 here: 10 chunks in launches of 4, 4 and 2).
    import scan2d.triton.launch as launch

    seen = spy_on_launches(monkeypatch, STATE_LOOP_KERNELS, record=lambda name, grid, meta: (name, grid[2]))
    monkeypatch.setattr(launch, "MAX_GRID_CHUNKS", 4)
    _assert_output_and_every_gradient_match(make_inputs(2, 6, 40, 4, 0), block_t=4)
    assert seen == [(name, chunks) for name in STATE_LOOP_KERNELS for chunks in (4, 4, 2)]


def test_rowwise_tiles_repeat_the_plain_tiles_bit_for_bit(monkeypatch):
    # TileConfig.rowwise_tiles (the default under Triton < 3.7, which would otherwise lay the steps of these tiles
    # across lanes): the state loops read and write the drop-in's channels-first (steps, channels) tiles a row at a
    # time, u, delta, z and the output gradient in, the output, du, ddelta and dz out.  The same arithmetic: in
    # deterministic mode the output and every gradient repeat those of the plain tiles (tested against the reference
    # above) bit for bit.  Batch 1, 37 steps (2 chunks, the last partial: masked rows), 2 groups of 4 channels.
    seen = spy_on_launches(monkeypatch, STATE_LOOP_KERNELS, record=lambda name, grid, meta: meta["ROWWISE"])
    inp = make_inputs(1, 8, 37, 4, 2)
    opt = dict(D=True, z=True, bias=True)
    results = []
    for rowwise in (True, False):
        low = {k: v.float().to(DEVICE).requires_grad_() for k, v in inp.items()}
        with deterministic_algorithms(), tile_config(rowwise_tiles=rowwise):
            out = _run(selective_scan, low, opt, backend="triton")
            results.append((out, *torch.autograd.grad(out.square().sum(), list(low.values()))))
        assert seen == [rowwise] * 4
        seen.clear()
    for rows, plain in zip(*results):
        torch.testing.assert_close(rows, plain, rtol=0, atol=0)
    ref = _run(selective_scan_ref, {k: v.double() for k, v in inp.items()}, opt)
    torch.testing.assert_close(results[0][0].detach().double().cpu(), ref, **TOL[torch.float32])


@pytest.mark.parametrize("dim,groups", [(12, 4), (40, 2)], ids=["group-of-3", "group-of-20"])
def test_groups_smaller_than_or_not_a_multiple_of_the_channel_block(dim, groups):
    # The channel blocks tile each group, the last block of a group masked: here one block of 3 channels per group,
    # or two blocks of 20 and 12 (the interpreter's blocks are 32 channels; the tile kernels' too).
    inp = make_inputs(2, dim, 37, 4, groups)
    low = {k: v.float().to(DEVICE).requires_grad_() for k, v in inp.items()}
    exact = {k: v.detach().double().cpu().requires_grad_() for k, v in low.items()}
    opt = dict(D=True, z=True, bias=True)
    out = _run(selective_scan, low, opt, backend="triton")
    ref = _run(selective_scan_ref, exact, opt)
    torch.testing.assert_close(out.detach().double().cpu(), ref, **TOL[torch.float32])
    names = ["u", "delta", "B", "C"]
    grads = torch.autograd.grad(out.sum(), [low[n] for n in names])
    assert_gradients_close(names, grads, torch.autograd.grad(ref.sum(), [exact[n] for n in names]), TOL[torch.float32])


@pytest.mark.parametrize("deterministic,sums", [
    (False, {}), (False, dict(backward_dx_copies=True)), (False, dict(backward_lane_sums=False)), (True, {}),
    (True, dict(backward_lane_sums=False))], ids=["atomics", "copies", "warp-sums", "deterministic",
                                                 "warp-sums-deterministic"])
def test_drop_in_runs_the_state_loops_on_blocks_that_tile_each_group(monkeypatch, deterministic, sums):
    # Two groups of 20 channels sharing B and C: 32-channel blocks (the lane sums', the default) tile each group with
    # one short block, 16-channel ones (sums over the whole warp) with a block of 16 and one of 4, so no block reads two
    # groups' B and C and the sums over channels reach the right group's dB and dC.  One direction: every program owns
    # its tile of du.  In deterministic mode, or with backward_dx_copies, each block stores its dB and dC sums into its
    # own copy, which the host adds up.  Every gradient against the float64 reference (a block reading or writing the
    # other group, or a copy left out of the sum, would show in B, C, u or delta).
    seen = spy_on_launches(monkeypatch, STATE_LOOP_KERNELS)
    inp = make_inputs(2, 40, 40, 4, 2)
    low = {k: v.float().to(DEVICE).requires_grad_() for k, v in inp.items()}
    exact = {k: v.detach().double().cpu().requires_grad_() for k, v in low.items()}
    opt = dict(D=True, z=True, bias=True)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    weight = torch.randn(2, 40, 40, dtype=torch.float64)
    lane_sums = sums.get("backward_lane_sums", TileConfig.backward_lane_sums)
    block = 32 if lane_sums else 16
    with tile_config(block_t=16, forward_block_d=16, backward_block_d=block, **sums), \
            deterministic_algorithms(deterministic):
        out = _run(selective_scan, low, opt, backend="triton")
        grads = torch.autograd.grad((out * weight.to(DEVICE)).sum(), [low[n] for n in names])
    ref = _run(selective_scan_ref, exact, opt)
    torch.testing.assert_close(out.detach().double().cpu(), ref, **TOL[torch.float32])
    assert_gradients_close(names, grads, torch.autograd.grad((ref * weight).sum(), [exact[n] for n in names]),
                           TOL[torch.float32])
    # Grids (batch, channel blocks, chunks of 16 of the 40 steps) and (DX_COPIES, DU_OWNED, LANE_SUMS).
    copies = deterministic or sums.get("backward_dx_copies", False)
    assert [entry[:4] for entry in seen if entry[0] != "backward_grads_kernel"] == [
        ("chunk_end_state_kernel", True, 16, (2, 4, 3)), ("forward_output_kernel", True, 16, (2, 4, 3)),
        ("chunk_adjoint_kernel", True, 16, (2, 4, 3))]
    assert [entry[1:] for entry in seen if entry[0] == "backward_grads_kernel"] == [
        (True, block, (2, 4 if block == 16 else 2, 3), (copies, True, lane_sums))]


def test_non_power_of_two_state_is_refused_clearly():
    inp = make_inputs(1, 4, 8, 3, 0, dtype=torch.float32)
    with pytest.raises(ValueError, match="power-of-two state size"):
        selective_scan(**{k: v.to(DEVICE) for k, v in inp.items()}, backend="triton")


def test_float64_is_refused_clearly():
    # The kernels compute in float32: float64 inputs would silently lose precision.
    inp = make_inputs(1, 4, 8, 4, 0)
    with pytest.raises(ValueError, match="not float64.*backend='torch'"):
        selective_scan(**{k: v.to(DEVICE) for k, v in inp.items()}, backend="triton")


def test_auto_backend_is_torch_on_cpu():
    inp = make_inputs(1, 4, 8, 4, 0, dtype=torch.float32)
    from scan2d._backend import resolve_backend
    assert resolve_backend("auto", inp["u"]) == "torch"


class _OnCuda:
    """Stands in for a CUDA tensor: resolve_backend asks only where the input lies and whether it holds work."""
    is_cuda = True

    def numel(self):
        return 1


@pytest.mark.parametrize("n_state,dtype,reason", [(12, torch.float32, "power-of-two state size N, got N=12"),
                                                  (16, torch.float64, "not float64")])
def test_auto_backend_takes_the_torch_path_with_a_warning_where_triton_cannot_run(n_state, dtype, reason):
    # On a GPU "auto" means the kernels, unless they cannot run these inputs: then the PyTorch path, saying why,
    # where backend="triton" refuses.
    from scan2d._backend import resolve_backend, triton_unsupported

    unsupported = triton_unsupported(n_state, dtype)
    with pytest.warns(UserWarning, match=f"backend='auto' runs the PyTorch path: .*{reason}"):
        assert resolve_backend("auto", _OnCuda(), unsupported) == "torch"
    with pytest.raises(ValueError, match=reason):
        resolve_backend("triton", _OnCuda(), unsupported)
    assert triton_unsupported(16, torch.bfloat16) is None
    assert resolve_backend("auto", _OnCuda(), None) == "triton"


@pytest.mark.parametrize("grad_mode", [False, True])
def test_only_a_recorded_forward_keeps_training_chunks(monkeypatch, grad_mode):
    # Under torch.no_grad() inputs that require grad must not make the forward keep one state per training chunk.
    import scan2d.triton.launch as launch

    seen = []
    real = launch.forward_states
    monkeypatch.setattr(launch, "forward_states", lambda ops: seen.append(ops.for_backward) or real(ops))
    inp = {k: v.to(DEVICE, torch.float32).requires_grad_() for k, v in make_inputs(1, 3, 20, 4, 0).items()}
    with torch.set_grad_enabled(grad_mode):
        out = _run(selective_scan, inp, dict(D=True, z=False, bias=True), backend="triton")
    assert seen == [grad_mode]
    assert out.requires_grad == grad_mode
