"""The CUDA kernels compile (sm_80, sm_90) through the project's CMake wherever nvcc exists.

They are launched only on a GPU; on this project's CPU machines this build is the check.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import pybind11
import pytest

from conftest import REPO


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no CUDA toolkit (nvcc) on PATH")
def test_cuda_module_builds_for_sm80_and_sm90(tmp_path):
    configure = ["cmake", "-S", str(REPO), "-B", str(tmp_path), "-DDLR_ENGINE_BUILD_CUDA=ON",
                 "-DDLR_ENGINE_CUDA_ARCHITECTURES=80;90", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
                 f"-DPython_EXECUTABLE={sys.executable}"]
    configured = subprocess.run(configure, capture_output=True, text=True)
    assert configured.returncode == 0, configured.stdout[-3000:] + configured.stderr[-3000:]
    build = subprocess.run(["cmake", "--build", str(tmp_path), "--target", "_dlr_cuda", "-j", "2"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    module = list(tmp_path.glob("_dlr_cuda*.so"))
    assert module, "no _dlr_cuda module was produced"
    kernel_object = next(tmp_path.rglob("dlr_cuda_kernel.cu.o")).read_bytes()
    for arch in (b"sm_80", b"sm_90"):  # the fat binary names each embedded target
        assert arch in kernel_object, arch
