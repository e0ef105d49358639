"""Autograd wrapper of the fused Triton kernels for :func:`scan2d.directional_scan`.

One launch sequence scans all K directions of a layer: positions come from the direction table, delta is built
in-kernel from the dt low-rank projection, and every direction is added into one raster-order output in the
input dtype (one output launch per direction, each adding to the last: no atomics, deterministic), optionally
weighted per (batch, direction, channel).

The channel gate needs, per direction, the token-mean of LayerNorm(y_k) before any direction can be added in.
It is computed without any buffer beyond the layer's output (:class:`_GatePool`): one pass accumulates each token's
sum and sum of squares over channels (atomics over channel blocks, or under torch.use_deterministic_algorithms one
program per chunk looping over them), a second the sum over tokens of y * rstd, from which the pooled statistic
follows exactly; PyTorch applies the small excitation MLP; the final pass adds the gated directions, from the chunk
entry states the gate's passes started from (computed once for both).  The first pass also writes direction 0's
output into the buffer that becomes the layer's output (:class:`_FirstDirection`): the second pass pools it from
there (``launch.first_direction_pool``) and the final pass weights it in place and adds the other directions, so
only directions 1 .. K-1 are scanned again.  Its backward adds one pass for each token's sum over channels of g * y
and then runs the usual adjoint kernels with the LayerNorm gradient as their upstream: chunk_adjoint recomputes the
outputs that gradient needs and keeps the output gradient it forms, which backward_grads reads instead of
recomputing them (``TileConfig.backward_keeps_dy``).  So the gated forward scans
direction 0 twice (chunk ends, statistics) and the others four times (and pooling, output), where the ungated
forward scans each twice: exponentials traded for memory traffic.

The gated backward has two upstreams, the output's gradient and the pooled statistic's, and autograd delivers them
one after the other: the output's first, the pooled statistic's after the excitation's backward, which needs the
direction weights' gradient from the first.  Each used to take a whole backward pass (chunk_adjoint, carry,
backward_grads, the costliest kernel).  Now (``_GateLink``) the output's backward only computes the weights' gradient
(one output pass with ``reduce=4``) and hands its output gradient on; the pooling's backward then runs one backward
pass with both upstreams.

Under torch.compile the ungated layer runs as two custom ops, ``scan2d::directional_scan_fwd`` and
``scan2d::directional_scan_bwd``, which stay in the compiled graph; the gated layer breaks the graph and runs as
above (``_gated_scan``): the buffer and the output gradient that its autograd nodes hand on are not op arguments.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import torch

from .._backend import autograd_records
from ..directions import ScanDirection
from ..triton import launch
from ..triton.direction_table import ORDER_OF, scan_length
from ..triton.operands import ScanOperands, cdiv
from ..triton.tiles import TileConfig, current_tiles
from .gate import ChannelGate


def _operands(u, xdbl, dt_weight, dt_bias, A, D, directions, height, width, u_low, xdbl_low, tiles=None,
              for_backward=True):
    batch, _, dim = u.shape
    low = u_low is not None
    return ScanOperands(
        u=u, u_strides=(u.stride(0), u.stride(1), u.stride(2)),
        u_low=u_low if low else u, u_low_batch_stride=u_low.stride(0) if low else 0,
        x=xdbl, x_strides=tuple(xdbl.stride()), x_low=xdbl_low if low else xdbl,
        x_low_batch_stride=xdbl_low.stride(0) if low else 0,
        delta=u, delta_strides=(0, 0, 0), B=u, C=u, B_strides=(0, 0, 0, 0), C_strides=(0, 0, 0, 0), per_group=1,
        dt_weight=dt_weight, dt_bias=dt_bias, A=A, D=D, z=None, z_strides=(0, 0, 0),
        directions=tuple(directions), batch=batch, K=len(directions), dim=dim, height=height, width=width,
        n_state=A.shape[-1], rank=dt_weight.shape[-1], order=ORDER_OF[directions[0].cross_scale],
        lowrank=True, grouped=False, has_bias=True, softplus=True, tiles=tiles or current_tiles(),
        for_backward=for_backward,
    )


def _prepare(u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low):
    """Contiguous inputs (the kernels assume channels-last contiguous tokens) and A in float32."""
    u, xdbl, dt_weight, dt_bias, D = (t.contiguous() for t in (u, xdbl, dt_weight, dt_bias, D))
    if u_low is not None:
        u_low, xdbl_low = u_low.contiguous(), xdbl_low.contiguous()
    return u, xdbl, dt_weight, dt_bias, A.float().contiguous(), D, u_low, xdbl_low


def _layer_backward(ops, saved, A_dtype, dout, dout_strides, summed, weight, entry, dsum, ln_upstream=None,
                    round_first=False):
    """Run the backward kernels; returns the gradient tensors of (u, xdbl, dt_weight, dt_bias, A, D, u_low,
    xdbl_low) in their dtypes, and the gradient of the direction weights (or None).  ``round_first``: the gated
    forward stored direction 0's output (``launch.output_pass``)."""
    u, xdbl, dt_weight, dt_bias, _, D, u_low, xdbl_low = saved
    f32 = dict(dtype=torch.float32, device=u.device)
    low = u_low is not None
    buffers = dict(du=torch.zeros(u.shape, **f32), dx=torch.zeros(xdbl.shape, **f32),
                   du_low=torch.zeros(u_low.shape, **f32) if low else None,
                   dx_low=torch.zeros(xdbl_low.shape, **f32) if low else None)
    g = launch.backward(ops, dout, dout_strides, summed, weight, entry, dsum, buffers, ln_upstream, round_first)
    grads = (g.du.to(u.dtype), g.dx.to(xdbl.dtype), g.dW.to(dt_weight.dtype), g.dbias.to(dt_bias.dtype),
             g.dA.to(A_dtype), g.dD.to(D.dtype), g.du_low.to(u_low.dtype) if low else None,
             g.dx_low.to(xdbl_low.dtype) if low else None)
    return grads, g.dweight


