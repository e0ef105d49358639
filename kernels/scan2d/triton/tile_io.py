"""Reading a tile's inputs and writing its results: offsets, gathers at the scan positions, delta, sums.

``load_steps`` (``load_chunk`` adds B and C as tiles) computes every step's position (:mod:`.positions`), gathers u
and the x-projection row at that position, and builds delta either from a given tensor (the drop-in
``selective_scan``) or from the dt low-rank projection, bias and softplus (``directional_scan``): no permuted copy
of the feature map and no per-direction delta tensor ever exists in memory.  ``offset`` widens an index to 64 bits
only where the launch needs it; ``block_channels`` and ``channel_blocks`` say which channels a program handles;
``accumulate`` adds a program's partial sums into a buffer (plain stores where the program owns them, relaxed
atomics otherwise).
"""

import triton
import triton.language as tl

from .positions import tile_positions
from .recurrence import LOG2E


@triton.jit
def offset(x, WIDE: tl.constexpr):
    """Integer x (a scalar or a vector of indices) as it enters pointer offsets: int64 with WIDE, else x itself
    (int32).  The host sets WIDE where some tensor of the launch can reach 2^31 elements
    (``operands.ScanOperands.launch_meta``).  Below that every offset fits int32, and 32-bit offsets save a register
    per row pointer and the 64-bit multiplies: compile_check, sm_90, the model's layer, 5-9% fewer static
    instructions in the forward kernels, 7% in the backward (bench/JOURNAL.md).  (Names ending in ``_o`` hold such
    offsets.)"""
    if WIDE:
        return tl.cast(x, tl.int64)  # not x.to: x may be a Python int (an unrolled state index)
    else:
        return x


@triton.jit
def load_pair(ptr):
    """ptr[0] and ptr[1] as float32, read as one word: 64-bit for float32, 32-bit for 16-bit types.  Triton loads
    the adjacent columns of an x_proj row (dt ranks, states of B and C) one 32-bit word at a time, since it cannot
    prove their alignment (``tl.join`` of the pointers does not vectorize); through a wider pointer one LDG
    replaces two.  ptr must be aligned to the word (``ScanOperands.paired_x``)."""
    if ptr.dtype.element_ty == tl.float32:
        word = tl.load(ptr.to(tl.pointer_type(tl.uint64)))
        lo = (word & 0xFFFFFFFF).to(tl.uint32).to(tl.float32, bitcast=True)
        hi = (word >> 32).to(tl.uint32).to(tl.float32, bitcast=True)
    else:
        word = tl.load(ptr.to(tl.pointer_type(tl.uint32)))
        lo = (word & 0xFFFF).to(tl.uint16).to(ptr.dtype.element_ty, bitcast=True).to(tl.float32)
        hi = (word >> 16).to(tl.uint16).to(ptr.dtype.element_ty, bitcast=True).to(tl.float32)
    return lo, hi


@triton.jit
def paired_rank_blocks(delta_pre, xrow, w_rows, d, d_mask, R: tl.constexpr, UNROLLED: tl.constexpr = False):
    """delta_pre + dt_low @ dt_weight[k].T over R >= 4 (even) ranks read two per load (``load_pair``), in blocks of
    4 at constant offsets from each step's row: the last block ends at rank R-1, its ranks that the block before
    took masked out.  xrow: each step's dt_low row, w_rows: each channel's dt_weight row (contiguous over the
    ranks), d and d_mask the channels, all shaped to broadcast against delta_pre.  UNROLLED: the blocks too, so
    every rank's offset is a constant (the rolled loop adds each step's address again in every trip;
    ``TileConfig.unroll_rank_blocks``)."""
    if UNROLLED:
        for i0 in tl.static_range(0, R, 4):
            delta_pre = _rank_block(delta_pre, xrow, w_rows, d, d_mask, i0, R)
    else:
        for i0 in range(0, R, 4):
            delta_pre = _rank_block(delta_pre, xrow, w_rows, d, d_mask, i0, R)
    return delta_pre


@triton.jit
def _rank_block(delta_pre, xrow, w_rows, d, d_mask, i0, R: tl.constexpr):
    """``paired_rank_blocks``' block of 4 ranks from rank i0 (or R - 4, the ranks before i0 masked out)."""
    start = tl.minimum(i0, R - 4)  # even: R is
    for i1 in tl.static_range(0, 4, 2):
        lo, hi = load_pair(xrow + start + i1)
        w_lo = tl.load(w_rows + start + i1, mask=d_mask & ((d * 0 + start + i1) >= i0), other=0.0)
        w_hi = tl.load(w_rows + start + i1 + 1, mask=d_mask & ((d * 0 + start + i1 + 1) >= i0), other=0.0)
        delta_pre += lo * w_lo.to(tl.float32)
        delta_pre += hi * w_hi.to(tl.float32)
    return delta_pre


