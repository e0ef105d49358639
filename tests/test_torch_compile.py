"""The scan ops under torch.compile.

The Triton paths of the drop-in scan and of the ungated 2D layer trace as custom ops (``scan2d::selective_scan_fwd``,
``scan2d::directional_scan_fwd`` and their backwards), so a compiled model holds them in one graph; the gated layer
breaks the graph and runs eagerly; the PyTorch paths trace as plain PyTorch.  Compiled calls must give the eager
results, forward and every gradient.  The "aot_eager" backend runs what decides whether an op traces (Dynamo, fake
tensors, AOTAutograd) without inductor's C++ build; the kernels run under Triton's interpreter on the CPU, or on the
GPU when there is one.
"""

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import scan2d
from scan2d.directional import triton_op as directional_op
from scan2d.selective_scan import triton_op  # noqa: F401  (registers the scan2d::selective_scan_* ops)
from scan2d.triton.tiles import current_tiles, tile_config
from directional_cases import directions_for, make_gate, make_layer_inputs
from test_selective_scan import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    # Each test compiles from scratch: a frame past Dynamo's recompile limit would run eagerly without a word.
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _compile(fn, fullgraph: bool):
    """fn compiled with the aot_eager backend, and the counter of the graphs Dynamo hands it."""
    counter = CompileCounterWithBackend("aot_eager")
    return torch.compile(fn, backend=counter, fullgraph=fullgraph), counter


def _leaves(inputs: dict, dtype) -> dict:
    return {k: v.to(device=DEVICE, dtype=dtype).requires_grad_() for k, v in inputs.items()}


def _output_and_grads(fn, leaves: dict, tiles: dict) -> list:
    """fn(leaves) with its forward under ``tiles`` and its backward outside them (the backward must take the
    forward's tiles), then every leaf's gradient."""
    with tile_config(**tiles):
        out = fn(leaves)
    outs = out if isinstance(out, tuple) else (out,)
    # sin() makes the output's gradient differ from step to step; the last state is not differentiable.
    grads = torch.autograd.grad(outs[0].float().sin().sum(), list(leaves.values()))
    return [o.detach() for o in outs] + list(grads)


def _assert_same(compiled: list, eager: list):
    """Bit for bit under the interpreter, which runs one program at a time; on a GPU the backward's atomics may add in
    another order (one bfloat16 rounding step apart at most)."""
    assert len(compiled) == len(eager)
    for got, want in zip(compiled, eager):
        assert got.dtype == want.dtype and got.shape == want.shape
        if DEVICE == "cpu":
            assert torch.equal(got, want)
        else:
            tol = 1e-2 if got.dtype == torch.bfloat16 else 1e-5
            torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("groups, optional, dtype", [(0, True, torch.float32), (2, False, torch.bfloat16)],
                         ids=["fp32-D-z-bias", "bf16-grouped-bare"])
def test_selective_scan_traces_as_one_graph(groups, optional, dtype):
    inputs = make_inputs(2, 4, 37, 4, groups)
    if not optional:
        inputs = {k: v for k, v in inputs.items() if k not in ("D", "z", "delta_bias")}

    def scan(t):
        return scan2d.selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], t.get("D"), t.get("z"),
                                     t.get("delta_bias"), True, return_last_state=True, backend="triton")

    compiled, graphs = _compile(scan, fullgraph=True)  # fails on a graph break
    tiles = dict(block_t=8)  # 5 chunks, the last cut short
    eager = _output_and_grads(scan, _leaves(inputs, dtype), tiles)
    _assert_same(_output_and_grads(compiled, _leaves(inputs, dtype), tiles), eager)
    with torch.no_grad():  # the inference forward: no chunk states kept
        out, last = compiled({k: v.to(DEVICE, dtype) for k, v in inputs.items()})
    # Inference chunks are longer than training ones (TileConfig.inference_tiles): the same sums in another order.
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(out, eager[0], rtol=tol, atol=tol)
    torch.testing.assert_close(last, eager[1], rtol=tol, atol=tol)
    assert graphs.frame_count == 2  # with and without gradients


@pytest.mark.parametrize("cross_scale, weighted", [(None, True), ("aligned", False)], ids=["plain-weighted",
                                                                                           "cross-scale"])
def test_ungated_layer_traces_as_one_graph(cross_scale, weighted):
    height, width, dim, K = 5, 7, 6, 2
    inputs = make_layer_inputs(2, height, width, dim, K, cross_scale=cross_scale is not None)
    if weighted:
        inputs["direction_weights"] = torch.rand(2, K, dim, dtype=torch.float64)
    directions = directions_for(K, 4, cross_scale)

    def layer(t):
        return scan2d.directional_scan(**t, directions=directions, height=height, width=width, backend="triton")

    compiled, graphs = _compile(layer, fullgraph=True)
    eager = _output_and_grads(layer, _leaves(inputs, torch.float32), {})
    _assert_same(_output_and_grads(compiled, _leaves(inputs, torch.float32), {}), eager)
    assert graphs.frame_count == 1


