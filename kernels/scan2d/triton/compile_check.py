"""Compile the scan kernels for a GPU architecture on a machine that has none, and report their resources.

The interpreter (``TRITON_INTERPRET=1``) checks what the kernels compute, not that the GPU compiler accepts them,
and says nothing about registers.  This tool runs the ops' real host code with every kernel launch replaced by an
ahead-of-time compile (Triton -> PTX -> cubin with Triton's own ptxas) for the chosen architectures, and reports
each kernel's registers, register spills and stack (``ptxas -v``), shared memory, atomic instructions (which
must not appear in deterministic mode, see ``operands.ScanOperands.deterministic``), exp/log instructions (the
special-function-unit work that the exponentials floor in ``bench/README.md`` counts) and warp shuffles (which
Triton 3.6-3.7 spends generously on reverse scans, see ``bench/README.md``).

    python -m scan2d.triton.compile_check --arch 90 --arch 80 [--json resources.jsonl]

It must run without ``TRITON_INTERPRET`` (the interpreter replaces the compiled kernels) and uses Triton internals
(``launch_hooks``, ``JITFunction._pack_args``) that are stable across triton 3.6-3.7.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, List, Sequence

import torch

from .._backend import triton_interpreted
from . import launch_hooks
from .sass_count import sass_instruction_count


@dataclass
class KernelBuild:
    """One compiled specialization: which kernel, for which architecture, with which compile-time constants."""

    kernel: str
    arch: int
    constexprs: dict
    num_warps: int
    registers: int
    spill_store_bytes: int  # nonzero: ptxas ran out of registers and spills to local memory
    spill_load_bytes: int
    stack_bytes: int
    shared_bytes: int
    atomics: int  # atomic read-modify-write instructions in the PTX (zero: the kernel's sums are deterministic)
    fenced_atomics: int  # those with acquire/release semantics: ptxas fences each (MEMBAR.ALL.GPU, CCTL.IVALL)
    exp_log: int  # ex2 / lg2 instructions in the PTX: the transcendentals one thread issues per program (MUFU work)
    shuffles: int  # shfl instructions in the PTX: cross-lane reductions, and the lane flips of reverse scans
    reverse_scans: int  # associative_scan(reverse=True) ops in the TTGIR (see recurrence.reverse_steps)
    compile_s: float
    sass_instructions: int = 0  # static count in the cubin (loops counted once): what ptxas made of the kernel
    wide_loads: int = 0  # 64-bit global loads in the PTX: tile_io.load_pair's words of two float32 columns
    async_copies: int = 0  # cp.async copies to shared memory in the PTX: a pipelined loop's loads (state_loop_stages)
    cache_key: str = ""  # the build's folder in Triton's cache, which holds its cubin, PTX and TTGIR
    vector_accesses: int = 0  # ld.global / st.global of 2 or 4 elements in the PTX: tile_io.STEP_VECTORS' accesses
    tf32_dots: int = 0  # tt.dot with TF32 inputs in the TTIR: float32 products rounded to 10-bit mantissas


_USED = re.compile(r"Used (\d+) registers")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_ATOMIC = re.compile(r"^\s*(?:@!?%p\d+\s+)?(?:atom|red)\.", re.MULTILINE)  # optionally predicated atom.* / red.*
_FENCED_ATOMIC = re.compile(r"^\s*(?:@!?%p\d+\s+)?(?:atom|red)\.[\w.:]*\.(?:acq_rel|acquire|release)\.",
                            re.MULTILINE)
_EXP_LOG = re.compile(r"^\s*(?:@!?%p\d+\s+)?(?:ex2|lg2)\.", re.MULTILINE)
_SHUFFLE = re.compile(r"^\s*(?:@!?%p\d+\s+)?shfl\.", re.MULTILINE)
_WIDE_LOAD = re.compile(r"^\s*(?:@!?%p\d+\s+)?ld\.global(?:\.[\w:]+)*\.[bu]64\s", re.MULTILINE)
_VECTOR_ACCESS = re.compile(r"^\s*(?:@!?%p\d+\s+)?(?:ld|st)\.global(?:\.[\w:]+)*\.v[24]\.", re.MULTILINE)
_ASYNC_COPY = re.compile(r"^\s*(?:@!?%p\d+\s+)?cp\.async\.(?:ca|cg)\.", re.MULTILINE)
_REVERSE_SCAN = re.compile(r'"tt\.scan".*reverse = true')
# Triton's combine pass writes sum(a[:, :, None] * b[None, :, :], 1) as such a dot (tile_io.products_fp32).
_TF32_DOT = re.compile(r"\btt\.dot\b.*inputPrecision = tf32(?!x3)")


def _compile_logged(src, target, options: dict, always: bool):
    """``triton.compile`` and the log of its ``ptxas -v`` run ("" where Triton's cache had the cubin, unless
    ``always``, which compiles regardless)."""
    import triton
    from triton import knobs

    log = io.StringIO()
    saved = knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile
    knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = True, always  # the log goes to stdout
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(src, target=target, options=options)
    finally:
        knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = saved
    return compiled, log.getvalue()


def _compile(src, target, options: dict) -> tuple:
    """``triton.compile`` and the cubin's report: (compiled kernel, (registers, spill stores, spill loads, stack
    frame) from Triton's own ``ptxas -v`` run, and the static SASS instruction count)."""
    from triton.runtime.cache import get_cache_manager

    compiled, log = _compile_logged(src, target, options, always=False)
    # The report goes beside the cubin in Triton's cache, so that a build compiled again (the compile tests'
    # configurations share most of theirs) costs nothing; a cubin cached without one is compiled once more for it.
    cache = get_cache_manager(compiled.hash)
    cached = cache.get_file("ptxas_report.json")
    if not log and cached is not None:
        with open(cached) as f:
            return compiled, tuple(json.load(f))
    if not log:
        compiled, log = _compile_logged(src, target, options, always=True)
    used, frame = _USED.search(log), _FRAME.search(log)
    if used is None or frame is None:
        raise RuntimeError(f"unexpected ptxas -v output:\n{log}")
    stack, stores, loads = (int(v) for v in frame.groups())
    sass = sass_instruction_count(compiled.asm["cubin"], compiled.metadata.name)
    report = int(used.group(1)), stores, loads, stack, sass
    cache.put(json.dumps(report), "ptxas_report.json")
    return compiled, report


