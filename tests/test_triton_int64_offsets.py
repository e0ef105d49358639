"""Every pointer offset that grows with the batch or the scan length is 64-bit in the kernels' wide build, which the
host picks where a launch's tensors pass 2^31 elements, so such tensors are addressed correctly; below that the
narrow build's offsets are all 32-bit (``TileConfig.narrow_offsets``, ``tile_io.offset``).

A tensor that large cannot be scanned under the interpreter on a CI machine.  So this checks what guarantees it:
the test replaces the interpreter's pointer addition (``InterpreterBuilder.create_addptr``) with one that records,
for every line of the kernels that adds an integer offset to a pointer, the offset's type and its largest
magnitude.  Every kernel and mode runs at two geometries that differ only in batch and scan length, in the wide
build.  A 32-bit offset whose largest value differs between them grows with batch or length and would wrap past
2^31 on large inputs; the test names its line.  32-bit offsets that depend only on channels, states, directions or
tile sizes index the parameters (K, dim, N) or one tile, and stay 32-bit.  One exception is by design: mamba-ssm's
B and C layout (batch, [G,] N, L) puts state n at n x L elements, and the host copies B and C with each step's
states adjacent where that passes 2^31 (``operands.INT32_OFFSET_LIMIT``).  The wide build's runs lower that limit to
0, which takes the wide build in every launch and that path.  (Integer arithmetic before an offset is widened is on
step, token and program indices, below batch x directions x length, which this does not check.)
"""

import inspect
import re
from unittest import mock
import sys
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from directional_cases import directions_for, make_gate, make_layer_inputs
from scan2d import directional_scan, selective_scan
from scan2d._backend import deterministic_algorithms
from scan2d.triton import (
    backward_kernels, chunk_carry, forward_kernels, lane_sums, one_pass, one_pass_gluon, one_pass_gluon_backward,
    one_pass_lanes, one_pass_lanes_backward, operands, positions, recurrence, state_loop, tile_io,
)
from scan2d.triton.tiles import tile_config
from test_selective_scan import make_inputs

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="reads the Triton interpreter's pointer arithmetic; with a GPU the kernels "
    "compile instead (CI runs this under TRITON_INTERPRET=1)")

KERNEL_FILES = {inspect.getsourcefile(module) for module in (
    backward_kernels, chunk_carry, forward_kernels, lane_sums, one_pass, one_pass_gluon, one_pass_gluon_backward,
    one_pass_lanes, one_pass_lanes_backward, positions, recurrence, state_loop, tile_io)}


@contextmanager
def pointer_offsets():
    """Yields a dict {(file name, line, function, offset dtype): largest |offset|} of the pointer additions made
    meanwhile, at the innermost frame of the kernel modules (KERNEL_FILES) on the interpreted kernel's stack."""
    from triton.runtime import interpreter

    seen = defaultdict(int)
    original = interpreter.InterpreterBuilder.create_addptr

    def create_addptr(self, ptr, offset):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename not in KERNEL_FILES:
            frame = frame.f_back
        assert frame is not None, "a pointer addition outside the kernel modules"
        data = offset.data
        key = (Path(frame.f_code.co_filename).name, frame.f_lineno, frame.f_code.co_name, str(data.dtype))
        if data.size:
            seen[key] = max(seen[key], int(np.abs(data.astype(np.int64)).max()))
        return original(self, ptr, offset)

    interpreter.InterpreterBuilder.create_addptr = create_addptr
    try:
        yield seen
    finally:
        interpreter.InterpreterBuilder.create_addptr = original


