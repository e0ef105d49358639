"""Print benchmark result files (JSON lines) as Markdown tables, the form bench/README.md quotes them in.

    python bench/summarize.py bench/results/scan-NVIDIA-H200-2026-11-27.jsonl [more files]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return str(value)


def _tiles(row) -> str:
    """The tile settings of a fused row that differ from the first fused row's (the sweep's baseline)."""
    tiles = row.get("tiles")
    if not tiles:
        return ""
    default = _tiles.baseline.setdefault(row["case"] + row["dtype"], tiles)
    changed = {k: v for k, v in tiles.items() if default.get(k) != v}
    return " ".join(f"{k}={v}" for k, v in changed.items()) or "default"


_tiles.baseline = {}


def table(rows) -> str:
    if rows and "kernels" in rows[0]:  # profile_kernels.py
        head = ["case", "dtype", "config", "phase", "wall ms", "GPU ms", "launches", "slowest kernel", "its ms"]
        body = [[r["case"] + (" gated" if r["shape"].get("gated") else ""), r["dtype"], r["config"], r["phase"],
                 _fmt(r["wall_ms"]), _fmt(r["gpu_ms"]), _fmt(r.get("launches")),
                 *(next(iter(r["kernels"].items()), ("-", None)))] for r in rows]
        body = [cells[:8] + [_fmt(cells[8])] for cells in body]
    elif rows and "host_us" in rows[0]:  # host_overhead.py
        head = ["call", "shape", "host us", "launches", "launch"]
        body = [[r["case"], "x".join(str(v) for v in r["shape"].values()), _fmt(r["host_us"]),
                 _fmt(sum(r["launches_per_call"].values()) if r.get("launches_per_call") else None), r["launch"]]
                for r in rows]
    elif rows and "rel_err_vs_drop_in" in rows[0]:  # one_pass_bench.py
        # Each prototype has its own layout keys (the one-pass kernel's states across warps, the segmented one's
        # steps per segment and segments): show those a row has.
        layout = ("states_across_warps", "steps_per_segment", "segments", "block_d", "num_warps")
        head = ["case", "backend", "layout", "programs", "fwd ms", "fwd x mamba-ssm", "rel. distance from drop-in"]
        body = [[r["case"], r["backend"], " ".join(f"{k}={r[k]}" for k in layout if k in r) or "-",
                 _fmt(r.get("programs")), _fmt(r["fwd_ms"]), _fmt(r.get("fwd_speedup_vs_mamba_ssm")),
                 _fmt(r["rel_err_vs_drop_in"])] for r in rows]
    elif rows and "fwd_peak_mb" in rows[0]:  # scan benchmark
        # Ratios to mamba-ssm's bare scan, or for the gated layer (--gated) to the gated MambaIR-style path.
        head = ["case", "dtype", "backend", "tiles", "fwd ms", "fwd host ms", "fwd graph ms", "fwd+bwd ms", "fwd x ref",
                "fwd graph x ref", "fwd+bwd x ref", "ref", "fwd peak / out", "fwd GB/s"]
        body = []
        for r in rows:
            ref = "mambair_path" if r["shape"].get("gated") else "mamba_ssm"
            body.append([r["case"] + (" gated" if r["shape"].get("gated") else ""), r["dtype"], r["backend"],
                         _tiles(r), _fmt(r["fwd_ms"]), _fmt(r.get("fwd_host_ms")), _fmt(r.get("fwd_graph_ms")),
                         _fmt(r["fwdbwd_ms"]), _fmt(r.get(f"fwd_speedup_vs_{ref}")),
                         _fmt(r.get(f"fwd_graph_speedup_vs_{ref}")), _fmt(r.get(f"fwdbwd_speedup_vs_{ref}")), ref,
                         _fmt(r.get("fwd_peak_over_output")), _fmt(r.get("fwd_gbps"))])
    else:  # model or CPU benchmark
        head = ["case", "backend", "fwd ms", "fwd host ms", "fwd graph ms", "fwd+bwd ms", "fwd+bwd host ms", "peak MB"]
        # model_bench rows of a non-default tile configuration carry its changes (model_bench --configs)
        body = [[r["case"], r["backend"] + "".join(f" {k}={v}" for k, v in r.get("tiles", {}).items()),
                 _fmt(r.get("fwd_ms")), _fmt(r.get("fwd_host_ms")), _fmt(r.get("fwd_graph_ms")),
                 _fmt(r.get("fwdbwd_ms")), _fmt(r.get("fwdbwd_host_ms")), _fmt(r.get("peak_mb"))] for r in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def main(paths) -> int:
    for path in paths:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        if not rows:
            continue
        print(f"\n{path} ({rows[0]['device']}, {rows[0]['date']})\n")
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
