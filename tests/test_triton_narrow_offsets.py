"""32-bit pointer offsets (``TileConfig.narrow_offsets``, ``tile_io.offset``) change no result: they are the same
numbers in fewer bits, so the layer's and the drop-in scan's outputs and every gradient are bit for bit those of the
wide build.  The host takes 64 bits per launch, where an input, a state buffer or a tensor of that launch can pass
2^31 elements.  (tests/test_triton_int64_offsets.py: the wide build's offsets that grow with batch or length are
64-bit, the narrow build's all 32-bit.)"""

import pytest
import torch

from directional_cases import make_layer_inputs, run_triton_layer
from launch_spy import STATE_LOOP_KERNELS, spy_on_launches
from scan2d import ScanDirection, selective_scan
from scan2d.triton import operands
from scan2d.triton.operands import spans_past_int32
from scan2d.triton.tiles import tile_config
from test_selective_scan import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def spy_on_wide(monkeypatch):
    """[(kernel name, WIDE)] of every launch of the four kernels that take the flag, from now on."""
    seen = spy_on_launches(monkeypatch, STATE_LOOP_KERNELS, record=lambda name, grid, meta: (name, meta["WIDE"]))
    return seen


@pytest.mark.parametrize("cross_scale,dtype,grad,tiles", [
    (None, torch.float32, True, {}),                                          # training
    ("aligned", torch.bfloat16, True, dict(backward_dx_copies=True)),         # low-resolution rows, dx's copies
    (None, torch.float32, False, dict(inference_tiles=2, narrow_inference_offsets=True)),  # inference chunks
    ("aligned", torch.float32, True, dict(forward_state_loop=False, backward_state_loop=False)),  # tile kernels
])
def test_layer_results_are_bit_identical_with_32_bit_offsets(monkeypatch, cross_scale, dtype, grad, tiles):
    seen = spy_on_wide(monkeypatch)
    directions = (ScanDirection(4, False, False, cross_scale), ScanDirection(4, True, True, cross_scale))
    inp = {k: v.to(DEVICE, dtype) for k, v in make_layer_inputs(2, 5, 7, 9, 2, n_state=4, rank=6,
                                                                cross_scale=cross_scale is not None).items()}
    narrow = run_triton_layer(inp, directions, 5, 7, grad, **tiles)
    assert seen and not any(wide for _, wide in seen), seen
    seen.clear()
    wide = run_triton_layer(inp, directions, 5, 7, grad, narrow_offsets=False, **tiles)
    assert seen and all(wide for _, wide in seen), seen
    for a, b in zip(narrow, wide):
        assert torch.equal(a, b), (a - b).abs().max()


def test_only_the_training_kernels_take_32_bits_by_default(monkeypatch):
    # The forward without gradients ran 1.7x slower with 32-bit offsets on the H200 (2026-12-04), the training kernels
    # no slower: TileConfig.narrow_inference_offsets is off, narrow_offsets on.
    seen = spy_on_wide(monkeypatch)
    directions = (ScanDirection(4), ScanDirection(4, True, True))
    inp = make_layer_inputs(1, 5, 7, 9, 2, n_state=4, rank=6, dtype=torch.float32)
    for grad, tiles, wide in [(False, {}, True), (True, {}, False), (False, dict(narrow_inference_offsets=True), False),
                              (True, dict(narrow_offsets=False), True)]:
        seen.clear()
        run_triton_layer(inp, directions, 5, 7, grad, inference_tiles=2, **tiles)
        assert seen and all(flag == wide for _, flag in seen), (grad, tiles, seen)


@pytest.mark.parametrize("groups", [0, 2])
def test_drop_in_results_are_bit_identical_with_32_bit_offsets(monkeypatch, groups):
    seen = spy_on_wide(monkeypatch)
    inp = {k: v.to(DEVICE, torch.float32) for k, v in make_inputs(2, 6, 37, 4, groups).items()}

    def run(**tiles):
        leaves = {k: v.detach().clone().requires_grad_() for k, v in inp.items()}
        with tile_config(**tiles):
            out = selective_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"],
                                 leaves["z"], leaves["delta_bias"], True, backend="triton")
            out.backward(torch.linspace(-1, 1, out.numel(), device=DEVICE).view_as(out))
        return [out] + [leaves[k].grad for k in sorted(leaves)]

    narrow = run()
    assert seen and not any(wide for _, wide in seen), seen
    seen.clear()
    wide = run(narrow_offsets=False)
    assert seen and all(wide for _, wide in seen), seen
    for a, b in zip(narrow, wide):
        assert torch.equal(a, b), (a - b).abs().max()


