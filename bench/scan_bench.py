"""Scan-layer microbenchmarks: mamba-ssm's CUDA op, the MambaIR-style path, our PyTorch path, our fused op.

    python bench/scan_bench.py --mamba-sdist mamba_ssm-2.3.2.post1.tar.gz     # on a GPU; writes bench/results/
    python bench/scan_bench.py --sweep --cases a_training_w8 b_inference_256   # tile configurations of the fused op
    python bench/scan_bench.py --smoke                                         # CPU check of the harness itself

Cases (one JSON object each in ``bench/results/scan-<device>-<date>.jsonl``):
  (a) training: batch 8, 360 channels, state 16, 64x64, two directions, window 8 and window 64;
  (b) inference: batch 1, 256x256, two directions (window 8);
  (c) the cross-scale block's scan (four window-16 aligned directions) at 64x64 and 256x256 (batch 1 and 8);
  (d) beyond the issue's cases: the layer as the dis_w8 model runs it at inference on a 256x256 output (batch 1,
      64x64, 180 channels), a short scan at batch 1 (the inference chunk length, TileConfig.inference_programs_per_sm);
float32 and bfloat16, forward (no autograd) and forward+backward, median of many runs (CUDA events), and the peak
memory each allocates above its inputs (``fwd_peak_over_output``: forward peak / output size, goal (b) < 1.5).
On a GPU each row also has ``fwd_host_ms``, the time the host takes to return from the forward (Python, argument
binding, launches; the GPU idles until the first kernel is queued), and ``fwd_graph_ms``, the forward replayed from
a CUDA graph, which is its GPU work without launch overhead (``graph_error`` when capture fails).

Backends on the same work:
  mamba_ssm      the CUDA selective scan alone, on sequences already permuted and delta already projected
  mambair_path   what MambaIR-style code runs: gather copies, dt projection, the CUDA scan, scatter back, sum
  torch          scan2d's PyTorch path
  fused          scan2d's Triton kernels (directional_scan, backend="triton")
  drop_in        scan2d's drop-in selective_scan(..., backend="triton") on mamba_ssm's own inputs: the same work,
                 the same API, our kernels
``--z``: mamba_ssm and drop_in with a z gate, as Mamba blocks call selective_scan_fn (shape ``drop_in_z``).
``bytes`` is what each must at least move (inputs read once, outputs written once); GB/s = bytes / time.
With mamba-ssm built, each fused row also carries ``rel_err_vs_mambair``: the relative L2 distance of the fused
op's output, and of its gradient for u, from the MambaIR-style path's on the same inputs (an independent CUDA
implementation of the same layer, so a fast but wrong kernel cannot pass unnoticed); each drop_in row carries
``rel_err_vs_mamba_ssm``, the same distances from mamba-ssm's op on the same inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, append_jsonl, graph_fields, host_ms, parse_config, peak_mb, record, time_ms  # noqa: E402

import scan2d  # noqa: E402
from scan2d import ScanDirection, directional_scan  # noqa: E402
from scan2d.directions import gather_index  # noqa: E402


def layer_inputs(batch, H, W, D, K, N, R, dtype, device, cross_scale):
    g = torch.Generator(device="cpu").manual_seed(0)
    L, Ll = H * W, ((H + 1) // 2) * ((W + 1) // 2)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g) * scale + shift).to(device, dtype).requires_grad_()

    inp = dict(u=rnd(batch, L, D), xdbl=rnd(batch, L, K, R + 2 * N, scale=0.5), dt_weight=rnd(K, D, R, scale=0.2),
               dt_bias=rnd(K, D, scale=0.5, shift=-3.0),
               A=(-torch.arange(1, N + 1, dtype=torch.float32).repeat(K, D, 1)).to(device).requires_grad_(),
               D=torch.ones(K, D, device=device, requires_grad=True))
    if cross_scale:
        inp.update(u_low=rnd(batch, Ll, D), xdbl_low=rnd(batch, Ll, K, R + 2 * N, scale=0.5))
    return inp


def mambair_path(selective_scan_cuda, inp, directions, H, W, sum_directions=True):
    """Copies + mamba-ssm scan + merge, as MambaIR-style code does it: (batch, L, dim), or with sum_directions=False
    each direction's output (batch, K, L, dim) for a channel gate."""
    u, xdbl = inp["u"], inp["xdbl"]
    if "u_low" in inp:
        u, xdbl = torch.cat([u, inp["u_low"]], 1), torch.cat([xdbl, inp["xdbl_low"]], 1)
    batch, _, D = u.shape
    K, R, N = len(directions), inp["dt_weight"].shape[-1], inp["A"].shape[-1]
    index = torch.stack([gather_index(d, H, W, u.device) for d in directions])
    xs = u[:, index].permute(0, 1, 3, 2).reshape(batch, K * D, -1)
    proj = xdbl[:, index, torch.arange(K, device=u.device)[:, None]]
    dts, Bs, Cs = proj.split([R, N, N], dim=-1)
    delta = torch.einsum("bktr,kdr->bkdt", dts, inp["dt_weight"]).reshape(batch, K * D, -1)
    # mamba-ssm takes delta in the input dtype and its bias, A and D in float32 (MambaIR: dts.contiguous()).
    out = selective_scan_cuda(xs, delta.contiguous(), inp["A"].reshape(K * D, N),
                              Bs.permute(0, 1, 3, 2).contiguous(), Cs.permute(0, 1, 3, 2).contiguous(),
                              inp["D"].float().reshape(-1), inp["dt_bias"].float().reshape(-1))
    out = out.view(batch, K, D, -1)
    inverse = torch.stack([d.inverse(H, W, u.device) for d in directions])
    ys = out.gather(3, inverse[None, :, None, :].expand(batch, K, D, H * W))
    return ys.sum(1).transpose(1, 2) if sum_directions else ys.transpose(2, 3)


