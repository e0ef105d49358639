"""The tests' shortcuts through Triton's interpreter (fast_interpreter.py) give the interpreter's own results bit for
bit: the slice-at-a-time ``tl.associative_scan`` on the scan kernels' combine functions, patching the language once
per launch on kernels that call jit helpers, which leaves the language unpatched after each launch, integer
arithmetic without the overflow checks that only a debug build would assert, numpy dtypes looked up once per
element type, and tile types, tensors and broadcasts built from what is known of their shapes."""

import math
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

import fast_interpreter
from scan2d.triton import recurrence, tile_io

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="checks a replacement inside Triton's interpreter; on a GPU kernels compile")


@triton.jit
def _scans_kernel(a_ptr, b_ptr, c_ptr, out_ptr, S0: tl.constexpr, S1: tl.constexpr, S2: tl.constexpr,
                  AXIS: tl.constexpr, REVERSE: tl.constexpr):
    # a, b, c: (S0 * S1 * S2,) float32, read as (S0, S1, S2) tiles; out: (5, S0 * S1 * S2), the two scans' results.
    size: tl.constexpr = S0 * S1 * S2
    offs = tl.arange(0, size)
    a = tl.reshape(tl.load(a_ptr + offs), (S0, S1, S2))
    b = tl.reshape(tl.load(b_ptr + offs), (S0, S1, S2))
    c = tl.reshape(tl.load(c_ptr + offs), (S0, S1, S2))
    decay, state = tl.associative_scan((a, b), AXIS, recurrence.combine, reverse=REVERSE)
    f, m, g = tl.associative_scan((a, b, c), AXIS, recurrence.adjoint_combine, reverse=REVERSE)
    tl.store(out_ptr + offs, tl.reshape(decay, (size,)))
    tl.store(out_ptr + size + offs, tl.reshape(state, (size,)))
    tl.store(out_ptr + 2 * size + offs, tl.reshape(f, (size,)))
    tl.store(out_ptr + 3 * size + offs, tl.reshape(m, (size,)))
    tl.store(out_ptr + 4 * size + offs, tl.reshape(g, (size,)))


def _inputs(shape):
    gen = torch.Generator().manual_seed(1)
    size = shape[0] * shape[1] * shape[2]
    a = torch.rand(size, generator=gen) * 0.5 + 0.5  # decays
    b, c = torch.randn(2, size, generator=gen)
    return a, b, c


def _scans(shape, axis, reverse):
    a, b, c = _inputs(shape)
    out = torch.empty(5, a.numel())
    _scans_kernel[(1,)](a, b, c, out, *shape, axis, reverse)
    return out


def test_the_tests_take_the_shortcuts():
    assert fast_interpreter.installed(), "conftest.py should install fast_interpreter under TRITON_INTERPRET=1"


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("shape,axis", [((16, 1, 1), 0), ((8, 4, 2), 0), ((2, 8, 4), 1), ((1, 4, 16), 2)])
def test_slice_scan_repeats_the_interpreters_element_scan_bit_for_bit(monkeypatch, shape, axis, reverse):
    fast = _scans(shape, axis, reverse)
    monkeypatch.setattr(fast_interpreter.interpreter.ScanOps, "generic_scan", fast_interpreter.ELEMENTWISE_SCAN)
    slow = _scans(shape, axis, reverse)
    assert torch.equal(fast, slow)
    # And both are the recurrence h = a h + b along the axis (from its far end when reversed).
    a, b = _inputs(shape)[:2]
    a, b = (x.double().reshape(shape).movedim(axis, 0) for x in (a, b))
    a, b = (a.flip(0), b.flip(0)) if reverse else (a, b)
    h, states = torch.zeros_like(b[0]), []
    for a_k, b_k in zip(a, b):
        h = a_k * h + b_k
        states.append(h)
    states = torch.stack(states)
    states = states.flip(0) if reverse else states
    torch.testing.assert_close(fast[1].double().reshape(shape), states.movedim(0, axis), rtol=1e-5, atol=1e-6)


@triton.jit
def _helper(x):
    return tl.where(x > 0, x * 2.0, tile_io.softplus(x))  # a helper calling a helper of another module