def test_spans_past_int32_bounds_a_view_by_its_storage(monkeypatch):
    monkeypatch.setattr(operands, "INT32_OFFSET_LIMIT", 100)
    assert not spans_past_int32(torch.empty(99), None)
    assert spans_past_int32(torch.empty(99), torch.empty(100))
    assert spans_past_int32(torch.empty(200)[:10])  # a small view of a large storage: 64 bits, to be safe
    doubles = torch.empty(50, dtype=torch.float64)
    assert not spans_past_int32(doubles)
    assert spans_past_int32(doubles.view(torch.float32))  # the same bytes hold 100 floats


def test_each_launch_takes_64_bits_where_its_own_tensors_pass_the_limit(monkeypatch):
    # With one copy of dx per channel block (backward_dx_copies), the backward's own buffers are the largest
    # tensors: a limit above everything else but below them makes that launch alone wide, and nothing changes.
    height, width, dim, K, rank, n_state = 6, 8, 40, 2, 6, 8
    inp = make_layer_inputs(1, height, width, dim, K, n_state=n_state, rank=rank, dtype=torch.float32)
    directions = (ScanDirection(4), ScanDirection(4, True, True))
    tiles = dict(backward_dx_copies=True, backward_block_d=32)
    tokens = height * width
    copies = 2 * tokens * K * (rank + 2 * n_state)  # two channel blocks of 32: 88 floats per token
    assert max(inp["u"].numel(), inp["xdbl"].numel()) < 60 * tokens < copies
    narrow = run_triton_layer(inp, directions, height, width, True, **tiles)
    seen = spy_on_wide(monkeypatch)
    monkeypatch.setattr(operands, "INT32_OFFSET_LIMIT", 60 * tokens)
    mixed = run_triton_layer(inp, directions, height, width, True, **tiles)
    assert {name for name, wide in seen if wide} == {"backward_grads_kernel"}, seen
    assert {name for name, wide in seen if not wide} == set(STATE_LOOP_KERNELS) - {"backward_grads_kernel"}, seen
    for a, b in zip(narrow, mixed):
        assert torch.equal(a, b), (a - b).abs().max()


def test_operands_take_64_bits_for_large_inputs_state_buffers_or_when_asked(monkeypatch):
    from scan2d.directional.triton_op import _operands

    inp = make_layer_inputs(1, 6, 8, 40, 2, n_state=16, rank=6, dtype=torch.float32)

    def layer_operands(**tiles):
        with tile_config(**tiles):
            return _operands(**inp, directions=(ScanDirection(4), ScanDirection(4, True)), height=6, width=8,
                             u_low=None, xdbl_low=None)

    assert not layer_operands().wide_offsets
    assert layer_operands(narrow_offsets=False).wide_offsets
    monkeypatch.setattr(operands, "INT32_OFFSET_LIMIT", inp["u"].numel())  # u reaches it
    assert layer_operands().wide_offsets
    # One state per (direction, chunk, channel): the 6 x 8 map's windows of 4 pad it to 64 steps, 4 chunks of 16, so
    # 2 x 4 x 40 x 16 = 5,120 floats, more than any input holds (x: 48 x 2 x 38 = 3,648).
    assert layer_operands(block_t=16).n_chunks == 4
    states = 2 * 4 * 40 * 16
    assert states > max(v.numel() for v in inp.values())
    monkeypatch.setattr(operands, "INT32_OFFSET_LIMIT", states)
    assert layer_operands(block_t=16).wide_offsets
    monkeypatch.setattr(operands, "INT32_OFFSET_LIMIT", states + 1)
    assert not layer_operands(block_t=16).wide_offsets