def _layer(batch, height, width, gated=False, weighted=False, cross_scale="aligned", grad=True, rank=3, window=4):
    dim, K = 12, 2
    inp = make_layer_inputs(batch, height, width, dim, K, rank=rank, cross_scale=cross_scale is not None,
                            dtype=torch.float32)
    inp = {k: v.requires_grad_(grad) for k, v in inp.items()}
    gate = make_gate(dim, K, dtype=torch.float32) if gated else None
    weights = torch.rand(batch, K, dim) + 0.5 if weighted else None
    out = directional_scan(**inp, directions=directions_for(K, window, cross_scale), height=height, width=width,
                           gate=gate, direction_weights=weights, backend="triton")
    if grad:
        out.square().sum().backward()


@contextmanager
def int32_offset_limit(limit):
    saved, operands.INT32_OFFSET_LIMIT = operands.INT32_OFFSET_LIMIT, limit
    try:
        yield
    finally:
        operands.INT32_OFFSET_LIMIT = saved


def _drop_in(batch, height, width, groups):
    inp = make_inputs(batch, 12, height * width, 4, groups, dtype=torch.float32)
    inp = {k: v.requires_grad_() for k, v in inp.items()}
    out = selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"],
                         inp["delta_bias"], True, backend="triton")
    out.square().sum().backward()


def _drop_in_vectors(batch, height, width):
    """``_drop_in`` as where u passes 2^31 elements and B and C, N / dim of its size, do not: they keep the steps
    adjacent that the 4-step vectors need (here every tensor counts as past, and B and C would be copied)."""
    from scan2d.selective_scan import triton_op

    with mock.patch.object(triton_op, "_states_adjacent", lambda bc: bc):
        _drop_in(batch, height, width, groups=0)


