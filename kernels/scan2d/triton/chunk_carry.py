"""The carry: chunk entry states from each chunk's local end state and decay.

Forward, ``h_entry[c + 1] = exp(A dsum[c]) h_entry[c] + h_end_local[c]``; the backward runs it reversed over the
adjoint states.  It works in place on the (batch*K, chunks, dim, N) state buffer.

One program per (batch x direction, channel block) walks the chunks in order: a chain of dependent steps, one per
``BLOCK_C`` chunks.  Long scans split the chunks into segments (``TileConfig.carry_segment``) and carry in three
launches, each a short chain: every segment's own end state and delta sum (``segment_summary_kernel``, one program
per segment), the carry over the segments (``chunk_carry_kernel`` on those), then every segment's chunks from the
state entering it (``chunk_carry_kernel`` with ``HAS_ENTRY``, one program per segment).
"""

import triton
import triton.language as tl

from .recurrence import combine, tile_row


@triton.jit
def _carry_walk(carry_ptr, local_ptr, dsum_ptr, A, state, row, first, end, n_chunks, Dm, d, d_mask,
                REVERSE: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
                STORE: tl.constexpr):
    """Carry ``state`` (BLOCK_D, N) across the chunks visited ``first`` .. ``end`` - 1 (visit j is chunk j, or
    n_chunks - 1 - j with REVERSE) of the (batch x direction) whose chunk 0 is ``row``; with STORE, write the state
    entering each of them into ``carry``.  Returns the state after the last and, without STORE, the visited chunks'
    delta sum (D,).

    BLOCK_C chunks are loaded at once and scanned in registers: one chunk per iteration made the loop a chain of
    dependent global loads, 4.3 ms for the 4,096 training chunks of a 256x256 image on an H200 (profile-*.jsonl).
    """
    n = tl.arange(0, N)
    p = tl.arange(0, BLOCK_C)
    total = tl.zeros([BLOCK_D], dtype=tl.float32)
    for i in range(0, tl.cdiv(end - first, BLOCK_C)):
        j = first + i * BLOCK_C + p  # visiting order
        in_range = j < end
        base = (row + (n_chunks - 1 - j if REVERSE else j)) * Dm  # (C,)
        nxt = (row + (n_chunks - 2 - j if REVERSE else j + 1)) * Dm  # the chunk visited after each
        mask_cd = in_range[:, None] & d_mask[None, :]
        dsum = tl.load(dsum_ptr + base[:, None] + d[None, :], mask=mask_cd, other=0.0)
        local = tl.load(local_ptr + (base[:, None, None] + d[None, :, None]) * N + n[None, None, :],
                        mask=mask_cd[:, :, None], other=0.0)
        # Chunks past the end decay by exp(0) = 1 and add 0: the state leaves the block unchanged by them.
        decay = tl.exp(A[None, :, :] * dsum[:, :, None])
        _, after = tl.associative_scan(
            (decay, local + tl.where((p == 0)[:, None, None], decay * state[None, :, :], 0.0)), 0, combine)
        if STORE:
            # carry may be local itself (the host passes one buffer to halve the state memory): every thread's loads
            # of this block complete before any thread overwrites them, also where the layout replicates elements.
            tl.debug_barrier()
            block_first = (row + (n_chunks - 1 - first - i * BLOCK_C if REVERSE else first + i * BLOCK_C)) * Dm
            tl.store(carry_ptr + (block_first + d[:, None]) * N + n[None, :], state, mask=d_mask[:, None])
            # The state after each chunk is the carry of the next one; the block's last is stored as the next
            # block's first carry, after that block's loads.  Never past ``end``: another program's chunk, whose
            # local state that program may not have read yet.
            keep = in_range & (p < BLOCK_C - 1) & (j + 1 < end)
            tl.store(carry_ptr + (nxt[:, None, None] + d[None, :, None]) * N + n[None, None, :], after,
                     mask=(keep[:, None] & d_mask[None, :])[:, :, None])
        state = tile_row(after, p, BLOCK_C - 1)
        if not STORE:  # the segment summary's
            total += tl.sum(dsum, axis=0)
    return state, total


