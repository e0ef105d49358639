"""Test setup.  Triton kernels run on the CPU through its interpreter unless a GPU is visible; the variable must be
set before any module that defines kernels is imported, hence here, before the tests import scan2d."""

import os

if "TRITON_INTERPRET" not in os.environ and not os.path.exists("/dev/nvidia0"):
    os.environ["TRITON_INTERPRET"] = "1"
# Tests that turn on torch.use_deterministic_algorithms may run a CUDA matmul: cuBLAS needs this to be repeatable.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# Interpreted kernels take seconds per example: no deadline, and a CI profile that bounds the example count.
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=15)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

if os.environ.get("TRITON_INTERPRET") == "1":
    import fast_interpreter  # noqa: E402
    import memory_bounds  # noqa: E402
    import poisoned_empty  # noqa: E402
    import program_order  # noqa: E402
    import program_races  # noqa: E402
    import reduce_order  # noqa: E402

    # Two costs inside Triton's interpreter were most of CI's time; these shortcuts keep its results bit for bit.
    fast_interpreter.install()
    # tl.reduce combines out of order, as a GPU may: a non-commutative combine fails here, not first on a GPU.
    reduce_order.install()
    # Every load, store and atomic inside the launch's tensors: an unmasked read past one would pass here and fault,
    # or read another allocation, on a GPU.
    memory_bounds.install()
    # A launch's programs run last to first: a kernel that relies on its programs running in order fails here.
    program_order.install()
    # A plain store to an element another program of the launch stores or loads: a race on a GPU.  After
    # memory_bounds, whose checked accesses it wraps and whose record of the launch's tensors names a conflict's.
    program_races.install()
    # torch.empty starts as NaN (-1 for integers): a kernel reading memory nobody wrote fails here, not with a GPU's
    # recycled blocks.
    poisoned_empty.install()

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(items):
    # The slow tests (the compile tests: minutes of one core each with a cold Triton cache) first, so that none
    # starts last and keeps one worker busy alone at the end of CI (the longest, 5 minutes, did).
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_runtest_logreport(report):
    # PYTEST_FAILURE_LOG=path: each failure's traceback appended as soon as it is known (under xdist, by the
    # controller alone). A GPU lease's tests end at a time limit, before pytest's summary, which then never prints.
    path = os.environ.get("PYTEST_FAILURE_LOG")
    if path and report.failed and "PYTEST_XDIST_WORKER" not in os.environ:
        with open(path, "a") as log:
            log.write(f"=== {report.nodeid} ({report.when})\n{report.longreprtext}\n")