def test_compiled_calls_take_new_sizes():
    """A second map size (and sequence length) makes Dynamo retrace with symbolic sizes: the fake forwards must
    then still give the chunk counts the kernels use, and the compiled calls the eager results at every size."""
    dim, K = 6, 2
    directions = directions_for(K, 4)
    layer_keys = ("xdbl", "dt_weight", "dt_bias", "A", "D")

    def layer(t):
        batch, height, width, channels = t["image"].shape  # the map's sides from a tensor's shape, as a model's
        u = t["image"].reshape(batch, height * width, channels)
        out = scan2d.directional_scan(u, *(t[k] for k in layer_keys), directions, height, width, backend="triton")
        # The drop-in scan on a sequence of that length.
        return out + scan2d.selective_scan(u.transpose(1, 2), t["delta"], t["A1"], t["B"], t["C"],
                                           delta_softplus=True, backend="triton").transpose(1, 2)

    compiled, graphs = _compile(layer, fullgraph=True)
    for height, width in [(4, 5), (6, 7), (5, 9)]:
        inputs = make_layer_inputs(1, height, width, dim, K)
        scan = make_inputs(1, dim, height * width, 4, 0)
        inputs = dict(inputs, image=inputs.pop("u").view(1, height, width, dim), delta=scan["delta"], A1=scan["A"],
                      B=scan["B"], C=scan["C"])
        _assert_same(_output_and_grads(compiled, _leaves(inputs, torch.float32), {}),
                     _output_and_grads(layer, _leaves(inputs, torch.float32), {}))
    # The layer's fake forward specializes the graph to each map size (its scan geometry is worked out in Python).
    assert graphs.frame_count == 3


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_gated_layer_compiles(backend):
    """The model's layer: the Triton path breaks the graph (``directional.triton_op._gated_scan``), the PyTorch path
    traces."""
    height, width, dim, K = 4, 6, 6, 2
    inputs = make_layer_inputs(1, height, width, dim, K)
    gate = make_gate(dim, K, torch.float32, device=DEVICE)
    directions = directions_for(K, 4)

    def layer(t):
        t = dict(t, u=t["u"] * 1.5)  # an op before the scan and one after it: a graph on each side of a break
        return 2 * scan2d.directional_scan(**t, directions=directions, height=height, width=width, gate=gate,
                                           backend=backend)

    compiled, graphs = _compile(layer, fullgraph=backend == "torch")
    eager = _output_and_grads(layer, _leaves(inputs, torch.float32), {})
    _assert_same(_output_and_grads(compiled, _leaves(inputs, torch.float32), {}), eager)
    assert graphs.frame_count == (2 if backend == "triton" else 1)


def test_custom_ops_pass_opcheck():
    """torch.library.opcheck: each op's schema, its fake implementation against the real outputs (shapes, strides,
    dtypes), its autograd registration, and AOTAutograd with dynamic shapes (the forward ops)."""
    with tile_config(block_t=8):  # 3 chunks of the drop-in's 21 steps, 2 of the layer's 15 pixels
        tiles = current_tiles().key
    s = _leaves(make_inputs(1, 4, 21, 4, 0), torch.float32)
    forward_args = (s["u"], s["delta"], s["A"], s["B"], s["C"], s["D"], None, s["delta_bias"], True, True, tiles)
    torch.library.opcheck(torch.ops.scan2d.selective_scan_fwd.default, forward_args)
    _, _, entry, dsum = torch.ops.scan2d.selective_scan_fwd(*forward_args)
    torch.library.opcheck(torch.ops.scan2d.selective_scan_bwd.default,
                          (torch.randn_like(s["u"]), *forward_args[:8], entry, dsum, True, tiles),
                          test_utils=("test_schema", "test_faketensor"))

    height, width, dim, K = 3, 5, 4, 2
    t = _leaves(make_layer_inputs(1, height, width, dim, K, cross_scale=True), torch.float32)
    key = directional_op._directions_key(directions_for(K, 2, "aligned"))
    weight = torch.rand(1, K, dim, device=DEVICE, requires_grad=True)
    layer_args = (t["u"], t["xdbl"], t["dt_weight"], t["dt_bias"], t["A"], t["D"], t["u_low"], t["xdbl_low"], weight,
                  key, height, width, True, tiles)
    torch.library.opcheck(torch.ops.scan2d.directional_scan_fwd.default, layer_args)
    _, entry, dsum = torch.ops.scan2d.directional_scan_fwd(*layer_args)
    torch.library.opcheck(torch.ops.scan2d.directional_scan_bwd.default,
                          (torch.randn_like(t["u"]), *layer_args[:9], entry, dsum, key, height, width, tiles),
                          test_utils=("test_schema", "test_faketensor"))


def test_directions_travel_as_their_names():
    directions = directions_for(4, 8, "aligned") + (scan2d.ScanDirection(None, True, False, "aligned"),)
    key = directional_op._directions_key(directions)
    assert key == "w8,w8_flip,c_w8,c_w8_flip,c_global|aligned"
    assert directional_op._directions_from_key(key) == directions
    assert directional_op._directions_from_key("w4|") == (scan2d.ScanDirection(4),)
