"""Eight shortcuts through Triton's interpreter for the tests, each giving the interpreter's own results.

The tests run every kernel under ``TRITON_INTERPRET=1``, where these things in the interpreter itself took most of
CI's time.  Measured on this 2-core machine (Triton 3.7.1) on a drop-in scan's forward+backward (2 x 17 channels x
70 steps, 16 states) and on a gated cross-scale layer's inference forward (7 x 6 map, 4-step tiles, 3 per chunk):

1. ``tl.associative_scan`` with a custom combine function runs one element at a time (``ScanOps.generic_scan``:
   one Python call of the combine function per element of the tile).  ``scan_by_slices`` runs the same sequential
   scan one slice across the scanned axis at a time.  Every element still gets the same combine operations, in
   the same order, on the same dtypes, so the results are the element-wise scan's bit for bit.  The drop-in
   example: 106 s before, 14.2 s after.
2. Every call of a ``@triton.jit`` helper inside a kernel patches ``triton.language`` again (``_patch_lang``: it
   walks every member of the language modules), although the launch already did.  ``patch_lang_once`` patches at
   the launch, and at a helper only for a language module not yet patched in this launch.  The drop-in example:
   7.4 s after both; the layer example: 24.7 s with the first, 15.6 s with both.
3. Every int32 ``+``, ``-`` and ``*`` is done a second time in int64 and range-checked, for an overflow assertion
   that ``device_assert`` then drops, because the interpreter never runs in debug mode
   (``TritonSemantic.binary_op_sanitize_overflow_impl``).  The kernels' positions and offsets are such arithmetic:
   a third of the layer example's time went to the aligned cross-scale positions alone.
   ``sanitize_overflow_if_asserting`` skips the check where it would be dropped.  One inference example of the
   layer and the plain layer's fuzz test: 34.5 s before, 21.0 s after.
4. ``interpreter._get_np_dtype`` builds a table of 19 Triton types at every call (every splat, cast and load):
   ``np_dtype_once`` looks each element type up once.  The drop-in example, three runs alternating: 8.3-8.8 s
   before, 7.6-8.1 s after.
5.-7. Every operation on a tile builds its result's type and tensor in Python, and this bookkeeping, not numpy's
   arithmetic, became most of the time left: ``block_type`` turns its shape into a Triton tuple (a ``constexpr_type``
   per dimension) and checks it, ``tensor`` wraps each dimension in a ``constexpr``, and ``broadcast_impl_value``
   compares the two operands' shapes dimension by dimension through Triton's tuples even when they are the same.
   ``block_type_of_known_shape`` and ``tensor_of_known_shape`` build the same attributes from what they computed the
   last time they saw the shape; ``broadcast_known_shapes`` returns two tiles of one shape as they are, which is what
   the interpreter's loop ends up doing, and broadcasts others of one rank from their plain shapes.  Measured on three
   tests, one after another (Triton 3.7.1): the Gluon forward's layer gradients 27.2 s before, 18.5 s after; the gated
   scans' 12.3 s before, 9.1 s after; the drop-in's four-step vectors 10.7 s before, 7.5 s after (same-shape
   broadcasts only; broadcasting the others too took 5% more off three tests).
8. Every binary operation checks, promotes, casts and broadcasts its operands in Python
   (``binary_op_type_checking_impl``), which for two tiles of one type, the kernels' commonest case, returns them as
   they were.  ``operands_of_one_type`` returns them at once where Triton's promotion rules (asked once per type)
   compute in their type; pointers and operands of two types or shapes still go through Triton's own.  Three kernel
   tests (the gated scans, a scan over many chunks, positions per tile), run before and after alternately three
   times: 28.7, 29.8, 23.9 s before, 25.1, 27.8, 22.1 s after (7-12%, each run including 5 s of start-up).  A Python
   number beside a float32, int32 or int64 tile, the next commonest, it splats in the tile's type as Triton does,
   where Triton's rules keep that type (a float32 number, an int32 one; any other goes to Triton's own): the same
   three tests 26.0, 25.9, 26.4 s before, 23.9, 23.0, 25.0 s after.

test_fast_interpreter.py checks them against the interpreter's own code on the kernels' functions.
"""

import functools
import math

