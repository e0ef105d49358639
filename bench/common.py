"""Shared helpers for the benchmarks: timing, result records, device names."""

from __future__ import annotations

import ast
import datetime as _dt
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

# BENCH_RESULTS redirects the result files (a GPU session writes them where they are fetched from).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 5) -> float:
    """Median wall time of ``fn`` in milliseconds (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    samples: List[float] = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def host_ms(fn: Callable[[], object], device: torch.device, repeats: int = 5, on_cpu: bool = False):
    """Median time the host spends in ``fn`` before it returns, the GPU idle at each start (ms).  CUDA work is queued,
    not waited for, so this is the launch overhead: Python, argument binding, allocations.  Until the first kernel is
    queued the GPU idles, and event timings count that.  On a CPU it is the run time: None unless ``on_cpu``
    (host_overhead.py, whose kernels launch nothing there)."""
    cuda = device.type == "cuda"
    if not cuda and not on_cpu:
        return None
    samples: List[float] = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    if cuda:
        torch.cuda.synchronize()
    return statistics.median(samples)


def graph_ms(fn: Callable[[], object], device: torch.device, repeats: int = 5):
    """Median time of ``fn`` replayed from a CUDA graph: its GPU work without the host's launch overhead (None on a
    CPU).  Warmed up on a side stream first (Triton compiles, caches fill), as capture requires; raises what capture
    raises (a host sync or an uncached host-to-device copy inside ``fn``)."""
    if device.type != "cuda":
        return None
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    try:
        return time_ms(graph.replay, device, warmup=1, repeats=repeats)
    finally:
        del graph


def graph_fields(fn: Callable[[], object], device: torch.device, repeats: int = 5) -> Dict:
    """``fwd_graph_ms`` (``graph_ms``) of a benchmark row; where capture fails, None and ``graph_error`` saying why:
    a forward that cannot be captured is a finding, not a failed benchmark."""
    try:
        return dict(fwd_graph_ms=graph_ms(fn, device, repeats=repeats))
    except Exception as err:
        return dict(fwd_graph_ms=None, graph_error=f"{type(err).__name__}: {err}"[:200])


def record(case: str, shape: Dict, dtype: torch.dtype, backend: str, device: torch.device, **values) -> Dict:
    row = dict(case=case, shape=shape, dtype=str(dtype).replace("torch.", ""), backend=backend,
               device=device_name(device), date=_dt.date.today().isoformat())
    row.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in values.items()})
    return row


def peak_mb(fn: Callable[[], object], device: torch.device):
    """Memory allocated by one call of ``fn`` at its peak, above what was allocated before it (MB; None on CPU).
    What ``fn`` returns is held until the peak is read, so an output counts."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    result = fn()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    del result
    return peak


def append_jsonl(row: Dict, name: str) -> Path:
    """Add one result row to ``RESULTS/name`` (rows are written as they are measured, so a run cut short keeps them)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    return path


def write_jsonl(rows: List[Dict], name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def parse_config(text: str) -> dict:
    """A tile configuration from the command line: ``default`` or ``key=value`` pairs joined by commas (changes to
    ``scan2d.triton.tiles.TileConfig``, plus ``deterministic``), values as Python literals."""
    if text == "default":
        return {}
    return {k: ast.literal_eval(v) for k, v in (pair.split("=") for pair in text.split(","))}
