"""Triton kernels of the chunked selective scan, shared by ``selective_scan`` and ``directional_scan``.

Work is split over (batch x direction, channel block, sequence chunk), so a batch-1 image with a long sequence still
launches thousands of programs (in deterministic mode the passes that sum over channels give each program all the
channel blocks of its chunk instead, see ``tile_io.channel_blocks``).  Each program solves a (steps, channels)
tile of the recurrence one state at a time (:mod:`.state_loop`, the default) or a (steps, channels, states) tile
with ``tl.associative_scan`` (:mod:`.recurrence`).  One pass each way needs the state entering every chunk, so both
directions of the computation have three launches:

    forward:  chunk_end_state  ->  chunk_carry (over chunks, or segments of them)  ->  forward_output
    backward: chunk_adjoint    ->  chunk_carry (reversed)                         ->  backward_grads

The only tensors written besides inputs' gradients and the output are per-chunk states (batch, K, chunks, dim, N),
1/BLOCK_T of what storing every state would take; the backward recomputes the states of its chunk from them.

Modules, from the bottom up:
    positions         each step's position in the feature map: windows, row/column-first, reversal, cross-scale
    recurrence        the recurrence and its adjoint on register tiles (associative-scan operators)
    tile_io           gathers a tile's inputs at its positions, builds delta, stores and adds up results
    state_loop        a (steps, channels) tile scanned one state at a time
    lane_sums         sums over a warp's lanes, reduce-scattered (the backward's dB, dC)
    forward_kernels   chunk_end_state, forward_output (and the gate's reductions), first_direction_pool
    chunk_carry       the chunk entry states, over chunks or segments of them, both ways
    one_pass          the forward in one pass over the recurrence (opt-in: TileConfig.one_pass_forward)
    one_pass_lanes    the same with all states across the lanes, a few channels per program (TileConfig.one_pass_lanes)
    one_pass_gluon    that kernel in Gluon, every layout explicit (TileConfig.one_pass_gluon)
    backward_kernels  chunk_adjoint, backward_grads
    one_pass_lanes_backward  the backward in one pass, the states across the lanes (TileConfig.one_pass_lanes_backward)
    one_pass_gluon_backward  that kernel in Gluon, every layout explicit (TileConfig.one_pass_gluon_backward)
    tiles             TileConfig: how the kernels split the work (``tile_config`` changes it for a block of code)
    direction_table   each direction's geometry as the kernels read it (window sides, lengths, division magic)
    operands          ScanOperands: every input's pointer and strides, and what each launch takes
    launch            the launches of each op's passes, and the reductions of their per-chunk sums
    compile_check     every kernel compiled for sm_90 / sm_80 without a GPU: registers, spills, instructions
    gluon_lang        Gluon (explicit layouts) for a GPU, the same kernels layout-free under the interpreter
"""
