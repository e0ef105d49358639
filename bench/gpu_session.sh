#!/usr/bin/env bash
# Everything a short GPU lease should measure, prepared ahead (a lease has 15 minutes of device time, start included).
#
#   bash bench/gpu_session.sh fetch   # here (network, the project's venv): mamba-ssm's sdist, hydra's wheels -> .whl/
#   bash bench/gpu_session.sh main    # on the GPU machine (.whl carried): at most BUDGET=370 s, steps below;
#                                     # SKIP="step ..." leaves steps out (a rerun after a fix)
#   bash bench/gpu_session.sh sweep   # on the GPU machine, if time is left: tile configurations of the fused op
#   bash bench/gpu_session.sh profile # on the GPU machine: GPU time per kernel (bench/profile_kernels.py)
#
# Results and logs go to $OUT (the device tool fetches it; at most 8 files) or bench/results/gpu-session. Steps run
# in order of importance, each under its own time limit, and benchmarks write each row as it is measured, so a run
# cut short keeps what it finished.
set -u
cd "$(dirname "$0")/.."
step=${1:-main}
MAMBA=mamba_ssm==2.3.2.post1

if [ "$step" = fetch ]; then
    set -e
    mkdir -p .whl
    # pip prepares an sdist's metadata by running its setup.py: skip mamba-ssm's CUDA build there (needs torch).
    MAMBA_SKIP_CUDA_BUILD=TRUE python3 -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
        -d .whl "$MAMBA"
    # hydra for the model benchmark's configs; the image has PyYAML. antlr4 4.9.3 ships no wheel: build one.
    python3 -m pip download -q --no-deps --only-binary=:all: -d .whl hydra-core==1.3.2 omegaconf==2.3.0
    python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
    ls -la .whl
    exit 0
fi

OUT=${OUT:-bench/results/gpu-session}
mkdir -p "$OUT"
export BENCH_RESULTS=$OUT PYTHONUNBUFFERED=1 MAX_JOBS=10
SDIST=$(ls .whl/mamba_ssm-*.tar.gz 2>/dev/null | head -1)
# No network there: the packages come from the source tree, hydra from the carried wheels.
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/kernels:$PWD${PYTHONPATH:+:$PYTHONPATH}
mamba_args=()
[ -n "$SDIST" ] && mamba_args=(--mamba-sdist "$SDIST")

