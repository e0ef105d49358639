"""CPU benchmark of the PyTorch path: the scan layer and one RLMB, time and peak memory.

    python bench/cpu_bench.py                # writes bench/results/cpu-torch-path.jsonl
    python bench/cpu_bench.py --inference    # writes bench/results/cpu-inference.jsonl

Cases (the foundation issue's list):
  - the directional scan (two directions, window 8) at batch 1, 360 channels, state 16, 64x64 tokens,
    forward and forward+backward;
  - one RLMB (dim 180, window 8) forward+backward at batch 1 and 4, 64x64.
Peak memory is the growth of the process's peak resident set while running one case, each case in a fresh
process, so nothing another case allocated counts.  Goal: RLMB forward+backward at batch 4 under 2 GB.
``--inference``: the dis_w8 network restoring one 64x64 and one 128x128 LR image (no tiles), what a user without a
GPU waits for; one timed run after one warm-up each.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record, time_ms, write_jsonl  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str, batch: int) -> dict:
    from mambacsr.models import RLMB, block_directions
    from scan2d import directional_scan

    torch.manual_seed(0)
    device = torch.device("cpu")
    H = W = 64
    if case == "directional_scan":
        K, D, N, R = 2, 360, 16, 12
        u = torch.randn(batch, H * W, D, requires_grad=True)
        xdbl = torch.randn(batch, H * W, K, R + 2 * N, requires_grad=True)
        params = [torch.randn(K, D, R) * 0.3, torch.randn(K, D) - 2, -torch.rand(K, D, N) * 16, torch.ones(K, D)]
        params = [p.requires_grad_() for p in params]
        dirs = block_directions(0)

        def fwd():
            with torch.no_grad():
                return directional_scan(u, xdbl, *params, dirs, H, W, backend="torch")

        def fwdbwd():
            directional_scan(u, xdbl, *params, dirs, H, W, backend="torch").sum().backward()

        shape = dict(batch=batch, dim=D, state=N, height=H, width=W, directions=K)
    else:
        block = RLMB(180, block_directions(0), backend="torch")
        x = torch.randn(batch, H, W, 180, requires_grad=True)

        def fwd():
            with torch.no_grad():
                return block(x)

        def fwdbwd():
            block(x).sum().backward()

        shape = dict(batch=batch, dim=180, inner=360, state=16, height=H, width=W, directions=2)
    before = _peak_rss_mb()
    fwd_ms = time_ms(fwd, device, warmup=1, repeats=3)
    fwdbwd_ms = time_ms(fwdbwd, device, warmup=1, repeats=3)
    return record(case, shape, torch.float32, "torch", device, fwd_ms=fwd_ms, fwdbwd_ms=fwdbwd_ms,
                  peak_mb=_peak_rss_mb() - before)


def run_inference(lr_size: int) -> dict:
    from mambacsr.config import build_model, load_config

    torch.manual_seed(0)
    device = torch.device("cpu")
    model = build_model(load_config(["+experiment=dis_w8", "model.scan_backend=torch"])).eval()
    x = torch.rand(1, 3, lr_size, lr_size)

    def fwd():
        with torch.no_grad():
            return model(x)

    before = _peak_rss_mb()
    fwd_ms = time_ms(fwd, device, warmup=1, repeats=1)
    shape = dict(experiment="dis_w8", batch=1, lr=lr_size, hr=4 * lr_size)
    return record("dis_w8_inference", shape, torch.float32, "torch", device, fwd_ms=fwd_ms, fwdbwd_ms=None,
                  peak_mb=_peak_rss_mb() - before)


def main() -> None:
    if len(sys.argv) == 3:  # child process: one case
        if sys.argv[1] == "dis_w8_inference":
            print(json.dumps(run_inference(int(sys.argv[2]))))
        else:
            print(json.dumps(run_case(sys.argv[1], int(sys.argv[2]))))
        return
    inference = sys.argv[1:] == ["--inference"]
    cases = [("dis_w8_inference", 64), ("dis_w8_inference", 128)] if inference else \
        [("directional_scan", 1), ("rlmb", 1), ("rlmb", 4)]
    rows = []
    for case, batch in cases:
        out = subprocess.run([sys.executable, __file__, case, str(batch)], check=True, capture_output=True, text=True,
                             env=dict(os.environ))
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(row, flush=True)
        rows.append(row)
    print("wrote", write_jsonl(rows, "cpu-inference.jsonl" if inference else "cpu-torch-path.jsonl"))


if __name__ == "__main__":
    main()