def model_gate(dim: int, dtype, device):
    """The model's channel gate (mambacsr's ChannelGate module: LayerNorm, mean over tokens, Linear dim -> dim/8,
    GELU, Linear, Sigmoid) as a ``scan2d.ChannelGate``, its parameters requiring grad as in training."""
    from mambacsr.models.layers import ChannelGate as GateModule

    torch.manual_seed(2)
    return GateModule(dim).to(device, dtype).spec()


def gated_mambair_path(selective_scan_cuda, inp, directions, H, W, gate, direction_weights=None):
    """What MambaIR-style code runs for a gated layer (LW-SS2D): every direction's output copied back to raster
    order, the gate's LayerNorm pooling and excitation on them (times ``direction_weights``), the weighted sum."""
    ys = mambair_path(selective_scan_cuda, inp, directions, H, W, sum_directions=False)  # (batch, K, L, dim)
    weights = 1 if direction_weights is None else direction_weights
    if gate is not None:
        weights = gate.excite(gate.pool(ys)) * weights
    return (ys * weights.unsqueeze(2)).sum(1)


def mamba_fn(module):
    """mamba-ssm's selective_scan_fn semantics over the raw CUDA op (fwd + bwd), with or without its z gate: the
    op then returns the gated output as its third result, and its backward takes the ungated one and returns dz
    last (mamba_ssm/ops/selective_scan_interface.py)."""

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, delta, A, B, C, D, bias, z=None):
            out, x, *rest = module.fwd(u, delta, A, B, C, D, z, bias, True)
            ctx.has_z = z is not None
            ctx.save_for_backward(u, delta, A, B, C, D, bias, x, z, out if ctx.has_z else None)
            return rest[0] if ctx.has_z else out

        @staticmethod
        def backward(ctx, dout):
            u, delta, A, B, C, D, bias, x, z, out = ctx.saved_tensors
            du, ddelta, dA, dB, dC, dD, dbias, *rest = module.bwd(u, delta, A, B, C, D, z, bias, dout.contiguous(),
                                                                  x, out, None, True, False)
            grads = (du, ddelta, dA, dB, dC, dD, dbias)
            return (*grads, rest[0]) if ctx.has_z else grads

    return Fn.apply


def drop_in_inputs(batch, K, D, T, inp, dtype, device, z=False) -> dict:
    """mamba-ssm's inputs for a case: K directions' sequences of T steps already permuted (batch, K*D, T), delta
    already projected, B and C grouped per direction (batch, K, N, T); A, D and the bias from the layer's inputs;
    with ``z``, a z gate (batch, K*D, T) last, as Mamba blocks pass one."""
    g = torch.Generator(device="cpu").manual_seed(1)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype).requires_grad_()

    inputs = dict(u=rnd(batch, K * D, T), delta=rnd(batch, K * D, T),
                  A=inp["A"].detach().reshape(K * D, N_STATE).requires_grad_(),
                  B=rnd(batch, K, N_STATE, T), C=rnd(batch, K, N_STATE, T),
                  D=inp["D"].detach().reshape(-1).requires_grad_(),
                  bias=inp["dt_bias"].detach().float().reshape(-1).requires_grad_())
    if z:
        inputs["z"] = rnd(batch, K * D, T)
    return inputs


