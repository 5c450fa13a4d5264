"""Backend registry of the fused DLR op, with dispatch that explains itself.

Each backend answers ``not_supported_reasons(x)``; the automatic choice takes the first with
none, ``DLR_ENGINE_BACKEND=torch|cpu|triton|cuda`` (or ``backend=``) forces one and raises,
listing every backend and why it declined, when the forced one cannot run.
"""
from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import torch

BACKEND_ENV = "DLR_ENGINE_BACKEND"


@dataclass(frozen=True)
class Backend:
    """A provider of ``dlr_forward`` / ``dlr_backward`` from a launcher module."""

    name: str
    module: str
    devices: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...]
    extra_reasons: Callable[[str | None], list[str]] = lambda device_type: []
    precisions: tuple[str, ...] = ("float32",)
    """Precisions of the products it offers (``dlr(..., precision=)``)."""

    def launcher(self) -> ModuleType:
        return importlib.import_module(self.module, __package__)

    def load_error(self) -> str | None:
        """Why the launcher cannot be imported, or None (tried once per process: a failed
        import is not cached by Python and costs a search of sys.path on every dispatch)."""
        return _load_error(self.module)

    def not_supported_reasons(self, device_type: str | None = None,
                              dtype: torch.dtype | None = None,
                              precision: str = "float32") -> list[str]:
        """Why this backend cannot run an input on ``device_type`` of ``dtype`` (None: any) in
        ``precision``."""
        reasons = []
        error = self.load_error()
        if error:
            reasons.append(f"not available ({error})")
        if device_type is not None and device_type not in self.devices:
            reasons.append(f"runs on {'/'.join(self.devices)}, input is on {device_type}")
        elif device_type == "cuda" and not torch.cuda.is_available():
            reasons.append("no CUDA device (torch.cuda.is_available() is False)")
        if dtype is not None and dtype not in self.dtypes:
            names = ", ".join(str(d).removeprefix("torch.") for d in self.dtypes)
            reasons.append(f"supports {names}, input is {str(dtype).removeprefix('torch.')}")
        if precision not in self.precisions:
            reasons.append(f"offers precision {'/'.join(self.precisions)}, not {precision}")
        return reasons + self.extra_reasons(device_type)


@functools.lru_cache(maxsize=None)
def _load_error(module: str) -> str | None:
    try:
        importlib.import_module(module, __package__)
    except Exception as exc:  # any import failure makes the backend unavailable
        return f"{type(exc).__name__}: {exc}"
    return None


def _triton_device_reasons(device_type: str | None) -> list[str]:
    if device_type != "cpu":
        return []
    try:
        from .dlr_triton import INTERPRETED
    except Exception:  # the launcher's own import error is reported by load_error
        return []
    if not INTERPRETED:
        return ["CPU tensors need Triton's interpreter (TRITON_INTERPRET=1 before importing triton)"]
    return []


_FLOATS = (torch.float32, torch.bfloat16, torch.float16)
PRECISIONS = ("float32", "tf32", "bfloat16")
"""Precisions of the DLR op's products (sums are float32): ``float32`` on every backend; ``tf32``
and ``bfloat16`` (x and weights rounded to nearest even, tensor cores) on the triton backend;
``bfloat16`` on CPU tensors is the AVX512_BF16 forward ``dlr_op.dlr_bf16``."""

BACKENDS: dict[str, Backend] = {
    "cuda": Backend("cuda", ".dlr_cuda", ("cuda",), _FLOATS),
    "triton": Backend("triton", ".dlr_triton", ("cuda", "cpu"), _FLOATS,
                      extra_reasons=_triton_device_reasons,
                      precisions=PRECISIONS),
    "cpu": Backend("cpu", ".dlr_cpu", ("cpu",), _FLOATS),
    "torch": Backend("torch", ".dlr_reference", ("cpu", "cuda", "mps", "xpu", "meta"),
                     (torch.float32, torch.float64, torch.bfloat16, torch.float16)),
}
AUTO_ORDER = ("cuda", "triton", "cpu", "torch")
"""Automatic preference: compiled CUDA, then Triton (GPU only unless interpreted), fused CPU."""


class BackendUnavailable(RuntimeError):
    pass


def explain(device_type: str | None = None, dtype: torch.dtype | None = None,
            precision: str = "float32") -> dict[str, list[str]]:
    """Backend name -> reasons it declines such an input (empty list: usable)."""
    return {name: b.not_supported_reasons(device_type, dtype, precision)
            for name, b in BACKENDS.items()}


@torch.compiler.assume_constant_result
def select(device_type: str, dtype: torch.dtype, requested: str | None = None,
           precision: str = "float32") -> str:
    """Backend for an input on ``device_type`` of ``dtype`` in ``precision``: ``requested``,
    else $DLR_ENGINE_BACKEND, else the first usable of ``AUTO_ORDER``.

    A constant for ``torch.compile``: the choice is made once, at trace time.
    """
    requested = requested or os.environ.get(BACKEND_ENV) or None
    if requested is not None:
        if requested not in BACKENDS:
            raise BackendUnavailable(
                f"unknown DLR backend {requested!r}; choose one of {', '.join(BACKENDS)}")
        if not BACKENDS[requested].not_supported_reasons(device_type, dtype, precision):
            return requested
    else:
        for name in AUTO_ORDER:
            if name == "triton" and device_type == "cpu":
                continue  # the interpreter is for tests, never an automatic choice
            if not BACKENDS[name].not_supported_reasons(device_type, dtype, precision):
                return name
    lines = [f"  {name}: {'; '.join(reasons) or 'usable'}"
             for name, reasons in explain(device_type, dtype, precision).items()]
    wanted = f"backend {requested!r}" if requested else "any backend"
    raise BackendUnavailable(f"no DLR backend can run {wanted} for this input "
                             f"({dtype} on {device_type}, precision {precision}):\n"
                             + "\n".join(lines))
