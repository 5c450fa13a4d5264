"""dlr-bench suite ``inference``: the forward of each model family ``extract`` runs, the eager
model against its inference form (``dlr_engine.runtime.inference_form``: batch norm folded, conv
+ bias + activation + max-pool of each block fused in one C++ pass), in the same run.

Rows per family (the ``op`` column, e.g. ``fwd default``), input ``batch x 30 s`` of white noise
at the model's own sample rate (``shape``; batch 8, quick: 2), eval, no autograd:

- ``eager`` (the baseline): the model as ``load_model`` / ``models.get`` returns it;
- ``inference``: its inference form, float32 (outputs within 1e-5 of eager, tests/test_runtime.py);
- ``inference_bf16``: the same with ``precision="bfloat16"`` (the DLR front-end and every conv
  block after the first in bfloat16, float32 sums; CPUs with AVX512_BF16).

Models: ``default`` (the shipped ``dlr_source`` weights), ``dlr13`` (the published checkpoint,
when ``shared/reference/dlr13`` is there), and the registry families with random weights
(``fcn`` on DLR and on mel+DLR, ``crnn``, ``pooled`` (the DLR alone: already the fused op),
``samplecnn`` (a 1D stack), ``pons`` and ``mcclstm`` (single-conv branches on a mel), and
``ncms``, which has no conv stack: its form computes the NCMS by ``ops.ncms.ncms_fused``).

FLOP count (``flop``, the same for every provider of a model): the eager forward's convolutions
and matrix products as ``torch.utils.flop_counter.FlopCounterMode`` counts them, plus 2 x taps x
channels per input sample of each DLR front-end (4096 FLOP per sample for the paper's geometry;
a custom op the counter does not see); spectral front-ends (FFT, mel) are not counted.
``pct_of_peak`` relates the achieved rate to the matmul peak measured in the same run.

``python -m dlr_engine.bench.suite_inference`` prints one thread's CPU time per forward instead
(``cpu_time_table``): on a shared machine wall times move with the load, CPU times hardly do.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlr_engine.models import get, load_model
from dlr_engine.nn import DLR
from dlr_engine.ops.dlr_op import precision_unavailable
from dlr_engine.runtime import inference_form

from .harness import Call, Case, bench_device

SEGMENT_SECONDS = 30.0
BATCH = {True: 2, False: 8}
"""Batch size per quick flag."""
SHARED_ENV = "DLR_ENGINE_SHARED"
PUBLISHED = Path("reference") / "dlr13" / "model-523"


def _published_path() -> Path:
    shared = Path(os.environ.get(SHARED_ENV, Path(__file__).resolve().parents[1].parent / "shared"))
    return shared / PUBLISHED


MODELS: dict[str, Callable[[], nn.Module]] = {
    "default": lambda: load_model("default"),
    "dlr13": lambda: load_model(_published_path()),
    "fcn dlr": lambda: get("fcn", input="dlr"),
    "fcn mel+dlr": lambda: get("fcn", input="mel+dlr"),
    "crnn": lambda: get("crnn"),
    "pooled": lambda: get("pooled"),
    "samplecnn": lambda: get("samplecnn"),
    "pons": lambda: get("pons"),
    "mcclstm": lambda: get("mcclstm"),
    "ncms": lambda: get("ncms"),
}
"""Row name -> builder of the eager model (random weights for the registry families)."""
MODEL_SEED = 0
"""torch's seed before each build: every provider of a row gets the same random weights."""


def build(name: str) -> nn.Module:
    torch.manual_seed(MODEL_SEED)
    return MODELS[name]().eval()


def _missing(name: str) -> str | None:
    if name == "dlr13" and not Path(f"{_published_path()}.index").is_file():
        return f"the published checkpoint {_published_path()} is not there (set {SHARED_ENV})"
    return None


def _input(model: nn.Module, batch: int) -> torch.Tensor:
    rate = int(getattr(model, "sample_rate", 8000))
    return torch.randn(batch, round(SEGMENT_SECONDS * rate), generator=torch.Generator().manual_seed(0))


def count_flop(model: nn.Module, x: torch.Tensor) -> float:
    """Convolution and matmul FLOP of one eager forward, plus the DLR front-ends' own."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    dlr_flop = sum(2 * m.config.kernel_size * m.config.out_channels * x.shape[0] * x.shape[1]
                   for m in model.modules() if isinstance(m, DLR))
    return float(counter.get_total_flops() + dlr_flop)


def _call(model: nn.Module, x: torch.Tensor) -> Call:
    def call() -> object:
        with torch.inference_mode():
            return model(x)
    return call


def _make(name: str, provider: str, batch: int, device: str) -> Callable[[], Call]:
    def make() -> Call:
        model = build(name).to(device)
        x = _input(model, batch).to(device)
        if provider != "eager":
            model = inference_form(model, "bfloat16" if provider == "inference_bf16" else "float32")
        return _call(model, x)
    return make


def cases(quick: bool) -> list[Case]:
    device, batch = bench_device(), BATCH[quick]
    bf16_reason = precision_unavailable("bfloat16", device)
    if device != "cpu":
        bf16_reason = "the inference form's bfloat16 blocks are CPU kernels (AVX512_BF16)"
    out = []
    for name in MODELS:
        missing = _missing(name)
        flop = None
        if missing is None:
            model = build(name)
            x = _input(model, batch)
            flop = count_flop(model, x)
            shape = f"{batch}x{x.shape[1]}"
        else:
            shape = f"{batch}x30s"
        for provider in ("eager", "inference", "inference_bf16"):
            reason = missing or (bf16_reason if provider == "inference_bf16" else None)
            out.append(Case(f"fwd {name}", provider, shape, batch,
                            None if reason else _make(name, provider, batch, device), flop=flop,
                            baseline=provider == "eager", device=device, skip_reason=reason))
    return out


def cpu_time_table(batch: int = BATCH[False], repeats: int = 3) -> str:
    """Markdown table of one thread's CPU time per forward (``time.thread_time``, the best of
    ``repeats``), eager against the inference forms, per model: unlike wall time it hardly
    moves with the load of a shared machine. ``python -m dlr_engine.bench.suite_inference``."""
    import time

    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def cpu_ms(call: Call) -> float:
        call()
        best = float("inf")
        for _ in range(repeats):
            start = time.thread_time()
            call()
            best = min(best, time.thread_time() - start)
        return best * 1e3

    lines = ["| model | eager ms | inference ms | speed-up | inference_bf16 ms | speed-up |",
             "|---|---|---|---|---|---|"]
    try:
        for name in MODELS:
            if _missing(name):
                continue
            model = build(name)
            x = _input(model, batch)
            form = inference_form(model, "float32")
            eager_ms, form_ms = cpu_ms(_call(model, x)), cpu_ms(_call(form, x))
            row = f"| {name} | {eager_ms:.0f} | {form_ms:.0f} | {eager_ms / form_ms:.2f}x |"
            if precision_unavailable("bfloat16", "cpu") is None:
                form.precision = "bfloat16"
                bf16_ms = cpu_ms(_call(form, x))
                row += f" {bf16_ms:.0f} | {eager_ms / bf16_ms:.2f}x |"
            else:
                row += " - | - |"
            lines.append(row)
    finally:
        torch.set_num_threads(threads)
    return "\n".join(lines)


if __name__ == "__main__":
    print(cpu_time_table())