import numpy as np
import triton.language as tl
from triton._utils import validate_block_shape
from triton.language.semantic import TritonSemantic
from triton.runtime import interpreter

ELEMENTWISE_SCAN = interpreter.ScanOps.generic_scan
PATCH_LANG = interpreter._patch_lang
SANITIZE_OVERFLOW = TritonSemantic.binary_op_sanitize_overflow_impl
NP_DTYPE = interpreter._get_np_dtype
BROADCAST = TritonSemantic.broadcast_impl_value
OPERAND_TYPES = TritonSemantic.binary_op_type_checking_impl
BLOCK_TYPE_INIT = tl.block_type.__init__
TENSOR_INIT = tl.tensor.__init__


def scan_by_slices(self, input):
    """``ScanOps.generic_scan`` a slice at a time: ``input`` is the tuple of equally shaped tensors scanned together
    along ``self.axis``; returns the list of their inclusive scans under ``self.combine_fn``."""
    data = [arg.handle.data for arg in input]
    out = [np.empty_like(d) for d in data]

    def at(k):  # the k-th slice across the axis, keeping the axis so that shapes stay those of the tile
        return tuple(slice(k, k + 1) if a == self.axis else slice(None) for a in range(data[0].ndim))

    for k in range(data[0].shape[self.axis]):
        if k == 0:
            for o, d in zip(out, data):
                o[at(0)] = d[at(0)]
            continue
        acc = tuple(self.to_tensor(o[at(k - 1)], arg.dtype) for o, arg in zip(out, input))
        cur = tuple(self.to_tensor(d[at(k)], arg.dtype) for d, arg in zip(data, input))
        ret = self.combine_fn.fn(*acc, *cur)
        for o, r in zip(out, ret if isinstance(ret, tuple) else (ret,)):
            o[at(k)] = r.handle.data if isinstance(r, tl.core.tensor) else r
    return [self.to_tensor(o, arg.dtype) for o, arg in zip(out, input)]


_launch_langs = set()  # ids of the language modules that the running launch patched; empty between launches


class _LaunchScope:
    """The launch's patch scope: restoring it (at the end of the launch) also ends the launch's patching."""

    def __init__(self, scope):
        self.scope = scope

    def restore(self):
        _launch_langs.clear()
        self.scope.restore()


class _Nothing:
    def restore(self):
        pass


def patch_lang_once(fn):
    """``interpreter._patch_lang`` for ``fn``, unless a launch is running and has patched every language module in
    ``fn``'s globals already.  The interpreter calls it at each launch (and restores the returned scope at its end)
    and at each call of a jit function inside it (and drops the scope: those patches equal the launch's)."""
    langs = {id(v) for v in fn.__globals__.values() if v is tl or v is tl.core}
    if _launch_langs:  # a helper called inside a launch, e.g. tl.sum, whose module sees tl.core where kernels see tl
        if langs and langs <= _launch_langs:
            return _Nothing()
        _launch_langs.update(langs)  # the interpreter never restores a helper's patches: they stay for the launch
        return PATCH_LANG(fn)
    scope = PATCH_LANG(fn)
    _launch_langs.update(langs)
    return _LaunchScope(scope)


def sanitize_overflow_if_asserting(self, lhs, rhs, binary_op):
    """``TritonSemantic.binary_op_sanitize_overflow_impl`` only where its assertion would run: it redoes an int32
    ``+``, ``-`` or ``*`` in int64 and checks the range, then passes the check to ``device_assert``, which drops it
    unless the options ask for debugging (the interpreter's never do; a compiled kernel's dead check goes too)."""
    if self.builder.options.debug:
        SANITIZE_OVERFLOW(self, lhs, rhs, binary_op)


_scalar_np_dtype = functools.lru_cache(maxsize=None)(NP_DTYPE)


def np_dtype_once(tt_dtype):
    """``interpreter._get_np_dtype``: the numpy dtype that holds a Triton type's values, which depends only on the
    element type of a block; looked up once per element type instead of building the interpreter's table of 19
    types at every call."""
    scalar = tt_dtype.element_ty if isinstance(tt_dtype, tl.block_type) else tt_dtype
    return NP_DTYPE(scalar) if isinstance(scalar, tl.pointer_type) else _scalar_np_dtype(scalar)  # (unhashable)


