"""The carry over segments of chunks (``TileConfig.carry_segment``, ``launch.carry``): each segment's own effect on a
state (``segment_summary_kernel``), the carry over the segments, then each segment's chunks from the state entering
it, forward and reversed.  The results are those of the one-launch carry up to rounding (a segment decays by the
exponential of its delta sum, where one launch multiplies its chunks' decays): within a few float32 ulps, outputs,
the drop-in's last state and every gradient."""

import pytest
import torch

from directional_cases import make_layer_inputs, run_triton_layer
from gradients import assert_same_but_rounding
from launch_spy import spy_on_launches
from scan2d import ScanDirection, selective_scan
from scan2d.triton.tiles import tile_config
from test_selective_scan import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CARRY_KERNELS = ("chunk_carry_kernel", "segment_summary_kernel")


def _carry_launches(monkeypatch) -> list:
    """(kernel, grid, REVERSE, HAS_ENTRY, STORE_FINAL) of every launch of the carry's kernels."""
    return spy_on_launches(monkeypatch, CARRY_KERNELS, record=lambda name, grid, meta: (
        name, grid, meta["REVERSE"], meta.get("HAS_ENTRY", False), meta.get("STORE_FINAL", False)))


def _assert_segmented(launches, reverse: bool, final: bool):
    """One carry in three launches: the segments' summaries and the last launch over as many segments (two or more),
    the carry over the segments (one program per batch x direction and channel block, in visiting order)."""
    (summary, grid, rev, _, _), (over, grid_over, rev_over, entry_over, final_over), (last, grid_last, rev_last,
                                                                                     entry_last, final_last) = launches
    assert (summary, over, last) == ("segment_summary_kernel", "chunk_carry_kernel", "chunk_carry_kernel")
    assert len(grid) == len(grid_last) == 3 and grid == grid_last and grid[2] >= 2 and len(grid_over) == 2
    assert (rev, rev_over, rev_last) == (reverse, False, reverse)
    assert (entry_over, entry_last) == (False, True)
    assert (final_over, final_last) == (final, False)


# Segments of 3 chunks: neither a multiple of carry_chunks nor a divisor of the chunks.  The cross-scale orders at
# batch 1 (CI's time: each run is half the plain order's at batch 2 there), the plain one at batch 2.
@pytest.mark.parametrize("cross_scale,grad,segment,batch", [(None, True, 3, 2), ("aligned", True, 4, 1),
                                                            ("sequential", True, 3, 1), (None, False, 4, 2)])
def test_layer_carry_over_segments_matches_one_launch(monkeypatch, cross_scale, grad, segment, batch):
    # A 9x8 map in 4-step chunks: 18 or more chunks per direction, in blocks of 2 chunks (carry_chunks).
    seen = _carry_launches(monkeypatch)
    directions = (ScanDirection(4, False, False, cross_scale), ScanDirection(4, True, True, cross_scale))
    inp = make_layer_inputs(batch, 9, 8, 11, 2, n_state=4, cross_scale=cross_scale is not None,
                            dtype=torch.float32)
    common = dict(block_t=4, block_d=8, forward_block_d=8, carry_chunks=2, inference_tiles=1,
                  inference_programs_per_sm=0)
    segmented = run_triton_layer(inp, directions, 9, 8, grad, carry_segment=segment, **common)
    assert len(seen) == (6 if grad else 3), seen
    _assert_segmented(seen[:3], reverse=False, final=True)
    if grad:
        _assert_segmented(seen[3:], reverse=True, final=False)
    seen.clear()
    plain = run_triton_layer(inp, directions, 9, 8, grad, carry_segment=None, **common)
    assert [(name, len(grid)) for name, grid, *_ in seen] == [("chunk_carry_kernel", 2)] * (2 if grad else 1), seen
    assert_same_but_rounding(segmented, plain)


def test_drop_in_last_state_and_gradients_over_segments(monkeypatch):
    # The drop-in's last state is the state after the last segment, from the carry over the segments.
    seen = _carry_launches(monkeypatch)
    inp = make_inputs(2, 6, 37, 4, 2)

    def run(segment):
        low = {k: v.float().to(DEVICE).requires_grad_() for k, v in inp.items()}
        with tile_config(block_t=4, carry_chunks=4, carry_segment=segment):
            out, last = selective_scan(**low, delta_softplus=True, return_last_state=True, backend="triton")
            ramp = torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)
            grads = torch.autograd.grad((out * ramp).sum(), list(low.values()))
        return [out, last, *grads]

    segmented = run(4)
    _assert_segmented(seen[:3], reverse=False, final=True)
    _assert_segmented(seen[3:], reverse=True, final=False)
    assert_same_but_rounding(segmented, run(None))


def test_segments_past_the_grid_limit_grow(monkeypatch):
    # The segments lie along the grid's z, which holds at most MAX_GRID_CHUNKS programs (65,535 on CUDA; 3 here):
    # 18 chunks in segments of 1 would be 18 programs along z, so the segments grow to 6 chunks, 3 of them.
    import scan2d.triton.launch as launch

    seen = _carry_launches(monkeypatch)
    monkeypatch.setattr(launch, "MAX_GRID_CHUNKS", 3)
    directions = (ScanDirection(4, False, False),)
    inp = make_layer_inputs(1, 9, 8, 5, 1, n_state=4, dtype=torch.float32)
    common = dict(block_t=4, carry_chunks=2, inference_tiles=1, inference_programs_per_sm=0)
    segmented = run_triton_layer(inp, directions, 9, 8, True, carry_segment=1, **common)
    assert [grid[2] for name, grid, *_ in seen if len(grid) == 3] == [3] * 4, seen
    assert_same_but_rounding(segmented, run_triton_layer(inp, directions, 9, 8, True, carry_segment=None, **common))


def test_segments_of_no_chunks_are_refused():
    inp = make_layer_inputs(1, 4, 4, 3, 1, n_state=4, cross_scale=False, dtype=torch.float32)
    with pytest.raises(ValueError, match="carry_segment = 0: .*at least one chunk"):
        run_triton_layer(inp, (ScanDirection(4, False, False),), 4, 4, False, block_t=4, carry_segment=0)