@triton.jit
def softplus(x):
    """log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)), with log1p(y) = 2 atanh(s), s = y / (2 + y) <= 1/3, summed
    to s^15 (the rest is below 2e-9 relative).  ``tl.log`` compiles to libdevice's logf, about 30 instructions per
    (step, channel) in every kernel that builds delta; this is an exponential, a division and 7 FMAs (bench/JOURNAL.md:
    3-5% of the forward kernels' instructions).  It also keeps float32's relative accuracy for negative x, where
    log(1 + exp(x)) rounds 1 + exp(x) first (1e-3 relative error at x = -10, 0 below -16.6).  exp2 of x log2(e),
    which is how a GPU computes ``tl.exp`` too, without the guard against a denormal result that costs 3 instructions
    more per (step, channel): a y that small (x below -87) flushes to 0, changing the result by less than 1e-38."""
    y = tl.exp2(-tl.abs(x) * LOG2E)
    s = y / (2.0 + y)
    z = s * s
    p = z * (1.0 / 15.0) + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    p = p * z + 1.0
    return tl.maximum(x, 0.0) + 2.0 * s * p


@triton.jit
def step_deltas(delta_pre, bias, mask, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(delta_pre + bias, delta) of a tile: delta = softplus(delta_pre + bias) with SOFTPLUS, else delta_pre + bias,
    and 0 outside ``mask`` (an invalid step's decay 1 and input 0: the recurrence's identity).  ``bias`` broadcasts
    against delta_pre and is read only with HAS_BIAS."""
    if HAS_BIAS:
        delta_pre += bias
    if SOFTPLUS:
        delta = softplus(delta_pre)
    else:
        delta = delta_pre
    return delta_pre, tl.where(mask, delta, 0.0)


@triton.jit
def x_rows(x_ptr, x_low_ptr, X, b_o, pos_o, is_low, k, ORDER: tl.constexpr):
    """Pointers (BLOCK_T,) to direction k's x_proj row [dt_low | B | C] at each step's position (low-resolution
    tokens in the low-resolution tensor), with the strides of X (see load_chunk).  Gradient buffers laid out like
    x use it too."""
    _, _, s_xb, s_xl, s_xk, _, s_xb_low = X
    high = x_ptr + b_o * s_xb + pos_o * s_xl + k * s_xk
    if ORDER == 0:
        return high
    else:
        return tl.where(is_low, x_low_ptr + b_o * s_xb_low + pos_o * s_xl + k * s_xk, high)


@triton.jit
def one_pass_params(Dskip_ptr, dtb_ptr, weight_ptr, params, b_o, K, Dm, d_mask, HAS_D: tl.constexpr,
                    HAS_BIAS: tl.constexpr, HAS_WEIGHT: tl.constexpr):
    """The one-pass kernels' per-channel parameters of direction k, loaded once per program as float32: (D skip,
    dt bias, direction weight of batch b), each 0.0 where its flag is off.  Dskip and the dt bias are (K, Dm), the
    weights (batch, K, Dm); params = k * Dm + d, the program's channels d (mask d_mask) in direction k's row, shaped
    as the kernel's tiles take them."""
    Dk, bias, wk = 0.0, 0.0, 0.0
    if HAS_D:
        Dk = tl.load(Dskip_ptr + params, mask=d_mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(dtb_ptr + params, mask=d_mask, other=0.0).to(tl.float32)
    if HAS_WEIGHT:
        wk = tl.load(weight_ptr + b_o * K * Dm + params, mask=d_mask, other=0.0).to(tl.float32)
    return Dk, bias, wk


@triton.jit
def one_pass_store(y, out_ptr, s_ob, s_ok, s_ol, s_od, z_ptr, s_zb, s_zl, s_zd, wk, b_o, k, pos_o, d_o, mask, is_low,
                   HAS_Z: tl.constexpr, HAS_WEIGHT: tl.constexpr, ACCUMULATE: tl.constexpr, WIDE: tl.constexpr,
                   ATOMIC: tl.constexpr = False):
    """The one-pass kernels' output of direction k at the steps' positions: y times silu(z) (HAS_Z; z read through
    its strides) times the direction weight wk (HAS_WEIGHT), added to what out holds (ACCUMULATE: the directions'
    sum, s_ok = 0), stored in out's dtype where ``mask`` is on and the token is not a low-resolution one.  ATOMIC:
    added with a float32 atomic instead, the directions of one launch into a zeroed out
    (``launch.one_pass_lanes_forward`` takes it only where the sum is the same in either order)."""
    if HAS_Z:
        z = tl.load(z_ptr + b_o * s_zb + pos_o * s_zl + d_o * s_zd, mask=mask, other=0.0).to(tl.float32)
        y = y * z / (1.0 + tl.exp(-z))
    if HAS_WEIGHT:
        y = y * wk
    write = mask & (is_low == 0)  # low-resolution tokens of a cross-scale scan are never written
    dest = out_ptr + b_o * s_ob + offset(k, WIDE) * s_ok + pos_o * s_ol + d_o * s_od
    if ATOMIC:
        tl.atomic_add(dest, y, mask=write, sem="relaxed")  # read only after the kernel ends (see accumulate)
    else:
        if ACCUMULATE:
            y += tl.load(dest, mask=write, other=0.0).to(tl.float32)
        tl.store(dest, y.to(out_ptr.dtype.element_ty), mask=write)


@triton.jit
def one_pass_step_inputs(U, X, DELTA, BC, PROJ, b_o, pos_o, is_low, valid, mask, k, d, d_o, d_mask, params, pid_d,
                         bias, ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
                         SOFTPLUS: tl.constexpr, R: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr,
                         WIDE: tl.constexpr, PAIRED: tl.constexpr, UNROLL_RANKS: tl.constexpr):
    """The one-pass kernels' (``one_pass``, ``one_pass_lanes``) inputs of each (step, channel) at the steps'
    positions ``pos_o``: u and delta (softplus(dt_low @ dt_weight[k].T + bias) or the given delta; 0 where ``mask``
    is off, the recurrence's identity) as float32, and each step's B and C rows with the stride between their states
    (b_rows, c_rows: pointers to state 0; s_bn, s_cn).  Inputs as ``load_steps`` reads them (U, X, DELTA, BC, PROJ);
    d, d_o, d_mask: the channels (and their ``offset``), params: k * Dm + d, bias: the dt bias (HAS_BIAS), all shaped
    to broadcast against ``mask``, pos_o, is_low and valid.  UNROLL_RANKS: ``paired_rank_blocks``' UNROLLED."""
    u_ptr, u_low_ptr, s_ub, s_ul, s_ud, s_ub_low = U
    if ORDER == 0:
        u = tl.load(u_ptr + b_o * s_ub + pos_o * s_ul + d_o * s_ud, mask=mask, other=0.0).to(tl.float32)
    else:
        high_u = u_ptr + b_o * s_ub + pos_o * s_ul + d_o * s_ud
        low_u = u_low_ptr + b_o * s_ub_low + pos_o * s_ul + d_o * s_ud
        u = tl.load(tl.where(is_low, low_u, high_u), mask=mask, other=0.0).to(tl.float32)
    dtw_ptr = PROJ[0]
    if LOWRANK:
        xrow = x_rows(X[0], X[1], X, b_o, pos_o, is_low, k, ORDER)
        delta_pre = tl.zeros(mask.shape, dtype=tl.float32)
        if PAIRED and ORDER == 0 and R >= 4:  # as the chunked kernels read them (load_steps)
            delta_pre = paired_rank_blocks(delta_pre, xrow, dtw_ptr + params * R, d, d_mask, R, UNROLL_RANKS)
        else:
            for r in range(R):
                if ORDER == 0:  # unmasked: an invalid step reads position 0's row, in bounds; its delta is zeroed
                    col = tl.load(xrow + r * X[5]).to(tl.float32)
                else:  # unmasked, Triton 3.6 converts the cross-scale tiles through 2 KB of shared memory
                    col = tl.load(xrow + r * X[5], mask=valid, other=0.0).to(tl.float32)
                wr = tl.load(dtw_ptr + params * R + r, mask=d_mask, other=0.0).to(tl.float32)
                delta_pre += col * wr
        b_rows = xrow + R * X[5]
        c_rows = xrow + (R + N) * X[5]
        s_bn = X[5]
        s_cn = X[5]
    else:
        delta_ptr, s_db, s_dl, s_dd = DELTA
        B_ptr, C_ptr, s_bb, s_bg, s_bn, s_bl, s_cb, s_cg, s_cn, s_cl, per_group = BC
        delta_pre = tl.load(delta_ptr + b_o * s_db + pos_o * s_dl + d_o * s_dd, mask=mask, other=0.0).to(tl.float32)
        grp = block_group(pid_d, per_group, BLOCK_D, WIDE)
        b_rows = B_ptr + b_o * s_bb + grp * s_bg + pos_o * s_bl
        c_rows = C_ptr + b_o * s_cb + grp * s_cg + pos_o * s_cl
    _, delta = step_deltas(delta_pre, bias, mask, HAS_BIAS, SOFTPLUS)
    return u, delta, b_rows, c_rows, s_bn, s_cn


@triton.jit
def block_channels(d_block, per_group, Dm, BLOCK_D: tl.constexpr, ONE_GROUP: tl.constexpr):
    """Channels d (BLOCK_D,) of channel block ``d_block`` and their mask.  The blocks tile each group of
    ``per_group`` channels that share B and C: cdiv(per_group, BLOCK_D) blocks per group, the last one masked.  So
    no block straddles two groups, B and C are one row per step for all the block's channels, and the block keeps
    its size whatever the group size (halving it to divide the group left 8 channels per program for MambaIR's
    360).  ONE_GROUP (the 2D layer, whose B and C are per direction): blocks of the Dm channels, without the
    divisions (compile_check: about 50 SASS instructions per kernel)."""
    return channels_of_block(d_block, tl.arange(0, BLOCK_D), per_group, Dm, BLOCK_D, ONE_GROUP)


@triton.jit
def channels_of_block(d_block, lanes, per_group, Dm, BLOCK_D: tl.constexpr, ONE_GROUP: tl.constexpr):
    """``block_channels`` from the block's lanes 0 .. BLOCK_D - 1 (``lanes``, in whatever layout the caller needs
    them: a Gluon kernel gives its own)."""
    if ONE_GROUP:
        d = d_block * BLOCK_D + lanes
        return d, d < Dm
    per_block = tl.cdiv(per_group, BLOCK_D)
    in_group = (d_block % per_block) * BLOCK_D + lanes
    return (d_block // per_block) * per_group + in_group, in_group < per_group


@triton.jit
def block_group(d_block, per_group, BLOCK_D: tl.constexpr, WIDE: tl.constexpr):
    """The group of B/C that channel block ``d_block`` reads (see ``block_channels``), as an ``offset``."""
    return offset(d_block // tl.cdiv(per_group, BLOCK_D), WIDE)


@triton.jit
def channel_blocks(Dm, per_group, BLOCK_D: tl.constexpr, DETERMINISTIC: tl.constexpr):
    """(first channel block, how many) of this program: its own one (grid axis 1), or with DETERMINISTIC every
    block in turn (the host launches one program per chunk), so sums over channels never cross programs."""
    if DETERMINISTIC:
        return 0, (Dm // per_group) * tl.cdiv(per_group, BLOCK_D)
    else:
        return tl.program_id(1), 1


@triton.jit
def channel_sum_rows(sums_a, sums_b, X, BC, b_o, pos_o, is_low, k, d_block, ORDER: tl.constexpr,
                      LOWRANK: tl.constexpr, R: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr,
                      WIDE: tl.constexpr):
    """Pointers (T,) to state 0 of dB's and dC's rows at the steps at positions ``pos_o``, where the backward adds
    its sums over channels; state n lies as far on as in B and C (``load_steps``'s s_bn, s_cn).  The 2D layer's
    dB and dC are columns of the x-projection gradient (sums_a = dx, sums_b = dx_low, laid out like x); the drop-in
    scan's are laid out like B and C (sums_a = dB, sums_b = dC) and read channel block ``d_block``'s group."""
    if LOWRANK:
        dxrow = x_rows(sums_a, sums_b, X, b_o, pos_o, is_low, k, ORDER)
        return dxrow + R * X[5], dxrow + (R + N) * X[5]
    else:
        grp = block_group(d_block, BC[10], BLOCK_D, WIDE)
        return (sums_a + b_o * BC[2] + grp * BC[3] + pos_o * BC[5],
                sums_b + b_o * BC[6] + grp * BC[7] + pos_o * BC[9])


@triton.jit
def accumulate(ptr, value, mask, OWNED: tl.constexpr, FIRST_WRITE: tl.constexpr = False):
    """ptr += value.  OWNED: no other program of the launch writes these elements, so a plain read-add-write does it
    in a fixed order (deterministic); with FIRST_WRITE too, the elements are still zero and written once (a channel
    block's own copy of dx, ``_backward_state_loop``'s DX_COPIES), so a store does.  Otherwise fp32 atomics.

    The store holds fewer values than the read-add-write: with that, the deterministic state-loop backward spilled
    460-908 bytes instead of 72-176 (compile_check, sm_90).  The atomics are relaxed: the sums are read only after the
    kernel ends.  Triton's default, acq_rel, fences every atomic (a membar.gpu around each in the SASS); on an H200
    that made backward_grads 18 ms of a 20.5 ms layer backward, against 9.7 ms for the same kernel with no atomics at
    all (bench/results/profile-*.jsonl)."""
    if OWNED and FIRST_WRITE:
        tl.store(ptr, value, mask=mask)
    elif OWNED:
        tl.store(ptr, tl.load(ptr, mask=mask, other=0.0) + value, mask=mask)
    else:
        tl.atomic_add(ptr, value, mask=mask, sem="relaxed")


# load_td's and store_td's ROWWISE beyond True / False (``operands.ScanOperands.rowwise``): 4-step vectors.
STEP_VECTORS = tl.constexpr(2)


@triton.jit
def products_fp32(a, b_t):
    """a (M, K) times b (K, N), given as b_t (N, K), in float32 multiply-adds: an (M, N, K) product tile summed over
    K.  Not the sum over axis 1 of a[:, :, None] * b[None, :, :]: Triton's combine pass rewrites that pattern into
    tl.dot with TF32 inputs (10-bit mantissas) on the tensor cores, whatever precision the kernel asks elsewhere
    (compile_check's ``tf32_dots``)."""
    return tl.sum(a[:, None, :] * b_t[None, :, :], axis=2)


@triton.jit
def dot_fp32(a, b_t):
    """``products_fp32`` with tl.dot in IEEE float32 (FMA units, no tensor cores), K zero-padded to 16, tl.dot's
    smallest, by interleaving zero columns of a and zero rows of b: M and N (b_t's rows) at least 16.  The one-pass
    backward's dt input gradient, 8 channels deep: 6% fewer instructions than the product tile's sum over the
    channels' lanes (compile_check, sm_90)."""
    M: tl.constexpr = a.shape[0]
    K: tl.constexpr = a.shape[1]
    PAD: tl.constexpr = (16 + K - 1) // K
    b = tl.trans(b_t)  # (K, N)
    if PAD > 1:
        keep = (tl.arange(0, PAD) == 0)
        a = tl.reshape(tl.where(keep[None, None, :], a[:, :, None], 0.0), [M, K * PAD])
        b = tl.reshape(tl.where(keep[None, :, None], b[:, None, :], 0.0), [K * PAD, b.shape[1]])
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def as_stored(y, k, d, like_ptr, ROUND_FIRST: tl.constexpr):
    """y (T, D) fp32, direction k's outputs; with ROUND_FIRST, direction 0's rounded to ``like_ptr``'s element type
    and back.  The gated forward stores direction 0's output once, in the layer's dtype, and its LayerNorm
    statistics, pooling and weighted output are all of those stored values (``forward_output_kernel``'s
    STORE_FIRST): a pass that recomputes direction 0 for the gate must see the same values.  (Where a token's
    channels nearly agree, rstd nears 1 / sqrt(eps), and y - mean of a rounded y against an unrounded mean swamps
    the gate.)"""
    if ROUND_FIRST:
        y = tl.where(((d * 0 + k) == 0)[None, :], y.to(like_ptr.dtype.element_ty).to(tl.float32), y)
    return y


@triton.jit
def load_td(ptr, rows, cols, row_mask, col_mask, ROWWISE: tl.constexpr):
    """The (T, D) tile of ``ptr`` at offsets ``rows[:, None] + cols[None, :]`` (``offset``s, (T,) and (D,)), as float32,
    zero outside ``row_mask[:, None] & col_mask[None, :]``.

    ROWWISE: one (D,) load per row, for the state loops on channels-first tensors (the drop-in scan's, whose steps
    are contiguous in memory; ``TileConfig.rowwise_tiles``, on by default under Triton < 3.7).  A (T, D) load there
    has no axis Triton can prove contiguous (the steps' positions are computed), and Triton 3.6 breaks that tie
    toward the steps: it lays the steps across lanes, so every scan over them crosses lanes (960 shuffles in the
    drop-in's ``chunk_end_state``, compile_check sm_90) and stores convert through shared memory.  Triton >= 3.7
    breaks it toward the channels.  Row accesses have one axis, so every version keeps the channels across threads
    and the steps in each thread's registers, where picking row i compiles to nothing.  A masked row is not read:
    its offset (position 0 for the kernels' invalid steps) may be another program's element, which that program
    stores in the same launch (du's read-add-write), a race even if the value is dropped (tests/program_races.py).

    ROWWISE == STEP_VECTORS: the same, read 4 steps at a time (``_step_vectors``).
    """
    mask = row_mask[:, None] & col_mask[None, :]
    if ROWWISE == STEP_VECTORS:
        t = tl.arange(0, rows.shape[0])[:, None]
        j4 = tl.arange(0, 4)[:, None]
        x = tl.zeros(mask.shape, dtype=tl.float32)
        for i in tl.static_range(rows.shape[0] // 4):
            offsets, live = _step_vectors(rows, row_mask, cols, col_mask, t, j4, i)
            piece = tl.load(ptr + offsets, mask=live, other=0.0).to(tl.float32)
            for j in tl.static_range(4):
                x = tl.where(t == 4 * i + j, _pick_row(piece, j4, j)[None, :], x)
        return x
    elif ROWWISE:
        t = tl.arange(0, rows.shape[0])[:, None]
        # Picked from a (T, D) tile, which has the tiles' layout: a (T, 1) one would lay the steps across lanes.
        row_tile = tl.broadcast_to(rows[:, None], mask.shape)
        live = tl.broadcast_to(row_mask[:, None].to(tl.int32), mask.shape)
        x = tl.zeros(mask.shape, dtype=tl.float32)
        for i in tl.static_range(rows.shape[0]):
            row = tl.load(ptr + _pick_row(row_tile, t, i) + cols, mask=col_mask & (_pick_row(live, t, i) != 0),
                          other=0.0)
            x = tl.where(t == i, row.to(tl.float32)[None, :], x)
        return x
    else:
        return tl.load(ptr + rows[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def store_td(ptr, rows, cols, value, row_mask, col_mask, ROWWISE: tl.constexpr):
    """Stores the (T, D) tile ``value`` into ``ptr`` at offsets ``rows[:, None] + cols[None, :]`` where
    ``row_mask[:, None] & col_mask[None, :]``, in ptr's dtype; ROWWISE one (D,) store per row, as in ``load_td``,
    and STEP_VECTORS 4 steps per store."""
    if ROWWISE == STEP_VECTORS:
        t = tl.arange(0, rows.shape[0])[:, None]
        j4 = tl.arange(0, 4)[:, None]
        for i in tl.static_range(rows.shape[0] // 4):
            offsets, live = _step_vectors(rows, row_mask, cols, col_mask, t, j4, i)
            piece = tl.zeros(offsets.shape, dtype=tl.float32)
            for j in tl.static_range(4):
                piece = tl.where(j4 == j, _pick_row(value, t, 4 * i + j)[None, :], piece)
            tl.store(ptr + offsets, piece.to(ptr.dtype.element_ty), mask=live)
    elif ROWWISE:
        t = tl.arange(0, rows.shape[0])[:, None]
        row_tile = tl.broadcast_to(rows[:, None], value.shape)
        live = tl.broadcast_to(row_mask[:, None].to(tl.int32), value.shape)
        for i in tl.static_range(rows.shape[0]):
            tl.store(ptr + _pick_row(row_tile, t, i) + cols, _pick_row(value, t, i).to(ptr.dtype.element_ty),
                     mask=col_mask & (_pick_row(live, t, i) != 0))
    else:
        tl.store(ptr + rows[:, None] + cols[None, :], value.to(ptr.dtype.element_ty),
                 mask=row_mask[:, None] & col_mask[None, :])


@triton.jit
def state_column(rows, n, s_n, pos_o, valid, d_mask, VECTORS: tl.constexpr, WIDE: tl.constexpr = False):
    """Column n (state n) of B or C at the tile's steps, float32, shaped to broadcast against a (T, D) tile: (T, 1)
    from ``rows`` (T,), each step's pointer to state 0 (``load_steps``); with VECTORS (STEP_VECTORS), (T, D) from
    ``rows`` the scalar pointer to position 0 of state 0, read 4 steps per load at the positions pos_o (position
    stride 1) where valid, the same words for every lane, n * s_n in 64 bits with WIDE (``offset``: B and C are
    then as given, state n at n * L, where the per-step pointers' B and C would be copied with adjacent states)."""
    if VECTORS:
        lanes = d_mask.to(tl.int32) * 0
        return load_td(rows + offset(n, WIDE) * s_n, pos_o, lanes, valid, lanes == 0, STEP_VECTORS)
    else:
        return tl.load(rows + n * s_n).to(tl.float32)[:, None]


@triton.jit
def _step_vectors(rows, row_mask, cols, col_mask, t, j4, i):
    """The (4, D) offsets and mask of steps 4i .. 4i + 3 of a (T, D) tile whose steps lie one after another in memory
    (position stride 1) and are valid or invalid four at a time (``operands.ScanOperands.rowwise``'s STEP_VECTORS:
    the drop-in scan's contiguous channels-first tensors, raster positions, a length that is a multiple of 16).
    Step 4i's offset is then a multiple of 4 (an invalid one is position 0) and its mask holds for all four, which
    is what Triton must know to read or write the four as one vector: 16 bytes in float32 instead of four loads,
    each of its own 32-byte sector, the 32 lanes' in 32 different ones."""
    first = _pick_row(rows[:, None] + 0 * cols[None, :], t, 4 * i)
    live = _pick_row(row_mask[:, None].to(tl.int32) + 0 * cols[None, :], t, 4 * i) != 0
    # The hints on the steps' part too: the channels' may be zeros (``state_column``), an addition Triton folds away.
    steps = tl.max_contiguous(tl.multiple_of(first[None, :] + j4, [4, 1]), [4, 1])
    offsets = tl.max_contiguous(tl.multiple_of(steps + cols[None, :], [4, 1]), [4, 1])
    return offsets, tl.broadcast_to((live & col_mask)[None, :], offsets.shape)


@triton.jit
def _pick_row(x, t, i):
    """Row i of a (T, D) tile, as (D,); t is arange(T)[:, None].  With the steps in each thread's registers, the
    mask is known per register and this compiles to no instruction.  float32 rows are picked as their bits: a sum of
    floats adds 0.0 to the row, which the compiler must keep (it turns -0.0 into 0.0), an integer sum it drops."""
    if x.dtype == tl.float32:
        bits = x.to(tl.int32, bitcast=True)
        return tl.sum(tl.where(t == i, bits, tl.zeros_like(bits)), axis=0).to(tl.float32, bitcast=True)
    return tl.sum(tl.where(t == i, x, tl.zeros_like(x)), axis=0)


@triton.jit
def load_steps(
    s0, t, b, k, d_block, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, R: tl.constexpr, N: tl.constexpr, STEPS_IN_REGISTERS: tl.constexpr = False,
    ROWWISE: tl.constexpr = False, PAIRED: tl.constexpr = False, IN_WINDOW: tl.constexpr = False,
    WIDE: tl.constexpr = True, UNROLL_RANKS: tl.constexpr = False,
):
    """Inputs of steps ``s0 + t`` (t: (BLOCK_T,) 0 .. BLOCK_T - 1) for channels ``d`` (BLOCK_D,), channel block
    ``d_block``, with B and C as row pointers (the state-loop kernels read one state's column at a time;
    ``load_chunk`` loads whole tiles).
    STEPS_IN_REGISTERS: the caller's tiles hold all their steps in each thread (the state-loop kernels), where the
    dt projection's loads are cheapest unrolled and unmasked (below); with ROWWISE too, u and delta are read a row
    at a time (``load_td``), as the state-loop kernels then read and write all their (T, D) tiles of the drop-in's
    tensors.  PAIRED (with STEPS_IN_REGISTERS): x's rows are contiguous and word-aligned for ``load_pair``
    (``ScanOperands.paired_x``), and the dt ranks are read two at a time.  IN_WINDOW: the tile lies in one window
    (``positions.tile_positions``).  WIDE: 64-bit offsets (``offset``).  UNROLL_RANKS (with PAIRED): the dt rank
    blocks unrolled (``paired_rank_blocks``).

    The inputs' pointers and strides come as tuples (``operands.ScanOperands.common_args``):
    U = (u, u_low, batch, position, channel strides, u_low's batch stride); X = (x_proj outputs, their low-res
    twin, batch, position, direction, column strides, low-res batch stride); DELTA = (delta, batch, position,
    channel strides); BC = (B, C, B's batch, group, state, position strides, C's, channels per group);
    PROJ = (dt projection weight (K, D, R), dt bias (K, D)).
    Returns pos, is_low, valid (BLOCK_T,); u, delta_pre (bias added, before softplus), delta (T, D), zero on
    invalid steps; b_rows, c_rows (BLOCK_T,) pointers to state 0 of B and C at each step, whose state n lies n * s_bn
    (s_cn) further (``state_column`` reads them); with ROWWISE == STEP_VECTORS and STEPS_IN_REGISTERS, the pointers to
    position 0 of state 0.  Invalid steps point at position 0, which is always in bounds.
    """
    u_ptr, u_low_ptr, s_ub, s_ul, s_ud, s_ub_low = U
    delta_ptr, s_db, s_dl, s_dd = DELTA
    B_ptr, C_ptr, s_bb, s_bg, s_bn, s_bl, s_cb, s_cg, s_cn, s_cl, per_group = BC
    dtw_ptr, dtb_ptr = PROJ
    s_xc = X[5]  # the column stride; x_rows reads the others
    pos, is_low, valid = tile_positions(s0, t, k, dirs_ptr, H, W, ORDER, IN_WINDOW)
    pos_o = offset(pos, WIDE)
    b_o = offset(b, WIDE)
    mask_td = valid[:, None] & d_mask[None, :]
    by_rows: tl.constexpr = STEPS_IN_REGISTERS and ROWWISE
    if ORDER == 0:
        u = load_td(u_ptr + b_o * s_ub, pos_o * s_ul, offset(d, WIDE) * s_ud, valid, d_mask, by_rows)
    else:
        high_u = u_ptr + b_o * s_ub + pos_o[:, None] * s_ul + offset(d, WIDE)[None, :] * s_ud
        low_u = u_low_ptr + b_o * s_ub_low + pos_o[:, None] * s_ul + offset(d, WIDE)[None, :] * s_ud
        u = tl.load(tl.where(is_low[:, None], low_u, high_u), mask=mask_td, other=0.0).to(tl.float32)
    if LOWRANK:
        # x_proj outputs [dt_low | B | C] of direction k at each step's position.
        xrow = x_rows(X[0], X[1], X, b_o, pos_o, is_low, k, ORDER)
        # delta_pre = dt_low @ dt_weight[k].T, one rank at a time: a (T, D, R) product tile would take a third
        # of the registers of the kernels that use it (compile_check) and pad R to a power of two.
        delta_pre = tl.zeros([t.shape[0], d.shape[0]], dtype=tl.float32)
        if STEPS_IN_REGISTERS:
            # Every thread loads all the tile's steps: unrolled and unmasked (invalid steps read position 0, whose
            # delta is zeroed below), the loads take constant offsets and no predicates: about 41 SASS instructions
            # per rank instead of 111.  Unrolled whole (or by 8), ptxas hoists the ranks' loads and spills in the
            # multi-tile kernels, so blocks of 4 ranks; the last block ends at rank R-1, overlapping the one before,
            # whose ranks it masks out.  The tile kernels, whose steps are spread over threads, keep the rolled
            # loop: unrolled it compiles to more loads and exponentials there.
            if R >= 4 and PAIRED:
                delta_pre = paired_rank_blocks(delta_pre, xrow[:, None], (dtw_ptr + (k * Dm + d) * R)[None, :],
                                               d[None, :], d_mask[None, :], R, UNROLL_RANKS)
            elif R >= 4:
                for i0 in range(0, R, 4):
                    start = tl.minimum(i0, R - 4)
                    for i1 in tl.static_range(4):
                        col = tl.load(xrow + (start + i1) * s_xc).to(tl.float32)
                        wi = tl.load(dtw_ptr + (k * Dm + d) * R + start + i1,
                                     mask=d_mask & ((d * 0 + start + i1) >= i0), other=0.0).to(tl.float32)
                        delta_pre += col[:, None] * wi[None, :]
            else:
                for i in tl.static_range(R):
                    col = tl.load(xrow + i * s_xc).to(tl.float32)
                    wi = tl.load(dtw_ptr + (k * Dm + d) * R + i, mask=d_mask, other=0.0).to(tl.float32)
                    delta_pre += col[:, None] * wi[None, :]
        else:
            for i in range(R):
                col = tl.load(xrow + i * s_xc, mask=valid, other=0.0).to(tl.float32)
                wi = tl.load(dtw_ptr + (k * Dm + d) * R + i, mask=d_mask, other=0.0).to(tl.float32)
                delta_pre += col[:, None] * wi[None, :]
        b_rows = xrow + R * s_xc
        c_rows = xrow + (R + N) * s_xc
        s_bn = s_xc
        s_cn = s_xc
    else:
        delta_pre = load_td(delta_ptr + b_o * s_db, pos_o * s_dl, offset(d, WIDE) * s_dd, valid, d_mask, by_rows)
        grp = block_group(d_block, per_group, d.shape[0], WIDE)
        b_rows = B_ptr + b_o * s_bb + grp * s_bg
        c_rows = C_ptr + b_o * s_cb + grp * s_cg
        if by_rows != STEP_VECTORS:  # else state_column reads them 4 steps at a time from position 0's pointers
            b_rows += pos_o * s_bl
            c_rows += pos_o * s_cl
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(dtb_ptr + k * Dm + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]
    delta_pre, delta = step_deltas(delta_pre, bias, mask_td, HAS_BIAS, SOFTPLUS)
    return pos, is_low, valid, u, delta_pre, delta, b_rows, c_rows, s_bn, s_cn


@triton.jit
def load_chunk(
    s0, t, b, k, d_block, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, R: tl.constexpr, N: tl.constexpr, IN_WINDOW: tl.constexpr = False,
    WIDE: tl.constexpr = True,
):
    """``load_steps`` with B and C loaded as (T, 1, N) tiles (Bm, Cm), broadcastable to (T, D, N), zero on invalid
    steps.  Returns pos, is_low, valid, u, delta_pre, delta, Bm, Cm."""
    pos, is_low, valid, u, delta_pre, delta, b_rows, c_rows, s_bn, s_cn = load_steps(
        s0, t, b, k, d_block, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER, LOWRANK, HAS_BIAS,
        SOFTPLUS, R, N, IN_WINDOW=IN_WINDOW, WIDE=WIDE)
    n = tl.arange(0, N)
    Bm = tl.load(b_rows[:, None] + n[None, :] * s_bn, mask=valid[:, None], other=0.0).to(tl.float32)[:, None, :]
    Cm = tl.load(c_rows[:, None] + n[None, :] * s_cn, mask=valid[:, None], other=0.0).to(tl.float32)[:, None, :]
    return pos, is_low, valid, u, delta_pre, delta, Bm, Cm


@triton.jit
def load_state(ptr, pid_bk, chunk, n_chunks, Dm, d, d_mask, n, WIDE: tl.constexpr):
    """A stored chunk state (D, N) of a (batch*K, chunks, dim, N) fp32 buffer."""
    return tl.load(ptr + ((offset(pid_bk, WIDE) * n_chunks + chunk) * Dm + d[:, None]) * n.shape[0] + n[None, :],
                   mask=d_mask[:, None], other=0.0)
