"""Shared inputs and an independent, loop-by-loop definition of the directional scan for the tests."""

import torch
import torch.nn.functional as F

from scan2d import ChannelGate, ScanDirection, directional_scan, selective_scan_ref
from scan2d.triton.tiles import tile_config
from scan2d.directions import _order


def make_layer_inputs(batch, height, width, dim, K, n_state=4, rank=3, cross_scale=False, dtype=torch.float64,
                      seed=0):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    L = height * width
    low = ((height + 1) // 2) * ((width + 1) // 2)
    inputs = dict(
        u=rnd(batch, L, dim),
        xdbl=rnd(batch, L, K, rank + 2 * n_state),
        dt_weight=rnd(K, dim, rank) * 0.3,
        dt_bias=rnd(K, dim) * 0.3 - 1.0,
        A=-torch.exp(rnd(K, dim, n_state) * 0.5),
        D=rnd(K, dim),
    )
    if cross_scale:
        inputs["u_low"] = rnd(batch, low, dim)
        inputs["xdbl_low"] = rnd(batch, low, K, rank + 2 * n_state)
    return {k: v.to(dtype) for k, v in inputs.items()}


def run_triton_layer(inp, directions, height, width, grad, **tiles):
    """Output and gradients (of ``inp``'s tensors, in sorted order) of the Triton layer under ``tiles``; the
    output's gradient is a fixed ramp.  The inputs go to the GPU where there is one (the interpreter runs on the
    CPU's tensors; compiled kernels refuse them)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    leaves = {k: v.detach().to(device).clone().requires_grad_(grad) for k, v in inp.items()}
    with tile_config(**tiles), torch.set_grad_enabled(grad):
        out = directional_scan(**leaves, directions=directions, height=height, width=width, backend="triton")
        if not grad:
            return [out]
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out))
    return [out] + [leaves[k].grad for k in sorted(leaves)]


def make_gate(dim, K, dtype=torch.float64, seed=1, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    w1 = (torch.randn(dim, dim, generator=g, dtype=dtype) * 0.5).to(device)
    return ChannelGate((1 + 0.1 * torch.randn(dim, generator=g, dtype=dtype)).to(device),
                       (0.1 * torch.randn(dim, generator=g, dtype=dtype)).to(device), 1e-5,
                       lambda pooled: torch.sigmoid(pooled @ w1))


def gate_on(gate, device):
    """``gate`` (a float64 reference gate, or None) for a run on ``device``: its LayerNorm parameters in float32
    there, its excitation the reference's own, computed in float64 on the CPU."""
    if gate is None:
        return None
    return type(gate)(gate.norm_weight.to(device, torch.float32), gate.norm_bias.to(device, torch.float32), gate.eps,
                      lambda p: gate.excite(p.double().cpu()).to(p.device, p.dtype))


def directional_scan_loops(u, xdbl, dt_weight, dt_bias, A, D, directions, height, width, u_low=None, xdbl_low=None,
                           gate=None):
    """Direction by direction, token by token: gather with the order, scan, write back in raster order."""
    batch, L, dim = u.shape
    rank = dt_weight.shape[-1]
    n_state = A.shape[-1]
    tokens = u if u_low is None else torch.cat([u, u_low], 1)
    proj = xdbl if u_low is None else torch.cat([xdbl, xdbl_low], 1)
    outputs = []
    for k, direction in enumerate(directions):
        order = _order(direction, height, width)
        seq = tokens[:, order].transpose(1, 2)  # (batch, dim, T)
        p = proj[:, order, k]  # (batch, T, rank + 2N)
        delta = (p[..., :rank] @ dt_weight[k].T).transpose(1, 2)
        B = p[..., rank:rank + n_state].transpose(1, 2)
        C = p[..., rank + n_state:].transpose(1, 2)
        y = selective_scan_ref(seq, delta, A[k], B, C, D[k], delta_bias=dt_bias[k], delta_softplus=True)
        raster = torch.zeros(batch, L, dim, dtype=y.dtype)
        for t, position in enumerate(order.tolist()):
            if position < L:
                raster[:, position] = y[:, :, t]
        outputs.append(raster)
    ys = torch.stack(outputs, 1)
    if gate is None:
        return ys.sum(1)
    pooled = F.layer_norm(ys, (dim,), gate.norm_weight.to(ys.dtype), gate.norm_bias.to(ys.dtype), gate.eps).mean(2)
    return (ys * gate.excite(pooled).unsqueeze(2)).sum(1)


def directions_for(K, window, cross_scale=None):
    """K directions cycling row, row-reversed, column, column-reversed, with one window."""
    base = [ScanDirection(window, False, False, cross_scale), ScanDirection(window, False, True, cross_scale),
            ScanDirection(window, True, False, cross_scale), ScanDirection(window, True, True, cross_scale)]
    return tuple(base[:K]) if K <= 4 else tuple(base[k % 4] for k in range(K))