def _first_ir(compiled) -> str:
    """The kernel's first IR: TTIR, or TTGIR for a Gluon kernel, which starts there."""
    return compiled.asm["ttir"] if "ttir" in compiled.asm else compiled.asm["ttgir"]


@contextlib.contextmanager
def compile_instead_of_launch(arches: Sequence[int], builds: List[KernelBuild]) -> Iterator[None]:
    """Within the block, every ``kernel[grid](...)`` compiles for each of ``arches`` and launches nothing.

    Outputs of the skipped launches keep whatever their buffers held, so only the host code's control flow and the
    kernels' specializations are real; that is all a compile check needs.
    """
    from triton.backends.compiler import GPUTarget

    from .gluon_lang import source_class

    if triton_interpreted():
        raise RuntimeError("compile_check needs real compiled kernels: unset TRITON_INTERPRET.")
    seen = set()

    def compile_run(self, args, kwargs, grid):
        kwargs.setdefault("debug", False)
        for arch in arches:
            target, backend = GPUTarget("cuda", arch, 32), launch_hooks.backend(arch)
            bound, specialization, options = launch_hooks.binder(self, arch)(*args, **kwargs)
            key = (self.fn.__name__, arch, str(specialization), str(sorted(options.items())))
            if key in seen:
                continue
            seen.add(key)
            options, signature, constexprs, attrs = self._pack_args(backend, kwargs, bound, specialization, options)
            start = time.perf_counter()
            source = source_class(self)(self, signature, constexprs, attrs)  # Gluon kernels have their own
            compiled, report = _compile(source, target, options.__dict__)
            seconds = time.perf_counter() - start
            regs, stores, loads, stack, sass = report
            # Tuple arguments' elements are specialized one by one: name them arg[i].
            names = {self.arg_names[path[0]] + "".join(f"[{i}]" for i in path[1:]): value
                     for path, value in constexprs.items()}
            builds.append(KernelBuild(self.fn.__name__, arch, names, compiled.metadata.num_warps, regs, stores, loads,
                                      stack, compiled.metadata.shared, len(_ATOMIC.findall(compiled.asm["ptx"])),
                                      len(_FENCED_ATOMIC.findall(compiled.asm["ptx"])),
                                      len(_EXP_LOG.findall(compiled.asm["ptx"])),
                                      len(_SHUFFLE.findall(compiled.asm["ptx"])),
                                      len(_REVERSE_SCAN.findall(compiled.asm["ttgir"])), round(seconds, 2), sass,
                                      len(_WIDE_LOAD.findall(compiled.asm["ptx"])),
                                      len(_ASYNC_COPY.findall(compiled.asm["ptx"])), compiled.hash,
                                      len(_VECTOR_ACCESS.findall(compiled.asm["ptx"])),
                                      len(_TF32_DOT.findall(_first_ir(compiled)))))
        return None

    with launch_hooks.instead_of_launch(compile_run):
        yield