# Every kernel and mode: (name, tile configuration, deterministic, the run at a (batch, height, width)).
RUNS = [
    ("gated-rank-5", {}, False, lambda b, h, w: _layer(b, h, w, gated=True, rank=5)),  # dt ranks in blocks of 4
    ("paired-rank-6", {}, False, lambda b, h, w: _layer(b, h, w, rank=6)),  # x's columns in pairs (paired_loads)
    ("weighted-deterministic", dict(backward_lane_sums=False), True, lambda b, h, w: _layer(b, h, w, weighted=True)),
    ("gated-deterministic", {}, True, lambda b, h, w: _layer(b, h, w, gated=True, cross_scale=None)),
    ("inference", dict(block_t=4, inference_tiles=4, inference_programs_per_sm=0), False,
     lambda b, h, w: _layer(b, h, w, gated=True, grad=False)),
    ("inference-states-through-memory", dict(block_t=4, inference_tiles=4, inference_programs_per_sm=0,
                                              carry_in_registers=False), False,
     lambda b, h, w: _layer(b, h, w, grad=False)),
    # Windows of 2 x 2 steps hold whole 4-step tiles: positions worked out per tile (TileConfig.window_tiles).
    ("windows-holding-tiles", dict(block_t=4), False, lambda b, h, w: _layer(b, h, w, cross_scale=None, window=2)),
    ("inference-windows-holding-tiles", dict(block_t=4, inference_tiles=4, inference_programs_per_sm=0), False,
     lambda b, h, w: _layer(b, h, w, cross_scale=None, window=2, grad=False)),
    # The aligned cross-scale order's too, where five times the low window area is a multiple of the tile: the
    # geometries' low maps cut windows of 4 to 1 x 2 low pixels, 10 steps, whole 2-step tiles.
    ("aligned-windows-holding-tiles", dict(block_t=2), False, lambda b, h, w: _layer(b, h, w, window=4)),
    ("gated-tile-kernels", dict(forward_state_loop=False, backward_state_loop=False), False,
     lambda b, h, w: _layer(b, h, w, gated=True)),
    # The one-pass forward (TileConfig.one_pass_forward): a training forward storing its chunk states, whose 4-step
    # segments lie in windows of 2 x 2, its dt ranks and states read two per load (an even rank); one without
    # gradients in the aligned cross-scale order; the drop-in's.
    ("one-pass", dict(one_pass_forward=True, block_t=4, one_pass_segments=4, one_pass_block_d=4), False,
     lambda b, h, w: _layer(b, h, w, weighted=True, cross_scale=None, window=2, rank=4)),
    ("one-pass-inference", dict(one_pass_forward=True, one_pass_steps=2, one_pass_segments=4), False,
     lambda b, h, w: _layer(b, h, w, grad=False)),
    ("one-pass-drop-in", dict(one_pass_forward=True, block_t=4, one_pass_segments=4), False,
     lambda b, h, w: _drop_in(b, h, w, groups=2)),
    # The same with the states across the lanes (TileConfig.one_pass_lanes).
    ("one-pass-lanes", dict(one_pass_forward=True, one_pass_lanes=True, block_t=4, one_pass_lanes_block_d=4), False,
     lambda b, h, w: _layer(b, h, w, weighted=True, cross_scale=None, window=2, rank=4)),
    ("one-pass-lanes-inference", dict(one_pass_forward=True, one_pass_lanes=True, block_t=2), False,
     lambda b, h, w: _layer(b, h, w, grad=False)),
    ("one-pass-lanes-drop-in", dict(one_pass_forward=True, one_pass_lanes=True, block_t=4), False,
     lambda b, h, w: _drop_in(b, h, w, groups=2)),
    # The same in Gluon (TileConfig.one_pass_gluon; 4 states: 8 channels a warp), its windows' geometry read once.
    ("one-pass-gluon", dict(one_pass_forward=True, one_pass_lanes=True, one_pass_gluon=True, block_t=4,
                            one_pass_lanes_block_d=8, one_pass_lanes_warps=1), False,
     lambda b, h, w: _layer(b, h, w, weighted=True, cross_scale=None, window=2, rank=4)),
    ("one-pass-gluon-inference", dict(one_pass_forward=True, one_pass_lanes=True, one_pass_gluon=True, block_t=2,
                                      one_pass_lanes_block_d=8, one_pass_lanes_warps=1), False,
     lambda b, h, w: _layer(b, h, w, grad=False)),
    ("one-pass-gluon-drop-in", dict(one_pass_forward=True, one_pass_lanes=True, one_pass_gluon=True, block_t=4,
                                    one_pass_lanes_block_d=8, one_pass_lanes_warps=1), False,
     lambda b, h, w: _drop_in(b, h, w, groups=2)),
    # The backward in one pass (TileConfig.one_pass_lanes_backward), in Triton's layouts and in Gluon's
    # (one_pass_gluon_backward), after the chunked forward: its sums over steps stored once per (batch, direction).
    ("one-pass-lanes-backward", dict(one_pass_lanes_backward=True, block_t=4, one_pass_lanes_backward_block_d=4),
     False, lambda b, h, w: _layer(b, h, w, weighted=True, cross_scale=None, window=2, rank=4)),
    ("one-pass-lanes-backward-drop-in", dict(one_pass_lanes_backward=True, block_t=4), False,
     lambda b, h, w: _drop_in(b, h, w, groups=2)),
    ("one-pass-gluon-backward", dict(one_pass_lanes_backward=True, one_pass_gluon_backward=True, block_t=4,
                                     one_pass_lanes_backward_block_d=8, one_pass_lanes_backward_warps=1), False,
     lambda b, h, w: _layer(b, h, w, weighted=True, window=2, rank=4)),
    ("one-pass-gluon-backward-drop-in", dict(one_pass_lanes_backward=True, one_pass_gluon_backward=True, block_t=4,
                                             one_pass_lanes_backward_block_d=8, one_pass_lanes_backward_warps=1),
     False, lambda b, h, w: _drop_in(b, h, w, groups=2)),
    # The carry over segments of 2 chunks (TileConfig.carry_segment): its three launches, forward and backward.
    ("segmented-carry", dict(block_t=2, carry_segment=2), False, lambda b, h, w: _layer(b, h, w, cross_scale=None)),
    ("drop-in", {}, False, lambda b, h, w: _drop_in(b, h, w, groups=0)),
    ("drop-in-rowwise", dict(rowwise_tiles=True), False, lambda b, h, w: _drop_in(b, h, w, groups=0)),
    # Lengths 48 and 80, multiples of 16: 4 steps per access (TileConfig.step_vectors; the lengths above are not).
    ("drop-in-step-vectors", {}, False, lambda b, h, w: _drop_in_vectors(b, h, 8 * w)),
    ("drop-in-grouped-tile-kernels", dict(forward_state_loop=False, backward_state_loop=False), False,
     lambda b, h, w: _drop_in(b, h, w, groups=2)),
]
SMALL, LARGE = (1, 2, 3), (2, 2, 5)  # (batch, height, width): only batch and length differ


