"""What pyproject.toml cannot say: the wheel's packages.

- ``scan2d``, the kernel package, lives in ``kernels/scan2d`` (PyPI's ``kernels`` distribution owns the top-level name
  ``kernels``);
- the Hydra configs in ``conf/`` ship inside the wheel as ``mambacsr.conf``, so that an installed package (``pip install
  .``, or from git) trains, evaluates and restores without the repository; a checkout reads ``conf/`` itself
  (``mambacsr.config.CONFIG_DIR``).
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
CONF_DIRS = sorted({p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "conf").rglob("*.yaml")})
CONF_PACKAGES = ["mambacsr." + d.replace("/", ".") for d in CONF_DIRS]

setup(
    packages=find_packages(str(ROOT), include=["mambacsr", "mambacsr.*"])
    + find_packages(str(ROOT / "kernels"), include=["scan2d", "scan2d.*"]) + CONF_PACKAGES,
    package_dir={"scan2d": "kernels/scan2d", "mambacsr.conf": "conf"},
    package_data={package: ["*.yaml"] for package in CONF_PACKAGES},
)