def _summed_strides(out: torch.Tensor) -> tuple:
    """The kernels' (batch, direction, position, channel) strides of a (batch, L, dim) output that all directions
    share."""
    return out.stride(0), 0, out.stride(1), out.stride(2)


def _forward(ops, w):
    """The ungated layer's forward: its output (batch, L, dim) in u's dtype, the state entering every chunk and the
    chunks' delta sums (``launch.forward``)."""
    out = torch.empty(ops.u.shape, device=ops.u.device, dtype=ops.u.dtype)  # the first direction writes every element
    entry, dsum, _ = launch.forward(ops, out, _summed_strides(out), True, w)
    return out, entry, dsum


class _FirstDirection:
    """Direction 0's unweighted output (batch, L, dim), which the gate's statistics pass wrote: the output pass weights
    it and adds the other directions to it in place, so that neither it nor the pooling scans direction 0 again.  An
    object rather than a tensor argument, so that autograd does not take the buffer for an input."""

    def __init__(self, out: torch.Tensor):
        self.out = out


class _DirectionalScanTriton(torch.autograd.Function):
    """out (batch, L, dim) = sum_k weight[:, k] * y_k (weight optional), all directions added in-kernel."""

    @staticmethod
    def forward(ctx, u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low, weight, directions, height, width,
                for_backward, states=None, link=None, first=None):
        """``states``: the chunk entry states and delta sums (``launch.forward_states``) of these inputs, computed
        under the same tiles and ``for_backward`` (the gate's pooling pass), instead of computing them again.
        ``link``: a :class:`_GateLink` to the pooling that made them, whose backward then back-propagates this
        output's gradient too.  ``first``: a :class:`_FirstDirection` (needs ``weight``); its buffer becomes the
        output."""
        ctx.link = link
        ctx.first_stored = first is not None
        saved = _prepare(u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low)
        w = weight.float().contiguous() if weight is not None else None
        ops = _operands(*saved[:6], directions, height, width, *saved[6:], for_backward=for_backward)
        ctx.tiles = ops.tiles
        if states is None and first is None:
            out, entry, dsum = _forward(ops, w)
        else:
            entry, dsum = launch.forward_states(ops)[:2] if states is None else states
            out = first.out if first is not None else torch.empty(u.shape, device=u.device, dtype=u.dtype)
            launch.output_pass(ops, entry, out, _summed_strides(out), True, w, last_use=not for_backward,
                               first_direction=int(first is not None))
        ctx.save_for_backward(*saved, w, entry, dsum)
        ctx.meta = (tuple(directions), height, width, A.dtype, weight.dtype if weight is not None else None)
        return out

    @staticmethod
    def backward(ctx, dout):
        *saved, w, entry, dsum = ctx.saved_tensors
        directions, height, width, A_dtype, w_dtype = ctx.meta
        ops = _operands(*saved[:6], directions, height, width, *saved[6:], tiles=ctx.tiles)
        dout = dout.contiguous()
        strides = _summed_strides(dout)
        if ctx.link is not None:
            # The weights' gradient alone; the inputs' gradient comes with the pooled statistic's, in one pass.
            dweight = launch.direction_weight_grad(ops, entry, dout, strides, round_first=ctx.first_stored)
            ctx.link.output_grad = (dout, strides, w)
            return (None,) * 8 + (dweight.to(w_dtype),) + (None,) * 7
        grads, dweight = _layer_backward(ops, saved, A_dtype, dout, strides, True, w, entry, dsum)
        return (*grads, dweight.to(w_dtype) if w is not None else None) + (None,) * 7