@triton.jit
def _nested_kernel(x_ptr, out_ptr, N: tl.constexpr):
    # x, out: (programs * N,) float32
    offs = tl.program_id(0) * N + tl.arange(0, N)
    tl.store(out_ptr + offs, _helper(tl.load(x_ptr + offs)))


def test_patching_the_language_once_per_launch_gives_the_same_results_and_restores_it(monkeypatch):
    x = torch.randn(3 * 16, generator=torch.Generator().manual_seed(2)) * 4
    fast, slow = torch.empty_like(x), torch.empty_like(x)
    _nested_kernel[(3,)](x, fast, 16)
    # Restored after the launch: the language's functions are Triton's builtins again, not the interpreter's.
    assert tl.core.is_builtin(tl.where) and tl.core.is_builtin(tl.exp) and not fast_interpreter._launch_langs
    monkeypatch.setattr(fast_interpreter.interpreter, "_patch_lang", fast_interpreter.PATCH_LANG)
    _nested_kernel[(3,)](x, slow, 16)
    assert torch.equal(fast, slow)
    torch.testing.assert_close(fast, torch.where(x > 0, 2 * x, torch.nn.functional.softplus(x)))



@triton.jit
def _integer_kernel(x_ptr, out_ptr, N: tl.constexpr):
    # x: (N,) int32; out: (4, N) int32: the index arithmetic the kernels do, and products that wrap past 2^31.
    offs = tl.arange(0, N)
    x = tl.load(x_ptr + offs)
    tl.store(out_ptr + offs, x * 3 + 7)
    tl.store(out_ptr + N + offs, (x - 5) * (x // 4) - x % 3)
    tl.store(out_ptr + 2 * N + offs, x * 65537)
    tl.store(out_ptr + 3 * N + offs, 2 - x)


def test_integer_arithmetic_without_the_dropped_overflow_checks_gives_the_same_results(monkeypatch):
    x = torch.randint(-2**20, 2**20, (64,), dtype=torch.int32, generator=torch.Generator().manual_seed(3))
    fast, slow = torch.empty(4, 64, dtype=torch.int32), torch.empty(4, 64, dtype=torch.int32)
    _integer_kernel[(1,)](x, fast, 64)
    monkeypatch.setattr(fast_interpreter.TritonSemantic, "binary_op_sanitize_overflow_impl",
                        fast_interpreter.SANITIZE_OVERFLOW)
    _integer_kernel[(1,)](x, slow, 64)
    assert torch.equal(fast, slow)
    # Both wrap as int32 does (the products pass 2^31), dividing as C does (toward zero; the remainder takes the
    # dividend's sign).
    wide = x.long()
    quotient, remainder = torch.div(wide, 4, rounding_mode="trunc"), torch.fmod(wide, 3)
    expected = torch.stack([wide * 3 + 7, (wide - 5) * quotient - remainder, wide * 65537, 2 - wide])
    assert torch.equal(fast, ((expected + 2**31) % 2**32 - 2**31).int())


@pytest.mark.parametrize("debug", [False, True])
def test_overflow_checks_still_run_where_a_debug_build_asserts_them(monkeypatch, debug):
    checked = []
    monkeypatch.setattr(fast_interpreter, "SANITIZE_OVERFLOW", lambda *args: checked.append(args))
    semantic = SimpleNamespace(builder=SimpleNamespace(options=SimpleNamespace(debug=debug)))
    fast_interpreter.sanitize_overflow_if_asserting(semantic, "lhs", "rhs", "add")
    assert checked == ([(semantic, "lhs", "rhs", "add")] if debug else [])


SCALARS = [tl.int1, tl.int8, tl.uint8, tl.int16, tl.uint16, tl.int32, tl.uint32, tl.int64, tl.uint64, tl.float16,
           tl.bfloat16, tl.float32, tl.float64, tl.float8e5, tl.float8e4nv]


@pytest.mark.parametrize("scalar", SCALARS + [tl.pointer_type(tl.float32), tl.pointer_type(tl.bfloat16)], ids=str)
@pytest.mark.parametrize("shape", [None, [16], [4, 8]], ids=["scalar", "vector", "tile"])
def test_numpy_dtypes_looked_up_once_per_element_type_are_the_interpreters(scalar, shape):
    ty = scalar if shape is None else tl.block_type(scalar, shape)
    assert fast_interpreter.np_dtype_once(ty) == fast_interpreter.NP_DTYPE(ty)
    assert fast_interpreter.np_dtype_once(ty) == fast_interpreter.np_dtype_once(ty)  # and again, from the cache


def _built(cls, init, *args):
    """A ``cls`` initialised by ``init`` (Triton's ``__init__`` or its shortcut) with ``args``."""
    obj = cls.__new__(cls)
    init(obj, *args)
    return obj


@pytest.mark.parametrize("as_triton_tuple", [False, True], ids=["list", "triton-tuple"])
@pytest.mark.parametrize("dims", [[16], [4, 8], [1, 32, 2]], ids=str)
def test_block_types_of_known_shapes_are_the_interpreters(dims, as_triton_tuple):
    def built(init):
        return _built(tl.block_type, init, tl.float32, tl.tuple(list(dims)) if as_triton_tuple else list(dims))

    for _ in range(2):  # the second time from the cache
        fast, slow = built(fast_interpreter.block_type_of_known_shape), built(fast_interpreter.BLOCK_TYPE_INIT)
        assert vars(fast).keys() == vars(slow).keys()
        assert fast.shape.values == slow.shape.values == dims and fast.shape.type == slow.shape.type
        assert (fast.numel, fast.name, fast.element_ty) == (slow.numel, slow.name, slow.element_ty)
        assert fast == slow and fast.numel == math.prod(dims)
    assert built(fast_interpreter.block_type_of_known_shape).shape is not fast.shape  # Triton's tuples are mutable


@pytest.mark.parametrize("dims,error", [([], TypeError), ([3, 4], ValueError), ([2**11, 2**10], ValueError),
                                        ([tl.constexpr(4), 8], None)], ids=["empty", "odd", "huge", "constexpr"])
def test_block_types_of_other_shapes_are_built_or_refused_as_the_interpreter_does(dims, error):
    def built(init):
        return _built(tl.block_type, init, tl.int32, list(dims))

    if error is None:  # constexpr dimensions: Triton unwraps them
        assert built(fast_interpreter.block_type_of_known_shape) == built(fast_interpreter.BLOCK_TYPE_INIT)
        return
    with pytest.raises(error) as fast:
        built(fast_interpreter.block_type_of_known_shape)
    with pytest.raises(error) as slow:
        built(fast_interpreter.BLOCK_TYPE_INIT)
    assert str(fast.value) == str(slow.value)


@pytest.mark.parametrize("ty", [tl.float32, tl.block_type(tl.int32, [4, 8]), tl.block_type(tl.float16, [64])], ids=str)
def test_tensors_of_known_shapes_are_the_interpreters(ty):
    def built(init):
        return _built(tl.tensor, init, "handle", ty)

    for _ in range(2):  # the second time from the cache
        fast, slow = built(fast_interpreter.tensor_of_known_shape), built(fast_interpreter.TENSOR_INIT)
        assert vars(fast).keys() == vars(slow).keys()
        assert (fast.handle, fast.type, fast.dtype) == (slow.handle, slow.type, slow.dtype)
        assert [d.value for d in fast.shape] == [d.value for d in slow.shape] == list(getattr(ty, "shape", []))
        assert fast.shape.type == slow.shape.type and fast.numel.value == slow.numel.value


@triton.jit
def _broadcast_kernel(x_ptr, y_ptr, out_ptr, T: tl.constexpr, D: tl.constexpr):
    # x: (T,) float32, y: (D,) float32; out: (3, T, D) float32
    t = tl.arange(0, T)
    d = tl.arange(0, D)
    x = tl.load(x_ptr + t)
    y = tl.load(y_ptr + d)
    outer = x[:, None] * y[None, :]  # (T, 1) with (1, D)
    same = outer + outer * 0.5 + outer * y[None, :]  # the same shape, a scalar with a tile, (T, D) with (1, D)
    row = same - y  # (D,) against (T, D): a new leading axis
    picked = tl.where(t[:, None] == 1, row, x[:, None])  # three shapes
    # Types, not only values: numpy would broadcast operands whose types were left unbroadcast.
    for tile in (outer, same, row, picked):
        tl.static_assert(tile.shape[0] == T and tile.shape[1] == D)
    offs = t[:, None] * D + d[None, :]
    tl.store(out_ptr + offs, same)
    tl.store(out_ptr + T * D + offs, row)
    tl.store(out_ptr + 2 * T * D + offs, picked)


def test_operands_of_one_shape_skip_the_broadcast_with_the_same_results(monkeypatch):
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(8, generator=gen), torch.randn(16, generator=gen)
    fast, slow = torch.empty(3, 8, 16), torch.empty(3, 8, 16)
    _broadcast_kernel[(1,)](x, y, fast, 8, 16)
    monkeypatch.setattr(fast_interpreter.TritonSemantic, "broadcast_impl_value", fast_interpreter.BROADCAST)
    _broadcast_kernel[(1,)](x, y, slow, 8, 16)
    assert torch.equal(fast, slow)
    outer = x[:, None] * y[None, :]
    same = outer + outer * 0.5 + outer * y
    row = same - y
    torch.testing.assert_close(fast, torch.stack([same, row, torch.where(torch.arange(8)[:, None] == 1, row,
                                                                          x[:, None].expand(8, 16))]))


def _tile(shape, seed):
    semantic = fast_interpreter.interpreter.interpreter_semantic
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return semantic.tensor(fast_interpreter.interpreter.TensorHandle(data, tl.float32),
                           tl.block_type(tl.float32, list(shape)))


@pytest.mark.parametrize("lhs,rhs", [((4, 8), (4, 8)), ((4, 1), (1, 8)), ((1, 8), (4, 8)), ((4, 8), (4, 1)),
                                     ((2, 1, 8), (2, 4, 1)), ((8,), (4, 8)), ((4, 8), (2, 8))], ids=str)
def test_tiles_broadcast_from_known_shapes_as_the_interpreter_broadcasts_them(lhs, rhs):
    semantic = fast_interpreter.interpreter.interpreter_semantic
    a, b = _tile(lhs, 5), _tile(rhs, 6)
    try:
        slow = fast_interpreter.BROADCAST(semantic, a, b)
    except ValueError as refused:  # (4, 8) with (2, 8): both refuse, saying the same
        with pytest.raises(ValueError, match=re.escape(str(refused))):
            fast_interpreter.broadcast_known_shapes(semantic, a, b)
        return
    fast = fast_interpreter.broadcast_known_shapes(semantic, a, b)
    for f, s in zip(fast, slow):
        assert f.type == s.type and f.shape == s.shape
        assert f.handle.data.shape == s.handle.data.shape and np.array_equal(f.handle.data, s.handle.data)
    if lhs == rhs:
        assert fast[0] is a and fast[1] is b


def _operand(ty, seed):
    """An interpreter tensor of type ``ty`` (a scalar type or ``block_type``) holding small values."""
    semantic = fast_interpreter.interpreter.interpreter_semantic
    shape = list(ty.shape.values) if ty.is_block() else []
    data = np.random.default_rng(seed).integers(1, 9, shape).astype(fast_interpreter.NP_DTYPE(ty.scalar))
    return semantic.tensor(fast_interpreter.interpreter.TensorHandle(data, ty.scalar), ty)


PTR = tl.pointer_type(tl.float32)


@pytest.mark.parametrize("lhs,rhs,div_or_mod", [
    (tl.block_type(tl.float32, [4, 8]), tl.block_type(tl.float32, [4, 8]), False),   # as they are
    (tl.float32, tl.float32, True),                                                  # scalars: as they are
    (tl.block_type(tl.int32, [8]), tl.block_type(tl.int32, [8]), True),
    (tl.block_type(tl.int1, [8]), tl.block_type(tl.int1, [8]), False),
    (tl.block_type(tl.float16, [8]), tl.block_type(tl.float16, [8]), True),          # Triton divides in float32
    (tl.block_type(tl.bfloat16, [8]), tl.block_type(tl.bfloat16, [8]), False),
    (tl.block_type(tl.float32, [8]), tl.block_type(tl.float16, [8]), False),         # two types: a cast
    (tl.block_type(tl.float32, [4, 8]), tl.block_type(tl.float32, [1, 8]), False),   # two shapes: a broadcast
    (tl.block_type(tl.float32, [8]), tl.float32, False),                             # a tile and a scalar
    (tl.block_type(tl.int32, [8]), tl.block_type(tl.int64, [8]), False),
    (tl.block_type(PTR, [8]), tl.block_type(tl.int32, [8]), False),                  # a pointer and its offsets
], ids=str)
def test_operands_of_one_type_come_back_as_the_interpreter_returns_them(lhs, rhs, div_or_mod):
    semantic = fast_interpreter.interpreter.interpreter_semantic
    a, b = _operand(lhs, 7), _operand(rhs, 8)
    args = (True, False, not lhs.scalar.is_ptr(), div_or_mod)  # pointer arithmetic skips the arithmetic check
    slow = fast_interpreter.OPERAND_TYPES(semantic, a, b, *args)
    fast = fast_interpreter.operands_of_one_type(semantic, a, b, *args)
    for f, s in zip(fast, slow):
        assert f.type == s.type and f.handle.data.dtype == s.handle.data.dtype
        assert np.array_equal(f.handle.data, s.handle.data)
    if slow[0] is a and slow[1] is b:  # Triton neither cast nor broadcast them
        assert fast[0] is a and fast[1] is b


def test_operands_of_one_type_give_the_same_results_in_kernels(monkeypatch):
    gen = torch.Generator().manual_seed(9)
    x, y = torch.randn(8, generator=gen), torch.randn(16, generator=gen)
    fast, slow = torch.empty(3, 8, 16), torch.empty(3, 8, 16)
    _broadcast_kernel[(1,)](x, y, fast, 8, 16)
    monkeypatch.setattr(fast_interpreter.TritonSemantic, "binary_op_type_checking_impl",
                        fast_interpreter.OPERAND_TYPES)
    _broadcast_kernel[(1,)](x, y, slow, 8, 16)
    assert torch.equal(fast, slow)
    ints = torch.randint(-2**20, 2**20, (64,), dtype=torch.int32, generator=gen)
    fast_ints, slow_ints = torch.empty(4, 64, dtype=torch.int32), torch.empty(4, 64, dtype=torch.int32)
    _integer_kernel[(1,)](ints, slow_ints, 64)
    monkeypatch.undo()
    _integer_kernel[(1,)](ints, fast_ints, 64)
    assert torch.equal(fast_ints, slow_ints)


# Numbers Triton keeps in the tile's type, and others it makes float64 (1e-40, 1e300), uint32 (2**31), int64 (2**40),
# or float32 beside an int32 tile, with tiles the shortcut leaves to Triton (16-bit, unsigned, boolean, pointers).
@pytest.mark.parametrize("tile,number", [
    (tl.float32, 0.5), (tl.float32, -0.0), (tl.float32, 3), (tl.float32, 1e-40), (tl.float32, 1e300),
    (tl.float32, float("nan")), (tl.float32, True), (tl.int32, 7), (tl.int32, -2**31), (tl.int32, 2**31),
    (tl.int32, 0.5), (tl.int64, 5), (tl.int64, 2**40), (tl.float16, 0.5), (tl.float16, 2),
    (tl.uint32, 3), (tl.int1, 1), (PTR, 4),
], ids=str)
@pytest.mark.parametrize("number_first", [False, True])
@pytest.mark.parametrize("div_or_mod", [False, True])
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # Triton's own, on 1e300
def test_a_number_beside_a_tile_comes_back_as_the_interpreter_makes_it(tile, number, number_first, div_or_mod):
    semantic = fast_interpreter.interpreter.interpreter_semantic
    a = _operand(tl.block_type(tile, [4, 8]), 7)
    operands = (number, a) if number_first else (a, number)
    try:
        slow = fast_interpreter.OPERAND_TYPES(semantic, *operands, True, True, True, div_or_mod)
    except (TypeError, ValueError) as refused:  # both refuse, saying the same
        with pytest.raises(type(refused), match=re.escape(str(refused))):
            fast_interpreter.operands_of_one_type(semantic, *operands, True, True, True, div_or_mod)
        return
    fast = fast_interpreter.operands_of_one_type(semantic, *operands, True, True, True, div_or_mod)
    for f, s in zip(fast, slow):
        assert f.type == s.type and f.handle.data.dtype == s.handle.data.dtype
        assert f.handle.data.shape == s.handle.data.shape
        assert np.array_equal(f.handle.data.view(np.uint8), s.handle.data.view(np.uint8))  # bits: -0.0, NaN
