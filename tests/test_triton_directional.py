"""Fused Triton directional scan against the PyTorch path: forward and every gradient, over random sizes
(odd, non-square, smaller than the window), windows, orders, reversals, cross-scale modes, K = 1, 2, 4, batch 1-3,
channel counts that are not a multiple of the block, float32, bfloat16 and float16, with and without the channel
gate, with atomics and in deterministic mode (``torch.use_deterministic_algorithms``)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from directional_cases import gate_on, make_gate, make_layer_inputs, run_triton_layer
from gradients import assert_gradients_close, assert_same_but_rounding
from launch_spy import spy_on_launches
from scan2d import ChannelGate, ScanDirection, directional_scan
from scan2d._backend import deterministic_algorithms
from scan2d.triton.direction_table import scan_length
from scan2d.triton.tiles import TileConfig, tile_config

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# mamba-ssm's own tolerances per dtype (its tests: float16 3e-3 / 5e-3).
TOL = {torch.float32: dict(rtol=6e-4, atol=2e-3), torch.float16: dict(rtol=3e-3, atol=5e-3),
       torch.bfloat16: dict(rtol=3e-2, atol=5e-2)}

direction = st.builds(lambda w, c, r: (w, c, r), st.sampled_from([None, 4, 8, 16]), st.booleans(), st.booleans())


def check_against_torch_path(batch, height, width, dim, specs, cross_scale, gated, weighted, dtype, blocks,
                             deterministic, state_loop, state_unroll, backward_sums, forward_block_t,
                             adjoint_block_t=None, carry_segment=None, backward_chunks=1):
    K = len(specs)
    directions = tuple(ScanDirection(w, c, r, cross_scale) for w, c, r in specs)
    inp = make_layer_inputs(batch, height, width, dim, K, n_state=4, cross_scale=cross_scale is not None)
    gate = make_gate(dim, K, dtype=torch.float64) if gated else None
    weights = torch.rand(batch, K, dim, dtype=torch.float64) + 0.5 if weighted else None
    # Reference: the PyTorch path in float64 on the inputs rounded to the tested dtype.
    exact = {k: v.to(dtype).double().requires_grad_() for k, v in inp.items()}
    ref = directional_scan(**exact, directions=directions, height=height, width=width, gate=gate,
                           direction_weights=weights, backend="torch")
    low = {k: v.detach().to(DEVICE, dtype).requires_grad_() for k, v in exact.items()}
    low_gate = gate_on(gate, DEVICE)
    low_w = weights.to(DEVICE, dtype) if weights is not None else None
    with tile_config(block_t=blocks[0], block_d=blocks[1], forward_state_loop=state_loop,
                     backward_state_loop=state_loop, state_unroll=state_unroll, forward_block_t=forward_block_t,
                     adjoint_block_t=adjoint_block_t, carry_segment=carry_segment, backward_chunks=backward_chunks,
                     **backward_sums), \
            deterministic_algorithms(deterministic):
        out = directional_scan(**low, directions=directions, height=height, width=width, gate=low_gate,
                               direction_weights=low_w, backend="triton")
        w = torch.randn(ref.shape, dtype=torch.float64)
        grads = torch.autograd.grad((out * w.to(DEVICE, dtype)).sum(), list(low.values()))
    assert out.dtype == dtype and out.shape == (batch, height * width, dim)
    tol = TOL[dtype]
    torch.testing.assert_close(out.double().cpu(), ref, **tol)
    names = list(exact)
    assert_gradients_close(names, grads, torch.autograd.grad((ref * w).sum(), [exact[n] for n in names]), tol)


# Three properties so that pytest-xdist can spread the interpreter's cost over the CI cores.
common = dict(batch=st.integers(1, 2), height=st.integers(1, 8), width=st.integers(1, 8),
              dim=st.sampled_from([1, 7, 17]), weighted=st.booleans(),
              dtype=st.sampled_from([torch.float32, torch.float32, torch.bfloat16, torch.float16]),
              blocks=st.sampled_from([(16, 16), (32, 32), (64, 8)]), deterministic=st.booleans(),
              state_loop=st.booleans(), state_unroll=st.sampled_from([1, 2, 4]),  # 4 = n_state: all unrolled
              forward_block_t=st.sampled_from([None, 8]),  # 8: block_t's chunks in 2-8 tiles
              adjoint_block_t=st.sampled_from([None, 8]),  # 8: chunk_adjoint's (block_t's) in 2-8 tiles
              carry_segment=st.sampled_from([None, 1, 2]),  # the carry over segments of chunks, where 2 or more
              backward_chunks=st.sampled_from([1, 2, 3]),  # the backward's sums over steps per 1-3 chunks
              backward_sums=st.sampled_from([{}, dict(backward_dx_copies=True), dict(backward_direction_launches=True),
                                             dict(backward_lane_sums=False)]))
directions_k = st.lists(direction, min_size=1, max_size=4).filter(lambda s: len(s) != 3)


@settings(max_examples=6)
@given(specs=directions_k, **common)
def test_plain_scans_match_torch_path(specs, **kw):
    check_against_torch_path(specs=specs, cross_scale=None, gated=False, **kw)


@settings(max_examples=5)
@given(specs=directions_k, cross_scale=st.sampled_from(["aligned", "sequential"]), **common)
def test_cross_scale_scans_match_torch_path(specs, cross_scale, **kw):
    check_against_torch_path(specs=specs, cross_scale=cross_scale, gated=False, **kw)


@settings(max_examples=5)
@given(specs=directions_k, cross_scale=st.sampled_from([None, "aligned"]), **common)
def test_gated_scans_match_torch_path(specs, cross_scale, **kw):
    check_against_torch_path(specs=specs, cross_scale=cross_scale, gated=True, **kw)


# The carry in blocks of 16 channels, and of 4 channels with 8 chunks at once (the lease's block_d=4,carry_chunks=32
# in small): 12 chunks cross its blocks of chunks, 5 channels two blocks of channels.
@pytest.mark.parametrize("carry", [dict(block_d=16), dict(block_d=4, carry_chunks=8)], ids=["blocks-16", "blocks-4"])
def test_window_grid_spanning_many_chunks(carry):
    # 16x12 = 192 steps (12 chunks of 16), a column-first window-8 pair, summed without gate: forward and backward.
    directions = (ScanDirection(8, True), ScanDirection(8, True, True))
    inp = make_layer_inputs(1, 16, 12, 5, 2, n_state=16, dtype=torch.float32)
    ref_in = {k: v.clone().requires_grad_() for k, v in inp.items()}
    ref = directional_scan(**ref_in, directions=directions, height=16, width=12, backend="torch")
    ref.square().sum().backward()
    dev_in = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
    with tile_config(block_t=16, **carry):
        out = directional_scan(**dev_in, directions=directions, height=16, width=12, backend="triton")
        out.square().sum().backward()
    torch.testing.assert_close(out.detach().cpu(), ref.detach(), **TOL[torch.float32])
    for name in inp:
        g, r = dev_in[name].grad.cpu(), ref_in[name].grad
        torch.testing.assert_close(g / (r.abs().max() + 1), r / (r.abs().max() + 1), **TOL[torch.float32], msg=name)


def test_backward_sums_over_steps_per_group_of_chunks(monkeypatch):
    # A 16x12 map in windows of 8 scans 16x16 steps (the padded windows): 16 chunks of 16 per direction.  Groups of
    # 5 chunks (5 + 5 + 5 + 1) keep 4 sums over steps per (batch, direction) instead of 16: dA, dD, dbias, dW and,
    # with direction weights, their gradient.  The same gradients as a sum per chunk, but for the order of the sums;
    # deterministic mode keeps a sum per chunk (and launches one direction at a time).
    def record(name, grid, meta, args):
        return meta.get("CHUNKS", 1), tuple(args[8].shape), tuple(args[12].shape)  # dA's and dweight's sums

    seen = spy_on_launches(monkeypatch, ["backward_grads_kernel"], record, with_args=True)
    directions = (ScanDirection(8, True), ScanDirection(8, True, True))
    inp = make_layer_inputs(2, 16, 12, 5, 2, n_state=4, dtype=torch.float32)
    weights = torch.rand(2, 2, 5) + 0.5
    ref_in = {k: v.double().requires_grad_() for k, v in inp.items()}
    ref = directional_scan(**ref_in, directions=directions, height=16, width=12, direction_weights=weights.double(),
                           backend="torch")
    ref_grads = torch.autograd.grad(ref.square().sum(), list(ref_in.values()))
    runs = {}
    for chunks, deterministic in ((1, False), (5, False), (5, True)):
        dev_in = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
        with tile_config(block_t=16, backward_chunks=chunks), deterministic_algorithms(deterministic):
            out = directional_scan(**dev_in, directions=directions, height=16, width=12,
                                   direction_weights=weights.to(DEVICE).requires_grad_(), backend="triton")
            runs[chunks, deterministic] = torch.autograd.grad(out.square().sum(), list(dev_in.values()))
        assert_gradients_close(list(inp), runs[chunks, deterministic], ref_grads, TOL[torch.float32])
    assert_same_but_rounding([g.cpu() for g in runs[5, False]], [g.cpu() for g in runs[1, False]])
    # (batch x K, sums, channels, states) and (batch x K, sums, channels).
    per_chunk, per_group = (1, (4, 16, 5, 4), (4, 16, 5)), (5, (4, 4, 5, 4), (4, 4, 5))
    assert seen == [per_chunk, per_group, per_chunk, per_chunk], seen


def test_backward_chunks_below_one_is_refused():
    with pytest.raises(ValueError, match="backward_chunks = 0: a group holds at least one chunk"):
        with tile_config(backward_chunks=0):
            pass


# The state loop carries the states between a chunk's tiles in registers by default (all N states unrolled, so
# state_unroll does not apply) or through memory, here in two loop trips of two states.
@pytest.mark.parametrize("state_loop", [dict(forward_state_loop=False), dict(),
                                        dict(carry_in_registers=False, state_unroll=2)],
                         ids=["state-tiles", "state-loop-in-registers", "state-loop-through-memory"])
@pytest.mark.parametrize("cross_scale,gated,deterministic", [(None, False, False), ("aligned", True, False),
                                                             ("aligned", True, True), ("sequential", False, False)])
def test_forward_without_gradients_carries_the_state_across_tiles_of_a_chunk(cross_scale, gated, deterministic,
                                                                             state_loop):
    # Inference chunks hold several tiles scanned in turn (TileConfig.inference_tiles); 4-step tiles, 3 per chunk
    # put tile and chunk boundaries everywhere in this 7x6 window-4 scan; 11 channels are two channel blocks.  The
    # state loop carries the state between tiles in registers or through memory (the gate's passes must leave the
    # entry states intact for each other and for the output pass, which starts from them too).
    directions = (ScanDirection(4, False, False, cross_scale), ScanDirection(4, True, True, cross_scale))
    inp = make_layer_inputs(1, 7, 6, 11, 2, n_state=4, cross_scale=cross_scale is not None, dtype=torch.float32)
    gate = make_gate(11, 2, dtype=torch.float32) if gated else None
    ref = directional_scan(**inp, directions=directions, height=7, width=6, gate=gate, backend="torch")
    dev = {k: v.to(DEVICE) for k, v in inp.items()}
    dev_gate = make_gate(11, 2, dtype=torch.float32, device=DEVICE) if gated else None
    # inference_programs_per_sm=0: on a GPU too, whose SM count would shorten these small chunks to one tile.
    with torch.no_grad(), tile_config(block_t=4, block_d=8, forward_block_d=8, inference_tiles=3,
                                      inference_programs_per_sm=0, **state_loop), \
            deterministic_algorithms(deterministic):
        out = directional_scan(**dev, directions=directions, height=7, width=6, gate=dev_gate, backend="triton")
    torch.testing.assert_close(out.cpu(), ref, **TOL[torch.float32])


@pytest.mark.parametrize("grad_mode", [False, True])
def test_only_a_recorded_forward_keeps_training_chunks(monkeypatch, grad_mode):
    # Model inference runs under torch.no_grad() with parameters that require grad: that forward must take the
    # inference chunks (one stored state per inference_tiles tiles), a recorded one the one-tile training chunks.
    # The gate's pooling passes and the output pass start from one computation of the chunk entry states.
    import scan2d.triton.launch as launch

    seen = []
    real = launch.forward_states
    monkeypatch.setattr(launch, "forward_states", lambda ops: seen.append(ops.for_backward) or real(ops))
    directions = (ScanDirection(4, False, False, "aligned"), ScanDirection(4, True, True, "aligned"))
    inp = make_layer_inputs(1, 5, 4, 6, 2, n_state=4, cross_scale=True, dtype=torch.float32)
    leaves = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
    with torch.set_grad_enabled(grad_mode):
        out = directional_scan(**leaves, directions=directions, height=5, width=4, gate=make_gate(6, 2, torch.float32,
                               device=DEVICE), backend="triton")
    assert seen == [grad_mode]
    assert out.requires_grad == grad_mode


@pytest.mark.parametrize("multiprocessors,per_sm,tiles,pool_tiles", [(0, 2, 4, 4), (8, 2, 2, 1), (100, 2, 1, 1),
                                                                      (100, 0, 4, 4)])
def test_inference_chunks_shorten_until_every_launch_fills_the_gpu(monkeypatch, multiprocessors, per_sm, tiles,
                                                                   pool_tiles):
    # A forward without gradients scans chunks of up to inference_tiles tiles, halved while a launch of one direction
    # would have fewer than inference_programs_per_sm programs per SM.  Batch 1, 7x6 in windows of 4 (64 steps, 42
    # tokens), 11 channels in 2 blocks of 8, 4-step tiles, at most 4 per chunk: 4 chunks x 2 blocks = 8 programs.
    # With 8 SMs (16 wanted) 2-tile chunks give 16; direction 0's pooling over the 42 tokens needs 1-tile chunks
    # (11 x 2 = 22; 2 tiles: 6 x 2 = 12).  No SMs (the interpreter's CPU tensors) or 0 per SM keep 4 tiles.
    import scan2d.triton.operands as operands

    seen = spy_on_launches(monkeypatch,
                           ("chunk_end_state_kernel", "forward_output_kernel", "first_direction_pool_kernel"))
    monkeypatch.setattr(operands, "multiprocessors", lambda device: multiprocessors)
    directions = (ScanDirection(4, False, False), ScanDirection(4, True, True))
    inp = {k: v.to(DEVICE) for k, v in make_layer_inputs(1, 7, 6, 11, 2, n_state=4, dtype=torch.float32).items()}
    gate = make_gate(11, 2, dtype=torch.float32, device=DEVICE)
    with torch.no_grad():
        ref = directional_scan(**inp, directions=directions, height=7, width=6, gate=gate, backend="torch")
        with tile_config(block_t=4, forward_block_d=8, inference_tiles=4, inference_programs_per_sm=per_sm):
            out = directional_scan(**inp, directions=directions, height=7, width=6, gate=gate, backend="triton")
    torch.testing.assert_close(out, ref, **TOL[torch.float32])
    chunks = {(name, grid[2]) for name, _, _, grid, _ in seen}
    assert chunks == {("chunk_end_state_kernel", 16 // tiles), ("forward_output_kernel", 16 // tiles),
                      ("first_direction_pool_kernel", -(-42 // (4 * pool_tiles)))}, chunks


@pytest.mark.parametrize("cross_scale,deterministic", [("aligned", False), (None, True)])
def test_chunks_past_the_grid_limit_run_in_several_launches(monkeypatch, cross_scale, deterministic):
    # CUDA grids hold at most 65,535 programs along z, where the chunks lie: training chunks of 16 steps pass that at
    # a 1024 x 1024 map.  Every kernel with a grid over chunks then runs in launches of at most MAX_GRID_CHUNKS
    # chunks, each told its first chunk.  Lowered to 3 here: 5 x 6 tokens (plus 9 low-resolution ones) in 4-step
    # tiles are 8 to 10 chunks, so 3 or 4 launches per kernel; one-tile chunks for direction 0's pooling too.  The
    # gated layer (both gate passes, the pooling, the output, chunk_adjoint, backward_grads) against the PyTorch path,
    # forward and every gradient: a launch that skipped, repeated or misplaced chunks would show.
    import scan2d.triton.launch as launch

    kernels = ("chunk_end_state_kernel", "forward_output_kernel", "first_direction_pool_kernel",
               "chunk_adjoint_kernel", "backward_grads_kernel")
    seen = spy_on_launches(monkeypatch, kernels, record=lambda name, grid, meta: (name, grid[2]))
    monkeypatch.setattr(launch, "MAX_GRID_CHUNKS", 3)
    directions = (ScanDirection(4, False, False, cross_scale), ScanDirection(None, True, True, cross_scale))
    inp = make_layer_inputs(1, 5, 6, 7, 2, n_state=4, cross_scale=cross_scale is not None, dtype=torch.float32)
    gate = make_gate(7, 2, dtype=torch.float32)
    ref_in = {k: v.clone().requires_grad_() for k, v in inp.items()}
    ref = directional_scan(**ref_in, directions=directions, height=5, width=6, gate=gate, backend="torch")
    ref.square().sum().backward()
    dev_in = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
    dev_gate = make_gate(7, 2, dtype=torch.float32, device=DEVICE)
    with tile_config(block_t=4, inference_tiles=1), deterministic_algorithms(deterministic):
        out = directional_scan(**dev_in, directions=directions, height=5, width=6, gate=dev_gate, backend="triton")
        out.square().sum().backward()
    torch.testing.assert_close(out.detach().cpu(), ref.detach(), **TOL[torch.float32])
    for name in inp:
        g, r = dev_in[name].grad.cpu(), ref_in[name].grad
        torch.testing.assert_close(g / (r.abs().max() + 1), r / (r.abs().max() + 1), **TOL[torch.float32], msg=name)
    # Every pass of a kernel: launches of 3 chunks and a shorter last one, covering all its chunks (the scan's steps
    # in 4-step chunks; the pooling's 30 tokens).
    def one_pass(n_chunks):
        return [3] * (n_chunks // 3) + ([n_chunks % 3] if n_chunks % 3 else [])

    for name in kernels:
        n_chunks = -(-(30 if name == "first_direction_pool_kernel" else scan_length(directions, 5, 6)) // 4)
        launches = [chunks for kernel, chunks in seen if kernel == name]
        passes, rest = divmod(len(launches), len(one_pass(n_chunks)))
        assert passes > 0 and rest == 0 and launches == one_pass(n_chunks) * passes, (name, n_chunks, launches)


def test_gate_whose_excitation_alone_records_a_graph_chunks_its_output_pass_for_the_backward(monkeypatch):
    # Inputs and LayerNorm parameters that do not require grad, an excitation whose weight does: the pooling runs with
    # inference chunks, the output pass with training chunks (its weights record a graph), so the output pass computes
    # its own entry states instead of reusing the pooling's.  Output and the excitation weight's gradient against the
    # PyTorch path.
    import scan2d.triton.launch as launch

    seen = []
    real = launch.forward_states
    monkeypatch.setattr(launch, "forward_states", lambda ops: seen.append(ops.for_backward) or real(ops))
    directions = (ScanDirection(4, False, False), ScanDirection(4, True, True))
    inp = make_layer_inputs(1, 5, 6, 12, 2, n_state=4, dtype=torch.float32)
    results = {}
    for backend in ("torch", "triton"):
        device = "cpu" if backend == "torch" else DEVICE
        w1 = (torch.eye(12) + 0.1 * torch.randn(12, 12, generator=torch.Generator().manual_seed(3))).to(device)
        w1.requires_grad_()
        gate = ChannelGate(torch.ones(12, device=device), torch.zeros(12, device=device), 1e-5,
                           lambda pooled: torch.sigmoid(pooled @ w1))
        # 3 chunks of 3 tiles, or 8 of one tile (inference_programs_per_sm=0: on a GPU too)
        with tile_config(block_t=4, inference_tiles=3, inference_programs_per_sm=0):
            out = directional_scan(**{k: v.to(device) for k, v in inp.items()}, directions=directions, height=5,
                                   width=6, gate=gate, backend=backend)
        out.square().sum().backward()
        results[backend] = (out.detach().cpu(), w1.grad.cpu())
    assert seen == [False, True]
    for got, want in zip(results["triton"], results["torch"]):
        torch.testing.assert_close(got, want, **TOL[torch.float32])


def test_gated_layer_saves_its_chunk_states_once():
    # The gate's pooling and the output pass start from one set of chunk entry states, so autograd keeps one
    # (batch x K, chunks, dim, N) float32 buffer for the backward instead of two (94 MB per layer call in bench case
    # (a), 36 gated layers in a dis_w8 training step).
    directions = (ScanDirection(4, False, False), ScanDirection(4, True, True))
    inp = {k: v.to(DEVICE).requires_grad_() for k, v in make_layer_inputs(1, 5, 6, 12, 2, n_state=4,
                                                                          dtype=torch.float32).items()}
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), tile_config(block_t=16):
        directional_scan(**inp, directions=directions, height=5, width=6, gate=make_gate(12, 2, torch.float32,
                         device=DEVICE), backend="triton")
    # (batch x K, chunks, dim, N): the 5x6 map padded to 8x8 windows of 4 is 64 steps, 4 chunks of 16.
    states = {t.data_ptr() for t in saved if t.shape == (2, 4, 12, 4)}
    assert len(states) == 1


@pytest.mark.parametrize("cross_scale", [None, "aligned"])
def test_gated_backward_reads_the_output_gradient_chunk_adjoint_kept(monkeypatch, cross_scale):
    # TileConfig.backward_keeps_dy: the LayerNorm gradient needs each step's recomputed output; chunk_adjoint, which
    # recomputes them anyway, stores the gradient it forms from them and backward_grads reads it instead of
    # recomputing the outputs.  Both ways agree up to rounding, and with the PyTorch path; the ungated layer keeps
    # nothing.  Windows of 4 on a 7x6 map: chunks of 16 steps split unevenly by the padded windows.
    def record(name, grid, meta):
        return name, meta.get("KEEP_DY", False) or meta.get("DY_KEPT", False)

    seen = spy_on_launches(monkeypatch, ("chunk_adjoint_kernel", "backward_grads_kernel"), record)
    directions = (ScanDirection(4, False, False, cross_scale), ScanDirection(4, True, True, cross_scale))
    inp = make_layer_inputs(2, 7, 6, 9, 2, n_state=4, cross_scale=cross_scale is not None)
    w = torch.randn(2, 42, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    runs = {}
    for gated, keep in ((True, True), (True, False), (False, True)):
        gate = make_gate(9, 2) if gated else None
        exact = {k: v.float().double().requires_grad_() for k, v in inp.items()}
        ref = directional_scan(**exact, directions=directions, height=7, width=6, gate=gate, backend="torch")
        ref_grads = torch.autograd.grad((ref * w).sum(), list(exact.values()))
        low = {k: v.detach().to(DEVICE, torch.float32).requires_grad_() for k, v in exact.items()}
        with tile_config(block_t=16, backward_keeps_dy=keep):
            out = directional_scan(**low, directions=directions, height=7, width=6, gate=gate_on(gate, DEVICE),
                                   backend="triton")
            runs[gated, keep] = torch.autograd.grad((out * w.to(DEVICE, torch.float32)).sum(), list(low.values()))
        assert_gradients_close(list(inp), runs[gated, keep], ref_grads, TOL[torch.float32])
    assert_same_but_rounding([g.cpu() for g in runs[True, True]], [g.cpu() for g in runs[True, False]])
    assert seen == [("chunk_adjoint_kernel", True), ("backward_grads_kernel", True),
                    ("chunk_adjoint_kernel", False), ("backward_grads_kernel", False),
                    ("chunk_adjoint_kernel", False), ("backward_grads_kernel", False)], seen


@pytest.mark.parametrize("excitation", ["pooled", "ignores-pooled"])
def test_gated_backward_scans_once_for_both_upstreams(monkeypatch, excitation):
    # The gated output's backward computes the direction weights' gradient (a reduce=4 output pass) and leaves its
    # output gradient to the pooling's backward, which runs after the excitation's and back-propagates both upstreams
    # in one chunk_adjoint and one backward_grads.  An excitation that ignores the pooled statistic never reaches the
    # pooling's backward: the output's backward then does the whole pass itself.  Every gradient (the layer's inputs,
    # the LayerNorm's weight and bias, the excitation's weight, the direction weights) against the PyTorch path.
    seen = spy_on_launches(monkeypatch, ("chunk_adjoint_kernel", "backward_grads_kernel", "forward_output_kernel"))
    directions = (ScanDirection(4, False, False), ScanDirection(4, True, True))
    inp = make_layer_inputs(2, 5, 6, 12, 2, n_state=4, dtype=torch.float32)
    extra = dict(norm_weight=1 + 0.1 * torch.randn(12, generator=torch.Generator().manual_seed(4)),
                 norm_bias=0.1 * torch.randn(12, generator=torch.Generator().manual_seed(5)),
                 w1=0.3 * torch.randn(12, 12, generator=torch.Generator().manual_seed(6)),
                 direction_weights=torch.rand(2, 2, 12, generator=torch.Generator().manual_seed(7)) + 0.5)
    upstream = torch.randn(2, 30, 12, generator=torch.Generator().manual_seed(8))
    grads = {}
    for backend in ("torch", "triton"):
        device = "cpu" if backend == "torch" else DEVICE
        leaves = {k: v.detach().clone().to(device).requires_grad_() for k, v in {**inp, **extra}.items()}
        w1 = leaves["w1"]
        excite = ((lambda pooled: torch.sigmoid(pooled @ w1)) if excitation == "pooled" else
                  (lambda pooled: torch.sigmoid(w1.sum(0)).expand(pooled.shape)))
        gate = ChannelGate(leaves["norm_weight"], leaves["norm_bias"], 1e-5, excite)
        out = directional_scan(**{k: leaves[k] for k in inp}, directions=directions, height=5, width=6, gate=gate,
                               direction_weights=leaves["direction_weights"], backend=backend)
        if backend == "triton":
            seen.clear()
        (out * upstream.to(device)).sum().backward()
        grads[backend] = {k: v.grad.detach().clone().cpu() if v.grad is not None else None for k, v in leaves.items()}
    for name, want in grads["torch"].items():
        got = grads["triton"][name]
        if want is None:  # the LayerNorm's parameters when the excitation ignores the pooled statistic
            assert got is None, name
            continue
        scale = want.abs().max() + 1
        torch.testing.assert_close(got / scale, want / scale, **TOL[torch.float32], msg=name)
    backward = [(name, mode) for name, *_, mode in seen if name != "forward_output_kernel"]
    assert [name for name, _ in backward] == ["chunk_adjoint_kernel", "backward_grads_kernel"]
    reduce_passes = [entry for entry in seen if entry[0] == "forward_output_kernel"]
    # The weights' gradient pass and the LayerNorm backward's token sums, or none without the pooling's backward.
    assert len(reduce_passes) == (2 if excitation == "pooled" else 0)


def test_gate_statistic_alone_back_propagates_without_the_output():
    # A loss on what the excitation saw and not on the layer's output: the output's backward never runs, so nothing
    # is handed on, and the pooling's backward runs with the LayerNorm upstream alone.  Gradients against the PyTorch
    # path.
    directions = (ScanDirection(4, False, False), ScanDirection(4, True, True))
    inp = make_layer_inputs(1, 5, 6, 12, 2, n_state=4, dtype=torch.float32)
    grads = {}
    for backend in ("torch", "triton"):
        device = "cpu" if backend == "torch" else DEVICE
        leaves = {k: v.detach().clone().to(device).requires_grad_() for k, v in inp.items()}
        seen_by_excitation = []
        gate = ChannelGate(torch.ones(12, device=device), torch.zeros(12, device=device), 1e-5,
                           lambda pooled: seen_by_excitation.append(pooled) or torch.sigmoid(pooled))
        directional_scan(**leaves, directions=directions, height=5, width=6, gate=gate, backend=backend)
        seen_by_excitation[0].square().sum().backward()
        grads[backend] = {k: v.grad.detach().clone().cpu() for k, v in leaves.items()}
    for name, want in grads["torch"].items():
        scale = want.abs().max() + 1
        torch.testing.assert_close(grads["triton"][name] / scale, want / scale, **TOL[torch.float32], msg=name)


@pytest.mark.parametrize("cross_scale,deterministic", [(None, False), ("aligned", True)])
def test_gated_forward_scans_direction_zero_once(monkeypatch, cross_scale, deterministic):
    # The gate's statistics pass also writes direction 0's output: the pooling reads it back and the output pass adds
    # the other directions to it, weighted, so direction 0 is scanned in one output-like pass instead of three.
    seen = spy_on_launches(monkeypatch, ("forward_output_kernel", "first_direction_pool_kernel"))
    K = 2 if cross_scale is None else 4
    directions = tuple(ScanDirection(4, c, r, cross_scale) for c, r in ((False, False), (True, True), (True, False),
                                                                      (False, True))[:K])
    inp = {k: v.to(DEVICE) for k, v in make_layer_inputs(2, 5, 6, 12, K, n_state=4, cross_scale=cross_scale is not None,
                                                          dtype=torch.float32).items()}
    gate = make_gate(12, K, dtype=torch.float32, device=DEVICE)
    weights = torch.rand(2, K, 12, generator=torch.Generator().manual_seed(3)).to(DEVICE) + 0.5
    with torch.no_grad(), deterministic_algorithms(deterministic):
        out = directional_scan(**inp, directions=directions, height=5, width=6, gate=gate, direction_weights=weights,
                               backend="triton")
        ref = directional_scan(**inp, directions=directions, height=5, width=6, gate=gate, direction_weights=weights,
                               backend="torch")
    torch.testing.assert_close(out, ref, **TOL[torch.float32])
    # Each forward_output launch scans batch x (its directions) sequences: grid[0].
    scanned = [grid[0] // 2 for name, _, _, grid, _ in seen if name == "forward_output_kernel"]
    assert sum(scanned) == K + 2 * (K - 1), scanned  # statistics: all K; pooling and output: directions 1 .. K-1
    assert [name for name, *_ in seen].count("first_direction_pool_kernel") == 1


def test_every_launch_asks_for_fused_multiply_adds(monkeypatch):
    # launch.COMPILE_OPTIONS: Triton fuses multiply-adds by default, a default that Triton 3.9 says turns off in 3.10;
    # every kernel of a gated layer's forward and backward asks for them explicitly.
    names = ("chunk_end_state_kernel", "chunk_carry_kernel", "forward_output_kernel", "first_direction_pool_kernel",
             "chunk_adjoint_kernel", "backward_grads_kernel")
    seen = spy_on_launches(monkeypatch, names, record=lambda name, grid, meta: (name, meta["enable_fp_fusion"]))
    directions = (ScanDirection(4, False, False), ScanDirection(4, True, True))
    inp = {k: v.to(DEVICE).requires_grad_() for k, v in make_layer_inputs(1, 4, 5, 8, 2, n_state=4,
                                                                         dtype=torch.float32).items()}
    gate = make_gate(8, 2, dtype=torch.float32, device=DEVICE)
    out = directional_scan(**inp, directions=directions, height=4, width=5, gate=gate, backend="triton")
    out.sum().backward()
    assert {name for name, _ in seen} == set(names)
    assert all(fused is True for _, fused in seen), seen


@pytest.mark.parametrize("deterministic", [False, True])
def test_state_loop_runs_the_layer_forward_except_the_deterministic_gate_passes(monkeypatch, deterministic):
    # TileConfig.forward_state_loop routes the 2D layer's and the drop-in scan's forward kernels to the state loop
    # with their own channel block; the deterministic gate statistics passes (one program over all channel blocks)
    # keep the (steps, channels, states) tiles.
    from scan2d import selective_scan
    from test_selective_scan import make_inputs

    seen = spy_on_launches(monkeypatch, ("chunk_end_state_kernel", "forward_output_kernel"))
    directions = (ScanDirection(4, False, False), ScanDirection(4, True, True))
    inp = {k: v.to(DEVICE) for k, v in make_layer_inputs(1, 5, 6, 12, 2, n_state=4, dtype=torch.float32).items()}
    gate = make_gate(12, 2, dtype=torch.float32, device=DEVICE)
    with torch.no_grad(), tile_config(block_d=4, forward_block_d=8, forward_state_loop=True), \
            deterministic_algorithms(deterministic):
        out = directional_scan(**inp, directions=directions, height=5, width=6, gate=gate, backend="triton")
        ref = directional_scan(**inp, directions=directions, height=5, width=6, gate=gate, backend="torch")
        torch.testing.assert_close(out, ref, **TOL[torch.float32])
        layer = list(seen)
        seen.clear()
        drop_in = {k: v.float().to(DEVICE) for k, v in make_inputs(1, 6, 20, 4, 0).items()}
        selective_scan(**drop_in, delta_softplus=True, backend="triton")
    # The gate's pooling: forward states, the mean/variance pass, the normalised-sum pass; then the output pass of
    # direction 1 from the same states (the mean/variance pass wrote direction 0's output).
    gate_stats = [(False, 4), (True, 8)] if deterministic else [(True, 8)] * 2  # the second pass has no atomics
    assert [(loop, block) for _, loop, block, *_ in layer] == [(True, 8)] + gate_stats + [(True, 8)]
    assert {(loop, block) for _, loop, block, *_ in seen} == {(True, 8)}


@pytest.mark.parametrize("fit,block,warps", [(True, 64, 2), (False, 128, 4)])
def test_state_loop_kernels_take_the_channel_block_that_pads_least(monkeypatch, fit, block, warps):
    # 40 channels: one block of 128 leaves 88 threads idle, one of 64 leaves 24, two of 32 as many (a tie keeps the
    # larger block).  The forward kernels and chunk_adjoint take the fitted block with num_warps scaled alike (one
    # channel per thread), and the layer's output and every gradient still match the PyTorch path.
    seen = spy_on_launches(monkeypatch, ("chunk_end_state_kernel", "forward_output_kernel", "chunk_adjoint_kernel"),
                           record=lambda name, grid, meta: (name, meta["BLOCK_D"], meta["num_warps"], grid[1]))
    directions = (ScanDirection(4, False, False), ScanDirection(4, True, True))
    inp = make_layer_inputs(1, 5, 6, 40, 2, n_state=4, dtype=torch.float32)
    ref_in = {k: v.double().requires_grad_() for k, v in inp.items()}
    dev_in = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
    ref = directional_scan(**ref_in, directions=directions, height=5, width=6, backend="torch")
    weight = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with tile_config(forward_block_d=128, num_warps=4, forward_block_fit=fit):
        out = directional_scan(**dev_in, directions=directions, height=5, width=6, backend="triton")
        (out * weight.to(DEVICE, torch.float32)).sum().backward()
    (ref * weight).sum().backward()
    assert {(b, w, blocks) for _, b, w, blocks in seen} == {(block, warps, 1)}
    assert {name for name, *_ in seen} == {"chunk_end_state_kernel", "forward_output_kernel", "chunk_adjoint_kernel"}
    torch.testing.assert_close(out.detach().double().cpu(), ref.detach(), **TOL[torch.float32])
    assert_gradients_close(list(inp), [dev_in[k].grad for k in inp], [ref_in[k].grad for k in inp],
                           TOL[torch.float32])


def test_register_caps_reach_the_state_loop_launches(monkeypatch):
    # TileConfig.forward_maxnreg caps the training forward (one-tile chunks), backward_maxnreg the state-loop
    # backward; inference chunks, which carry their states in registers, keep ptxas's choice.
    seen = spy_on_launches(monkeypatch, ("chunk_end_state_kernel", "forward_output_kernel", "backward_grads_kernel"),
                           record=lambda name, grid, meta: (name, meta.get("TILES"), meta.get("maxnreg")))
    directions = (ScanDirection(4), ScanDirection(4, True, True))
    inp = make_layer_inputs(1, 4, 6, 8, 2, n_state=4, dtype=torch.float32)
    with tile_config(forward_maxnreg=160, backward_maxnreg=200, inference_tiles=2, inference_programs_per_sm=0):
        run_triton_layer(inp, directions, 4, 6, True)
        assert set(seen) == {("chunk_end_state_kernel", 1, 160), ("forward_output_kernel", 1, 160),
                             ("backward_grads_kernel", None, 200)}, seen
        seen.clear()
        run_triton_layer(inp, directions, 4, 6, False)
        assert set(seen) == {("chunk_end_state_kernel", 2, None), ("forward_output_kernel", 2, None)}, seen


@pytest.mark.parametrize("deterministic,sums,cross_scale", [
    (False, {}, None), (False, dict(backward_dx_copies=True), None),
    (False, dict(backward_direction_launches=True), "aligned"), (True, {}, None), (True, {}, "aligned"),
    (False, dict(backward_lane_sums=False), "aligned"), (True, dict(backward_lane_sums=False), None)],
    ids=["atomics", "dx-copies", "direction-launches-cross-scale", "deterministic", "deterministic-cross-scale",
         "warp-sums-cross-scale", "warp-sums-deterministic"])
def test_backward_state_loop_runs_in_every_mode(monkeypatch, deterministic, sums, cross_scale):
    # TileConfig.backward_state_loop: backward_grads of the 2D layer in one-warp programs of backward_block_d channels
    # (40 channels).  With backward_dx_copies each channel block stores its dB, dC and dt low-rank sums into its own
    # copy of dx, which the host adds up; with backward_direction_launches one launch per direction adds du without
    # atomics; deterministic mode does both.  backward_lane_sums (the default; 32-channel programs: a block of 32 and a
    # short one of 8) reduce-scatters dB's and dC's sums over the lanes; switched off, every lane sums every step over
    # the warp (blocks of 16).  chunk_adjoint (no atomics) runs on forward_block_d channels either way.  Gradients
    # checked against the PyTorch path (a copy left out of the sum, a store where an add was needed, or a lane adding
    # the wrong step's sum would show in dx, dx_low or du).
    seen = spy_on_launches(monkeypatch, ("chunk_adjoint_kernel", "backward_grads_kernel"))
    directions = (ScanDirection(None, False, False, cross_scale), ScanDirection(None, True, True, cross_scale))
    inp = make_layer_inputs(1, 4, 5, 40, 2, n_state=4, dtype=torch.float32, cross_scale=cross_scale is not None)
    ref_in = {k: v.clone().requires_grad_() for k, v in inp.items()}
    directional_scan(**ref_in, directions=directions, height=4, width=5, backend="torch").square().sum().backward()
    dev_in = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
    lane_sums = sums.get("backward_lane_sums", TileConfig.backward_lane_sums)
    block, blocks = (32, 2) if lane_sums else (16, 3)
    with tile_config(block_t=16, block_d=4, backward_block_d=block, forward_block_d=8, backward_state_loop=True,
                     **sums), \
            deterministic_algorithms(deterministic):
        out = directional_scan(**dev_in, directions=directions, height=4, width=5, backend="triton")
        out.square().sum().backward()
    for name in inp:
        g, r = dev_in[name].grad.cpu(), ref_in[name].grad
        torch.testing.assert_close(g / (r.abs().max() + 1), r / (r.abs().max() + 1), **TOL[torch.float32], msg=name)
    launches = [(grid, mode) for name, _, _, grid, mode in seen if name == "backward_grads_kernel"]
    # Grids (batch x directions, channel blocks, chunks): two directions in one launch, or one launch each.
    # 20 steps, or 30 with cross-scale (5 per token of the 2x3 low-resolution map): 2 chunks of 16 either way.
    copies = deterministic or sums.get("backward_dx_copies", False)
    if deterministic or sums.get("backward_direction_launches", False):
        assert launches == [((1, blocks, 2), (copies, True, lane_sums))] * 2
    else:
        assert launches == [((2, blocks, 2), (copies, False, lane_sums))]
    assert {entry[:3] for entry in seen} == {("chunk_adjoint_kernel", True, 8), ("backward_grads_kernel", True, block)}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: the interpreter runs one program at a time, so "
                    "its atomics add in a fixed order and every run repeats anyway")
@pytest.mark.parametrize("lane_sums", [False, True], ids=["warp-sums", "lane-sums"])
@pytest.mark.parametrize("cross_scale", [None, "aligned"])
def test_deterministic_mode_repeats_bit_for_bit(cross_scale, lane_sums):
    # Many programs add into the same tokens here (40 channels: 2 or 3 channel blocks, 4 directions sharing u, 768
    # steps), which is where atomics would reorder float additions between runs.  Also with the backward's sums over
    # lanes reduce-scattered (TileConfig.backward_lane_sums).
    directions = tuple(ScanDirection(8, c, r, cross_scale) for c in (False, True) for r in (False, True))
    inp = make_layer_inputs(2, 32, 24, 40, 4, n_state=16, cross_scale=cross_scale is not None, dtype=torch.float32)
    scale = torch.rand(40, device=DEVICE)
    gate = ChannelGate(torch.ones(40, device=DEVICE), torch.zeros(40, device=DEVICE), 1e-5,
                       lambda pooled: torch.sigmoid(pooled * scale))  # elementwise: no cuBLAS in deterministic mode
    w = torch.randn(2, 32 * 24, 40, device=DEVICE)

    def run():
        leaves = {k: v.to(DEVICE).requires_grad_() for k, v in inp.items()}
        with deterministic_algorithms(True), tile_config(backward_lane_sums=lane_sums):
            out = directional_scan(**leaves, directions=directions, height=32, width=24, gate=gate, backend="triton")
            grads = torch.autograd.grad((out * w).sum(), list(leaves.values()))
        return (out, *grads)

    first, second = run(), run()
    for name, a, b in zip(["out", *inp], first, second):
        assert torch.equal(a, b), f"{name} differs between two deterministic runs"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("state_loop,adjoint_block_t", [(True, None), (True, 4), (False, None)])
def test_gated_16_bit_layer_normalizes_direction_zero_as_it_stored_it(dtype, state_loop, adjoint_block_t):
    # The gated forward stores direction 0's output once, rounded to the layer's dtype, and pools and weights those
    # stored values.  With one channel, LayerNorm(y) is its bias exactly (y - mean = 0), but rstd = 1 / sqrt(eps):
    # statistics of the unrounded y against the rounded one amplified a bfloat16 rounding 316-fold into the gate
    # (hypothesis found it: 0.12 off in the output, 126 in du).  Forward and every gradient against float64;
    # chunk_adjoint, which recomputes the outputs for the LayerNorm gradient, also in 4-step tiles.
    check_against_torch_path(batch=1, height=8, width=3, dim=1, specs=[(None, True, True), (None, False, True)],
                             cross_scale="aligned", gated=True, weighted=False, dtype=dtype, blocks=(16, 16),
                             deterministic=False, state_loop=state_loop, state_unroll=1, backward_sums={},
                             forward_block_t=None, adjoint_block_t=adjoint_block_t)