def outputs_and_du(fn, u) -> tuple:
    """fn()'s output and the gradient of the leaf u under a backward of ones, in float32."""
    u.grad = None
    out = fn()
    out.backward(torch.ones_like(out))
    result = (out.detach().float(), u.grad.float())
    u.grad = None
    return result


def relative_errors(candidate, reference: tuple, u) -> dict:
    """||candidate - reference|| / ||reference|| for the output and for the gradient of the leaf u, in float32;
    ``reference``: another function's ``outputs_and_du``."""
    (y, du), (y_ref, du_ref) = outputs_and_du(candidate, u), reference
    return dict(out=float(f"{(y - y_ref).norm() / y_ref.norm():.3g}"),
                du=float(f"{(du - du_ref).norm() / du_ref.norm():.3g}"))  # significant digits: fp32 is near 1e-7


def bytes_moved(batch, L, Ll, D, K, N, R, dtype, backend):
    e = torch.finfo(dtype).bits // 8
    T = L + Ll
    if backend == "mamba_ssm":  # u, delta per direction in, B, C per direction in, out per direction
        return batch * K * (3 * D * T * e + 2 * N * T * e)
    # fused: u and xdbl read once, one summed output written
    return batch * (T * D * e + T * K * (R + 2 * N) * e + L * D * 4)


CASES = {  # name: batch, height, width, channels, directions, window, cross-scale
    "a_training_w8": (8, 64, 64, 360, 2, 8, None),
    "a_training_w64": (8, 64, 64, 360, 2, 64, None),
    "b_inference_256": (1, 256, 256, 360, 2, 8, None),
    "c_cross_scale_64": (8, 64, 64, 360, 4, 16, "aligned"),
    "c_cross_scale_256": (1, 256, 256, 360, 4, 16, "aligned"),
    "d_model_inference_64": (1, 64, 64, 180, 2, 8, None),
}
SMOKE_CASES = {"smoke": (1, 4, 4, 16, 2, 4, None)}  # 16 steps: the interpreter takes seconds per call
# --sweep: tile configurations of the fused op (changes to scan2d.triton.tiles.TileConfig), on cases a and b, in
# order of interest, since a short lease may cut the sweep off: first the forward kernels' tiles (16 and 4 steps
# against the default 8, untimed) and the carry in smaller blocks of more chunks, then what the H200 left open on
# 2026-12-04 (32-bit offsets in the forward without gradients, 1.7x slower that day; x's columns one at a time and
# the dt rank blocks rolled, each a little faster in one sample; 64-bit offsets in the training kernels), then the
# defaults it confirmed (positions per tile, the backward's lane sums, no register caps), then the cost of
# torch.use_deterministic_algorithms (fixed-order sums instead of atomics: the state-loop backward with one copy of
# dx per channel block and one direction per launch; backward_direction_launches and backward_dx_copies time each
# half); then shorter inference chunks (more programs per SM: case (a)'s forward has 384 programs per launch, 1.5
# waves of an H200's).
SWEEP = [dict(), dict(forward_block_t=8), dict(adjoint_block_t=None), dict(carry_segment=None),
         dict(forward_block_t=4),
         dict(block_d=4, carry_chunks=32),
         dict(narrow_inference_offsets=True),
         dict(paired_loads=False), dict(unroll_rank_blocks=False),
         dict(narrow_offsets=False), dict(window_tiles=False),
         dict(backward_lane_sums=False), dict(forward_maxnreg=168), dict(backward_maxnreg=200),
         dict(backward_direction_launches=True),
         dict(deterministic=True), dict(inference_programs_per_sm=4), dict(inference_programs_per_sm=8),
         dict(backward_dx_copies=True),
         dict(state_unroll=8), dict(state_unroll=16), dict(inference_tiles=32), dict(forward_block_d=64, num_warps=2),
         dict(state_unroll=1, carry_in_registers=False), dict(carry_in_registers=False),
         dict(forward_state_loop=False, backward_state_loop=False), dict(backward_block_d=64), dict(carry_chunks=16)]
N_STATE, RANK = 16, 12


def case_directions(K, window, cross_scale):
    """The scan directions of a case: K = 2 a row-first pair, K = 4 both orientations."""
    both = [ScanDirection(window, column_first, reverse, cross_scale)
            for column_first in (False, True) for reverse in (False, True)]
    return tuple(both[:K])