class _GateLink:
    """What the gated output's backward leaves for the pooling's (see the module's docstring): its output gradient,
    its strides and the direction weights, for one backward pass with both upstreams."""

    def __init__(self):
        self.output_grad = None


def _reaches(tensor: torch.Tensor, node) -> bool:
    """Whether autograd goes from ``tensor`` to the graph node ``node`` (through the excitation: a few ops)."""
    stack, seen = [tensor.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        if fn is node:
            return True
        seen.add(fn)
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return False


class _GatePool(torch.autograd.Function):
    """pooled[b, k] = mean over high-resolution tokens of LayerNorm(y_k) (weight, bias, eps), (batch, K, dim); also
    the chunk entry states and delta sums its passes started from, for the output pass (not differentiable)."""

    @staticmethod
    def forward(ctx, u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low, ln_weight, ln_bias, eps, directions,
                height, width, for_backward, link):
        ctx.link = link
        saved = _prepare(u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low)
        ops = _operands(*saved[:6], directions, height, width, *saved[6:], for_backward=for_backward)
        ctx.tiles = ops.tiles
        entry, dsum, _ = launch.forward_states(ops)
        BK, L, dim = ops.batch * ops.K, height * width, ops.dim
        f32 = dict(device=u.device, dtype=torch.float32)
        sums = torch.zeros(BK, L, 2, **f32)
        # The statistics pass also writes direction 0's output (with K > 1): the pooling below and the output pass
        # read it instead of scanning direction 0 again, a pass in each.
        keep_first = ctx.keep_first = ops.K > 1  # the backward rounds what was stored alike (launch.rounds_first)
        first = torch.empty(u.shape, device=u.device, dtype=u.dtype) if keep_first else sums
        launch.output_pass(ops, entry, first, _summed_strides(first) if keep_first else (0, 0, 0, 0), False, None,
                           reduce=1, red=sums, store_first=keep_first)
        mean = sums[..., 0] / dim
        rstd = torch.rsqrt((sums[..., 1] / dim - mean * mean).clamp_min(0.0) + eps)
        tok = torch.stack([mean, rstd], dim=-1).contiguous()
        part = ops.state_buffer()
        # Not the entry states' last use: the output pass starts from them too.
        launch.output_pass(ops, entry, part, (0, 0, 0, 0), False, None, reduce=2, tok=tok, part=part,
                           first_direction=int(keep_first))
        pooled_sum = launch.chunk_sums(ops, part)  # (batch, K, dim)
        if keep_first:
            pooled_sum[:, 0] = launch.first_direction_pool(ops, first, tok)
        mean_xhat = (pooled_sum.view(BK, dim) - (mean * rstd).sum(1, keepdim=True)) / L  # (BK, dim)
        pooled = ln_weight.float() * mean_xhat + ln_bias.float()
        ctx.save_for_backward(*saved, ln_weight, entry, dsum, mean, rstd, mean_xhat)
        ctx.meta = (tuple(directions), height, width, A.dtype, ln_weight.dtype, ln_bias.dtype)
        ctx.mark_non_differentiable(entry, dsum)
        return pooled.view(ops.batch, ops.K, dim).to(u.dtype), entry, dsum, _FirstDirection(first) if keep_first \
            else None

    @staticmethod
    def backward(ctx, dpooled, _dentry, _ddsum, _dfirst=None):
        *saved, ln_weight, entry, dsum, mean, rstd, mean_xhat = ctx.saved_tensors
        directions, height, width, A_dtype, w_dtype, b_dtype = ctx.meta
        ops = _operands(*saved[:6], directions, height, width, *saved[6:], tiles=ctx.tiles)
        BK, L, dim = ops.batch * ops.K, height * width, ops.dim
        dp = dpooled.float().reshape(BK, dim)
        g = (dp * ln_weight.float() / L).contiguous()
        q = torch.zeros(BK, L, device=dp.device, dtype=torch.float32)
        keep_first = ctx.keep_first
        launch.output_pass(ops, entry, q, (0, 0, 0, 0), False, None, reduce=3, red=q, vec=g, round_first=keep_first)
        m = rstd * (q - mean * g.sum(1, keepdim=True)) / dim
        tok = torch.stack([mean, rstd, m], dim=-1).contiguous()
        ln_upstream = (tok, g, g.mean(1).contiguous())
        output_grad, ctx.link.output_grad = ctx.link.output_grad, None
        if output_grad is None:
            grads, _ = _layer_backward(ops, saved, A_dtype, q, (0, 0, 0, 0), False, None, entry, dsum,
                                       ln_upstream=ln_upstream, round_first=keep_first)
        else:  # the gated output's gradient as well (_DirectionalScanTriton.backward left it)
            dout, strides, w = output_grad
            grads, _ = _layer_backward(ops, saved, A_dtype, dout, strides, True, w, entry, dsum,
                                       ln_upstream=ln_upstream, round_first=keep_first)
        return (*grads, (dp * mean_xhat).sum(0).to(w_dtype), dp.sum(0).to(b_dtype), None, None, None, None, None,
                None)


# The ungated layer as custom ops (torch.compile; as ``selective_scan.triton_op`` says why eager calls keep the
# Function).  ``directions`` travels as ``_directions_key``, ``tiles`` as TileConfig.key: strings that the compiler
# passes through, where ScanDirection and TileConfig objects are not op arguments.

def _directions_key(directions: Sequence[ScanDirection]) -> str:
    """The directions as their names (``ScanDirection.name``) and their cross-scale mode: "w8,c_w8_flip|aligned"."""
    return ",".join(d.name for d in directions) + "|" + (directions[0].cross_scale or "")


@functools.lru_cache(maxsize=512)  # read at every call of the custom ops
def _directions_from_key(key: str) -> tuple:
    names, cross_scale = key.split("|")
    return tuple(ScanDirection.parse(name, cross_scale or None) for name in names.split(","))


def _forward_shapes(u, A, directions: str, height: int, width: int, for_backward: bool, tiles: str) -> tuple:
    """Shapes of ``_forward_op``'s outputs: a training forward keeps one state per tile of block_t steps.  With
    dynamic shapes the map's sides may be symbolic here: int() specializes the graph to them (a guard, one graph per
    map size), as the scan geometry is worked out in Python."""
    height, width = int(height), int(width)
    dirs = _directions_from_key(directions)
    chunks = cdiv(scan_length(dirs, height, width), TileConfig.from_key(tiles).block_t) if for_backward else 0
    batch, _, dim = u.shape
    BK = batch * len(dirs)
    return tuple(u.shape), (BK, chunks, dim, A.shape[-1]), (BK, chunks, dim)


@torch.library.custom_op("scan2d::directional_scan_fwd", mutates_args=())
def _forward_op(u: torch.Tensor, xdbl: torch.Tensor, dt_weight: torch.Tensor, dt_bias: torch.Tensor, A: torch.Tensor,
                D: torch.Tensor, u_low: Optional[torch.Tensor], xdbl_low: Optional[torch.Tensor],
                weight: Optional[torch.Tensor], directions: str, height: int, width: int, for_backward: bool,
                tiles: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, entry states, delta sums) as ``_forward`` gives them; without ``for_backward`` the last two hold no
    chunks (the kernels may have used their memory)."""
    saved = _prepare(u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low)
    ops = _operands(*saved[:6], _directions_from_key(directions), height, width, *saved[6:],
                    tiles=TileConfig.from_key(tiles), for_backward=for_backward)
    out, entry, dsum = _forward(ops, weight.float().contiguous() if weight is not None else None)
    expected = _forward_shapes(u, A, directions, height, width, for_backward, tiles)
    if not for_backward:
        entry, dsum = entry.new_empty(expected[1]), dsum.new_empty(expected[2])
    if (tuple(entry.shape), tuple(dsum.shape)) != expected[1:]:  # the fake below would have lied to the compiler
        raise RuntimeError(f"internal error: chunk states {tuple(entry.shape)}, expected {expected[1]}")
    return out, entry, dsum


@_forward_op.register_fake
def _(u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low, weight, directions, height, width, for_backward, tiles):
    out, entry, dsum = _forward_shapes(u, A, directions, height, width, for_backward, tiles)
    return u.new_empty(out), u.new_empty(entry, dtype=torch.float32), u.new_empty(dsum, dtype=torch.float32)


@torch.library.custom_op("scan2d::directional_scan_bwd", mutates_args=())
def _backward_op(dout: torch.Tensor, u: torch.Tensor, xdbl: torch.Tensor, dt_weight: torch.Tensor,
                 dt_bias: torch.Tensor, A: torch.Tensor, D: torch.Tensor, u_low: Optional[torch.Tensor],
                 xdbl_low: Optional[torch.Tensor], weight: Optional[torch.Tensor], entry: torch.Tensor,
                 dsum: torch.Tensor, directions: str, height: int, width: int, tiles: str) -> list[torch.Tensor]:
    """Gradients of (u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low, weight), contiguous, empty for absent
    inputs."""
    saved = _prepare(u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low)
    ops = _operands(*saved[:6], _directions_from_key(directions), height, width, *saved[6:],
                    tiles=TileConfig.from_key(tiles))
    dout = dout.contiguous()
    w = weight.float().contiguous() if weight is not None else None
    grads, dweight = _layer_backward(ops, saved, A.dtype, dout, _summed_strides(dout), True, w, entry, dsum)
    grads = (*grads, dweight.to(weight.dtype) if weight is not None else None)
    return [g.contiguous() if g is not None else u.new_empty(0) for g in grads]


@_backward_op.register_fake
def _(dout, u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low, weight, entry, dsum, directions, height, width,
      tiles):
    return [t.new_empty(t.shape) if t is not None else u.new_empty(0)
            for t in (u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low, weight)]


def _setup_context(ctx, inputs, output):
    *tensors, directions, height, width, _, tiles = inputs
    _, entry, dsum = output
    ctx.save_for_backward(*tensors, entry, dsum)
    ctx.meta = directions, height, width, tiles
    ctx.mark_non_differentiable(entry, dsum)


def _backward_of_op(ctx, dout, _dentry, _ddsum):
    *tensors, entry, dsum = ctx.saved_tensors
    grads = _backward_op(dout, *tensors, entry, dsum, *ctx.meta)
    return (*(g if t is not None else None for g, t in zip(grads, tensors)), None, None, None, None, None)


_forward_op.register_autograd(_backward_of_op, setup_context=_setup_context)


@torch.compiler.disable
def _gated_scan(args, gate: ChannelGate, direction_weights, directions: tuple, height, width) -> torch.Tensor:
    """The gated layer, eager under torch.compile (a graph break): its passes hand buffers and an output gradient
    from one autograd node to another (``_FirstDirection``, ``_GateLink``), which custom ops cannot express."""
    weights, states, link, first = direction_weights, None, None, None
    pool_records = autograd_records(*args, gate.norm_weight, gate.norm_bias)
    pool_link = _GateLink()
    pooled, entry, dsum, first = _GatePool.apply(*args, gate.norm_weight, gate.norm_bias, gate.eps, directions,
                                                 height, width, pool_records, pool_link)
    weights = gate.excite(pooled) * (1 if weights is None else weights)
    # The output pass starts from the same chunk entry states, unless it chunks differently: one tile per chunk
    # when its weights record a graph that the pooling's inputs did not (e.g. only the excitation's parameters
    # require grad).
    if autograd_records(*args, weights) == pool_records:
        states = (entry, dsum)
        # One backward pass for both upstreams, when autograd will reach the pooling's backward after the
        # output's: through the excitation from the weights.
        if pool_records and _reaches(weights, pooled.grad_fn):
            link = pool_link
    return _DirectionalScanTriton.apply(*args, weights, directions, height, width, autograd_records(*args, weights),
                                        states, link, first)


def directional_scan_triton(u, xdbl, dt_weight, dt_bias, A, D, directions: Sequence[ScanDirection], height, width,
                            u_low=None, xdbl_low=None, gate: Optional[ChannelGate] = None,
                            direction_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Triton path of :func:`scan2d.directional_scan` (arguments already validated)."""
    args = (u, xdbl, dt_weight, dt_bias, A, D, u_low, xdbl_low)
    if gate is not None:
        return _gated_scan(args, gate, direction_weights, tuple(directions), height, width)
    for_backward = autograd_records(*args, direction_weights)
    if torch.compiler.is_compiling():
        return _forward_op(*args, direction_weights, _directions_key(directions), height, width, for_backward,
                           current_tiles().key)[0]
    return _DirectionalScanTriton.apply(*args, direction_weights, tuple(directions), height, width, for_backward,
                                        None, None, None)
