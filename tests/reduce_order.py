"""``tl.reduce`` under the interpreter in an order a GPU may take, so that a non-commutative combine fails in CI.

Triton's interpreter folds a reduction from the first element to the last; a GPU reduces in each thread, then
across lanes by butterfly shuffles, and so may combine an element before the accumulator (triton-lang/triton#4962:
tl.reduce assumes a commutative operator).  The one-pass forward reduced the recurrence's (decay, state) pairs,
which are not commutative: it passed CI and failed on the H200 (2026-12-04).  Here the interpreter's generic
reduction (custom combine functions; sums and min/max keep numpy's) combines each element before the accumulator
instead, an order as legal as the usual one for the operators tl.reduce is written for.
"""

import types

from triton.runtime import interpreter

IN_ORDER_REDUCE = interpreter.ReduceOps.generic_reduce


def reversed_operands_reduce(self, input):
    fn = self.combine_fn.fn
    n = len(input)  # operands per side of the combine function

    def element_first(*args):
        return fn(*args[n:], *args[:n])

    saved, self.combine_fn = self.combine_fn, types.SimpleNamespace(fn=element_first)
    try:
        return IN_ORDER_REDUCE(self, input)
    finally:
        self.combine_fn = saved


def install():
    interpreter.ReduceOps.generic_reduce = reversed_operands_reduce