def _layer_case(dtype, gate: bool, cross_scale, n_state=16, backward=True, rank=12,
                run_backward=True) -> Callable[[], None]:
    """A scan layer as the model runs it (two directions, window 8, 360 channels at 16x16, dt rank 12 =
    ceil(180 / 16)), forward + backward (or the forward alone, as inference runs it: several tiles per chunk; or
    without ``run_backward``, a training forward alone: one tile per chunk, the chunk states stored).
    Rank 12 lets the kernels read x's columns in pairs (``TileConfig.paired_loads``); the "rank 23" case, odd, reads
    them one at a time and covers the rank loop's last block overlapping the one before."""

    def run():
        from ..directional import ChannelGate
        from ..directional.triton_op import directional_scan_triton
        from ..directions import ScanDirection

        torch.manual_seed(0)
        batch, height, width, dim, K = 2, 16, 16, 360, 2
        dirs = [ScanDirection(window=8, column_first=c, cross_scale=cross_scale) for c in (False, True)]
        leaf = lambda *shape: torch.randn(*shape, dtype=dtype).requires_grad_(backward)  # noqa: E731
        u, x = leaf(batch, height * width, dim), leaf(batch, height * width, K, rank + 2 * n_state)
        low = {}
        if cross_scale is not None:
            lh, lw = (height + 1) // 2, (width + 1) // 2
            low = dict(u_low=leaf(batch, lh * lw, dim), xdbl_low=leaf(batch, lh * lw, K, rank + 2 * n_state))
        g = ChannelGate(leaf(dim), leaf(dim), 1e-5, torch.sigmoid) if gate else None
        out = directional_scan_triton(u, x, leaf(K, dim, rank), leaf(K, dim), -torch.rand(K, dim, n_state),
                                      leaf(K, dim), dirs, height, width, gate=g, **low)
        if backward and run_backward:
            out.float().sum().backward()

    return run


def _drop_in_case(dtype, grouped: bool, with_z: bool, run_backward=True, length=200,
                  backward=True, n_state=16) -> Callable[[], None]:
    """``selective_scan(..., backend="triton")`` at mamba-ssm's shapes, forward + backward (without
    ``run_backward``, the training forward alone; without ``backward``, the forward without gradients)."""

    def run():
        from ..selective_scan.triton_op import selective_scan_triton

        batch, dim = 2, 48
        leaf = lambda *shape: torch.randn(*shape, dtype=dtype).requires_grad_(backward)  # noqa: E731
        bc = (batch, 2, n_state, length) if grouped else (batch, n_state, length)
        out = selective_scan_triton(leaf(batch, dim, length), leaf(batch, dim, length),
                                    -torch.rand(dim, n_state, requires_grad=backward), leaf(*bc), leaf(*bc),
                                    D=leaf(dim), z=leaf(batch, dim, length) if with_z else None, delta_bias=leaf(dim),
                                    delta_softplus=True)
        if backward and run_backward:
            out.float().sum().backward()

    return run


def _deterministic(case: Callable[[], None]) -> Callable[[], None]:
    """``case`` under ``torch.use_deterministic_algorithms(True)``: the kernels' fixed-order sums instead of atomics."""

    def run():
        from .._backend import deterministic_algorithms

        with deterministic_algorithms():
            case()

    return run


CASES = {
    "layer fp32": _layer_case(torch.float32, gate=False, cross_scale=None),
    "layer fp32 rank 23": _layer_case(torch.float32, gate=False, cross_scale=None, rank=23),
    "layer bf16": _layer_case(torch.bfloat16, gate=False, cross_scale=None),
    "layer fp32 gated": _layer_case(torch.float32, gate=True, cross_scale=None),
    "layer bf16 gated": _layer_case(torch.bfloat16, gate=True, cross_scale=None),
    "cross-scale aligned fp32 gated": _layer_case(torch.float32, gate=True, cross_scale="aligned"),
    "cross-scale sequential fp32": _layer_case(torch.float32, gate=False, cross_scale="sequential"),
    "inference bf16 gated": _layer_case(torch.bfloat16, gate=True, cross_scale=None, backward=False),
    "inference cross-scale aligned fp32": _layer_case(torch.float32, gate=False, cross_scale="aligned",
                                                      backward=False),
    "drop-in fp32 z grouped": _drop_in_case(torch.float32, grouped=True, with_z=True),
    # Training forwards alone, for what only the forward changes (TileConfig.one_pass_forward).
    "training forward fp32": _layer_case(torch.float32, gate=False, cross_scale=None, run_backward=False),
    "training forward bf16": _layer_case(torch.bfloat16, gate=False, cross_scale=None, run_backward=False),
    "training forward cross-scale sequential fp32": _layer_case(torch.float32, gate=False, cross_scale="sequential",
                                                                run_backward=False),
    "training forward drop-in fp32 z grouped": _drop_in_case(torch.float32, grouped=True, with_z=True,
                                                             run_backward=False),
    "drop-in fp16": _drop_in_case(torch.float16, grouped=False, with_z=False),
    "deterministic cross-scale aligned fp32 gated": _deterministic(_layer_case(torch.float32, gate=True,
                                                                               cross_scale="aligned")),
    "deterministic layer bf16 gated": _deterministic(_layer_case(torch.bfloat16, gate=True, cross_scale=None)),
    "deterministic drop-in fp32 z grouped": _deterministic(_drop_in_case(torch.float32, grouped=True, with_z=True)),
}


