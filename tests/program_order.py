"""The interpreter runs a launch's programs last to first, so that a kernel whose result depends on program order
fails in CI.

A GPU runs the programs of a launch concurrently, in no promised order; the interpreter runs them one at a time from
the first.  A kernel whose program reads what an earlier program of the same launch wrote (a carry passed from chunk
to chunk in place, a read-add-write that assumes the programs before it are done) is a race on a GPU, yet passes
under the interpreter every time.  Run in the opposite order it reads what is not yet written and fails.  Atomics
and sums over programs are unaffected where they are order-free, as the kernels' must be anyway.
"""

from triton.runtime import interpreter

IN_ORDER = interpreter.InterpreterBuilder.set_grid_idx


def set_grid_idx_reversed(self, x, y, z):
    """``InterpreterBuilder.set_grid_idx`` of the program (x, y, z) counted from the grid's far corner."""
    nx, ny, nz = self.grid_dim
    IN_ORDER(self, nx - 1 - x, ny - 1 - y, nz - 1 - z)


def install():
    interpreter.InterpreterBuilder.set_grid_idx = set_grid_idx_reversed


def installed():
    return interpreter.InterpreterBuilder.set_grid_idx is set_grid_idx_reversed