def measure(fwd, device, args) -> dict:
    """Median times and peak memory of the forward (no autograd) and of forward + backward."""
    def forward():
        with torch.no_grad():
            return fwd()

    def fwd_bwd():
        fwd().float().sum().backward()

    # --smoke checks the harness, not the timing: one call each (the interpreter takes seconds per kernel call).
    warmup, repeats = (0, 1) if args.smoke else (5, args.repeats)
    values = dict(fwd_ms=time_ms(forward, device, warmup=warmup, repeats=repeats),
                  fwd_peak_mb=peak_mb(forward, device),
                  fwdbwd_ms=time_ms(fwd_bwd, device, warmup=warmup, repeats=repeats),
                  fwdbwd_peak_mb=peak_mb(fwd_bwd, device),
                  fwd_host_ms=host_ms(forward, device, repeats=repeats))
    # The forward's GPU work alone, replayed from a CUDA graph: fwd_ms - fwd_graph_ms is what launching costs.
    values.update(graph_fields(forward, device, repeats=repeats))
    return values


def run(args, out_name: str, module=None) -> list:
    """Time every backend of the chosen cases; ``module`` is mamba-ssm's ``selective_scan_cuda`` (or a stand-in with
    its calling convention), built from ``--mamba-sdist`` on a GPU when not given."""
    from scan2d._backend import deterministic_algorithms
    from scan2d.triton.tiles import tile_config

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if module is None and args.mamba_sdist and device.type == "cuda":
        from build_mamba_ssm import load

        module = load(args.mamba_sdist)
    cases = SMOKE_CASES if args.smoke else {k: v for k, v in CASES.items() if not args.cases or k in args.cases}
    dtypes = [torch.float32] if args.smoke else [getattr(torch, d) for d in args.dtypes]
    rows = []
    for name, (batch, H, W, D, K, window, xs) in cases.items():
        for dtype in dtypes:
            directions = case_directions(K, window, xs)
            inp = layer_inputs(batch, H, W, D, K, N_STATE, RANK, dtype, device, xs is not None)
            L, Ll = H * W, (((H + 1) // 2) * ((W + 1) // 2) if xs else 0)
            shape = dict(batch=batch, height=H, width=W, dim=D, state=N_STATE, rank=RANK,
                         directions=[d.name for d in directions], cross_scale=xs)
            out_mb = batch * L * D * torch.finfo(dtype).bits / 8 / 2**20

            gate = model_gate(D, dtype, device) if args.gated else None
            if gate is not None:
                shape["gated"] = True

            def fused():
                return directional_scan(**inp, directions=directions, height=H, width=W, gate=gate, backend="triton")

            pre = drop_in_inputs(batch, K, D, L + Ll, inp, dtype, device, z=args.z)
            if args.z:
                shape["drop_in_z"] = True  # mamba-ssm's and the drop-in's rows ran with a z gate

            def drop_in():
                return scan2d.selective_scan(pre["u"], pre["delta"], pre["A"], pre["B"], pre["C"], pre["D"],
                                             pre.get("z"), delta_bias=pre["bias"], delta_softplus=True,
                                             backend="triton")

            backends, checks = {}, {}
            # Each closure binds its values as defaults: names rebound later in this loop must not reach them.
            if module is not None and gate is not None:  # the gated layer: MambaIR-style code is the reference
                backends["mambair_path"] = (lambda mamba=mamba_fn(module), inp=inp, gate=gate:
                                            gated_mambair_path(mamba, inp, directions, H, W, gate), {})
                checks["fused"] = ("rel_err_vs_mambair", outputs_and_du(backends["mambair_path"][0], inp["u"]),
                                   inp["u"])
            elif module is not None:  # first, so that every other row can carry its ratio to it
                mamba = mamba_fn(module)
                backends["mamba_ssm"] = (lambda mamba=mamba, pre=pre: mamba(*pre.values()), {})
                backends["mambair_path"] = (lambda mamba=mamba, inp=inp: mambair_path(mamba, inp, directions, H, W),
                                            {})
                checks["fused"] = ("rel_err_vs_mambair", outputs_and_du(backends["mambair_path"][0], inp["u"]),
                                   inp["u"])
                checks["drop_in"] = ("rel_err_vs_mamba_ssm", outputs_and_du(backends["mamba_ssm"][0], pre["u"]),
                                     pre["u"])
            if device.type == "cuda" or args.smoke:
                if args.configs:
                    configs = [parse_config(text) for text in args.configs]
                else:
                    configs = (SWEEP[:2] if args.smoke else SWEEP) if args.sweep else [dict()]
                # The drop-in takes the same configurations (one row each) where they are given.
                kernels = [("fused", fused)] + ([("drop_in", drop_in)] if not args.sweep and gate is None else [])
                for kind, kernel in kernels:
                    for changes in configs:
                        backends[kind + "".join(f" {k}={v}" for k, v in changes.items())] = (kernel, changes)
            if not args.sweep:
                backends["torch"] = (lambda: directional_scan(**inp, directions=directions, height=H, width=W,
                                                              gate=gate, backend="torch"), {})
            reference = None
            if args.backends:
                backends = {k: v for k, v in backends.items() if k.split()[0] in args.backends}
            for backend, (fwd, changes) in backends.items():
                changes = dict(changes)
                deterministic = changes.pop("deterministic", False)
                kind = backend.split()[0]
                with tile_config(**changes) as tiles, deterministic_algorithms(deterministic):
                    values = measure(fwd, device, args)
                    # Each configuration's own output and du against the reference: a fast but wrong one shows.
                    errors = relative_errors(fwd, *checks[kind][1:]) if kind in checks else None
                moved = bytes_moved(batch, L, Ll, D, K, N_STATE, RANK, dtype,
                                    "fused" if kind == "fused" else "mamba_ssm")
                row = record(name, shape, dtype, kind, device, **values, out_mb=out_mb, bytes_min=moved,
                             fwd_gbps=moved / values["fwd_ms"] / 1e6)
                if errors is not None:
                    row[checks[kind][0]] = errors
                if kind in ("fused", "drop_in"):
                    row["tiles"] = dict(dataclasses.asdict(tiles), deterministic=deterministic)
                if values["fwd_peak_mb"] is not None:
                    row["fwd_peak_over_output"] = round(values["fwd_peak_mb"] / out_mb, 3)
                # The ratios are to mamba-ssm's bare scan, or for the gated layer to the gated MambaIR-style path.
                ref_name = "mambair_path" if gate is not None else "mamba_ssm"
                if backend == ref_name:
                    reference = values
                elif reference is not None:
                    row[f"fwd_speedup_vs_{ref_name}"] = round(reference["fwd_ms"] / values["fwd_ms"], 3)
                    row[f"fwdbwd_speedup_vs_{ref_name}"] = round(reference["fwdbwd_ms"] / values["fwdbwd_ms"], 3)
                    if reference["fwd_graph_ms"] and values["fwd_graph_ms"]:
                        row[f"fwd_graph_speedup_vs_{ref_name}"] = round(reference["fwd_graph_ms"] /
                                                                        values["fwd_graph_ms"], 3)
                rows.append(row)
                if not args.smoke:
                    append_jsonl(row, out_name)
                print(json.dumps(row), flush=True)
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mamba-sdist", help="mamba_ssm-2.3.2.post1.tar.gz to build the CUDA baseline from")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run that checks the harness")
    parser.add_argument("--cases", nargs="*", choices=sorted(CASES), help="default: every case")
    parser.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--sweep", action="store_true",
                        help="time the fused op alone under each tile configuration of SWEEP")
    parser.add_argument("--configs", nargs="*", help="the fused op's tile configurations instead of the default "
                        "(or of SWEEP): 'default' or key=value pairs joined by commas, e.g. forward_state_loop=True")
    parser.add_argument("--backends", nargs="*", choices=["mamba_ssm", "mambair_path", "fused", "drop_in", "torch"],
                        help="time only these (default: all); a fused row's speedup needs mamba_ssm in the run")
    parser.add_argument("--gated", action="store_true",
                        help="the layer with the model's channel gate (LW-SS2D, every RLMB's): fused against the gated "
                        "MambaIR-style path (and the PyTorch path)")
    parser.add_argument("--z", action="store_true",
                        help="mamba-ssm's op and the drop-in with a z gate, as Mamba blocks call selective_scan_fn")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", help="result file name under bench/results/ (or $BENCH_RESULTS)")
    parser.add_argument("--append", action="store_true", help="add to the result file instead of replacing it")
    return parser.parse_args(argv)


def main():
    args = parse_args()
    device = torch.cuda.get_device_name().replace(" ", "-") if torch.cuda.is_available() else "cpu"
    kind = "sweep" if args.sweep else "scan"
    out_name = args.out or f"{kind}-{device}-{dt.date.today().isoformat()}.jsonl"
    if not args.smoke and not args.append:
        (RESULTS / out_name).unlink(missing_ok=True)
    run(args, out_name)
    if not args.smoke:
        print("wrote", RESULTS / out_name)
    print("scan2d", scan2d.__version__)


if __name__ == "__main__":
    main()
