"""The PyTorch selective scan against the float64 step-by-step reference, values and gradients."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scan2d import selective_scan, selective_scan_ref
from scan2d.selective_scan.chunked import _block_steps, _linear_recurrence, selective_scan_chunked


def make_inputs(batch, dim, length, n_state, groups, dtype=torch.float64, seed=0):
    """Random inputs in the ranges a Mamba layer sees (delta around softplus(-2..1), A = -exp(A_log))."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    shape_bc = (batch, n_state, length) if groups == 0 else (batch, groups, n_state, length)
    inputs = dict(
        u=rnd(batch, dim, length),
        delta=rnd(batch, dim, length) * 0.5 - 1.0,
        A=-torch.exp(rnd(dim, n_state) * 0.5 + 0.5),
        B=rnd(*shape_bc),
        C=rnd(*shape_bc),
        D=rnd(dim),
        z=rnd(batch, dim, length),
        delta_bias=rnd(dim) * 0.3,
    )
    return {k: v.to(dtype) for k, v in inputs.items()}


options = st.fixed_dictionaries(dict(
    batch=st.integers(1, 3),
    dim=st.sampled_from([1, 3, 4, 6, 8]),
    length=st.integers(1, 80),
    n_state=st.sampled_from([1, 4, 16]),
    use_D=st.booleans(),
    use_z=st.booleans(),
    use_bias=st.booleans(),
    softplus=st.booleans(),
    grouped=st.booleans(),
    chunk=st.sampled_from([None, 1, 5, 16]),
))


def _call(fn, inp, opt, **extra):
    return fn(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"],
              inp["D"] if opt["use_D"] else None,
              inp["z"] if opt["use_z"] else None,
              inp["delta_bias"] if opt["use_bias"] else None,
              opt["softplus"], **extra)


@given(options)
def test_chunked_matches_reference_float64(opt):
    groups = (opt["dim"] if opt["dim"] in (1, 3) else 2) if opt["grouped"] else 0
    inp = make_inputs(opt["batch"], opt["dim"], opt["length"], opt["n_state"], groups)
    ref, ref_state = _call(selective_scan_ref, inp, opt, return_last_state=True)
    out, state = _call(selective_scan_chunked, inp, opt, return_last_state=True, chunk_size=opt["chunk"])
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, ref_state, rtol=1e-10, atol=1e-10)


@given(options)
def test_chunked_gradients_match_reference(opt):
    groups = 2 if opt["grouped"] and opt["dim"] % 2 == 0 else 0
    inp = make_inputs(opt["batch"], opt["dim"], min(opt["length"], 40), opt["n_state"], groups)
    names = ["u", "delta", "A", "B", "C"] + [n for n, k in (("D", "use_D"), ("z", "use_z"),
                                                            ("delta_bias", "use_bias")) if opt[k]]
    grads = {}
    for fn in (selective_scan_ref, selective_scan_chunked):
        leaves = {k: v.clone().requires_grad_(k in names) for k, v in inp.items()}
        out = _call(fn, leaves, opt)
        weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        grads[fn] = torch.autograd.grad((out * weight).sum(), [leaves[n] for n in names])
    for name, a, b in zip(names, grads[selective_scan_ref], grads[selective_scan_chunked]):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("steps", [0, 1, 2, 3, 8, 9, 31, 32, 33, 100, 256])
def test_linear_recurrence_matches_a_step_loop(steps, reverse):
    # The two-level recurrence (blocks side by side, then the carry between them) against the recurrence written
    # one step at a time, on lengths that are and are not whole blocks, in both directions.
    g = torch.Generator().manual_seed(steps)
    decay = torch.rand(2, 3, steps, 4, generator=g, dtype=torch.float64)
    drive = torch.randn(2, 3, steps, 4, generator=g, dtype=torch.float64)
    h0 = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    expected, h = torch.empty_like(drive), h0
    for t in (reversed(range(steps)) if reverse else range(steps)):
        h = decay[..., t, :] * h + drive[..., t, :]
        expected[..., t, :] = h
    states = _linear_recurrence(h0, decay.clone(), drive.clone(), reverse=reverse)
    torch.testing.assert_close(states, expected, rtol=1e-12, atol=1e-12)
    assert steps < 9 or 1 < _block_steps(steps) < steps  # the longer cases take both levels