@functools.lru_cache(maxsize=None)
def _keeps_its_type(semantic, scalar, div_or_mod):
    """Whether Triton computes a binary operation of two tensors of element type ``scalar`` in that type (so that
    neither operand is cast): Triton's own promotion rules, asked once per type (False where they refuse it)."""
    try:
        return semantic.computation_type_impl(scalar, False, scalar, False, div_or_mod) == scalar
    except TypeError:
        return False


def operands_of_one_type(self, lhs, rhs, allow_lhs_ptr=False, allow_rhs_ptr=False, arithmetic_check=True,
                         div_or_mod=False):
    """``TritonSemantic.binary_op_type_checking_impl`` (lhs, rhs: a binary operation's operands, returned cast and
    shaped alike): two tensors of one type, not pointers, whose operation Triton computes in that type, come back
    as they are, which is what Triton's checks, casts and broadcast end up returning; a Python number beside a
    tile comes back splat in the tile's type where Triton keeps that type (``_number_beside_tile``); anything else
    (pointers, operands of two types or shapes, other numbers) goes to Triton's own."""
    if arithmetic_check and type(lhs) is tl.tensor and type(rhs) in (int, float):
        splat = _number_beside_tile(self, rhs, lhs)
        if splat is not None:
            return lhs, splat
    elif arithmetic_check and type(rhs) is tl.tensor and type(lhs) in (int, float):
        splat = _number_beside_tile(self, lhs, rhs)
        if splat is not None:
            return splat, rhs
    if arithmetic_check and type(lhs) is tl.tensor and type(rhs) is tl.tensor:
        lhs_ty, rhs_ty = lhs.type, rhs.type
        scalar = lhs_ty.scalar
        if lhs_ty.is_block():  # one shape, compared as plain ints (Triton's == builds a constexpr per dimension)
            same = (type(rhs_ty) is tl.block_type and isinstance(lhs_ty.shape, tl.tuple)
                    and isinstance(rhs_ty.shape, tl.tuple) and lhs_ty.shape.values == rhs_ty.shape.values)
        else:
            same = not rhs_ty.is_block()
        if same and scalar == rhs_ty.scalar and not scalar.is_ptr() and _keeps_its_type(self, scalar, div_or_mod):
            return lhs, rhs
    return OPERAND_TYPES(self, lhs, rhs, allow_lhs_ptr, allow_rhs_ptr, arithmetic_check, div_or_mod)


# A tile's element type -> the types Triton gives the Python numbers that such a tile takes in that type.
_NUMBERS_TAKEN = {tl.float32: (tl.float32, tl.int32), tl.int32: (tl.int32,), tl.int64: (tl.int32,)}


def _number_beside_tile(self, number, tile):
    """The tile Triton makes of a Python ``number`` in a binary operation with ``tile`` (a block of float32, int32 or
    int64), or None where its rules would make another (another type, a cast of the tile, a refusal): the number
    in the tile's type, splat to its shape, as ``scalar_constant`` and ``create_splat`` build it."""
    tile_ty = tile.type
    if type(tile_ty) is not tl.block_type or tile_ty.scalar.is_ptr() or not isinstance(tile_ty.shape, tl.tuple):
        return None  # (pointer types cannot be hashed into _NUMBERS_TAKEN)
    scalar, dims = tile_ty.scalar, tile_ty.shape.values
    if self.to_tensor_type(number) not in _NUMBERS_TAKEN.get(scalar, ()):
        return None
    np_dtype = _scalar_np_dtype(scalar)
    data = np.full(dims, np.array([0 if number == 0 else number], dtype=np_dtype), dtype=np_dtype)
    return self.tensor(interpreter.TensorHandle(data, scalar), tl.block_type(scalar, list(dims)))