# Step 3b: on top of the defaults of 2026-12-04 (64-bit offsets in the forward without gradients), first the forward
# kernels' tiles in 8 and 4 steps (forward_block_t: fewer registers, but loads issued nearer their use, as in the
# 32-bit build that ran 1.7x slower; the default 16 again since 2026-12-05) and chunk_adjoint's in 16 (since
# 2026-12-05: 8 steps, adjoint_block_t; None: 16); the carry in one launch instead of three over segments of 64
# chunks (since 2026-12-05, carry_segment); the backward's sums over steps kept per chunk again instead of per 4
# chunks (backward_chunks, since 2026-12-05); then the carry in blocks of 4 channels and 32 chunks (block_d sizes only
# the carry's programs with the state loops: 4x the programs, a quarter of the dependent steps; case (b)'s training
# carry took 1.4 of 7.6 ms on 2026-11-27); then what the H200 left open that day: 32-bit offsets there again (1.7x
# slower then: confirm), and in the training kernels off; paired loads and unrolled rank blocks off, alone and
# together (3-16% faster off, one sample each).
UNTIMED="forward_block_t=8 adjoint_block_t=None carry_segment=None backward_chunks=1 forward_block_t=4
block_d=4,carry_chunks=32
narrow_inference_offsets=True narrow_offsets=False paired_loads=False unroll_rank_blocks=False
paired_loads=False,unroll_rank_blocks=False"
# Step 3c: the one-pass forward in the op with the states across the lanes (since 2026-12-05, one_pass_lanes: the
# reference prototype's layout; 8 channels and 4 warps capped at 80 registers, so that case (a)'s 720 programs fit
# an H200 at once, then uncapped, then 16 channels), then with the segments, whose kernel failed
# the H200's tests of 2026-12-04 (tl.reduce out of order; fixed since): the drop-in's layout that matched mamba-ssm
# (2 channels per program) and the layer's default.  Between them the backward in one pass (one_pass_lanes_backward,
# since the fifth session of 2026-12-05; the fwdbwd column): after the chunked forward uncapped (2 programs per SM) and
# capped at 168 registers (3), after the lanes' forward, and in 2-warp programs.  In that order, so that what a cut
# step leaves out is what 2026-12-04 timed already.  First of all the lanes' forward written in Gluon (one_pass_gluon,
# since the seventh session of 2026-12-05: 15.8 and 20.5 instructions per element at 16 and 8 channels where the
# Triton kernel takes 19.7 and 32.5; 16 channels fit case (a)'s 368 programs in one wave at 168 registers), each
# with the backward in one pass written in Gluon too (one_pass_gluon_backward, since 2026-12-06: 44.6-44.9 instructions
# per element at 8 channels in 4 warps and 16 in 8, where the Triton kernel takes 76 and the chunked backward's two
# tile kernels 52; 16 channels halve its atomics; capped at 168 registers, 3 programs per SM instead of 2 for 168
# bytes of spills and 50.0 instructions), then alone.
GLUON_TRAINING="one_pass_lanes_backward=True,one_pass_gluon_backward=True"
ONE_PASS="one_pass_forward=True,one_pass_lanes=True,one_pass_gluon=True,one_pass_lanes_block_d=16,$GLUON_TRAINING
one_pass_forward=True,one_pass_lanes=True,one_pass_gluon=True,one_pass_lanes_block_d=16,$GLUON_TRAINING,\
one_pass_lanes_backward_block_d=16,one_pass_lanes_backward_warps=8
one_pass_forward=True,one_pass_lanes=True,one_pass_gluon=True,one_pass_lanes_block_d=16,$GLUON_TRAINING,\
one_pass_lanes_backward_maxnreg=168
one_pass_forward=True,one_pass_lanes=True,one_pass_gluon=True,one_pass_lanes_block_d=16
one_pass_forward=True,one_pass_lanes=True,one_pass_gluon=True
one_pass_forward=True,one_pass_lanes=True,one_pass_lanes_maxnreg=80 one_pass_forward=True,one_pass_lanes=True
one_pass_lanes_backward=True one_pass_lanes_backward=True,one_pass_lanes_backward_maxnreg=168
one_pass_forward=True,one_pass_lanes=True,one_pass_lanes_maxnreg=80,one_pass_lanes_backward=True
one_pass_lanes_backward=True,one_pass_lanes_backward_warps=2
one_pass_forward=True,one_pass_lanes=True,one_pass_lanes_block_d=16 one_pass_forward=True,one_pass_block_d=2
one_pass_forward=True"
# Each step runs under min(its own limit, what is left of BUDGET), so the run ends, and summarizes, in time.
BUDGET=${BUDGET:-370}
left() { local l=$(( BUDGET - SECONDS )); [ "$l" -lt "$1" ] && echo "$(( l > 1 ? l : 1 ))" || echo "$1"; }
log="$OUT/session.log"  # one log for every step: $OUT returns at most 8 files
# SKIP="name ...": steps a rerun leaves out (those an earlier run of the same lease already measured).
skipped() { [[ " ${SKIP:-} " == *" $1 "* ]]; }
step_run() {  # step_run NAME LIMIT command...: the step's output into the log, its status and time after it
    local name=$1 limit t0=$SECONDS; limit=$(left "$2"); shift 2
    if skipped "$name"; then echo "=== $name skipped (SKIP)" >> "$log"; return; fi
    echo "=== $name (limit ${limit}s, at ${SECONDS}s)" >> "$log"
    timeout "$limit" "$@" >> "$log" 2>&1
    echo "=== $name rc=$? in $(( SECONDS - t0 ))s" >> "$log"
}