@triton.jit
def _carry_program(A_ptr, K, Dm, N: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's (batch x direction, segment), its channels d (BLOCK_D,) and their mask, the states n (N,) and
    A (BLOCK_D, N) fp32 of its direction, for a grid (batch*K, channel blocks[, segments])."""
    pid_bk, pid_d, s = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d < Dm
    n = tl.arange(0, N)
    A = tl.load(A_ptr + (pid_bk % K) * Dm * N + d[:, None] * N + n[None, :], mask=d_mask[:, None],
                other=0.0).to(tl.float32)
    return pid_bk, s, d, d_mask, n, A


@triton.jit
def chunk_carry_kernel(
    carry_ptr, final_ptr, local_ptr, dsum_ptr, A_ptr, entry_ptr, K, Dm, n_chunks, segment,
    REVERSE: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
    HAS_ENTRY: tl.constexpr = False, STORE_FINAL: tl.constexpr = False,
):
    """Pass a state across chunks: carry_c = state before chunk c; state <- exp(A * dsum_c) * state + local_c.

    Forward: chunks in order, local = chunk end states, carry = state entering each chunk, final = last state
    (STORE_FINAL).  Backward (REVERSE): chunks from the end, local = each chunk's adjoint at its start, carry = the
    adjoint arriving at each chunk's end (the last state's gradient is zero: like mamba-ssm's, the last state is not
    differentiable).  Program (bk, channel block, s) walks the ``segment`` chunks visited from s x segment (the
    whole scan where segment >= n_chunks), starting from zero or, with HAS_ENTRY, from entry[bk, s] (batch*K,
    segments, dim, N).  local, carry: (batch*K, chunks, dim, N) fp32 (carry may be local); dsum: (batch*K, chunks,
    dim) fp32; A: (K, dim, N); final: (batch*K, dim, N) fp32.
    """
    pid_bk, s, d, d_mask, n, A = _carry_program(A_ptr, K, Dm, N, BLOCK_D)
    dn = d[:, None] * N + n[None, :]
    state = tl.zeros([BLOCK_D, N], dtype=tl.float32)
    if HAS_ENTRY:
        n_segments = tl.cdiv(n_chunks, segment)
        state = tl.load(entry_ptr + (pid_bk.to(tl.int64) * n_segments + s) * Dm * N + dn, mask=d_mask[:, None],
                        other=0.0)
    first = s * segment
    state, _ = _carry_walk(carry_ptr, local_ptr, dsum_ptr, A, state, pid_bk.to(tl.int64) * n_chunks, first,
                           tl.minimum(first + segment, n_chunks), n_chunks, Dm, d, d_mask, REVERSE, N, BLOCK_D,
                           BLOCK_C, STORE=True)
    if STORE_FINAL:
        tl.store(final_ptr + pid_bk.to(tl.int64) * Dm * N + dn, state, mask=d_mask[:, None])


@triton.jit
def segment_summary_kernel(
    seg_local_ptr, seg_dsum_ptr, local_ptr, dsum_ptr, A_ptr, K, Dm, n_chunks, segment,
    REVERSE: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """The first of the segmented carry's launches: program (bk, channel block, s) carries a zero state across the
    ``segment`` chunks visited from s x segment (``chunk_carry_kernel``'s order) and writes what the segment does
    to a state entering it: seg_local[bk, s] = the state it leaves (batch*K, segments, dim, N), seg_dsum[bk, s] =
    its chunks' delta sum (batch*K, segments, dim), the segment's decay being exp(A x that sum).  Segments are
    indexed in visiting order, so the carry over them runs forward either way."""
    pid_bk, s, d, d_mask, n, A = _carry_program(A_ptr, K, Dm, N, BLOCK_D)
    first = s * segment
    state, total = _carry_walk(local_ptr, local_ptr, dsum_ptr, A, tl.zeros([BLOCK_D, N], dtype=tl.float32),
                               pid_bk.to(tl.int64) * n_chunks, first, tl.minimum(first + segment, n_chunks),
                               n_chunks, Dm, d, d_mask, REVERSE, N, BLOCK_D, BLOCK_C, STORE=False)
    row = (pid_bk.to(tl.int64) * tl.cdiv(n_chunks, segment) + s) * Dm
    tl.store(seg_local_ptr + (row + d[:, None]) * N + n[None, :], state, mask=d_mask[:, None])
    tl.store(seg_dsum_ptr + row + d, total, mask=d_mask)
