"""The one-pass forward prototype whose compiled cost bench/JOURNAL.md quotes computes the scan it claims to: its
instruction counts would mean nothing for a kernel that skipped work."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gluon_lanes  # noqa: E402
from one_pass_bench import run as bench_run  # noqa: E402
from one_pass_compile import (GLUON_LANES, STATES_ACROSS_LANES, STATES_IN_THREAD, executed_per_tile, inputs,  # noqa
                              launch, launch_segmented, reference)
from test_bench_baseline import SelectiveScanCudaStandIn  # noqa: E402
from test_triton_compile import OLDEST_TRITON, OLDEST_TRITON_PATH  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# The last two: all N states in one trip over 8 channels, as STATES_ACROSS_LANES lays them out.
@pytest.mark.parametrize("ns,block_d,warps,block_t", [(4, 32, 4, 16), (2, 32, 2, 16), (*STATES_IN_THREAD, 16),
                                                      (8, 8, 2, 16), (8, 8, 4, 8)])
def test_one_pass_prototype_matches_a_step_by_step_scan(ns, block_d, warps, block_t):
    R, N = 5, 8
    inp = inputs(batch=2, L=21, Dm=37, R=R, N=N)  # a partial last tile and a partial channel block
    got = launch(inp, R, N, ns, block_d, warps, block_t)
    expected = reference(inp, R, N)
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5), (got.double() - expected).abs().max()


# Gluon's layouts: one (state, channel) pair a thread in 4 warps, two in 2; 8 states, so 4 channels share a warp.
@pytest.mark.parametrize("N,block_d,warps,block_t", [(16, 8, 4, 16), (16, 8, 2, 16), (8, 16, 4, 8), (8, 8, 1, 4)])
def test_gluon_prototype_matches_a_step_by_step_scan(N, block_d, warps, block_t):
    # A partial last tile (37 = 2 x 16 + 5 steps, or 4 x 8 + 5, 9 x 4 + 1), a partial channel block, rank 5 in a
    # padded block of 8 ranks.  Under the interpreter the kernel runs with its layouts dropped (gluon_lang).
    R = 5
    inp = inputs(batch=2, L=37, Dm=13, R=R, N=N)
    got = gluon_lanes.launch(inp, R, N, block_d, warps, block_t)
    expected = reference(inp, R, N)
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5), (got.double() - expected).abs().max()


@pytest.mark.slow
@pytest.mark.parametrize("oldest", [False, True], ids=["this-triton", "oldest-triton"])
def test_gluon_prototype_compiles_each_exponential_once_without_spills(tmp_path, oldest):
    # As Gluon for sm_90 (compile_check's GluonASTSource), under this environment's Triton and the GPU image's 3.6.
    # A thread's exponentials in the PTX: one decay per (step, state, channel) element it holds and one softplus per
    # (step, channel) pair, in each of the kernel's two tile bodies (full tiles, the last one).  No spills, no
    # shuffles (y's sum over the states is a thread's own), and fewer instructions than Triton's own layouts of the
    # same tiles take (21-31 per element; bench/JOURNAL.md, "The states across the lanes in Gluon": 14.7-17.2).
    if oldest and not (OLDEST_TRITON_PATH / "triton").is_dir():
        pytest.skip(f"Triton {OLDEST_TRITON} is not in {OLDEST_TRITON_PATH}: ./install.sh puts it there on a CPU "
                    "machine (CI's)")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["BENCH_RESULTS"] = str(tmp_path)
    if oldest:
        env["PYTHONPATH"] = os.pathsep.join([str(OLDEST_TRITON_PATH), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "one_pass_compile.py"), "--gluon"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (report,) = tmp_path.glob("one-pass-forward-gluon-compile-triton*.jsonl")
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(row["block_d"], row["num_warps"], row["block_t"]) for row in rows] == GLUON_LANES
    for row in rows:
        threads = 32 * row["num_warps"]
        pairs = row["block_t"] * row["block_d"] // threads
        assert row["exp_log"] == 2 * (row["elements_per_thread_and_tile"] + pairs), row
        assert row["spill_bytes"] == 0 and row["shuffles"] == 0, row
        assert row["sass_executed_per_element"] < 18, row


def test_gluon_prototype_refuses_channels_its_warps_cannot_hold():
    with pytest.raises(ValueError, match="choose a multiple of 8"):
        gluon_lanes.launch(inputs(batch=1, L=16, Dm=12, R=5, N=16), 5, 16, block_d=12, warps=4)


@pytest.mark.parametrize("segments_first", [False, True])  # the axis orders of Triton 3.7 and of 3.6
@pytest.mark.parametrize("steps,segments,block_d,warps", [(4, 8, 2, 1), (2, 4, 4, 1)])
def test_segmented_prototype_matches_a_step_by_step_scan(steps, segments, block_d, warps, segments_first):
    # Tiles of 32 and 8 steps: several tiles (the state crossing them through the carry slots), a partial last tile,
    # a partial channel block, and a segment whose first step lies past the end.
    R, N = 3, 4
    inp = inputs(batch=2, L=39, Dm=5, R=R, N=N)
    got = launch_segmented(inp, R, N, steps, segments, block_d, warps, segments_first=segments_first)
    expected = reference(inp, R, N)
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5), (got.double() - expected).abs().max()
    # A training forward also keeps, for the backward, the state entering each segment and its delta sum.
    got, states, dsum = launch_segmented(inp, R, N, steps, segments, block_d, warps, segments_first=segments_first,
                                         store_states=True)
    expected, expected_states, expected_dsum = reference(inp, R, N, states_every=steps)
    assert states.shape == expected_states.shape == (2, -(-39 // steps), 5, N)
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5)
    assert torch.allclose(states.double(), expected_states, rtol=1e-5, atol=1e-6)
    assert torch.allclose(dsum.double(), expected_dsum, rtol=1e-5, atol=1e-6)


def test_one_pass_bench_runs_every_backend_on_the_same_work(capsys):
    """The GPU timing harness, on the CPU: a lease must not be spent finding that it fails.  mamba-ssm's op is a
    stand-in that checks its argument conventions and computes with the PyTorch path."""
    args = argparse.Namespace(smoke=True, repeats=1, lanes_only=False)
    rows = bench_run(args, "unused.jsonl", module=SelectiveScanCudaStandIn)
    assert [row["backend"] for row in rows] == ["mamba_ssm", "drop_in", "segmented", "drop_in_training",
                                                "segmented_training", "gluon_lanes", "one_pass", "one_pass",
                                                "one_pass"]
    assert (rows[2]["steps_per_segment"], rows[2]["segments"], rows[2]["block_d"]) == (4, 32, 4)
    assert (rows[5]["gluon"], rows[5]["block_d"], rows[5]["num_warps"]) == (True, 8, 4)
    assert [(row["states_across_warps"], row["block_d"], row["num_warps"], row["block_t"]) for row in rows[6:]] == \
        [(1, 32, 1, 16), (4, 32, 4, 16), STATES_ACROSS_LANES[0]]
    # Each output against the drop-in's: the stand-in (the PyTorch path, float32) within the script's own bound,
    # both prototype layouts as closely as the float64 comparison above.
    assert rows[0]["rel_err_vs_drop_in"] < 1e-4
    assert all(row["rel_err_vs_drop_in"] < 1e-6 for row in rows[2:]), [row["rel_err_vs_drop_in"] for row in rows]
    assert all(row["fwd_ms"] > 0 for row in rows)
    assert rows[2]["fwd_speedup_vs_mamba_ssm"] == pytest.approx(rows[0]["fwd_ms"] / rows[2]["fwd_ms"], rel=1e-2)
    # The lease's step times the states across the lanes alone, beside the two it is compared with.
    lanes = bench_run(argparse.Namespace(smoke=True, repeats=1, lanes_only=True), "unused.jsonl",
                      module=SelectiveScanCudaStandIn)
    assert [row["backend"] for row in lanes] == ["mamba_ssm", "drop_in", "gluon_lanes", "one_pass"]
    assert lanes[3]["block_t"] == 32 and all(row["rel_err_vs_drop_in"] < 1e-6 for row in lanes[2:])


def sass(address, instruction):
    return f"        /*{address:04x}*/                   {instruction} ;            /* 0x0000000000047308 */"


def test_executed_count_takes_each_inner_loop_once_per_trip():
    # A tile loop (0x10-0x90) around a rank loop without exponentials (0x20-0x30, 2 instructions) and a state loop with
    # them (0x50-0x70, 3), and a forward branch that is no loop.  bench/JOURNAL.md quotes these counts per element.
    listing = "\n".join(["        Function : kernel", sass(0x0, "MOV R1, c[0x0][0x28]"),
                         sass(0x10, "IADD3 R2, R2, 0x1, RZ"), sass(0x20, "FFMA R4, R5, R6, R4"),
                         sass(0x30, "@P0 BRA 0x20"), sass(0x40, "@P1 BRA 0x50"), sass(0x50, "MUFU.EX2 R7, R7"),
                         sass(0x60, "FMUL R8, R7, R8"), sass(0x70, "@P2 BRA 0x50"), sass(0x80, "STG.E [R2], R8"),
                         sass(0x90, "@P3 BRA 0x10"), sass(0xa0, "EXIT")])
    R, N = 23, 16
    assert executed_per_tile(listing, R, N) == 9 + (R - 1) * 2 + (N - 1) * 3
    with pytest.raises(ValueError, match="no loop"):
        executed_per_tile(sass(0x0, "EXIT"), R, N)


def test_executed_count_of_a_program_per_tile_takes_every_loop():
    # backward_grads: no tile loop; a rank loop (0x10-0x20) and a state loop (0x40-0x60) in a program of 9
    # instructions (bench/backward_compile.py).
    listing = "\n".join([sass(0x0, "MOV R1, c[0x0][0x28]"), sass(0x10, "FFMA R4, R5, R6, R4"),
                         sass(0x20, "@P0 BRA 0x10"), sass(0x30, "IADD3 R2, R2, 0x1, RZ"), sass(0x40, "MUFU.EX2 R7, R7"),
                         sass(0x50, "FMUL R8, R7, R8"), sass(0x60, "@P2 BRA 0x40"), sass(0x70, "STG.E [R2], R8"),
                         sass(0x80, "EXIT")])
    R, N = 3, 16
    assert executed_per_tile(listing, R, N, tile_loop=False) == 9 + (R - 1) * 2 + (N - 1) * 3
    assert executed_per_tile(listing, R, N) == 3  # as a tile loop, the largest loop alone
