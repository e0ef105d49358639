"""Build mamba-ssm's CUDA selective-scan op (``selective_scan_cuda``) from its PyPI sdist for the local GPU only.

    python bench/build_mamba_ssm.py path/to/mamba_ssm-2.3.2.post1.tar.gz [build_dir]

The sdist's own setup.py compiles nine architectures and tries to download a prebuilt wheel (which fails offline);
this compiles only ``csrc/selective_scan`` for the visible GPU's architecture (about 2 minutes with 16 jobs on an
H200).  Get the sdist where there is network access with
``pip download --no-deps --no-binary :all: mamba_ssm==2.3.2.post1``.
Returns the importable module via :func:`load`.
"""

from __future__ import annotations

import os
import sys
import tarfile
from pathlib import Path


def load(sdist: str, build_dir: str = "/tmp/mamba_ssm_build"):
    import torch
    from torch.utils.cpp_extension import load as load_extension

    build = Path(build_dir)
    build.mkdir(parents=True, exist_ok=True)
    src = next(build.glob("mamba_ssm-*/csrc/selective_scan"), None)
    if src is None:
        with tarfile.open(sdist) as tar:
            tar.extractall(build)
        src = next(build.glob("mamba_ssm-*/csrc/selective_scan"))
    major, minor = torch.cuda.get_device_capability()
    os.environ["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 8))
    sources = [str(src / "selective_scan.cpp")] + sorted(str(p) for p in src.glob("*.cu"))
    return load_extension(
        name="selective_scan_cuda", sources=sources, build_directory=str(build), verbose=False,
        extra_cflags=["-O3", "-std=c++17"],
        extra_cuda_cflags=["-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
                           "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
                           "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
                           "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
                           "--ptxas-options=-v", "-lineinfo"],
        extra_include_paths=[str(src)],
    )


if __name__ == "__main__":
    module = load(*sys.argv[1:3])
    print("built", module.__file__)