def _pointer_arithmetic_lines():
    """(file name, line) of every kernel source line that adds to a ``ptr`` or ``*_ptr`` argument."""
    lines = set()
    for path in KERNEL_FILES:
        for number, text in enumerate(Path(path).read_text().splitlines(), 1):
            if re.search(r"\b\w*ptr \+ ", text) and not text.lstrip().startswith("#"):
                lines.add((Path(path).name, number))
    return lines


def test_offsets_that_grow_with_batch_or_length_are_64_bit():
    growing, ran = [], set()
    for name, tiles, deterministic, run in RUNS:
        maxima = []
        for geometry in (SMALL, LARGE):
            # As past 2^31 elements: 64-bit offsets, B and C with each step's states adjacent.
            with pointer_offsets() as seen, tile_config(**tiles), deterministic_algorithms(deterministic), \
                    int32_offset_limit(0):
                run(*geometry)
            maxima.append(seen)
        small, large = maxima
        assert set(small) == set(large), f"{name}: the two geometries should run the same code"
        # The geometries differ where it matters: some 64-bit offsets grow.
        assert any(large[key] > small[key] for key in large if key[3] == "int64"), name
        growing += [f"{name}: {file}:{line} ({fn}), {dtype} offsets up to {small[key]} at (batch, height, width) = "
                    f"{SMALL}, {large[key]} at {LARGE}" for key in sorted(large) for file, line, fn, dtype in [key]
                    if dtype in ("int32", "uint32") and large[key] != small[key]]
        ran |= {key[:2] for key in large}
    assert not growing, "32-bit pointer offsets that grow with batch or length:\n" + "\n".join(growing)
    # Every pointer addition in the kernels' source ran in one of the runs above, so none escaped the check.
    missed = sorted(_pointer_arithmetic_lines() - ran)
    assert not missed, f"pointer additions that no run reached (add a run to RUNS): {missed}"


# The kernels that always take 64-bit offsets: small ones that do not get the wide build's flag.
ALWAYS_WIDE = {"chunk_carry_kernel", "segment_summary_kernel", "_carry_program", "_carry_walk",
               "first_direction_pool_kernel"}


def test_narrow_build_takes_32_bit_offsets_everywhere_else():
    # Below 2^31 elements (TileConfig.narrow_offsets, the default; narrow_inference_offsets for the forward without
    # gradients) the flag reaches every pointer addition of the other kernels and their helpers: an offset left
    # 64-bit there would cost registers, not correctness, and only this would notice.
    wide = []
    for name, tiles, deterministic, run in RUNS:
        with pointer_offsets() as seen, tile_config(**{"narrow_inference_offsets": True, **tiles}), \
                deterministic_algorithms(deterministic):
            run(*SMALL)
        assert any(key[3] == "int32" for key in seen), name
        wide += [f"{name}: {file}:{line} ({fn})" for file, line, fn, dtype in sorted(seen)
                 if dtype == "int64" and fn not in ALWAYS_WIDE]
    assert not wide, "64-bit pointer offsets in the narrow build:\n" + "\n".join(wide)
