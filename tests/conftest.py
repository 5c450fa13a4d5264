"""Shared fixtures: NaN-poisoned allocations, each CPU kernel instruction set, paths of
../shared."""
from __future__ import annotations

import os

# Triton's interpreter runs the kernels on CPU tensors; it must be on before triton is imported.
# Automatic dispatch never picks Triton for CPU tensors, so this affects only explicit requests.
os.environ.setdefault("TRITON_INTERPRET", "1")
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


SHARED_ENV = "DLR_ENGINE_SHARED"
REQUIRE_SHARED_ENV = "DLR_ENGINE_REQUIRE_SHARED"
"""Set to 1 (as ``.ci/run`` does), a test whose ``shared/`` files are missing fails instead of
skipping."""


def shared_dir() -> Path:
    """The read-only ``shared/`` folder beside the repository (override: DLR_ENGINE_SHARED)."""
    return Path(os.environ.get(SHARED_ENV, REPO.parent / "shared"))


def require_shared(relative: str, files: tuple[str, ...], what: str) -> Path:
    """``shared_dir() / relative`` when it holds ``files``; otherwise skip the test with the
    reason and how to provide them (fail instead when $DLR_ENGINE_REQUIRE_SHARED is 1)."""
    path = shared_dir() / relative
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        message = (f"needs {what}: {', '.join(missing)} not found in {path}; set {SHARED_ENV} "
                   f"to the folder holding {relative} (README: 'The published DLR(13) model')")
        if os.environ.get(REQUIRE_SHARED_ENV) == "1":
            pytest.fail(f"{message} [{REQUIRE_SHARED_ENV}=1]", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture
def nan_poison(monkeypatch):
    """Make ``torch.empty`` in the given modules return NaN-filled float buffers, so a kernel
    that leaves part of its output unwritten fails the comparison."""

    def poison(*modules):
        real_empty = torch.empty

        def empty(*args, **kwargs):
            t = real_empty(*args, **kwargs)
            return t.fill_(float("nan")) if t.is_floating_point() else t

        for module in modules:
            monkeypatch.setattr(module.torch, "empty", empty, raising=True)

    return poison


def _cpu_isas() -> list[str]:
    try:
        from dlr_engine.ops import dlr_cpu
    except ImportError:  # extension not built: tests of the C++ kernels skip themselves
        return []
    return dlr_cpu.supported_isas()


@pytest.fixture(params=_cpu_isas())
def cpu_isa(request):
    """Each instruction-set variant of the CPU kernels this machine can run, restored after."""
    from dlr_engine.ops import dlr_cpu
    previous = dlr_cpu.active_isa()
    dlr_cpu.set_isa(request.param)
    yield request.param
    dlr_cpu.set_isa(previous)
