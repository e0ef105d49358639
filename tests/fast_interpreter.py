"""Four shortcuts through Triton's interpreter for the tests, each giving the interpreter's own results.

The tests run every kernel under ``TRITON_INTERPRET=1``, where four things in the interpreter itself took most of
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

test_fast_interpreter.py checks them against the interpreter's own code on the kernels' functions.
"""

import functools

import numpy as np
import triton.language as tl
from triton.language.semantic import TritonSemantic
from triton.runtime import interpreter

ELEMENTWISE_SCAN = interpreter.ScanOps.generic_scan
PATCH_LANG = interpreter._patch_lang
SANITIZE_OVERFLOW = TritonSemantic.binary_op_sanitize_overflow_impl
NP_DTYPE = interpreter._get_np_dtype


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


SHORTCUTS = ((interpreter.ScanOps, "generic_scan", scan_by_slices), (interpreter, "_patch_lang", patch_lang_once),
             (TritonSemantic, "binary_op_sanitize_overflow_impl", sanitize_overflow_if_asserting),
             (interpreter, "_get_np_dtype", np_dtype_once))


def install():
    for owner, name, shortcut in SHORTCUTS:
        setattr(owner, name, shortcut)


def installed():
    return all(getattr(owner, name) is shortcut for owner, name, shortcut in SHORTCUTS)
