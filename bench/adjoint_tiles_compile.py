"""The state-loop ``chunk_adjoint_kernel`` compiled for sm_90 on the CPU with its 16-step chunks in shorter tiles
(``TileConfig.adjoint_block_t``): registers, spills, programs per SM and the instructions a thread executes per
(step, channel, state) element, for the layer's backward, plain and with the model's channel gate (whose LayerNorm
gradient recomputes the chunk's outputs), float32 and bfloat16, and both cross-scale orders.

    python bench/adjoint_tiles_compile.py
    python bench/adjoint_tiles_compile.py --case "layer fp32 gated" --variant adjoint_block_t=4

Results: ``results/adjoint-tiles-compile-triton<version>.jsonl``, one row per build and variant, counted as
``forward_tiles_compile.py`` counts the forward kernels.  A projection from instruction counts and registers, not a
timing: ``gpu_session.sh`` times ``adjoint_block_t=None`` against the default on a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_tiles_compile import tiles_main  # noqa: E402

CASES = ["layer fp32", "layer bf16", "layer fp32 gated", "layer bf16 gated", "cross-scale aligned fp32 gated",
         "cross-scale sequential fp32"]
VARIANTS = [dict(adjoint_block_t=None), dict(adjoint_block_t=8), dict(adjoint_block_t=4)]


def main(argv=None) -> int:
    return tiles_main(argv, __doc__.splitlines()[0], CASES, VARIANTS, ("chunk_adjoint_kernel",),
                      "adjoint-tiles-compile")


if __name__ == "__main__":
    raise SystemExit(main())
