"""The benchmarks' MambaIR-style baseline does the same work as our op, so its timings compare like with like.

mamba-ssm's CUDA op needs a GPU; here a stand-in with its calling convention runs scan2d's PyTorch selective scan,
and the baseline's gathers, dt projection, scan and merge must reproduce ``directional_scan``.
"""

import sys
from pathlib import Path

import pytest
import torch

from scan2d import ScanDirection, directional_scan, selective_scan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from scan_bench import layer_inputs, mamba_fn, mambair_path  # noqa: E402


class SelectiveScanCudaStandIn:
    """``selective_scan_cuda.fwd``'s arguments and results, computed by the PyTorch path."""

    @staticmethod
    def fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        # The checks of selective_scan.cpp (mamba-ssm 2.3.2) that the baseline's arguments must pass on a GPU.
        assert delta.dtype == B.dtype == C.dtype == u.dtype, "delta, B and C in the input dtype"
        assert A.dtype == D.dtype == delta_bias.dtype == torch.float32, "A, D and the delta bias in float32"
        assert all(t.stride(-1) == 1 for t in (u, delta, B, C)), "the sequence axis contiguous"
        out = selective_scan(u, delta, A, B, C, D, None, delta_bias, delta_softplus, backend="torch")
        if z is None:
            return out, None
        # With z: the ungated output, x, then the gated output (selective_scan_cuda.fwd's results).
        return out, None, selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend="torch")


@pytest.mark.parametrize("window,cross_scale", [(4, None), (None, None), (4, "aligned"), (4, "sequential")])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_mambair_path_equals_directional_scan(window, cross_scale, dtype):
    directions = (ScanDirection(window, False, False, cross_scale), ScanDirection(window, True, True, cross_scale))
    inp = layer_inputs(2, 9, 7, 6, 2, 4, 3, dtype, torch.device("cpu"), cross_scale is not None)
    with torch.no_grad():
        baseline = mambair_path(mamba_fn(SelectiveScanCudaStandIn), inp, directions, 9, 7)
        ours = directional_scan(**inp, directions=directions, height=9, width=7, backend="torch")
    # float64: the same sums in another order; bfloat16: the baseline rounds its projected delta to bf16 first.
    tolerance = {} if dtype == torch.float64 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(baseline.float(), ours.float(), **tolerance)


@pytest.mark.parametrize("cross_scale", [None, "aligned"])
def test_model_bench_routes_gated_layers_through_the_baseline(cross_scale):
    # model_bench's mamba_ssm backend replaces every scan layer, the channel-gated ones included, through
    # scan_bench.gated_mambair_path, which is also scan_bench --gated's reference.
    import scan2d
    from directional_cases import make_gate
    from model_bench import mamba_ssm_scan_layers

    directions = (ScanDirection(4, False, False, cross_scale), ScanDirection(4, True, True, cross_scale))
    inp = layer_inputs(2, 9, 7, 6, 2, 4, 3, torch.float32, torch.device("cpu"), cross_scale is not None)
    gate = make_gate(6, 2, dtype=torch.float32)
    weights = torch.rand(2, 2, 6) + 0.5
    with torch.no_grad():
        ours = directional_scan(**inp, directions=directions, height=9, width=7, gate=gate,
                                direction_weights=weights, backend="torch")
        with mamba_ssm_scan_layers(SelectiveScanCudaStandIn):
            baseline = scan2d.directional_scan(**inp, directions=directions, height=9, width=7, gate=gate,
                                               direction_weights=weights)
    assert scan2d.directional_scan is directional_scan  # restored
    torch.testing.assert_close(baseline, ours, rtol=1e-4, atol=1e-5)


def test_every_benchmark_configuration_names_real_tile_settings():
    # A GPU lease is short: a misspelt key in scan_bench.SWEEP or in gpu_session.sh's --configs would only fail
    # there, after the build, and cost the rest of the sweep.
    import dataclasses

    from common import parse_config
    from scan_bench import SWEEP

    from scan2d.triton.tiles import TileConfig

    # gpu_session.sh's commands as the shell runs them ($UNTIMED and the like expanded; test_gpu_session_commands).
    from test_gpu_session_commands import session_commands

    def words_after(flag, argv):
        """The words that follow ``flag`` in argv, up to the next flag."""
        if flag not in argv:
            return []
        rest = argv[argv.index(flag) + 1:]
        return rest[:next((i for i, word in enumerate(rest) if word.startswith("--")), len(rest))]

    commands = session_commands()
    given = [parse_config(word) for _, argv in commands for word in words_after("--configs", argv)]
    # The same for the case names, which argparse would refuse there.
    import model_bench
    import scan_bench

    for script, argv in commands:
        cases = {"bench/scan_bench.py": scan_bench.CASES, "bench/model_bench.py": model_bench.CASES}.get(script)
        if cases is not None:
            assert set(words_after("--cases", argv)) <= set(cases), (script, argv)
    fields = {f.name for f in dataclasses.fields(TileConfig)} | {"deterministic"}
    assert len(given) >= 4 and len(SWEEP) >= 8
    for config in [*SWEEP, *given]:
        assert set(config) <= fields, config
        dataclasses.replace(TileConfig(), **{k: v for k, v in config.items() if k != "deterministic"})


