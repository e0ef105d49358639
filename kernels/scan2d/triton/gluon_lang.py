"""Gluon, Triton's language with explicit layouts, and the same kernels under Triton's interpreter.

Triton chooses each tensor's layout (which thread holds which element) itself.  For the states-across-lanes scan it
computes the per-(step, channel) work once per state, 16 times over, and moves B and C through shared memory
(bench/JOURNAL.md, "The states across the lanes in the op").  Gluon (``triton.experimental.gluon``, shipped with
Triton 3.6 and 3.7) has the programmer give every layout, so a kernel can compute delta one (step, channel) a thread
and convert only what it must.

Gluon has no interpreter, and CI checks kernels only under ``TRITON_INTERPRET=1``.  A layout decides where an element
lives, never its value, so a Gluon kernel means the same computation with its layouts dropped: under the interpreter
``gl`` below is a small module of the same names over ``triton.language`` that ignores every ``layout`` argument and
makes ``convert_layout`` the identity, and ``jit`` is ``triton.jit``.  Kernels written against ``gl`` therefore
compile as Gluon for a GPU and run, value for value, in the interpreter.  Two rules keep that true:

- annotate kernel parameters ``tl.constexpr``, not ``gl.constexpr``: the interpreter recognises constexpr
  parameters by the annotation's text;
- use only the names ``InterpretedGluon`` defines; another raises AttributeError under the interpreter.
"""

from __future__ import annotations

import types

import triton.language as tl

from .._backend import triton_interpreted

__all__ = ["gl", "jit", "source_class"]


def _late(name: str):
    def call(*args, **kwargs):
        return getattr(tl, name)(*args, **kwargs)

    call.__name__ = name
    return call


def _interpreted_gluon() -> types.ModuleType:
    """Gluon's names used by our kernels, over ``triton.language``: layouts accepted and dropped."""
    from triton.experimental.gluon.language import BlockedLayout, SliceLayout  # plain dataclasses

    module = types.ModuleType("InterpretedGluon", __doc__)
    module.BlockedLayout, module.SliceLayout = BlockedLayout, SliceLayout
    module.constexpr, module.static_range = tl.constexpr, tl.static_range
    for name in ("float32", "float16", "bfloat16", "int32", "int64"):
        setattr(module, name, getattr(tl, name))
    # Functions whose tensors take their layouts from their operands: tl's own signatures, looked up at each call
    # (the interpreter replaces tl's builtins while a kernel runs).
    for name in ("program_id", "load", "store", "where", "exp", "exp2", "log", "sum", "expand_dims",
                 "associative_scan", "cdiv", "maximum", "abs"):
        setattr(module, name, _late(name))
    # Functions that create tensors take a layout, positionally or by name.
    module.arange = lambda start, end, layout=None: tl.arange(start, end)
    module.zeros = lambda shape, dtype, layout=None: tl.zeros(shape, dtype)
    module.full = lambda shape, value, dtype, layout=None: tl.full(shape, value, dtype)
    module.convert_layout = lambda value, layout, assert_trivial=False: value
    return module


if triton_interpreted():
    gl = _interpreted_gluon()
    from triton import jit
else:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl

    jit = gluon.jit


def source_class(kernel):
    """The ``triton.compile`` source class of ``kernel`` (a ``JITFunction``): Gluon's for a Gluon kernel."""
    from triton.compiler import ASTSource

    if getattr(kernel, "is_gluon", lambda: False)():
        from triton.experimental.gluon._runtime import GluonASTSource

        return GluonASTSource
    return ASTSource