if [ "$step" = main ]; then
    { date; nvidia-smi; python3 -c "import torch, triton; print(torch.__version__, triton.__version__,
torch.cuda.get_device_name())"; } >> "$log" 2>&1
    # 1. mamba-ssm's selective scan for this GPU only, in the background (about 2.5 minutes).
    ( [ -n "$SDIST" ] && python3 bench/build_mamba_ssm.py "$SDIST"; echo "build rc=$? at ${SECONDS}s" ) \
        > /tmp/build.log 2>&1 &  # into the session log once done: $OUT returns at most 8 files
    build=$!
    # 2. The kernel tests compiled for the GPU, while it builds; the fused op's benchmark kernels compile beside them
    #    (Triton's cache is per machine), so the timed runs below start warm.
    ( BENCH_RESULTS=/tmp/warmup timeout 150 python3 bench/scan_bench.py --backends fused drop_in --repeats 1 \
        > /tmp/warmup.log 2>&1 ) &
    skipped scan-untimed || ( BENCH_RESULTS=/tmp/warmup2 timeout 150 python3 bench/scan_bench.py --backends fused \
        --repeats 1 --cases a_training_w8 b_inference_256 --dtypes float32 --configs $UNTIMED deterministic=True \
        backward_direction_launches=True backward_dx_copies=True inference_programs_per_sm=4 \
        inference_programs_per_sm=8 > /tmp/warmup2.log 2>&1 ) &
    ( BENCH_RESULTS=/tmp/warmup3 timeout 150 python3 bench/scan_bench.py --backends fused --repeats 1 --gated \
        --cases a_training_w8 b_inference_256 d_model_inference_64 --dtypes float32 \
        --configs default adjoint_block_t=None backward_keeps_dy=False inference_programs_per_sm=1 \
        inference_programs_per_sm=0 forward_block_fit=False $GLUON_TRAINING one_pass_lanes_backward=True \
        one_pass_lanes_backward=True,one_pass_lanes_backward_maxnreg=168 > /tmp/warmup3.log 2>&1 ) &
    # Step 3d's configuration, case (c) without positions per tile, and the drop-in step's (the defaults' builds warm
    # up above).
    skipped scan-cross-scale-tiles || ( BENCH_RESULTS=/tmp/warmup4 timeout 100 python3 bench/scan_bench.py \
        --backends fused --repeats 1 --cases c_cross_scale_64 --dtypes float32 --configs window_tiles=False \
        > /tmp/warmup4.log 2>&1 ) &
    skipped scan-drop-in-rows || ( BENCH_RESULTS=/tmp/warmup7 timeout 100 python3 bench/scan_bench.py \
        --backends drop_in --repeats 1 --cases a_training_w8 b_inference_256 --dtypes float32 \
        --configs forward_block_t=8 step_vectors=False step_vectors=False,raster_tiles=False \
        step_vectors=False,rowwise_tiles=False > /tmp/warmup7.log 2>&1 ) &
    skipped scan-drop-in-z || ( BENCH_RESULTS=/tmp/warmup8 timeout 100 python3 bench/scan_bench.py --z \
        --backends drop_in --repeats 1 --cases a_training_w8 --dtypes float32 \
        --configs default backward_outputs_in_loop=False > /tmp/warmup8.log 2>&1 ) &
    # The model's kernels too (its 180 channels and cross-scale blocks are other builds): on 2026-12-04 the model
    # step timed only the fused training step in its 60 s, most likely compiling the rest.
    ( BENCH_RESULTS=/tmp/warmup6 timeout 150 python3 bench/model_bench.py --backends triton --repeats 1 \
        > /tmp/warmup6.log 2>&1 ) &
    ( BENCH_RESULTS=/tmp/warmup10 timeout 100 python3 bench/model_bench.py --backends triton --repeats 1 \
        --cases train_step_256 --configs $GLUON_TRAINING one_pass_lanes_backward=True > /tmp/warmup10.log 2>&1 ) &
    # shellcheck disable=SC2086
    ( BENCH_RESULTS=/tmp/warmup5 timeout 100 python3 bench/scan_bench.py --backends fused drop_in --repeats 1 \
        --cases a_training_w8 b_inference_256 --dtypes float32 --configs $ONE_PASS > /tmp/warmup5.log 2>&1 ) &
    # The one-pass prototype with the states across the lanes (step 3c), without mamba-ssm.
    skipped one-pass-lanes || ( BENCH_RESULTS=/tmp/warmup9 timeout 100 python3 bench/one_pass_bench.py --lanes-only \
        --cases a_training --repeats 1 > /tmp/warmup9.log 2>&1 ) &
    export TRITON_INTERPRET=0 HYPOTHESIS_PROFILE=dev
    # -v names each test as it ends, and tests/conftest.py appends each failure's traceback to the log at once: a
    # run cut short at its limit (pytest's summary then never prints) still says which tests failed and why.  First
    # what only a GPU can check (the interpreter runs one program at a time, in order, and Gluon kernels without
    # their layouts): the Gluon lanes forward's and backward's layouts and conversions; the one-pass kernel's order
    # of sums; the carry's segments, whose programs write in place beside what other programs read; chunk_adjoint's
    # tiles, whose threads read back what they stored; then the defaults together, over 64-chunk segments.
    PYTEST_FAILURE_LOG=$OUT/tests.log timeout "$(left 130)" python3 -m pytest -v -n 6 --maxfail 5 -rfEs \
        -p no:cacheprovider \
        tests/test_triton_one_pass_gluon.py tests/test_triton_one_pass_gluon_backward.py \
        tests/test_triton_one_pass.py tests/test_triton_one_pass_lanes.py \
        tests/test_triton_one_pass_lanes_backward.py \
        tests/test_triton_carry_segments.py tests/test_triton_shorter_tiles.py \
        tests/test_triton_gpu_defaults.py tests/test_triton_narrow_offsets.py tests/test_triton_directional.py \
        tests/test_triton_lane_sums.py tests/test_triton_softplus.py tests/test_triton_adjoint.py \
        tests/test_triton_selective_scan.py tests/test_triton_large_inputs.py tests/test_torch_compile.py \
        tests/test_models.py -k "not test_models or across_backends" >> "$OUT/tests.log" 2>&1
    echo "tests rc=$? at ${SECONDS}s" >> "$OUT/tests.log"
    wait "$build"
    { echo "=== mamba-ssm build"; cat /tmp/build.log; } >> "$log"
    wait
    echo "warm-up compile: $(tail -1 /tmp/warmup.log) at ${SECONDS}s" >> "$log"
    # 3. Scan-layer cases a, b, c in float32 and bfloat16: mamba-ssm, the MambaIR-style path, the fused op (the
    #    state loops, 4 states unrolled, inference states in registers: the defaults since the H200 runs of
    #    2026-11-27), and the drop-in selective_scan on mamba-ssm's own inputs (the state loops since 2026-12-01).
    #    Each row also times the forward's host part and its replay from a CUDA graph (since 2026-12-02).
    step_run scan 100 python3 bench/scan_bench.py "${mamba_args[@]}" --repeats 30 \
        --backends mamba_ssm mambair_path fused drop_in \
        --cases a_training_w8 a_training_w64 b_inference_256 c_cross_scale_64 c_cross_scale_256
    # 3c. The one-pass forward in the op (TileConfig.one_pass_forward; off by default): first with the states across
    #    the lanes (one_pass_lanes, since 2026-12-05; its GPU tests run in step 2), then with the segments: on
    #    2026-12-04 the layer's was 1.5-5.4x slower than its two passes, the drop-in's with 2 channels per program as
    #    fast as mamba-ssm in case a.  Again with the kernel's tl.reduce replaced (tests/test_triton_one_pass.py,
    #    step 2, checks it first), the drop-in's forward the question: its default if it holds.  Between them the
    #    backward in one pass (one_pass_lanes_backward): if its fwdbwd beats the default's, it is the training
    #    backward's layout.  Before 3b since the fifth session of 2026-12-05: the layouts that could change case (a)
    #    most (the reference's prototype ran 1.3x mamba-ssm's forward) go first, the few-percent switches after.
    # shellcheck disable=SC2086
    step_run one-pass-op 130 python3 bench/scan_bench.py "${mamba_args[@]}" --repeats 20 --append \
        --cases a_training_w8 b_inference_256 --dtypes float32 --backends mamba_ssm fused drop_in \
        --configs default $ONE_PASS
    #    The one-pass prototype with all 16 states across the lanes and warps and 8-16 channels per program
    #    (bench/one_pass_bench.py; 2026-12-04 timed its other layouts and the segments): the layout of the reference's
    #    40-line prototype, 0.61 ms at case (a)'s shape on an H200, against mamba-ssm's 0.79. If one beats mamba-ssm
    #    there, it is the layout for the op's one-pass forward at training shapes (bench/JOURNAL.md, "The states
    #    across the lanes, a few channels per program").  First the same layout in Gluon, every layout explicit:
    #    14.7-17 instructions per element where Triton's own layouts take 21-31 ("The states across the lanes in
    #    Gluon").
    step_run one-pass-lanes 30 python3 bench/one_pass_bench.py "${mamba_args[@]}" --lanes-only --repeats 20 \
        --cases a_training b_inference
    # 3b. UNTIMED beside the default on cases a and b (2026-12-04 timed the others: bench/README.md, "GPU results
    #    (NVIDIA H200, 2026-12-04)"), the forward kernels' tiles first.
    # shellcheck disable=SC2086
    step_run scan-untimed 55 python3 bench/scan_bench.py --repeats 20 --append --cases a_training_w8 b_inference_256 \
        --dtypes float32 --backends fused --configs default $UNTIMED
    # 3d. Positions per tile in the aligned cross-scale order (since 2026-12-03), on and off, case (c) at 64x64.
    step_run scan-cross-scale-tiles 20 python3 bench/scan_bench.py --repeats 20 --append --cases c_cross_scale_64 \
        --dtypes float32 --backends fused --configs default window_tiles=False
    #    The layer as every RLMB of the model runs it, with the channel gate: fused against the gated MambaIR-style
    #    path (since 2026-12-02; appended to the same file); chunk_adjoint in block_t's 16-step tiles, where 8-step
    #    ones took the gate's LayerNorm gradient from 208 registers to 168 (compile_check, sm_90); and backward_grads
    #    recomputing the outputs again instead of reading the output gradient chunk_adjoint kept (since 2026-12-05);
    #    the backward in one pass (one_pass_lanes_backward, since the fifth session of 2026-12-05: the model's
    #    training step would take it from here), first in Gluon (one_pass_gluon_backward, since 2026-12-06: 49.8
    #    instructions per element in the gated layer against 88.9), then uncapped and at 168 registers.
    step_run scan-gated 60 python3 bench/scan_bench.py "${mamba_args[@]}" --repeats 20 --gated --append \
        --cases a_training_w8 b_inference_256 --dtypes float32 --backends mambair_path fused \
        --configs default $GLUON_TRAINING one_pass_lanes_backward=True \
        one_pass_lanes_backward=True,one_pass_lanes_backward_maxnreg=168 adjoint_block_t=None backward_keeps_dy=False
    #    The gated layer at the model's inference shape (batch 1, 64x64, 180 channels in blocks of 64): inference
    #    chunks shortened until every launch fills the GPU (the default since 2026-12-02: 1-tile chunks, 768 programs
    #    per launch) against 2-tile chunks (384, half the carry) and 16-tile chunks (48); and blocks of 128 channels
    #    (forward_block_fit=False: 256 threads for 180 channels).
    step_run scan-small 35 python3 bench/scan_bench.py "${mamba_args[@]}" --repeats 30 --gated --append \
        --cases d_model_inference_64 --dtypes float32 --backends mambair_path fused \
        --configs default inference_programs_per_sm=1 inference_programs_per_sm=0 forward_block_fit=False
    #    Case (a)'s forward in 8- and 4-tile chunks (768 and 1,536 programs, against 384: 1.45 waves of an H200's at
    #    2 programs per SM, 0.97 at the 3 that 8-step tiles fit), and case (b)'s in 8-tile chunks (1,536 against 768;
    #    inference_programs_per_sm=4 leaves its chunks as they are).  Shorter chunks lengthen the carry, which since
    #    2026-12-05 runs over segments.
    step_run scan-waves 30 python3 bench/scan_bench.py --repeats 20 --append --cases a_training_w8 b_inference_256 \
        --dtypes float32 --backends fused --configs inference_programs_per_sm=4 inference_programs_per_sm=8
    #    The drop-in scan: its default (since the evening of 2026-12-04 its positions taken from the steps,
    #    raster_tiles, and its channels-first tiles read and written 4 steps per access, step_vectors), then its
    #    forward without gradients in 8-step tiles (forward_block_t), then rows
    #    (step_vectors off: the default before, under the image's Triton 3.6), then neither, then the plain tiles.
    step_run scan-drop-in-rows 40 python3 bench/scan_bench.py "${mamba_args[@]}" --repeats 20 --append \
        --cases a_training_w8 b_inference_256 --dtypes float32 --backends mamba_ssm drop_in \
        --configs default forward_block_t=8 step_vectors=False step_vectors=False,raster_tiles=False \
        step_vectors=False,rowwise_tiles=False
    #    The drop-in with a z gate, as Mamba blocks call it, beside mamba-ssm's op with z: its backward summing the
    #    outputs dz needs in its state loop (the default since 2026-12-05) against a loop of their own.
    step_run scan-drop-in-z 25 python3 bench/scan_bench.py "${mamba_args[@]}" --repeats 20 --append --z \
        --cases a_training_w8 --dtypes float32 --backends mamba_ssm drop_in \
        --configs default backward_outputs_in_loop=False
    # 4. The dis_w8 network: training step and inference, fused against MambaIR-style mamba-ssm (the PyTorch backend
    #    never finished within the step's time: left out); then its inference with the 16-tile chunks of before
    #    2026-12-02.
    step_run model 60 python3 bench/model_bench.py "${mamba_args[@]}" --repeats 5 --backends triton mamba_ssm
    step_run model-chunks 35 python3 bench/model_bench.py --backends triton --cases infer_256 infer_1024 --append \
        --configs inference_programs_per_sm=0 inference_programs_per_sm=1 --repeats 5
    #    The training step with the backward in one pass (one_pass_lanes_backward, since the fifth session of
    #    2026-12-05), every scan layer's, gated and cross-scale ones included: first its Gluon kernel (2026-12-06).
    step_run model-lanes-backward 25 python3 bench/model_bench.py --backends triton --cases train_step_256 --append \
        --configs $GLUON_TRAINING one_pass_lanes_backward=True --repeats 5
    # 5. GPU time per kernel of the training and inference cases' layer: the default, with the carry in one launch
    #    (each carry kernel's own time, before and after the segments of 2026-12-05), with 32-bit offsets in the
    #    forward without gradients (which kernel made it 1.7x slower on 2026-12-04?), in deterministic mode, and
    #    through the model's channel gate.
    step_run profile 45 python3 bench/profile_kernels.py --cases a_training_w8 b_inference_256 --gated \
        --configs default carry_segment=None narrow_inference_offsets=True deterministic=True
    #    The network's batch-1 inference (256x256 output): GPU time, wall time and kernels launched, with the
    #    shortened inference chunks and without (is it bound by its kernels or by the host?).
    step_run profile-inference 25 python3 bench/profile_kernels.py --cases --model-inference --append \
        --configs default inference_programs_per_sm=1 inference_programs_per_sm=0
    # 6. The host's time per layer call at case (a)'s shape (forward, backward, gated), with real launches: what
    #    the scan rows' fwd_host_ms and fwd_graph_ms say of the forward, for the other modes.
    step_run host 20 python3 bench/host_overhead.py --calls 50
    # 7. What is left: the configurations of SWEEP (deterministic mode, dx copies, state-loop unrolling, inference
    #    chunk sizes, states through memory, the tile kernels, ...), on the training and inference cases.
    step_run sweep 300 python3 bench/scan_bench.py --sweep --cases a_training_w8 b_inference_256 --dtypes float32 \
        --repeats 20
elif [ "$step" = torch ]; then
    # The PyTorch path on the scan cases (slowest, fewest repeats).
    step_run scan-torch 120 python3 bench/scan_bench.py --backends torch --repeats 5 \
        --out "scan-torch-$(date +%F).jsonl"
elif [ "$step" = profile ]; then
    # GPU time per kernel: the fused layer under a few tile configurations, and a dis_w8 training step.
    step_run profile 200 python3 bench/profile_kernels.py --cases a_training_w8 b_inference_256 --configs default \
        deterministic=True backward_num_warps=4,backward_maxnreg=128 block_t=32,block_d=8 --model
elif [ "$step" = sweep ]; then
    step_run sweep 300 python3 bench/scan_bench.py --sweep --cases a_training_w8 b_inference_256 \
        --dtypes float32 --repeats 20
else
    echo "unknown step $step (fetch | main | profile | sweep | torch)" >&2
    exit 2
fi
grep -h "^===\|rc=" "$log" "$OUT/tests.log" 2>/dev/null
tail -4 "$OUT/tests.log" 2>/dev/null
ls -la "$OUT"
ls "$OUT"/*.jsonl >/dev/null 2>&1 && python3 bench/summarize.py "$OUT"/*.jsonl  # the reply carries the end
