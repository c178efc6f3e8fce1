"""Build hooks; all metadata lives in pyproject.toml.

* the compiled interval index (``harness._intervals``);
* the lifeline program (``harness/qemu/_lifeline``, see :mod:`harness.qemu.lifeline`);
* the package data: the top-level ``device_models/``, ``configs/`` and ``guest_images/``
  are copied into the built package as ``harness/_data/<name>``, where
  :mod:`harness.packagedata` finds them in an installed wheel.
"""
import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("device_models", "configs", "guest_images")  # harness.packagedata.SHIPPED
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.o", "*.elf", ".*")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "harness" / "_data"
        for name in SHIPPED:
            source = HERE / name
            if not source.is_dir():
                raise SystemExit(f"setup.py: the data folder {source} is missing; "
                                 "build from a clone or from the sdist")
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(source, target / name, ignore=IGNORED)


class BuildExtWithLifeline(build_ext):
    """Also links the lifeline program next to lifeline.py: in the source tree for an
    editable install (``inplace``), in the build folder (so in the wheel) otherwise."""

    LIFELINE = Path("harness") / "qemu" / "_lifeline"

    def run(self):
        super().run()
        target = (HERE if self.inplace else Path(self.build_lib)) / self.LIFELINE
        target.parent.mkdir(parents=True, exist_ok=True)
        objects = self.compiler.compile([str(self.LIFELINE.with_suffix(".c"))], output_dir=self.build_temp,
                                        extra_postargs=["-O2", "-Wall", "-Wextra", "-Werror"])
        self.compiler.link_executable(objects, target.name, output_dir=str(target.parent))


setup(
    cmdclass={"build_py": BuildPyWithData, "build_ext": BuildExtWithLifeline},
    ext_modules=[
        Extension(
            "harness._intervals",
            sources=["harness/_intervals.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
        )
    ],
)
