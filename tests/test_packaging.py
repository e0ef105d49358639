"""The wheel holds what an installed package needs without the repository: both packages and the Hydra configs.

Built from a copy of the source (so the checkout gains no build folder) without build isolation (no network), then
unpacked, since the packages are pure Python, and imported from there ahead of the environment's editable install.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "mambacsr", "kernels", "conf")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The folder the wheel is unpacked into."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                             str(tmp / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("mambacsr-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp / "site")
    return tmp / "site"


def run_installed(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env,
                          cwd=site.parent)


def test_the_wheel_ships_every_config(installed):
    shipped = sorted(p.relative_to(installed / "mambacsr" / "conf").as_posix()
                     for p in (installed / "mambacsr" / "conf").rglob("*.yaml"))
    assert shipped == sorted(p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml"))
    assert (installed / "scan2d" / "triton" / "launch.py").is_file()
    assert not (installed / "conf").exists() and not (installed / "kernels").exists()  # no stray top-level names


def test_the_installed_package_reads_its_own_configs(installed):
    # Before the configs were shipped, an installed package looked for them beside site-packages and found none.
    probe = ("import json, mambacsr, scan2d, mambacsr.config as c; from mambacsr.config import load_config; "
             "cfg = load_config(['+experiment=dis_w8']); "
             "print(json.dumps([mambacsr.__file__, scan2d.__file__, str(c.CONFIG_DIR), cfg.name, "
             "c.available_experiments()]))")
    result = run_installed(installed, "-c", probe)
    assert result.returncode == 0, result.stderr[-3000:]
    package, kernels, config_dir, name, experiments = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(Path(p).is_relative_to(installed) for p in (package, kernels, config_dir))
    assert name == "dis_w8" and {"dis_w8", "mambair", "demo_cpu"} <= set(experiments)
    # The training entry point's Hydra app composes from the same folder.
    result = run_installed(installed, "-m", "mambacsr.train", "+experiment=demo_cpu", "--cfg", "job")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "_target_: mambacsr.models.MambaCSR" in result.stdout and "name: demo_cpu" in result.stdout
