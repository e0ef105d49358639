#!/usr/bin/env bash
# Installs mambacsr, its kernel package scan2d and the test tools into ./.venv (or the active virtual environment).
# CPU machines get the CPU build of torch through constraints/cpu.txt (an open range would pull a CUDA build and
# several GB of NVIDIA packages); a machine with an NVIDIA GPU, or one that already has torch, keeps its torch.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${VIRTUAL_ENV:-}" ]; then
    python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
if [ -e /dev/nvidia0 ] || python -c "import torch" 2>/dev/null; then
    python -m pip install -e ".[dev]"
else
    python -m pip install -c constraints/cpu.txt -e ".[dev]"
fi
if [ ! -e /dev/nvidia0 ]; then
    # The oldest Triton the package supports (torch 2.11's, and the GPU machines' image's), in a folder of its own:
    # the compile tests build the default kernels with it too (tests/test_triton_compile.py).
    oldest="$(python -c 'import sys; print(sys.prefix)')/triton-3.6"
    [ -d "$oldest/triton" ] || python -m pip install --no-deps --target "$oldest" "triton==3.6.0"
fi
python -c "import scan2d, mambacsr, torch, triton; print('installed: torch', torch.__version__, '/ triton', triton.__version__)"
