"""Builds dlr-engine's compiled kernels with CMake (CMakeLists.txt).

- `_dlr_cpu` (fused C++ CPU kernels, OpenMP) is always attempted.
- `_dlr_cuda` is built when DLR_ENGINE_BUILD_CUDA=1, or automatically when nvcc is on PATH and
  the installed torch is a CUDA build (visible only with --no-build-isolation).
Each module is its own extension and CMake target, built into the folder setuptools installs
from (in place for `pip install -e .`).
A failed build leaves a pure-Python package that still imports (backend "torch"), unless
DLR_ENGINE_REQUIRE_EXTENSION=1, which turns the failure into an error (CI sets it).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _flag(name: str) -> bool | None:
    value = os.environ.get(name)
    return None if value is None else value.lower() in ("1", "on", "true", "yes")


def build_cuda() -> bool:
    forced = _flag("DLR_ENGINE_BUILD_CUDA")
    if forced is not None:
        return forced
    if shutil.which("nvcc") is None:
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.version.cuda is not None


class CMakeExtension(Extension):
    """A module built by the CMake target named like its last component (``_dlr_cpu``)."""

    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])
        self.target = name.rsplit(".", 1)[-1]


def extensions() -> list[CMakeExtension]:
    """The compiled modules this build installs: the CPU kernels, and the CUDA ones when
    `build_cuda()` says so."""
    names = ["dlr_engine._dlr_cpu"] + (["dlr_engine._dlr_cuda"] if build_cuda() else [])
    return [CMakeExtension(name) for name in names]


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        try:
            self._cmake(ext)
        except (OSError, subprocess.CalledProcessError) as exc:
            if _flag("DLR_ENGINE_REQUIRE_EXTENSION"):
                raise
            print(f"warning: dlr-engine's {ext.target} module was not built ({exc}); the package "
                  "falls back to the other backends", file=sys.stderr)

    def _cmake(self, ext: CMakeExtension) -> None:
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        cuda = build_cuda()
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir),
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DPython_EXECUTABLE={sys.executable}",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DDLR_ENGINE_BUILD_CUDA={'ON' if cuda else 'OFF'}",
        ]
        subprocess.run(configure, check=True)
        jobs = str(os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", ext.target, "-j", jobs],
                       check=True)


setup(
    # kernels/ (Triton source) and bench/ (dlr-bench) live at the top of the repository and
    # install as dlr_engine.kernels and dlr_engine.bench.
    packages=find_packages(include=["dlr_engine", "dlr_engine.*"]) + ["dlr_engine.kernels",
                                                                       "dlr_engine.bench"],
    package_dir={"dlr_engine.kernels": "kernels", "dlr_engine.bench": "bench"},
    ext_modules=extensions(),
    cmdclass={"build_ext": CMakeBuild},
)
