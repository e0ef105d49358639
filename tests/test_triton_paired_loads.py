"""Reading x's rows two columns per load (``TileConfig.paired_loads``, ``tile_io.load_pair``) changes no result:
the same values enter the same sums in the same order, so the layer's output and every gradient are bit for bit
those of one column per load.  The host takes the paired path only where every pair it reads is word-aligned."""

import pytest
import torch

from directional_cases import make_layer_inputs, run_triton_layer
from launch_spy import STATE_LOOP_KERNELS, spy_on_launches
from scan2d import ScanDirection
from scan2d.directional.triton_op import _operands
from scan2d.triton.tiles import tile_config

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("cross_scale,dtype,grad,tiles", [
    (None, torch.float32, True, {}),                              # training: states through memory, 4 per trip
    ("aligned", torch.bfloat16, True, dict(state_unroll=2)),      # low-resolution rows, 16-bit words, 2 per trip
    (None, torch.float32, False, dict(inference_tiles=2)),        # inference chunks: states in registers
    (None, torch.float16, True, dict(state_unroll=1)),            # odd trips: single B/C loads, paired dt ranks
])
def test_paired_loads_give_bit_identical_results(monkeypatch, cross_scale, dtype, grad, tiles):
    seen = spy_on_launches(monkeypatch, STATE_LOOP_KERNELS, record=lambda name, grid, meta: meta.get("PAIRED"))
    directions = (ScanDirection(4, False, False, cross_scale), ScanDirection(4, True, True, cross_scale))
    # rank 6: two blocks of 4 ranks, the second overlapping the first (ranks 2-5, 2-3 masked), as rank 12 has not.
    inp = {k: v.to(DEVICE, dtype) for k, v in make_layer_inputs(1, 5, 7, 9, 2, n_state=4, rank=6,
                                                                cross_scale=cross_scale is not None).items()}
    paired = run_triton_layer(inp, directions, 5, 7, grad, **tiles)
    assert seen and all(seen), seen  # every state-loop launch read pairs
    seen.clear()
    single = run_triton_layer(inp, directions, 5, 7, grad, paired_loads=False, **tiles)
    assert seen and not any(seen), seen
    for a, b in zip(paired, single):
        assert torch.equal(a, b), (a - b).abs().max()


def operands(xdbl, rank=6):
    inp = make_layer_inputs(1, 4, 4, 8, 2, n_state=4, rank=rank, dtype=torch.float32)
    inp["xdbl"] = xdbl
    return _operands(**inp, directions=(ScanDirection(4), ScanDirection(4, True)), height=4, width=4, u_low=None,
                     xdbl_low=None)


def test_pairs_only_where_every_pair_is_word_aligned():
    rows = torch.randn(1, 16, 2, 14)
    assert operands(rows).paired_x
    # Contiguous, but one float into its storage: every row starts 4 bytes past a 64-bit word.
    assert not operands(torch.randn(rows.numel() + 1)[1:].view(rows.shape)).paired_x
    # An odd row length (rank 7): every other row starts mid-word.
    assert not operands(torch.randn(1, 16, 2, 15), rank=7).paired_x
    # Rows 15 floats apart.
    assert not operands(torch.randn(1, 16, 2, 15)[..., 1:]).paired_x
    # Columns not adjacent.
    assert not operands(torch.randn(1, 16, 2, 28)[..., ::2]).paired_x
    with tile_config(paired_loads=False):
        assert not operands(rows).paired_x
