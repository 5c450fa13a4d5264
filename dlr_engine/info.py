"""``python -m dlr_engine.info``: versions, which backends were built, which can run now and
why the others cannot."""
from __future__ import annotations

import importlib
import platform
import sys

import torch

from . import __version__
from .ops.backends import BACKENDS, explain, select
from .ops.dlr_op import dlr_bf16_supported


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception:  # absent or broken: report, never fail the report
        return "not installed"


def report() -> str:
    lines = [f"dlr-engine {__version__}",
             f"python {platform.python_version()} on {platform.machine()} ({platform.system()})",
             f"torch {torch.__version__} (cuda {torch.version.cuda}, "
             f"cuda available: {torch.cuda.is_available()}, threads {torch.get_num_threads()})"]
    for module in ("triton", "numpy", "soundfile", "soxr", "pyarrow", "safetensors", "librosa"):
        lines.append(f"{module} {_version(module)}")
    lines.append("")
    lines.append("DLR backends (cpu float32 input / cuda float32 input):")
    for name, backend in BACKENDS.items():
        built = backend.load_error()
        status = "loaded" if built is None else f"not loaded: {built}"
        if name == "cpu" and built is None:
            launcher = backend.launcher()
            status += (f" (running {launcher.active_isa()} kernels; this CPU runs "
                       f"{', '.join(launcher.supported_isas())}; bfloat16 precision: "
                       f"{'yes' if dlr_bf16_supported() else 'no, needs AVX512_BF16'})")
        lines.append(f"  {name:7s} {status}")
        for device in ("cpu", "cuda"):
            reasons = explain(device, torch.float32)[name]
            lines.append(f"    on {device:4s}: {'usable' if not reasons else '; '.join(reasons)}")
    for device in ("cpu", "cuda"):
        try:
            chosen = select(device, torch.float32)
        except Exception as exc:
            chosen = f"none ({type(exc).__name__})"
        lines.append(f"automatic choice on {device}: {chosen}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
