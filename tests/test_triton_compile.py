"""The kernels compile for real GPUs, not only run under the interpreter, and keep their registers.

The interpreter accepts code that Triton's GPU compiler rejects, and cannot tell when a change makes ptxas spill
registers to local memory (a silent slowdown of several times).  ``scan2d.triton.compile_check`` runs the ops' host
code with each launch replaced by an ahead-of-time compile for the given architecture; it needs a process without
TRITON_INTERPRET, hence the subprocess.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import triton

KERNELS = {"chunk_end_state_kernel", "chunk_carry_kernel", "forward_output_kernel", "chunk_adjoint_kernel",
           "backward_grads_kernel", "first_direction_pool_kernel"}


def compile_report(tmp_path, arch, *flags, triton_path=None):
    """compile_check's JSON rows for ``arch`` under the given tile flags, with the Triton installed in ``triton_path``
    (a folder that holds a ``triton`` package) instead of the environment's, if given."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if triton_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(triton_path), *filter(None, [env.get("PYTHONPATH")])])
    report = tmp_path / "resources.jsonl"
    proc = subprocess.run([sys.executable, "-m", "scan2d.triton.compile_check", "--arch", str(arch),
                           "--json", str(report), *flags], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return [json.loads(line) for line in report.read_text().splitlines()]


# The cases that reach every configuration the tile kernels' test names (orders, gate passes, upstreams, inference
# chunks, the drop-in, deterministic mode); the others differ from these in dtypes, which the default kernels' test
# compiles.  Each build costs about 4 s of CI's time with a cold cache.
TILE_KERNEL_CASES = ("layer fp32", "cross-scale aligned fp32 gated", "cross-scale sequential fp32",
                     "inference bf16 gated", "drop-in fp32 z grouped", "deterministic cross-scale aligned fp32 gated",
                     "deterministic drop-in fp32 z grouped")


def case_flags(cases):
    return [arg for case in cases for arg in ("--case", case)]


@pytest.mark.slow
def test_every_kernel_compiles_without_register_spills(tmp_path):
    # The (steps, channels, states) tile kernels; the default state loops are checked below.
    builds = compile_report(tmp_path, 90, "--tiles", "forward_state_loop=False,backward_state_loop=False",
                            *case_flags(TILE_KERNEL_CASES))
    assert {b["kernel"] for b in builds} == KERNELS
    assert all(b["arch"] == 90 for b in builds)
    # Every configuration the ops launch was compiled: plain/aligned/sequential orders, the gate's reduce modes,
    # the LayerNorm-upstream backward and the drop-in (given delta) path.
    outputs = [b["constexprs"] for b in builds if b["kernel"] == "forward_output_kernel"]
    assert {c["ORDER"] for c in outputs} == {0, 1, 2}
    assert {c["REDUCE"] for c in outputs} == {0, 1, 2, 3, 4}  # 4: the gated backward's weights gradient
    assert {c["LOWRANK"] for c in outputs} == {True, False}
    assert {c["TILES"] for c in outputs} == {1, 16}  # training (one tile per chunk) and inference chunks
    grads = [b["constexprs"] for b in builds if b["kernel"] == "backward_grads_kernel"]
    assert {c["LN_UPSTREAM"] for c in grads} == {True, False}
    # Atomics only where the README says (the backward's sums over channel blocks and directions, the gate's
    # per-token sums over channels), and none at all in deterministic mode.
    atomic = {(b["kernel"], b["constexprs"].get("REDUCE")) for b in builds
              if b["atomics"] and not b["constexprs"].get("DETERMINISTIC")}
    assert atomic == {("backward_grads_kernel", None), ("forward_output_kernel", 1), ("forward_output_kernel", 3)}
    deterministic = [b for b in builds if b["constexprs"].get("DETERMINISTIC")]
    assert {(b["kernel"], b["constexprs"].get("REDUCE")) for b in deterministic} == {
        ("backward_grads_kernel", None), ("forward_output_kernel", 1), ("forward_output_kernel", 3)}
    assert {b["constexprs"]["LOWRANK"] for b in deterministic if b["kernel"] == "backward_grads_kernel"} == {
        True, False}
    assert [b["kernel"] for b in deterministic if b["atomics"]] == []
    # Relaxed atomics only: an acq_rel one (Triton's default) is fenced in the SASS, which made the backward 2x
    # slower on an H200.
    assert [b["kernel"] for b in builds if b["fenced_atomics"]] == []
    # No float32 product rounded to TF32: Triton's combine pass turns sum(a[:, :, None] * b[None, :, :], 1) into one
    # (tile_io.products_fp32), as it did to the dt input's gradient here until 2026-12-05.
    assert [b["kernel"] for b in builds if b["tf32_dots"]] == []
    # Exponentials per (step, channel, state) in the model's layer kernels: one for the states each pass computes,
    # one more where the backward crosses steps with the next step's decay or recomputes the states for the gate's
    # LayerNorm gradient (ex2/lg2 per thread, times the program's threads, over its elements; the rest is softplus).
    for b in builds:
        c = b["constexprs"]
        if c.get("LOWRANK") and "BLOCK_T" in c:
            budget = 2 if b["kernel"] == "backward_grads_kernel" or c.get("LN_UPSTREAM") else 1
            per_element = b["exp_log"] * 32 * b["num_warps"] / (c["BLOCK_T"] * c["BLOCK_D"] * c["N"])
            assert budget <= per_element < budget + 0.25, (b["kernel"], per_element, c)
    # No reverse scan (Triton shuffles every element of one across the warp) but in the deterministic backward,
    # which keeps it for its registers; the adjoint scans the reversed steps forward (recurrence.tile_adjoint).
    reverse = {(b["kernel"], bool(b["constexprs"].get("DETERMINISTIC"))) for b in builds if b["reverse_scans"]}
    assert reverse == {("backward_grads_kernel", True)}
    spilled = [(b["kernel"], b["spill_store_bytes"], b["constexprs"]) for b in builds
               if b["spill_store_bytes"] > allowed_spills(b)]
    assert not spilled, f"register spills to local memory: {spilled}"
    assert max(b["registers"] for b in builds) <= 255


@pytest.mark.slow
def test_state_loop_kernels_compile_and_keep_their_structure(tmp_path):
    # TileConfig.forward_state_loop / backward_state_loop (the default): the kernels of the 2D layer and of the
    # drop-in scan solve the recurrence one state at a time on (steps, channels) tiles whose steps lie in each
    # thread's registers.  In the forward, where a kernel does not sum over channels, nothing crosses threads at all
    # (chunk_adjoint included; the drop-in's channels-first inputs too); backward_grads sums dB and dC over one
    # warp's lanes (one-warp programs).
    # The forward and adjoint unroll 4 states per trip (state_unroll); the forward of multi-tile (inference) chunks
    # carries its states between tiles in registers (carry_in_registers), which changes their layout once per chunk,
    # on entry and exit (shared memory, outside the tile loop).
    builds = compile_report(tmp_path, 90)
    loop = [b for b in builds if b["constexprs"].get("STATE_LOOP")]
    assert {b["constexprs"]["STATE_UNROLL"] for b in loop if b["kernel"] != "backward_grads_kernel"} == {4}
    assert {(b["kernel"], b["constexprs"]["LOWRANK"]) for b in loop} == {
        (kernel, lowrank) for kernel in ("chunk_end_state_kernel", "forward_output_kernel", "chunk_adjoint_kernel",
                                         "backward_grads_kernel") for lowrank in (True, False)}
    # The forward kernels scan training chunks in one 16-step tile and inference chunks in 16 of them
    # (forward_block_t None); chunk_adjoint sums the layer's 16-step chunks in 2 tiles of 8 steps (adjoint_block_t),
    # the drop-in's in one 16-step tile.
    assert {(b["kernel"], b["constexprs"].get("REDUCE"), b["constexprs"].get("TILES")) for b in loop} >= {
        ("chunk_end_state_kernel", None, 1), ("chunk_end_state_kernel", None, 16),
        ("forward_output_kernel", 0, 1), ("forward_output_kernel", 0, 16), ("forward_output_kernel", 1, 1),
        ("forward_output_kernel", 2, 16),
        ("chunk_adjoint_kernel", None, 1), ("chunk_adjoint_kernel", None, 2), ("backward_grads_kernel", None, None)}
    assert {b["constexprs"]["BLOCK_T"] for b in loop if b["kernel"] in ("chunk_end_state_kernel",
                                                                          "forward_output_kernel")} == {16}
    assert {(b["constexprs"]["LOWRANK"], b["constexprs"]["BLOCK_T"], b["constexprs"]["TILES"])
            for b in loop if b["kernel"] == "chunk_adjoint_kernel"} == {(True, 8, 2), (False, 16, 1)}
    # Deterministic mode: its gate passes (which loop over every channel block) keep the tile kernels; its
    # backward_grads runs the state loop with the channel blocks' sums stored into copies of dx (DX_COPIES) and one
    # direction per launch adding du (DU_OWNED), without atomics.
    deterministic = [b for b in loop if b["constexprs"].get("DETERMINISTIC")]
    assert {b["kernel"] for b in deterministic} == {"backward_grads_kernel"}
    assert all(b["constexprs"]["DX_COPIES"] and b["constexprs"]["DU_OWNED"] and b["atomics"] == 0
               for b in deterministic)
    assert_state_loop_structure(loop)
    assert [b["kernel"] for b in builds if b["fenced_atomics"]] == []
    # Spills: the state-loop backward keeps 255 registers and spills 60-376 bytes of what lives across its loops
    # (positions, pointers), outside the loops (bench/README.md), 0-128 bytes in deterministic mode (Triton 3.7.1, with
    # the lane sums).  The output kernel of inference chunks, with all 16 states unrolled in registers, is at 255 too
    # and spills what lives from a tile's start to its end (positions, row pointers): 0-48 bytes in the plain order,
    # 92-140 in the aligned cross-scale one (Triton 3.7.1, dt rank 12, 32-bit offsets), about 20 spill stores and as
    # many loads per tile of 4,000 instructions; how much flips with small changes to the kernel (0-104 bytes at rank
    # 23).  The drop-in's float16 chunk_adjoint spilled up to 12 bytes for sm_90, where ptxas stopped at 96 registers
    # (none since the series softplus, tile_io.softplus).  None may grow past these; nothing else spills but the
    # deterministic gate passes of the tile kernels (allowed_spills).
    assert_within_allowed_spills(builds)


def assert_state_loop_structure(loop):
    """The state-loop builds ``loop`` (compile_check rows) have the default kernels' structure: one-warp backward
    programs of 32 channels, with atomics unless deterministic; no shuffles in the other kernels where they do not sum
    over channels, and shared memory only where multi-tile chunks change the states' layout on entry and exit."""
    for b in loop:
        c = b["constexprs"]
        if b["kernel"] == "backward_grads_kernel":
            assert (b["num_warps"], c["BLOCK_D"]) == (1, 32)
            assert (b["atomics"] > 0) == (not c["DETERMINISTIC"]), c
        elif c.get("REDUCE") in (None, 0, 2, 4):
            assert b["shuffles"] == 0, (b["kernel"], c)
            assert b["shared_bytes"] <= (2048 if c.get("TILES", 1) > 1 else 0), (b["kernel"], b["shared_bytes"], c)


def assert_within_allowed_spills(builds):
    for b in builds:
        assert b["spill_store_bytes"] <= allowed_spills(b), (b["kernel"], b["spill_store_bytes"], b["constexprs"])


def allowed_spills(build):
    """The spill stores (bytes) the default kernels' test allows ``build``, a compile_check row."""
    c = build["constexprs"]
    if not c.get("STATE_LOOP"):
        # The tile kernels spill nothing but the deterministic gate passes, whose one program loops over every channel
        # block: ptxas stops at 168 registers there, and with 32-bit offsets (TileConfig.narrow_offsets) the aligned
        # order's REDUCE 3 pass spills 20 bytes.
        return 24 if build["kernel"] == "forward_output_kernel" and c.get("DETERMINISTIC") else 0
    if build["kernel"] == "backward_grads_kernel":
        return 256 if c["DU_OWNED"] else 512
    if build["kernel"] == "forward_output_kernel" and c["TILES"] > 1:
        return 144 if c["ORDER"] == 1 else 64
    if build["kernel"] == "chunk_adjoint_kernel" and not c["LOWRANK"]:
        return 16
    return 0


@pytest.mark.slow
def test_default_kernels_compile_for_ampere(tmp_path):
    # sm_80 (A100): the default kernels of a gated layer's training step and inference and of the drop-in scan
    # compile (the other cases differ in what the sm_90 tests cover), within the spills allowed for sm_90: the
    # inference output kernels 40-44 bytes (sm_90: 12-56), the backward 192 bytes in the layer (sm_90: 60-104 at
    # rank 12) and 232 in the drop-in (sm_90: 212; Triton 3.7.1, with the lane sums).
    builds = compile_report(tmp_path, 80, *case_flags(("layer bf16 gated", "inference bf16 gated", "drop-in fp16")))
    assert {b["kernel"] for b in builds} == KERNELS and all(b["arch"] == 80 for b in builds)
    assert all(b["constexprs"].get("STATE_LOOP") for b in builds if "STATE_LOOP" in b["constexprs"])
    assert {b["constexprs"].get("TILES") for b in builds if b["kernel"] == "forward_output_kernel"} == {1, 16}
    assert_within_allowed_spills(builds)
    assert max(b["registers"] for b in builds) <= 255


# The oldest Triton the package supports, which install.sh puts beside the environment's on CPU machines.
OLDEST_TRITON, OLDEST_TRITON_PATH = "3.6.0", Path(sys.prefix) / "triton-3.6"


def compile_report_for_sm90(tmp_path, oldest: bool, *flags):
    """``compile_report`` for sm_90 under this environment's Triton or, with ``oldest``, the oldest supported one
    (the test is skipped, with the reason, where install.sh has not put it beside the environment)."""
    if oldest and not (OLDEST_TRITON_PATH / "triton").is_dir():
        pytest.skip(f"Triton {OLDEST_TRITON} is not in {OLDEST_TRITON_PATH}: ./install.sh puts it there on a CPU "
                    "machine (CI's)")
    return compile_report(tmp_path, 90, *flags, triton_path=OLDEST_TRITON_PATH if oldest else None)


@pytest.mark.slow
@pytest.mark.skipif(not (OLDEST_TRITON_PATH / "triton").is_dir(),
                    reason=f"Triton {OLDEST_TRITON} is not in {OLDEST_TRITON_PATH}: ./install.sh puts it there on "
                    "a CPU machine (CI's)")
def test_default_kernels_compile_with_the_oldest_supported_triton(tmp_path):
    # Triton 3.6 (torch 2.11's, and the GPU machines' image's) compiles the kernels with another LLVM and other
    # layouts than this environment's: it lays a channels-first tile's steps across lanes, so the drop-in reads its
    # tiles a row at a time there (TileConfig.rowwise_tiles) where it does not read 4-step vectors (step_vectors),
    # and its registers and spills differ (bench/JOURNAL.md,
    # "Triton 3.6 to 3.9").  The default kernels of a gated layer's training step and inference, of the aligned
    # cross-scale block and of the drop-in compile for sm_90 with it, with the structure and within the spills
    # asserted above (Triton 3.6.0: 33 builds, spills 48-212 bytes in 4 of them, with the lane sums).
    cases = ("layer bf16 gated", "inference bf16 gated", "cross-scale aligned fp32 gated", "drop-in fp16")
    builds = compile_report(tmp_path, 90, *case_flags(cases), triton_path=OLDEST_TRITON_PATH)
    assert {b["triton"] for b in builds} == {OLDEST_TRITON}
    assert {b["kernel"] for b in builds} == KERNELS and all(b["arch"] == 90 for b in builds)
    loop = [b for b in builds if b["constexprs"].get("STATE_LOOP")]
    # The drop-in's state loops (given delta: no low-rank projection) read a row at a time (its 200 steps are not a
    # multiple of 16, so no 4-step vectors), the layer's do not.
    assert {(b["constexprs"]["LOWRANK"], b["constexprs"]["ROWWISE"]) for b in loop} == {(False, True), (True, False)}
    assert {(b["constexprs"].get("ORDER"), b["constexprs"].get("TILES")) for b in loop
            if b["kernel"] == "forward_output_kernel"} == {(0, 1), (0, 16), (1, 1)}
    assert_state_loop_structure(loop)
    assert_within_allowed_spills(builds)
    assert [b["kernel"] for b in builds if b["fenced_atomics"]] == []
    assert max(b["registers"] for b in builds) <= 255


@pytest.mark.slow
def test_state_loops_carrying_states_through_memory_compile_without_spills_or_shuffles(tmp_path):
    # state_unroll=1, carry_in_registers=False: one state per loop trip, and multi-tile chunks carry each state
    # between tiles through memory (the configuration first timed on the H200).  Nothing crosses lanes, and nothing
    # spills but up to 8 bytes in the aligned cross-scale order's inference output kernel (Triton 3.7.1).
    cases = ["layer fp32", "inference bf16 gated", "inference cross-scale aligned fp32"]
    builds = compile_report(tmp_path, 90, "--tiles", "state_unroll=1,carry_in_registers=False", *case_flags(cases))
    loop = [b for b in builds if b["constexprs"].get("STATE_LOOP") and b["kernel"] != "backward_grads_kernel"]
    assert {b["constexprs"]["STATE_UNROLL"] for b in loop} == {1}
    # Training chunks (chunk_adjoint's in 2 tiles of 8 steps) and inference ones.
    assert {b["constexprs"].get("TILES") for b in loop} >= {1, 2, 16}
    for b in loop:
        c = b["constexprs"]
        allowed = 8 if b["kernel"] == "forward_output_kernel" and c["ORDER"] == 1 and c["TILES"] > 2 else 0
        assert b["spill_store_bytes"] <= allowed, (b["kernel"], b["spill_store_bytes"], c)
        if c.get("REDUCE") in (None, 0, 2, 4):
            assert (b["shuffles"], b["shared_bytes"]) == (0, 0), (b["kernel"], c)


def state_loop_builds(tmp_path, cases, varying, *flags, kernels=("backward_grads_kernel",)):
    """The state-loop builds (sm_90) of ``kernels`` in ``cases`` under ``flags``, keyed by their kernel and constexprs
    but the ``varying`` ones, so that two configurations' builds pair up."""
    builds = compile_report(tmp_path, 90, *flags, *case_flags(cases))
    return {(b["kernel"], *sorted((k, v) for k, v in b["constexprs"].items() if k not in varying)): b
            for b in builds if b["kernel"] in kernels and b["constexprs"].get("STATE_LOOP")}


@pytest.mark.slow
@pytest.mark.parametrize("flag,atomics_left", [("backward_dx_copies", 16), ("backward_direction_launches", 10)])
def test_backward_sums_without_atomics_compile_with_fewer_atomics_and_spills(tmp_path, flag, atomics_left):
    # TileConfig.backward_dx_copies: the state-loop backward stores its sums over channel blocks (dB, dC, the dt
    # low-rank input) into the block's own copy of dx, and only du's atomics remain (16 of 26 instructions at the
    # model's dt rank 12).  backward_direction_launches: one direction per launch, du added without atomics, and only
    # the sums over channel blocks' remain (10).  With 64-bit offsets the atomics on du's (steps, channels) tile held
    # the most registers (116-184 bytes of spills, 0-56 without them).  With 32-bit ones (TileConfig.narrow_offsets)
    # and the lane sums (sm_90, Triton 3.7.1): 72-88 bytes with atomics, 68 with the copies, 0-36 with one direction
    # per launch (sums over the whole warp: 4-64 in every mode); outside the loops (bench/JOURNAL.md).  Since the
    # gated backward reads the output gradient chunk_adjoint kept (TileConfig.backward_keeps_dy): 68-100, 64-80 and
    # 0-56.  The sums over
    # steps are stored per chunk here (backward_chunks=1), so that only these atomics count.
    cases = ("layer fp32 gated", "cross-scale aligned fp32 gated")
    # k_count is specialized to 1 with one direction per launch.
    varying = ("DX_COPIES", "DU_OWNED", "k_count")
    atomic = state_loop_builds(tmp_path, cases, varying, "--tiles", "backward_chunks=1")
    changed = state_loop_builds(tmp_path, cases, varying, "--tiles", f"{flag}=True,backward_chunks=1")
    # Orders 0 and 1; the gated layer's one backward takes both upstreams (output and LayerNorm).
    assert atomic.keys() == changed.keys() and len(atomic) >= 2
    mode = (flag == "backward_dx_copies", flag == "backward_direction_launches")
    for key, b in changed.items():
        a = atomic[key]
        assert (b["constexprs"]["DX_COPIES"], b["constexprs"]["DU_OWNED"]) == mode
        assert (a["constexprs"]["DX_COPIES"], a["constexprs"]["DU_OWNED"]) == (False, False)
        assert (a["atomics"], b["atomics"]) == (26, atomics_left), key
        assert b["spill_store_bytes"] <= a["spill_store_bytes"] <= 104, (b["spill_store_bytes"],
                                                                         a["spill_store_bytes"], key)


@pytest.mark.slow
def test_backward_sums_over_steps_per_group_of_chunks_compile_to_atomics_without_more_spills(tmp_path):
    # TileConfig.backward_chunks (4 on a GPU): each program adds its chunk's sums over steps into its group's with
    # atomics instead of storing them: dA's, dD's and dbias's one per thread and dW's (32 channels x 16 padded ranks
    # over the warp) 4, 7 atomic instructions more at dt rank 12, at the same registers and no more spills
    # (bench/JOURNAL.md, "The backward's sums over steps per group of chunks").
    cases = ("layer fp32", "layer fp32 gated")
    per_chunk = state_loop_builds(tmp_path, cases, ("CHUNKS",), "--tiles", "backward_chunks=1")
    per_group = state_loop_builds(tmp_path, cases, ("CHUNKS",))
    assert per_chunk.keys() == per_group.keys() and len(per_chunk) >= 2
    for key, b in per_group.items():
        a = per_chunk[key]
        assert (a["constexprs"]["CHUNKS"], b["constexprs"]["CHUNKS"]) == (1, 4), key
        assert b["atomics"] - a["atomics"] == 7, (a["atomics"], b["atomics"], key)
        assert b["registers"] == a["registers"] and b["spill_store_bytes"] <= a["spill_store_bytes"], key


@pytest.mark.slow
def test_gated_backward_grads_reads_the_kept_output_gradient_instead_of_recomputing(tmp_path):
    # TileConfig.backward_keeps_dy: the gated layer's backward_grads reads the output gradient chunk_adjoint stored,
    # so it no longer recomputes the outputs: one trip's 16 exponentials fewer in its code (one per step of the
    # recomputing state loop) and about a fifth fewer instructions executed per element (bench/backward_compile.py;
    # bench/JOURNAL.md, "The gated backward reads the output gradient chunk_adjoint kept").  chunk_adjoint, which
    # stores it, keeps its registers within 168 (3 programs of 128 threads per SM) without spills.
    cases = ("layer fp32 gated", "cross-scale aligned fp32 gated")
    rows = backward_compile_rows(tmp_path, cases, "--variant", "backward_keeps_dy=False", "--variant", "default")
    recompute, kept = rows[:len(rows) // 2], rows[len(rows) // 2:]
    assert len(kept) == 2 and all(r["constexprs"]["LN_UPSTREAM"] for r in rows)
    for a, b in zip(recompute, kept):
        assert (a["constexprs"]["DY_KEPT"], b["constexprs"]["DY_KEPT"]) == (False, True)
        assert a["exp_log"] - b["exp_log"] == a["constexprs"]["BLOCK_T"], (a["exp_log"], b["exp_log"])
        ratio = b["sass_executed_per_element"] / a["sass_executed_per_element"]
        assert ratio < 0.85, (a["sass_executed_per_element"], b["sass_executed_per_element"])
    builds = state_loop_builds(tmp_path, cases, (), kernels=("chunk_adjoint_kernel",))
    gated = [b for b in builds.values() if b["constexprs"]["LN_UPSTREAM"]]
    assert len(gated) == 2 and all(b["constexprs"]["KEEP_DY"] for b in gated)
    assert all(b["registers"] <= 168 and b["spill_store_bytes"] == 0 for b in gated), gated


@pytest.mark.slow
def test_drop_in_backward_sums_the_outputs_for_dz_in_its_state_loop(tmp_path):
    # TileConfig.backward_outputs_in_loop: the drop-in's backward with z, its tiles read 4 steps per access (the
    # on-request case of 4,096 steps), sums the outputs dz needs in its state loop instead of a loop of their own:
    # 35.1 instructions executed per element instead of 41.1 (Triton 3.7.1; 3.6.0: 41.2), and still no spills.
    rows = backward_compile_rows(tmp_path, ("drop-in fp32 z grouped, whole tiles",), "--variant",
                                 "backward_outputs_in_loop=False", "--variant", "default")
    (a, b) = rows
    assert (a["constexprs"]["Y_IN_LOOP"], b["constexprs"]["Y_IN_LOOP"]) == (False, True)
    assert b["sass_executed_per_element"] < 0.9 * a["sass_executed_per_element"], (a["sass_executed_per_element"],
                                                                                   b["sass_executed_per_element"])
    assert (a["spill_store_bytes"], b["spill_store_bytes"], b["local_in_loops"]) == (0, 0, 0)


def backward_compile_rows(tmp_path, cases, *flags, script="backward_compile.py"):
    """``bench/backward_compile.py``'s rows for ``cases`` (or another of its kind, ``script``): without ``flags``,
    every state-loop backward build without the lane sums, then with them (the default), in the same order."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["BENCH_RESULTS"] = str(tmp_path)
    script = Path(__file__).resolve().parents[1] / "bench" / script
    proc = subprocess.run([sys.executable, str(script), *case_flags(cases), *flags], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (report,) = tmp_path.glob("*-compile-triton*.jsonl")
    return [json.loads(line) for line in report.read_text().splitlines()]


@pytest.mark.slow
def test_backward_lane_sums_shuffle_five_times_less(tmp_path):
    # TileConfig.backward_lane_sums (the default): dB's and dC's sums over the warp's lanes reduce-scattered
    # (lane_sums.lane_sums) take 16 shuffles each per state instead of 80, with no more shared memory, and fewer
    # instructions in all: the state loop's trip 440 instead of 638 in the layer's float32 backward, 40.4 executed per
    # (step, channel, state) instead of 52.5, and no local load or store inside a loop either way (sm_90, Triton
    # 3.7.1; bench/JOURNAL.md, "The backward's lane sums by default").
    rows = backward_compile_rows(tmp_path, ("layer fp32", "cross-scale aligned fp32 gated"))
    plain = [row for row in rows if row["variant"] == "backward_lane_sums=False"]
    lanes = [row for row in rows if row["variant"] == "default"]
    assert len(plain) == len(lanes) >= 2 and len(rows) == 2 * len(plain)  # orders 0 and 1 (gated)
    for a, b in zip(plain, lanes):
        key = {k: v for k, v in a["constexprs"].items() if k != "LANE_SUMS"}
        assert key == {k: v for k, v in b["constexprs"].items() if k != "LANE_SUMS"}
        assert b["constexprs"]["LANE_SUMS"] and not a["constexprs"]["LANE_SUMS"]
        assert (a["shuffles"], b["shuffles"]) == (160, 32), key
        assert b["shared_bytes"] <= a["shared_bytes"], key
        assert b["state_loop_trip"] < a["state_loop_trip"] - 150, (b["state_loop_trip"], a["state_loop_trip"])
        assert b["sass_executed_per_element"] < 0.85 * a["sass_executed_per_element"], (
            b["sass_executed_per_element"], a["sass_executed_per_element"])
        assert a["local_in_loops"] == b["local_in_loops"] == 0, key


@pytest.mark.slow
def test_unrolled_rank_blocks_execute_fewer_instructions(tmp_path):
    # TileConfig.unroll_rank_blocks (the default): the paired dt rank blocks unrolled in the forward and adjoint
    # kernels that load one tile, so that no trip adds every step's address again.  Executed per (step, channel,
    # state) in the layer's float32 training step (sm_90, Triton 3.7.1): chunk_end_state 11.6 -> 10.4 at 156
    # registers instead of 184, chunk_adjoint 11.9 -> 10.8 at 142 instead of 155, no spills; the backward and
    # forward_output keep the loop (bench/JOURNAL.md, "The dt rank blocks unrolled").  In 16-step tiles, where
    # chunk_end_state and chunk_adjoint load one tile per chunk (their 8-step tiles: test_shorter_*_tiles_...).
    kernels = ("chunk_end_state_kernel", "chunk_adjoint_kernel", "backward_grads_kernel")
    flags = [f for kernel in kernels for f in ("--kernel", kernel)]
    sixteen = "forward_block_t=None,adjoint_block_t=None"
    rows = backward_compile_rows(tmp_path, ("layer fp32",), *flags, "--variant",
                                 f"unroll_rank_blocks=False,{sixteen}", "--variant", sixteen)
    rolled = [row for row in rows if row["variant"] == f"unroll_rank_blocks=False,{sixteen}"]
    unrolled = [row for row in rows if row["variant"] == sixteen]
    assert len(rolled) == len(unrolled) == len(kernels) and len(rows) == 2 * len(kernels)
    for a, b in zip(rolled, unrolled):
        assert a["kernel"] == b["kernel"] and a["constexprs"]["PAIRED"] and b["constexprs"]["PAIRED"]
        assert b["exp_log"] == a["exp_log"] and b["local_in_loops"] == a["local_in_loops"] == 0, a["kernel"]
        if a["kernel"] == "backward_grads_kernel":  # kept rolled: the same build either way
            assert "UNROLL_RANKS" not in b["constexprs"] and b["sass_instructions"] == a["sass_instructions"]
            continue
        assert (a["constexprs"]["UNROLL_RANKS"], b["constexprs"]["UNROLL_RANKS"]) == (False, True)
        assert b["sass_executed_per_element"] < 0.92 * a["sass_executed_per_element"], (
            a["kernel"], b["sass_executed_per_element"], a["sass_executed_per_element"])
        assert b["registers"] < a["registers"] and b["spill_store_bytes"] == a["spill_store_bytes"] == 0


def drop_in_state_loop_pairs(tmp_path, first: str, second: str, case="drop-in fp32 z grouped") -> list:
    """(key, build, build) of the drop-in's four state-loop kernels in a case with the most (steps, channels) tile
    accesses (z and its gradient, grouped B and C; float16's only add casts), sm_90, under the tile flags ``first``
    and ``second`` ("default": none), paired by their constexprs but ROWWISE."""
    kernels = ("chunk_end_state_kernel", "forward_output_kernel", "chunk_adjoint_kernel", "backward_grads_kernel")
    a, b = (state_loop_builds(tmp_path, (case,), ("ROWWISE",),
                              *(() if flags == "default" else ("--tiles", flags)), kernels=kernels)
            for flags in (first, second))
    assert a.keys() == b.keys() and {key[0] for key in b} == set(kernels)
    return [(key, a[key], b[key]) for key in b]


@pytest.mark.slow
def test_shorter_forward_tiles_take_fewer_registers(tmp_path):
    # TileConfig.forward_block_t=8 (opt-in): the forward kernels scan each chunk in 8-step tiles.  sm_90, Triton
    # 3.7.1 (bench/JOURNAL.md, "Shorter tiles in the forward kernels"): without gradients 130-150 registers and no
    # spills against 191-255 and 136-140 bytes, 3 programs of 128 threads per SM instead of 2, as many or 4-5% fewer
    # instructions executed per element; the training forward's forward_output 112 registers against 164, 14% fewer.
    # Not the default: they issue their loads nearer their use ("Loads in flight").
    rows = backward_compile_rows(tmp_path, ("inference fp32", "training forward fp32"), "--variant", "default",
                                 "--variant", "forward_block_t=8", script="forward_tiles_compile.py")
    builds = {}
    for row in rows:
        builds.setdefault((row["case"], row["kernel"]), {}).setdefault(row["variant"], []).append(row)
    assert len(builds) == 4, sorted(builds)
    for (case, kernel), variants in builds.items():
        for before, after in zip(variants["default"], variants["forward_block_t=8"]):
            c, d = before["constexprs"], after["constexprs"]
            assert (c["BLOCK_T"], d["BLOCK_T"], d["TILES"]) == (16, 8, 2 * c["TILES"]), (case, kernel)
            assert after["registers"] <= before["registers"] and after["spill_store_bytes"] == 0, (case, kernel)
            assert after["sass_executed_per_element"] <= before["sass_executed_per_element"], (case, kernel)
            if case == "inference fp32":
                assert before["programs_per_sm"] == 2 and after["programs_per_sm"] == 3, (case, kernel)
            elif kernel == "forward_output_kernel":
                assert after["registers"] <= 128 < before["registers"], (case, kernel)
                assert after["sass_executed_per_element"] < 0.9 * before["sass_executed_per_element"], (case, kernel)


@pytest.mark.slow
def test_shorter_adjoint_tiles_take_fewer_registers(tmp_path):
    # TileConfig.adjoint_block_t (8 by default): chunk_adjoint sums each 16-step chunk in 2 tiles of 8 steps.  sm_90,
    # Triton 3.7.1 (bench/JOURNAL.md, "Shorter tiles in chunk_adjoint"): the plain layer at 80 registers against 142,
    # 6 programs of 128 threads per SM instead of 3, for 12% more instructions executed per element; the gated one
    # (its LayerNorm gradient recomputes the outputs, the states carried between tiles in registers) at 168 against
    # 208, 3 programs instead of 2, 3% more.
    rows = backward_compile_rows(tmp_path, ("layer fp32", "layer fp32 gated"), "--variant", "adjoint_block_t=None",
                                 "--variant", "default", script="adjoint_tiles_compile.py")
    builds = {}
    for row in rows:
        builds.setdefault(row["case"], {})[row["variant"]] = row
    assert sorted(builds) == ["layer fp32", "layer fp32 gated"] and len(rows) == 4, [r["variant"] for r in rows]
    for case, variants in builds.items():
        before, after = variants["adjoint_block_t=None"], variants["default"]
        c, d = before["constexprs"], after["constexprs"]
        assert (c["BLOCK_T"], c["TILES"], d["BLOCK_T"], d["TILES"]) == (16, 1, 8, 2), case
        assert d["LN_UPSTREAM"] == (case == "layer fp32 gated") == c["LN_UPSTREAM"]
        assert after["spill_store_bytes"] == before["spill_store_bytes"] == 0, case
        if case == "layer fp32":
            assert after["registers"] <= 96 < 128 < before["registers"], case
            assert after["programs_per_sm"] >= 2 * before["programs_per_sm"], case
            limit = 1.2
        else:
            assert after["registers"] <= before["registers"] - 32, case
            assert after["programs_per_sm"] > before["programs_per_sm"], case
            limit = 1.06
        assert after["sass_executed_per_element"] < limit * before["sass_executed_per_element"], case


@pytest.mark.slow
@pytest.mark.parametrize("oldest", [False, True], ids=["this-triton", "oldest-triton"])
def test_carry_over_segments_compiles_without_spills(tmp_path, oldest):
    # TileConfig.carry_segment (64 chunks on a GPU) splits a longer carry into three launches (launch.carry), which
    # only scans of more than 64 chunks reach: none of the cases above, so the GPU compiler would otherwise first see
    # segment_summary_kernel and the carry from an entry state on a user's GPU.  The drop-in's training step at 4,096
    # steps (256 chunks of 16) runs them forward and reversed.  sm_90: 64 and 72 registers under Triton 3.7.1, 96
    # under 3.6.0, no spills.
    builds = compile_report_for_sm90(tmp_path, oldest, "--case", "drop-in fp32 z grouped, whole tiles")
    assert {b["triton"] for b in builds} == {OLDEST_TRITON if oldest else triton.__version__}
    carries = [b for b in builds if b["kernel"] in ("segment_summary_kernel", "chunk_carry_kernel")]
    # Per direction of the carry: the segments' summaries, the carry over the segments (always in visiting order,
    # forward) and each segment's chunks from the state entering it.
    assert sorted((b["kernel"], b["constexprs"]["REVERSE"], b["constexprs"].get("HAS_ENTRY")) for b in carries) == [
        ("chunk_carry_kernel", False, False), ("chunk_carry_kernel", False, False),
        ("chunk_carry_kernel", False, True), ("chunk_carry_kernel", True, True),
        ("segment_summary_kernel", False, None), ("segment_summary_kernel", True, None)]
    assert all(b["spill_store_bytes"] == 0 and b["registers"] <= 128 for b in carries), carries


@pytest.mark.slow
def test_drop_in_rowwise_tiles_compile_to_the_same_structure(tmp_path):
    # TileConfig.rowwise_tiles, the default under Triton < 3.7: the drop-in's state loops read and write their
    # channels-first (steps, channels) tiles a row at a time (tile_io.load_td), because Triton 3.6 lays such a
    # tile's steps across lanes (there: 640-960 shuffles per forward kernel, 2 KB of shared memory in the backward).
    # This Triton lays them out right either way; a row at a time must compile to the same structure here: no
    # shuffles or shared memory in the forward kernels and chunk_adjoint, the backward's reduce-scattered sums over
    # lanes alone (TileConfig.backward_lane_sums), and about the same instructions: up to 15% more static ones
    # (with the drop-in's raster positions forward_output's rows took 2,104-2,120 against the plain tiles' 1,872,
    # both down from about 2,500 with the window arithmetic: bench/JOURNAL.md, "Raster scans take their positions
    # from the step"; since rows skip the steps their mask leaves out, 1,872 at 255 registers instead of 190, 2
    # programs per SM either way).  The backward's spills stay within 160 bytes of the plain tiles' (with sums over
    # the whole warp at every step, 124-140 bytes more a row at a time, 304 at most).
    # (step_vectors=False: rows or plain tiles whatever the length; at 200 steps, not a multiple of 16, there are no
    # vectors anyway.)
    for key, a, b in drop_in_state_loop_pairs(tmp_path, "rowwise_tiles=False,step_vectors=False",
                                              "rowwise_tiles=True,step_vectors=False"):
        assert b["constexprs"]["ROWWISE"] and not a["constexprs"]["ROWWISE"], key
        assert (b["shuffles"], b["shared_bytes"]) == (a["shuffles"], a["shared_bytes"]), key
        if key[0] == "backward_grads_kernel":
            assert (b["shuffles"], b["shared_bytes"]) == (32, 0), key
            assert b["spill_store_bytes"] <= min(a["spill_store_bytes"] + 160, 320), key
        else:
            assert (b["shuffles"], b["shared_bytes"], b["spill_store_bytes"]) == (0, 0, 0), key
        assert b["sass_instructions"] <= 1.15 * a["sass_instructions"], (b["sass_instructions"], a["sass_instructions"])


@pytest.mark.slow
def test_drop_in_state_loops_read_and_write_four_steps_per_access(tmp_path):
    # TileConfig.step_vectors: with raster positions and a length that is a multiple of 16 (compile_check's on-request
    # case of 4,096 steps), the drop-in's contiguous channels-first tiles and its B and C are read and written 4
    # steps per access (tile_io.STEP_VECTORS), as the hints of tile_io._step_vectors let Triton: vectors in the PTX
    # where there were none, the same layout (no shuffles or shared memory but the backward's lane sums), and no more
    # instructions or spills than a row at a time (sm_90, this Triton; bench/JOURNAL.md, "4-step vectors").
    # u, delta and B in every kernel; C, z and the output or its gradients besides in the last three.  The backward
    # sums its outputs in its own loop in both (the vectors' default sums them in the state loop,
    # TileConfig.backward_outputs_in_loop, which rows do not take).
    least = {"chunk_end_state_kernel": 12, "forward_output_kernel": 24, "chunk_adjoint_kernel": 16,
             "backward_grads_kernel": 24}
    for key, a, b in drop_in_state_loop_pairs(tmp_path, "rowwise_tiles=True,step_vectors=False",
                                              "backward_outputs_in_loop=False",
                                              case="drop-in fp32 z grouped, whole tiles"):
        assert b["constexprs"]["ROWWISE"] == 2 and a["constexprs"]["ROWWISE"] is True, key
        assert a["vector_accesses"] == 0 and b["vector_accesses"] >= least[key[0]], (key, b["vector_accesses"])
        expected = (32, 0) if key[0] == "backward_grads_kernel" else (0, 0)
        assert (b["shuffles"], b["shared_bytes"]) == expected, key
        assert b["sass_instructions"] <= a["sass_instructions"], (key, b["sass_instructions"], a["sass_instructions"])
        assert b["spill_store_bytes"] <= a["spill_store_bytes"], key


def default_and_off(tmp_path, constexpr, tile_flag, default=True, flags=()):
    """(key, default build, build with ``tile_flag`` off) of every state-loop kernel of the model's layer ("layer
    fp32", sm_90), where ``constexpr`` is ``default`` in the default build and the opposite in the other; both under
    compile_check's ``flags``."""
    kernels = ("chunk_end_state_kernel", "forward_output_kernel", "chunk_adjoint_kernel", "backward_grads_kernel")
    off = state_loop_builds(tmp_path, ("layer fp32",), (constexpr,), *flags, "--tiles", f"{tile_flag}=False",
                            kernels=kernels)
    on = state_loop_builds(tmp_path, ("layer fp32",), (constexpr,), *flags, kernels=kernels)
    assert off.keys() == on.keys() and {key[0] for key in on} == set(kernels)
    for key, b in on.items():
        assert b["constexprs"][constexpr] == default and off[key]["constexprs"][constexpr] == (not default), key
        yield key, b, off[key]


@pytest.mark.slow
def test_paired_loads_halve_the_x_row_loads(tmp_path):
    # TileConfig.paired_loads, on at the model's dt rank 12 (x's rows of 44 columns): the state-loop kernels read two
    # adjacent columns of x (dt ranks; the B and C of two states) per 64-bit load (tile_io.load_pair). compile_check,
    # sm_90, Triton 3.7.1: 16-96 such loads per kernel (16 in chunk_adjoint's 8-step tiles).  The static counts hold the
    # state loop's trip and the rank loop's block once: with 32-bit offsets (TileConfig.narrow_offsets) forward_output's
    # is 216 instructions shorter, the backward's 24, chunk_end_state's and chunk_adjoint's 24 and 56 longer, although
    # chunk_end_state executes about 88 fewer per tile (all its states unrolled); spills within 40 bytes
    # (bench/JOURNAL.md).  Both with the rank blocks rolled: unrolled (TileConfig.unroll_rank_blocks, below), the static
    # counts hold every block.
    for key, b, a in default_and_off(tmp_path, "PAIRED", "paired_loads",
                                     flags=("--tiles", "unroll_rank_blocks=False")):
        # At least a rank block's 2 pairs per step of a tile (chunk_adjoint reads C a state at a time).
        assert a["wide_loads"] == 0 and b["wide_loads"] >= 2 * b["constexprs"]["BLOCK_T"] >= 16, (key[0],
                                                                                                  b["wide_loads"])
        fewer = key[0] in ("forward_output_kernel", "backward_grads_kernel")
        assert b["sass_instructions"] < a["sass_instructions"] + (0 if fewer else 64), (
            key[0], b["sass_instructions"], a["sass_instructions"])
        assert b["spill_store_bytes"] <= a["spill_store_bytes"] + 40, (key[0], b["spill_store_bytes"])
        assert b["spill_store_bytes"] <= allowed_spills(b), (key[0], b["spill_store_bytes"])


@pytest.mark.slow
def test_positions_per_tile_cut_every_state_loop_kernel(tmp_path):
    # TileConfig.window_tiles: where every tile lies inside one window (the model's windows of 8 at 16-step tiles),
    # positions.tile_positions works out each tile's window once, and each step's position from it, instead of
    # dividing every step's index by the window's sizes.  compile_check, sm_90, Triton 3.7.1, the model's layer:
    # 344 fewer instructions per 16-step tile in each forward kernel and chunk_adjoint, 456 in the backward (11-17%
    # of the static counts), the same exponentials, atomics and shuffles, spills within 12 bytes, outside the loops
    # (the backward's with the lane sums: 100 bytes against 88; bench/JOURNAL.md).  The forward kernels' 8-step tiles
    # (forward_block_t) save about half as many per tile (112 in chunk_end_state).
    for key, b, a in default_and_off(tmp_path, "IN_WINDOW", "window_tiles"):
        fewer = 300 if b["constexprs"]["BLOCK_T"] == 16 else 100
        assert b["sass_instructions"] <= a["sass_instructions"] - fewer, (key[0], b["sass_instructions"],
                                                                          a["sass_instructions"])
        assert (b["exp_log"], b["atomics"], b["shuffles"]) == (a["exp_log"], a["atomics"], a["shuffles"]), key[0]
        assert b["spill_store_bytes"] <= a["spill_store_bytes"] + 12, (key[0], b["spill_store_bytes"])


@pytest.mark.slow
def test_pipelined_state_loops_copy_each_trips_loads_into_shared_memory(tmp_path):
    # TileConfig.state_loop_stages: with 2 stages Triton's pipeliner copies a state loop trip's loads (A, the entry
    # states, B, C) into shared memory with cp.async while the trip before it scans, where ptxas otherwise hoists
    # them into registers.  compile_check, sm_90, Triton 3.7.1, the model's layer: 10-24 such copies per kernel,
    # 2.3-4.6 KB of shared memory per forward and adjoint program, the backward's 64 bytes of spills gone, and the
    # same exponentials, atomics and shuffles (bench/JOURNAL.md).  In the forward's 16-step tiles, where its chunks
    # are one tile with a loop over the states: in 8-step tiles (forward_block_t) a chunk's 2 tiles carry all the
    # states in registers, with no such loop to pipeline.
    kernels = ("chunk_end_state_kernel", "forward_output_kernel", "chunk_adjoint_kernel", "backward_grads_kernel")
    plain = state_loop_builds(tmp_path, ("layer fp32",), ("STAGES",), "--tiles", "forward_block_t=None",
                              kernels=kernels)
    staged = state_loop_builds(tmp_path, ("layer fp32",), ("STAGES",), "--tiles",
                               "state_loop_stages=2,forward_block_t=None", kernels=kernels)
    assert plain.keys() == staged.keys() and {key[0] for key in staged} == set(kernels)
    for key, b in staged.items():
        a = plain[key]
        assert (a["constexprs"]["STAGES"], b["constexprs"]["STAGES"]) == (1, 2), key
        assert a["async_copies"] == 0 and b["async_copies"] >= 8, (key[0], b["async_copies"])
        assert (b["exp_log"], b["atomics"], b["shuffles"]) == (a["exp_log"], a["atomics"], a["shuffles"]), key[0]
        assert b["spill_store_bytes"] <= a["spill_store_bytes"], (key[0], b["spill_store_bytes"])
        if key[0] != "backward_grads_kernel":  # which keeps the 4 KB its tl.dot takes either way
            assert b["shared_bytes"] >= a["shared_bytes"] + 2048, (key[0], b["shared_bytes"])


@pytest.mark.slow
def test_32_bit_offsets_cut_every_state_loop_kernel(tmp_path):
    # TileConfig.narrow_offsets: below 2^31 elements the kernels' offsets are int32 (tile_io.offset), so a row
    # pointer is a 32-bit offset instead of a 64-bit product.  compile_check, sm_90, Triton 3.7.1, the model's layer:
    # 56-256 fewer static instructions per kernel (chunk_end_state 80, forward_output 192, chunk_adjoint 56, the
    # backward 256), the same exponentials, atomics and shuffles, and the backward's spills halved (bench/JOURNAL.md).
    for key, b, a in default_and_off(tmp_path, "WIDE", "narrow_offsets", default=False):
        assert b["sass_instructions"] <= a["sass_instructions"] - 40, (key[0], b["sass_instructions"],
                                                                       a["sass_instructions"])
        assert (b["exp_log"], b["atomics"], b["shuffles"]) == (a["exp_log"], a["atomics"], a["shuffles"]), key[0]
        assert b["spill_store_bytes"] <= a["spill_store_bytes"], (key[0], b["spill_store_bytes"])


# The one-pass forward's configurations: every order, the layer and the drop-in (given delta, z), training forwards
# (storing the chunk states; their backward is the default one, compiled above) and one without gradients.
ONE_PASS_CASES = ("training forward fp32", "inference cross-scale aligned fp32",
                  "training forward drop-in fp32 z grouped", "training forward cross-scale sequential fp32")


@pytest.mark.slow
@pytest.mark.parametrize("oldest", [False, True], ids=["this-triton", "oldest-triton"])
def test_one_pass_forward_compiles_and_computes_each_exponential_once(tmp_path, oldest):
    # TileConfig.one_pass_forward replaces the chunked forward's kernels, whose two passes compute every exponential
    # twice: per (step, channel) a thread issues one exp2 per state of its loop's trip, one for softplus and one for
    # silu(z), and per (segment, channel) one more per state for the segment's decay, in the PTX of each build (the
    # loop bodies, held once), under both Tritons and their opposite axis orders.  Registers (sm_90): 168-255,
    # spills 0-40 bytes (the sequential cross-scale order's; bench/JOURNAL.md, "The one-pass forward in the op").
    builds = compile_report_for_sm90(tmp_path, oldest, "--tiles", "one_pass_forward=True", *case_flags(ONE_PASS_CASES))
    assert {b["kernel"] for b in builds} == {"one_pass_forward_kernel"}  # none of the chunked forward's
    one_pass = [b for b in builds if b["kernel"] == "one_pass_forward_kernel"]
    configs = [b["constexprs"] for b in one_pass]
    assert {c["ORDER"] for c in configs} == {0, 1, 2}
    assert {(c["LOWRANK"], c["STORE_STATES"], c["HAS_Z"]) for c in configs} == {(True, True, False),
                                                                                (True, False, False),
                                                                                (False, True, True)}
    # The tiles' axis order that puts the segments across the threads under each Triton; the layer's x rows (dt rank
    # 12, 16 states) read two ranks or two states per load, the drop-in's separate B and C one state per load.
    assert {c["SEGMENTS_FIRST"] for c in configs} == {oldest}
    assert [c["PAIRED"] for c in configs] == [c["LOWRANK"] for c in configs] and {c["UNROLL"] for c in configs} == {2}
    for b, c in zip(one_pass, configs):
        per_step = c["STEPS"] * c["BLOCK_D"] * (c["UNROLL"] + c["SOFTPLUS"] + c["HAS_Z"])
        assert b["exp_log"] == per_step + c["BLOCK_D"] * c["UNROLL"], (b["exp_log"], c)
        assert b["registers"] <= 255 and b["spill_store_bytes"] <= 256, b


def lanes_forward_builds(tmp_path, oldest: bool, tiles: str, kernel: str) -> list:
    """compile_check's builds (sm_90) of a states-across-lanes forward ``kernel`` under ``tiles`` on ONE_PASS_CASES,
    each with (decays, per_pair): the exponentials a thread's decays take (one per step of each (state, channel) pair
    it holds) and those its (step, channel) functions take (softplus and silu(z), once per pair it holds)."""
    builds = compile_report_for_sm90(tmp_path, oldest, "--tiles", tiles, *case_flags(ONE_PASS_CASES))
    assert {b["kernel"] for b in builds} == {kernel}
    configs = [b["constexprs"] for b in builds]
    assert {c["ORDER"] for c in configs} == {0, 1, 2}
    assert {(c["LOWRANK"], c["STORE_STATES"], c["HAS_Z"]) for c in configs} == {(True, True, False),
                                                                                (True, False, False),
                                                                                (False, True, True)}
    rows = []
    for b, c in zip(builds, configs):
        threads = 32 * b["num_warps"]
        decays = c["BLOCK_T"] * c["N"] * c["BLOCK_D"] // threads
        per_pair = -(-c["BLOCK_T"] * c["BLOCK_D"] // threads) * (c["SOFTPLUS"] + c["HAS_Z"])
        rows.append((b, c, decays, per_pair))
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("oldest", [False, True], ids=["this-triton", "oldest-triton"])
def test_one_pass_lanes_compiles_and_builds_delta_once_per_step_and_channel(tmp_path, oldest):
    # TileConfig.one_pass_lanes: all 16 states of a tile across the lanes and warps, each thread holding its
    # (state, channel) pair's steps.  A thread's transcendentals in the PTX: one exp2 per step of its pair (the
    # decays), and softplus and silu(z) for its share of the tile's (step, channel) pairs, not for every step: with
    # the dt rank blocks unrolled, Triton built delta in the states' layout, once per state (51 MUFU per tile
    # instead of 19, 95 executed instructions per element instead of 33; one_pass_lanes.py).  No spills (sm_90).
    for b, c, decays, per_pair in lanes_forward_builds(tmp_path, oldest, "one_pass_forward=True,one_pass_lanes=True",
                                                       "one_pass_lanes_kernel"):
        assert decays <= b["exp_log"] <= decays + 2 * per_pair + 2, (b["exp_log"], decays, per_pair, c)
        assert b["registers"] <= 168 and b["spill_store_bytes"] == 0, b


@pytest.mark.slow
@pytest.mark.parametrize("oldest", [False, True], ids=["this-triton", "oldest-triton"])
def test_one_pass_gluon_compiles_as_gluon_with_each_exponential_once(tmp_path, oldest):
    # TileConfig.one_pass_gluon: the lanes forward written in Gluon, compiled from its Gluon source (the interpreter
    # runs it without layouts, so only this shows the layouts hold).  A thread's transcendentals in the PTX: exactly
    # its decays and its one (step, channel) pair's softplus and silu(z), in the layout of the (step, channel) work,
    # not once per state (Triton's one_pass_lanes_kernel needed a test that it did not).  No spills (sm_90, 96-168
    # registers); the only shuffles are the delta sums a training forward stores for the backward: y's sum over the
    # states is each thread's own.
    for b, c, decays, per_pair in lanes_forward_builds(
            tmp_path, oldest, "one_pass_forward=True,one_pass_lanes=True,one_pass_gluon=True", "one_pass_gluon_kernel"):
        assert b["exp_log"] == decays + per_pair, (b["exp_log"], decays, per_pair, c)
        assert b["spill_store_bytes"] == 0 and b["registers"] <= 168, b
        assert b["shuffles"] == (4 if c["STORE_STATES"] else 0), b  # the delta sums, over 16 steps across lanes
        # The two float32 directions' sum (ATOMIC) in relaxed atomics, unfenced; none otherwise.
        assert (b["atomics"] > 0) == c["ATOMIC"] and b["fenced_atomics"] == 0, b


LANES_BACKWARD_CASES = ("layer fp32", "cross-scale sequential fp32", "drop-in fp32 z grouped",
                        "cross-scale aligned fp32 gated")


@pytest.mark.slow
@pytest.mark.parametrize("oldest", [False, True], ids=["this-triton", "oldest-triton"])
def test_one_pass_lanes_backward_compiles_without_spills_or_tf32_products(tmp_path, oldest):
    # TileConfig.one_pass_lanes_backward replaces chunk_adjoint, the reversed carry and backward_grads, the gated
    # layer's (its LayerNorm upstream) included.  A thread's transcendentals in the PTX: the decays of its (state,
    # channel) pair's steps, twice (Triton builds them again in the reversed steps' layout for the adjoint instead of
    # moving them), and softplus, its derivative and silu(z) for its share of the (step, channel) pairs: the adjoint
    # takes no exponential of its own.  The dt input's gradient in float32 multiply-adds, not a TF32 tl.dot
    # (tile_io.products_fp32); relaxed atomics; no spills (sm_90: 201-231 registers).
    builds = compile_report_for_sm90(tmp_path, oldest, "--tiles", "one_pass_lanes_backward=True",
                                     *case_flags(LANES_BACKWARD_CASES))
    lanes = [b for b in builds if b["kernel"] == "one_pass_lanes_backward_kernel"]
    configs = [b["constexprs"] for b in lanes]
    assert {(c["ORDER"], c["LOWRANK"], c["HAS_Z"], c["LN_UPSTREAM"]) for c in configs} == {
        (0, True, False, False), (2, True, False, False), (0, False, True, False), (1, True, False, True)}
    assert not {b["kernel"] for b in builds} & {"chunk_adjoint_kernel", "backward_grads_kernel"}
    for b, c in zip(lanes, configs):
        threads = 32 * b["num_warps"]
        decays = c["BLOCK_T"] * c["N"] * c["BLOCK_D"] // threads
        per_pair = -(-c["BLOCK_T"] * c["BLOCK_D"] // threads) * (c["SOFTPLUS"] + c["HAS_Z"])
        assert 2 * decays <= b["exp_log"] <= 2 * decays + 3 * per_pair, (b["exp_log"], decays, per_pair, c)
        assert b["spill_store_bytes"] == 0 and b["registers"] <= 255, b
        assert b["atomics"] and not b["fenced_atomics"], b
    assert [b["kernel"] for b in builds if b["tf32_dots"]] == []


@pytest.mark.slow
@pytest.mark.parametrize("oldest", [False, True], ids=["this-triton", "oldest-triton"])
def test_one_pass_gluon_backward_compiles_as_gluon_with_each_exponential_once(tmp_path, oldest):
    # TileConfig.one_pass_gluon_backward: the lanes backward written in Gluon, compiled from its Gluon source (the
    # interpreter runs it without layouts, so only this shows the layouts hold).  A thread's transcendentals in the
    # PTX: exactly the decays of its (state, channel) pairs' steps, once (the adjoint reuses them over the steps
    # reversed in registers, where Triton's kernel builds them twice), and for its one (step, channel) pair softplus,
    # softplus's derivative and silu(z).  No reverse scan (Triton lowers one with shuffles even along registers); the
    # sums over channels in relaxed atomics; no TF32 products, no spills (sm_90: 204-245 registers) but with one state.
    # With one state too (32 channels a warp, in the drop-in's 32-channel blocks), where Gluon infers other layouts
    # for the steps reversed: a scan mixing them failed to compile for sm_90 before a lease could run it.
    builds = compile_report_for_sm90(tmp_path, oldest, "--tiles",
                                     "one_pass_lanes_backward=True,one_pass_gluon_backward=True,"
                                     "one_pass_lanes_backward_block_d=32,one_pass_lanes_backward_warps=1",
                                     *case_flags(("drop-in fp32 one state",)))
    builds += compile_report_for_sm90(tmp_path, oldest, "--tiles",
                                      "one_pass_lanes_backward=True,one_pass_gluon_backward=True",
                                      *case_flags(LANES_BACKWARD_CASES))
    gluon = [b for b in builds if b["kernel"] == "one_pass_gluon_backward_kernel"]
    configs = [b["constexprs"] for b in gluon]
    assert {(c["ORDER"], c["LOWRANK"], c["HAS_Z"], c["LN_UPSTREAM"], c["N"]) for c in configs} == {
        (0, True, False, False, 16), (2, True, False, False, 16), (0, False, True, False, 16),
        (1, True, False, True, 16), (0, False, False, False, 1)}
    assert not {b["kernel"] for b in builds} & {"chunk_adjoint_kernel", "backward_grads_kernel",
                                                "one_pass_lanes_backward_kernel"}
    for b, c in zip(gluon, configs):
        threads = 32 * b["num_warps"]
        decays = c["BLOCK_T"] * c["N"] * c["BLOCK_D"] // threads
        per_pair = -(-c["BLOCK_T"] * c["BLOCK_D"] // threads) * (2 * c["SOFTPLUS"] + c["HAS_Z"])
        assert b["exp_log"] == decays + per_pair, (b["exp_log"], decays, per_pair, c)
        assert b["reverse_scans"] == 0 and b["tf32_dots"] == 0, b
        # (One state leaves 16 (step, channel) pairs of each (step, channel) tensor to a thread of ROWS, 448 bytes
        # of spills: a layout the tests run, not one to time.)
        assert b["registers"] <= 255 and (b["spill_store_bytes"] == 0 or c["N"] == 1), b
        assert b["atomics"] and not b["fenced_atomics"], b