# Compiled only when named (``--case``), not in "every case" (which CI builds).  The drop-in at a length that whole
# 16-step tiles fill, as case (a)'s 4,096 steps do (with ``raster_tiles=False`` the kernels then take the positions
# per tile; 4-step vectors need a multiple of 16), and the layer's forward without gradients, as the cases
# (a) and (b) time it: 16-tile chunks, 64-bit offsets (bench/forward_tiles_compile.py).
ON_REQUEST = {
    "drop-in fp32 z grouped, whole tiles": _drop_in_case(torch.float32, grouped=True, with_z=True, length=4096),
    "training forward drop-in fp32 z grouped, whole tiles": _drop_in_case(torch.float32, grouped=True, with_z=True,
                                                                          length=4096, run_backward=False),
    "inference drop-in fp32 z grouped, whole tiles": _drop_in_case(torch.float32, grouped=True, with_z=True,
                                                                   length=4096, backward=False),
    "inference fp32": _layer_case(torch.float32, gate=False, cross_scale=None, backward=False),
    # One state: the Gluon kernels' layouts then put 32 channels across a warp's lanes (Gluon infers other layouts
    # there, which a scan's operands must not mix).
    "drop-in fp32 one state": _drop_in_case(torch.float32, grouped=False, with_z=False, n_state=1),
}
NAMED_CASES = {**CASES, **ON_REQUEST}


def compile_all(arches: Sequence[int], cases: Sequence[str] = tuple(CASES)) -> List[KernelBuild]:
    builds: List[KernelBuild] = []
    with compile_instead_of_launch(arches, builds):
        for name in cases:
            NAMED_CASES[name]()
    return builds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, action="append", help="compute capability x10 (90 = H100/H200, "
                        "80 = A100); repeatable; default 90")
    parser.add_argument("--case", action="append", choices=sorted(NAMED_CASES),
                        help=f"default: every case but {', '.join(ON_REQUEST)}")
    parser.add_argument("--json", help="also write one JSON object per compiled kernel to this file")
    parser.add_argument("--num-warps", type=int, help="TileConfig.num_warps (default: the package's)")
    parser.add_argument("--backward-num-warps", type=int, help="TileConfig.backward_num_warps")
    parser.add_argument("--backward-maxnreg", type=int, help="TileConfig.backward_maxnreg (register cap)")
    parser.add_argument("--forward-maxnreg", type=int, help="TileConfig.forward_maxnreg")
    parser.add_argument("--tiles", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                        help="other TileConfig changes, values as Python literals, e.g. "
                        "forward_state_loop=False,backward_state_loop=False (the tile kernels) or state_unroll=16")
    args = parser.parse_args(argv)
    import triton

    from .tiles import tile_config

    changes = {k: v for k, v in (("num_warps", args.num_warps), ("backward_num_warps", args.backward_num_warps),
                                 ("backward_maxnreg", args.backward_maxnreg),
                                 ("forward_maxnreg", args.forward_maxnreg)) if v}
    for text in args.tiles:
        for pair in text.split(","):
            key, _, value = pair.partition("=")
            try:
                changes[key.strip()] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                parser.error(f"--tiles {pair!r}: expected KEY=VALUE with a Python literal value, e.g. state_unroll=16")
    with tile_config(**changes):
        builds = compile_all(args.arch or [90], args.case or tuple(CASES))
    print(f"{'kernel':24} {'arch':>4} {'warps':>5} {'regs':>4} {'spill B':>7} {'shared B':>8} {'atomics':>7} "
          f"{'exp/log':>7} {'shfl':>5} {'SASS':>6} {'s':>5}  constexprs")
    for b in builds:
        flags = " ".join(f"{k}={v}" for k, v in b.constexprs.items()
                         if k[0].isupper() and "[" not in k and k not in ("N", "R"))
        print(f"{b.kernel:24} {b.arch:>4} {b.num_warps:>5} {b.registers:>4} {b.spill_store_bytes:>7} "
              f"{b.shared_bytes:>8} {b.atomics:>7} {b.exp_log:>7} {b.shuffles:>5} {b.sass_instructions:>6} "
              f"{b.compile_s:>5}  {flags}")
    if args.json:
        with open(args.json, "w") as f:
            for b in builds:
                f.write(json.dumps(dict(asdict(b), triton=triton.__version__)) + "\n")
    spilled = [b for b in builds if b.spill_store_bytes]
    print(f"{len(builds)} kernels compiled; {len(spilled)} spill registers to local memory.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