class SelectiveScanCudaStandInWithBackward(SelectiveScanCudaStandIn):
    """``selective_scan_cuda.bwd`` too: the PyTorch path's gradients, in the CUDA op's order."""

    @staticmethod
    def bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz, delta_softplus, recompute_out_z):
        # du, ddelta, dA, dB, dC, dD, ddelta_bias, then dz with z (and None without, as the CUDA op's list ends).
        assert z is None or out is not None, "with z the backward takes the forward's ungated output"
        leaves = [t.detach().requires_grad_() for t in (u, delta, A, B, C, D, delta_bias)]
        gate = z.detach().requires_grad_() if z is not None else None
        with torch.enable_grad():
            y = selective_scan(*leaves[:6], gate, leaves[6], delta_softplus, backend="torch")
        grads = torch.autograd.grad(y, leaves + ([gate] if gate is not None else []), dout)
        return (*grads, None) if z is None else grads


@pytest.mark.parametrize("gated,z", [(False, False), (True, False), (False, True)], ids=["plain", "gated", "z"])
def test_scan_bench_times_the_baseline_beside_every_backend(gated, z):
    # The harness on its CPU case with mamba-ssm's stand-in: on 2026-12-04 a loop variable named like the baseline's
    # closure made the H200 run call our drop-in with mamba-ssm's arguments, and every case with a baseline failed.
    # --z: mamba-ssm's op and the drop-in with a z gate (the op's other results and dz's place in its backward's).
    import scan_bench

    args = scan_bench.parse_args(["--smoke"] + (["--gated"] if gated else []) + (["--z"] if z else []))
    rows = scan_bench.run(args, "unused.jsonl", module=SelectiveScanCudaStandInWithBackward)
    by_backend = {r["backend"]: r for r in rows}
    ref = "mambair_path" if gated else "mamba_ssm"
    expected = {"mambair_path", "fused", "torch"} | (set() if gated else {"mamba_ssm", "drop_in"})
    assert set(by_backend) == expected
    assert all(r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 for r in rows)
    # The fused op against the baseline's own output: the same layer, so equal up to float32 rounding.
    assert max(by_backend["fused"]["rel_err_vs_mambair"].values()) < 1e-4
    if not gated:
        assert max(by_backend["drop_in"]["rel_err_vs_mamba_ssm"].values()) < 1e-4
    assert all(f"fwd_speedup_vs_{ref}" in r for name, r in by_backend.items() if name != ref)
    assert all(r["shape"].get("drop_in_z", False) == z for r in rows)


def test_scan_bench_checks_each_configuration_against_the_baseline(monkeypatch):
    # A tile configuration timed on a lease is checked too, not only the default: one that computed a wrong output
    # fast would otherwise stand in the results as a speed-up.  Here the one-pass forward with the states across the
    # lanes is made 1% off; its row says so, the default's does not.
    import scan2d.triton.launch as launch
    import scan_bench

    real = launch.one_pass_lanes_forward

    def one_percent_off(ops, out, *args):
        result = real(ops, out, *args)
        out.mul_(1.01)
        return result

    monkeypatch.setattr(launch, "one_pass_lanes_forward", one_percent_off)
    args = scan_bench.parse_args(["--smoke", "--backends", "fused", "--configs", "default",
                                  "one_pass_forward=True,one_pass_lanes=True"])
    rows = scan_bench.run(args, "unused.jsonl", module=SelectiveScanCudaStandInWithBackward)
    assert [(r["backend"], r["tiles"]["one_pass_lanes"]) for r in rows] == [("fused", False), ("fused", True)]
    assert rows[0]["rel_err_vs_mambair"]["out"] < 1e-4
    assert rows[1]["rel_err_vs_mambair"]["out"] == pytest.approx(0.01, rel=0.05)
