"""The CUDA kernels build (sm_80, sm_90) through the README's install route wherever nvcc
exists: ``DLR_ENGINE_BUILD_CUDA=1`` makes setup.py declare and build ``_dlr_cuda`` beside
``_dlr_cpu``, into the folder setuptools installs from (in place for ``pip install -e .``).

They are launched only on a GPU; on this project's CPU machines this build is the check.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no CUDA toolkit (nvcc) on PATH")
def test_setup_installs_cuda_module_for_sm80_and_sm90(tmp_path):
    env = {**os.environ, "DLR_ENGINE_BUILD_CUDA": "1", "DLR_ENGINE_REQUIRE_EXTENSION": "1"}
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "tmp")],
        cwd=REPO, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    built = sorted(p.name.split(".")[0] for p in (tmp_path / "lib" / "dlr_engine").glob("*.so"))
    assert built == ["_dlr_cpu", "_dlr_cuda"]
    kernel_object = next((tmp_path / "tmp").rglob("dlr_cuda_kernel.cu.o")).read_bytes()
    for arch in (b"sm_80", b"sm_90"):  # the fat binary names each embedded target
        assert arch in kernel_object, arch


def test_setup_declares_cuda_module_only_when_asked():
    """Without the flag (and, here, without a CUDA torch) only ``_dlr_cpu`` is declared."""
    code = ("import setuptools, runpy, json; declared = []\n"
            "setuptools.setup = lambda **kw: declared.extend(e.name for e in kw['ext_modules'])\n"
            "runpy.run_path('setup.py'); print(json.dumps(declared))")
    declared = {}
    for flag in ("0", "1"):
        env = {**os.environ, "DLR_ENGINE_BUILD_CUDA": flag}
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                             capture_output=True, text=True, check=True).stdout
        declared[flag] = out.strip().splitlines()[-1]
    assert declared == {"0": '["dlr_engine._dlr_cpu"]',
                        "1": '["dlr_engine._dlr_cpu", "dlr_engine._dlr_cuda"]'}
