"""Compile dlr-engine's Triton DLR kernels (and the mel kernel) for Hopper (sm_90) without a GPU
and report what the compiler made: the tensor-core instructions in the PTX (``mma.sync`` / ``wgmma``), registers,
spill stack and local memory per thread (``cuobjdump -res-usage`` on the cubin, with the
cuobjdump Triton ships).

    python scripts/triton_sm90.py              # first autotune config of each kernel
    python scripts/triton_sm90.py --all-configs

Exits 1 when a tf32 / bfloat16 kernel has no tensor-core instruction, or a kernel spills
registers in a config checked (the first of its autotuning's, or each with ``--all-configs``).
Published geometry (32 channels, 16 taps); inputs float32.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # compile: before triton is imported

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from dlr_engine.kernels import dlr_fused, melspec  # noqa: E402
from dlr_engine.ops import dlr_triton  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
TENSOR_CORE = re.compile(r"\b(wgmma\.mma_async\.[\w.]+|mma\.sync\.aligned\.[\w.]+)")
KERNELS = {dlr_fused.dlr_forward_kernel: dlr_triton.TIME_CONFIGS,
           dlr_fused.dlr_weight_grad_kernel: dlr_triton.WEIGHT_GRAD_CONFIGS,
           dlr_fused.dlr_input_grad_kernel: dlr_triton.INPUT_GRAD_CONFIGS}


INT_POINTERS = ("dilations_ptr", "bands_ptr")
FLOAT_SCALARS = ("log_multiplier", "amin")
MEL_CONSTEXPRS = {"POWER": 2.0, "LOG": True, "BLOCK_T": melspec.BLOCK_T,
                  "BLOCK_F": melspec.BLOCK_F, "BLOCK_M": melspec.MEL_BLOCK}
"""The mel forward of the dlr preset (power 2, dB), as its launcher compiles it."""


def signature(kernel) -> dict[str, str]:
    """Pointers float32 (tables int32), scalars int32 (log scales float32)."""
    types = {}
    for name in kernel.arg_names:
        if name.isupper():
            types[name] = "constexpr"
        elif name.endswith("_ptr"):
            types[name] = "*i32" if name in INT_POINTERS else "*fp32"
        else:
            types[name] = "fp32" if name in FLOAT_SCALARS else "i32"
    return types


def compile_for_hopper(kernel, constexprs: dict, num_warps: int, num_stages: int, tool):
    """(tensor-core instructions in the PTX, resource usage) of ``kernel`` for sm_90."""
    compiled = triton.compile(
        ASTSource(fn=kernel, signature=signature(kernel), constexprs=constexprs),
        target=TARGET, options={"num_warps": num_warps, "num_stages": num_stages})
    found = sorted(set(TENSOR_CORE.findall(compiled.asm["ptx"])))
    return found, resource_usage(compiled.asm["cubin"], tool)


def describe(found: list[str], usage: dict[str, int]) -> str:
    return (f"{', '.join(found) or 'no tensor-core instruction (FMA)'}; "
            + " ".join(f"{k}={v}" for k, v in usage.items()))


def cuobjdump() -> str | None:
    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    return str(bundled) if bundled.exists() else shutil.which("cuobjdump")


def resource_usage(cubin: bytes, tool: str | None) -> dict[str, int]:
    """REG, STACK (spill stack bytes), LOCAL bytes per thread, from ``cuobjdump -res-usage``."""
    if tool is None:
        return {}
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        text = subprocess.run([tool, "-res-usage", file.name], capture_output=True,
                              text=True).stdout
    return {key: int(value) for key, value in re.findall(r"(REG|STACK|LOCAL):(\d+)", text)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all-configs", action="store_true",
                        help="every autotune config, not only the first of each kernel")
    args = parser.parse_args(argv)
    tool = cuobjdump()
    problems = []
    for kernel, configs in KERNELS.items():
        for config in configs if args.all_configs else configs[:1]:
            for precision in dlr_triton.PRECISIONS:
                constexprs = {"TAPS": 16, "BLOCK_C": 32, "BLOCK_K": 16, "EMULATED": False,
                              "PRECISION": dlr_triton.KERNEL_PRECISION[precision],
                              **config.kwargs}
                found, usage = compile_for_hopper(kernel, constexprs, config.num_warps,
                                                  config.num_stages, tool)
                name = kernel.fn.__name__
                tile = ", ".join(f"{k}={v}" for k, v in config.kwargs.items())
                print(f"{name:24s} {precision:8s} {tile}, {config.num_warps} warps: "
                      + describe(found, usage))
                if precision != "float32" and not found:
                    problems.append(f"{name} {precision}: no mma / wgmma")
                if usage.get("STACK", 0):
                    problems.append(f"{name} {precision} ({tile}): spills {usage['STACK']} B")
    found, usage = compile_for_hopper(melspec.mel_from_spectrum_kernel, MEL_CONSTEXPRS, 4, 3,
                                      tool)
    print(f"{'mel_from_spectrum_kernel':24s} float32  dlr preset, 4 warps: "
          + describe(found, usage))
    if usage.get("STACK", 0):
        problems.append(f"mel_from_spectrum_kernel: spills {usage['STACK']} B")
    if tool is None:
        print("registers and spills not shown: no cuobjdump found")
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