def test_gradcheck_chunked():
    inp = make_inputs(2, 4, 19, 3, 2)
    leaves = [inp[k].requires_grad_() for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    assert torch.autograd.gradcheck(
        lambda *a: selective_scan_chunked(*a, delta_softplus=True, chunk_size=4), leaves, fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_inputs_keep_state_in_float32(dtype):
    inp = make_inputs(2, 8, 50, 16, 0)
    ref = selective_scan_ref(**inp, delta_softplus=True)
    low = {k: v.to(dtype) for k, v in inp.items()}
    out = selective_scan(**low, delta_softplus=True, backend="torch")
    assert out.dtype == dtype
    # Error comes from rounding the inputs and the output, not from accumulating in low precision.
    tol = {torch.float32: 1e-4, torch.bfloat16: 0.1, torch.float16: 2e-2}[dtype]
    ref_low = selective_scan_ref(**{k: v.to(torch.float64) for k, v in low.items()}, delta_softplus=True)
    torch.testing.assert_close(out.double(), ref_low, rtol=tol, atol=tol)
    assert (out.double() - ref).abs().max() < 10 * tol * ref.abs().max()


def test_long_sequence_memory_is_chunked():
    # A (batch, dim, L, N) float32 tensor here would be 2*64*4096*16*4 B = 32 MiB; the chunked path needs only
    # chunk-sized temporaries, which we check through the autograd graph's saved tensors.
    inp = make_inputs(2, 64, 4096, 16, 0, dtype=torch.float32)
    inp["u"].requires_grad_()
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = selective_scan(**inp, delta_softplus=True, backend="torch")
    assert max(sizes) < 2 * 64 * 4096 * 16 // 8
    out.sum().backward()
    assert torch.isfinite(inp["u"].grad).all()


def _valid():
    return make_inputs(2, 4, 10, 3, 0, dtype=torch.float32)


@pytest.mark.parametrize("change, match", [
    (lambda a: a.update(u=a["u"][0]), r"u must have shape \(batch, dim, L\)"),
    (lambda a: a.update(delta=a["delta"][:, :, :5]), r"delta must have shape"),
    (lambda a: a.update(A=a["A"][:3]), r"A must have shape \(dim, N\) with dim=4"),
    (lambda a: a.update(B=a["B"][:, :2]), r"B must have shape \(batch, N, L\)"),
    (lambda a: a.update(C=torch.zeros(2, 3, 3, 10)), r"C has 3 groups"),
    (lambda a: a.update(D=torch.zeros(5)), r"D must have shape \(dim,\)"),
    (lambda a: a.update(z=torch.zeros(2, 4, 9)), r"z must have shape"),
    (lambda a: a.update(delta_bias=torch.zeros(4, 1)), r"delta_bias must have shape \(dim,\)"),
    (lambda a: a.update(u=a["u"].long()), r"u must have dtype"),
    (lambda a: a.update(u=a["u"].to("meta")), r"u is on meta"),
])
def test_bad_arguments_name_the_argument(change, match):
    args = _valid()
    change(args)
    with pytest.raises(ValueError, match=match):
        selective_scan(**args, backend="torch")


def test_bad_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(**_valid(), backend="cuda")


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("batch,dim,length", [(0, 4, 10), (2, 0, 10), (2, 4, 0)])
def test_empty_scans_give_empty_outputs_and_zero_gradients(backend, batch, dim, length):
    # As torch's own ops do: no work gives an empty output, the zero state (no step ran) and gradients of every
    # input's shape, the parameters' all zero.  (The Triton backend runs under the interpreter on a CPU.)
    inp = {k: v.requires_grad_() for k, v in make_inputs(batch, dim, length, 4, 0, dtype=torch.float32).items()}
    out, last = selective_scan(**inp, delta_softplus=True, return_last_state=True, backend=backend)
    assert out.shape == (batch, dim, length) and last.shape == (batch, dim, 4)
    assert torch.equal(last, torch.zeros_like(last))
    (out.sum() + last.sum()).backward()
    for name, v in inp.items():
        assert v.grad is not None and v.grad.shape == v.shape, name
        assert torch.equal(v.grad, torch.zeros_like(v)), name