def broadcast_known_shapes(self, lhs, rhs):
    """``TritonSemantic.broadcast_impl_value`` (lhs, rhs: the operands of a binary operation, returned shaped
    alike) for two tiles of equal rank on plain int shapes: two of one shape as they are, others broadcast to the
    shape the interpreter's loop works out, with the same calls; anything else (a scalar operand, ranks that differ,
    shapes that do not broadcast) goes to Triton's own, which expands, splats or refuses it."""
    lhs_ty, rhs_ty = lhs.type, rhs.type
    if not (lhs_ty.is_block() and rhs_ty.is_block() and isinstance(lhs_ty.shape, tl.tuple)
            and isinstance(rhs_ty.shape, tl.tuple)):
        return BROADCAST(self, lhs, rhs)
    lhs_shape, rhs_shape = lhs_ty.shape.values, rhs_ty.shape.values
    if lhs_shape == rhs_shape:
        return lhs, rhs
    if len(lhs_shape) != len(rhs_shape) or any(left != right and left != 1 and right != 1
                                               for left, right in zip(lhs_shape, rhs_shape)):
        return BROADCAST(self, lhs, rhs)
    shape = [right if left == 1 else left for left, right in zip(lhs_shape, rhs_shape)]
    if lhs_shape != shape:
        lhs = self.tensor(self.builder.create_broadcast(lhs.handle, shape), tl.block_type(lhs_ty.scalar, shape))
    if rhs_shape != shape:
        rhs = self.tensor(self.builder.create_broadcast(rhs.handle, shape), tl.block_type(rhs_ty.scalar, shape))
    return lhs, rhs


@functools.lru_cache(maxsize=None)
def _block_shape(dims):
    """A block shape's Triton tuple type, element count (checked as the interpreter checks them: powers of two, at
    most Triton's largest tile) and text, for ``dims`` a tuple of ints."""
    shape = tl.tuple(list(dims))
    return shape.type, validate_block_shape(dims), str(shape)


def block_type_of_known_shape(self, element_ty, shape):
    """``block_type.__init__`` for a shape of plain ints (a list or Triton tuple, as the language passes it), from
    the cached type, count and text of that shape; any other shape (constexprs, empty, not a list) goes to
    Triton's own, which unwraps or refuses it."""
    dims = shape.values if isinstance(shape, tl.tuple) else shape
    if not (dims and isinstance(dims, list) and all(type(d) is int for d in dims)):
        return BLOCK_TYPE_INIT(self, element_ty, shape)
    shape_ty, numel, text = _block_shape(tuple(dims))
    self.element_ty = element_ty
    self.shape = tl.tuple(list(dims), shape_ty)  # a new tuple each time: Triton's tuples can be changed in place
    self.numel = numel
    self.name = f"<{text}, {element_ty}>"


@functools.lru_cache(maxsize=None)
def _constexpr_shape(dims):
    """A tensor's element count as a ``constexpr``, its dimensions as ``constexpr``s and their tuple type."""
    shape = tl.tuple([tl.constexpr(d) for d in dims])
    return tl.constexpr(math.prod(dims)), shape.values, shape.type


def tensor_of_known_shape(self, handle, type):
    """``tensor.__init__`` (handle: the interpreter's value; type: a scalar type or ``block_type``), with the
    ``constexpr`` shape of each block shape built once (a type whose shape is not Triton's tuple goes to Triton's
    own)."""
    if type.is_block() and not isinstance(type.shape, tl.tuple):
        return TENSOR_INIT(self, handle, type)
    self.handle = handle
    self.type = type
    self.dtype = type.scalar
    numel, dims, shape_ty = _constexpr_shape(tuple(type.shape.values) if type.is_block() else ())
    self.numel = numel
    self.shape = tl.tuple(list(dims), shape_ty)


SHORTCUTS = ((interpreter.ScanOps, "generic_scan", scan_by_slices), (interpreter, "_patch_lang", patch_lang_once),
             (TritonSemantic, "binary_op_sanitize_overflow_impl", sanitize_overflow_if_asserting),
             (interpreter, "_get_np_dtype", np_dtype_once),
             (TritonSemantic, "broadcast_impl_value", broadcast_known_shapes),
             (TritonSemantic, "binary_op_type_checking_impl", operands_of_one_type),
             (tl.block_type, "__init__", block_type_of_known_shape), (tl.tensor, "__init__", tensor_of_known_shape))


def install():
    for owner, name, shortcut in SHORTCUTS:
        setattr(owner, name, shortcut)


def installed():
    return all(getattr(owner, name) is shortcut for owner, name, shortcut in SHORTCUTS)
