"""dlr-bench suite ``mel``: the dB mel spectrogram per provider on 30 s clips at 8 kHz
(240,000 samples), the DLR geometry (DESIGN §5): n_fft 1024, Hann window of 512 samples, hop
256, 128 mels, power 2.

Every provider computes the same thing, ``librosa.power_to_db(librosa.feature.melspectrogram(
y, sr=8000, n_fft=1024, win_length=512, hop_length=256, n_mels=128))``: librosa's defaults
otherwise (centred frames with zero padding, Slaney mel scale and norm, ``ref=1``,
``amin=1e-10``, ``top_db=80`` below each clip's maximum), i.e. ``MelSpectrogram(preset=
"librosa", ...)`` with the DLR geometry and ``to_db="power"`` (`MEL_ARGS`). The engine's "dlr"
preset adds only elementwise steps to this (``20 log10`` instead of ``10 log10``, reflect
padding, a per-clip z-score) and runs the same backends. Output ``(batch, 128, 938)``.

Providers: ``torch`` (the plain path, the baseline: ``torch.stft`` + matmul of
``dlr_engine.ops.melspec_reference``, then ``power_to_db``), ``cpu`` (the engine's CPU backend,
CPU only), ``triton`` (the engine's fused kernel, GPU only), ``librosa`` (numpy, one clip at a
time in a loop; on a GPU the call includes the copy of the batch to the host), ``nnaudio``
(``nnAudio.features.MelSpectrogram`` + ``power_to_db``, when nnAudio is installed).

Work per call, the same count for every provider (so GFLOP/s ratios equal time ratios), per
frame with ``N = n_fft = 1024``:

- FFT of the real, windowed frame: ``2.5 N log2 N = 25,600`` FLOP, the nominal count of a
  real-input FFT (half of the complex ``5 N log2 N``, as FFTW's benchFFT counts).
- power ``re^2 + im^2``: 3 FLOP x 513 bins = 1,539.
- mel projection as a dense matmul: ``2 x 128 x 513 = 131,328`` FLOP (the ``cpu`` backend
  multiplies only the 1,011 non-zero filter weights, ~1/65 of this).
- together 158,467 FLOP per frame; ``frames = 1 + 240000 // 256 = 938``: **148.6 MFLOP per
  clip**. The window multiply (1,024 per frame) and the dB step (~4 per output value) are not
  counted (< 1 %). A DFT computed as a matmul against a precomputed basis (the Triton kernel's
  form) executes ``2 x 2 x 512 x 513 = 1.05 MFLOP`` per frame over the window's 512 non-zero
  taps, ~41x the FFT count: its ``% peak`` understates its arithmetic rate by that factor.
- compulsory bytes (float32; the 263 KB filter matrix and the window ignored): signal read
  (4 x 240,000 = 960,000 B) and output written (4 x 128 x 938 = 480,256 B): **1.44 MB per
  clip**, ~103 FLOP/B.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from dlr_engine.config import PAPER
from dlr_engine.ops.melspec import not_supported_reasons
from dlr_engine.ops.melspec_reference import (melspectrogram_reference, padded_window,
                                              power_to_db)
from dlr_engine.spectral import MelSpectrogram

from .harness import Call, Case, bench_device

MEL_ARGS: dict[str, Any] = dict(preset="librosa", sr=PAPER.sample_rate, n_fft=1024,
                                win_length=512, hop_length=256, n_mels=128, power=2.0,
                                to_db="power")
"""The one configuration every provider computes (``MelSpectrogram`` arguments)."""
CLIP_SECONDS = PAPER.segment_seconds
BATCHES = {("cpu", True): (1, 32), ("cpu", False): (1, 32),
           ("cuda", True): (1, 32), ("cuda", False): (1, 32, 512)}
"""Batch sizes per (device, quick): issue 5's 1 and 32 clips (librosa needs ~0.4 s per call at
32, affordable even in quick runs); on a GPU also 512 clips, which fill an H100."""
HOST_MAX_BATCH = 32
"""Providers that loop over clips on the host (librosa) are skipped above this batch."""
BYTES_PER_FLOAT = 4
FFT_FLOP_PER_POINT_LOG2 = 2.5
"""Nominal FLOP of a real-input FFT of N points: ``2.5 N log2 N``."""
POWER_FLOP_PER_BIN = 3


def stft_mel_flop_per_frame(n_fft: int, n_mels: int) -> float:
    """Real FFT + power + dense mel projection of one frame (see the module docstring)."""
    bins = n_fft // 2 + 1
    return (FFT_FLOP_PER_POINT_LOG2 * n_fft * math.log2(n_fft) + POWER_FLOP_PER_BIN * bins
            + 2 * n_mels * bins)


def reference_module() -> MelSpectrogram:
    """The engine's module for `MEL_ARGS` (its config, window and filters define the op)."""
    return MelSpectrogram(**MEL_ARGS)


def frames_per_clip(samples: int) -> int:
    return reference_module().frames(samples)


def flop_per_call(batch: int, samples: int) -> float:
    c = reference_module().config
    return float(batch * frames_per_clip(samples) * stft_mel_flop_per_frame(c.n_fft, c.n_mels))


def bytes_per_call(batch: int, samples: int) -> float:
    """Signal read and dB mel written, float32."""
    n_mels = reference_module().config.n_mels
    return float(batch * (samples + n_mels * frames_per_clip(samples)) * BYTES_PER_FLOAT)


Op = Callable[[torch.Tensor], Any]
"""x (batch, samples) float32 on the run's device -> (batch, n_mels, frames), tensor or array."""


def _torch_plain(device: str) -> Op:
    module = reference_module().to(device)
    c = module.config
    window = padded_window(module.window, c.win_length, c.n_fft, dtype=torch.float32,
                           device=device)

    def op(x):
        mel = melspectrogram_reference(x, window, module.mel_fb, c.n_fft, c.hop_length, c.center,
                                       c.pad_mode, c.power)
        return power_to_db(mel, c.ref, module.amin, c.top_db)
    return op


def _engine(backend: str) -> Callable[[str], Op]:
    def build(device: str) -> Op:
        return MelSpectrogram(**MEL_ARGS, backend=backend).to(device)
    return build


def _librosa(device: str) -> Op:
    import librosa

    module = reference_module()
    c = module.config

    def one(y: np.ndarray) -> np.ndarray:
        mel = librosa.feature.melspectrogram(
            y=y, sr=c.sr, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length,
            window=c.window, center=c.center, pad_mode=c.pad_mode, power=c.power,
            n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax, htk=c.htk, norm=c.norm)
        return librosa.power_to_db(mel, ref=c.ref, amin=module.amin, top_db=c.top_db)

    return lambda x: np.stack([one(y) for y in x.cpu().numpy()])


def _nnaudio(device: str) -> Op:
    from nnAudio.features import MelSpectrogram as NnAudioMel

    module = reference_module()
    c = module.config
    layer = NnAudioMel(sr=c.sr, n_fft=c.n_fft, win_length=c.win_length, n_mels=c.n_mels,
                       hop_length=c.hop_length, window=c.window, center=c.center,
                       pad_mode=c.pad_mode, power=c.power, htk=c.htk, fmin=c.fmin, fmax=c.fmax,
                       norm=1, verbose=False).to(device)  # norm=1: Slaney (librosa < 0.7 name)
    return lambda x: power_to_db(layer(x), c.ref, module.amin, c.top_db)


def missing_library(name: str) -> str | None:
    """Why the library ``name`` cannot be imported here, or None."""
    try:
        __import__(name)
    except ImportError as exc:
        return f"{name} is not installed ({exc}); pip install {name} to add its row"
    return None


def _backend_reason(backend: str) -> Callable[[str], str | None]:
    def reason(device: str) -> str | None:
        return "; ".join(not_supported_reasons(backend, device, torch.float32)) or None
    return reason


@dataclass(frozen=True)
class Provider:
    """An implementation of `MEL_ARGS`: ``build(device)`` returns ``op(x)``."""

    name: str
    build: Callable[[str], Op]
    devices: tuple[str, ...]
    unavailable: Callable[[str], str | None] = lambda device: None
    """Why it cannot run on ``device`` here (library missing, backend not built), or None."""
    triton: bool = False
    host_loop: bool = False
    """Loops over clips on the host (skipped above `HOST_MAX_BATCH`)."""


PROVIDERS = (
    Provider("torch", _torch_plain, ("cpu", "cuda")),
    Provider("cpu", _engine("cpu"), ("cpu",), _backend_reason("cpu")),
    Provider("triton", _engine("triton"), ("cuda",), _backend_reason("triton"), triton=True),
    Provider("librosa", _librosa, ("cpu", "cuda"), lambda device: missing_library("librosa"),
             host_loop=True),
    Provider("nnaudio", _nnaudio, ("cpu", "cuda"), lambda device: missing_library("nnAudio")),
)
BASELINE = "torch"


def make_input(batch: int, samples: int, device: str, seed: int = 0) -> torch.Tensor:
    """(batch, samples) float32 Gaussian noise at 0.1 RMS (the mel's cost does not depend on
    the content)."""
    generator = torch.Generator().manual_seed(seed)
    return (0.1 * torch.randn(batch, samples, generator=generator)).to(device)


def make_call(provider: Provider, batch: int, samples: int, device: str) -> Call:
    op = provider.build(device)
    x = make_input(batch, samples, device)
    return lambda: op(x)


def skip_reason(provider: Provider, batch: int, device: str) -> str | None:
    if provider.host_loop and batch > HOST_MAX_BATCH:
        return f"loops over clips on the host; run only up to batch {HOST_MAX_BATCH}"
    return provider.unavailable(device)


def cases(quick: bool) -> list[Case]:
    """Every (batch, provider) on this run's device, the baseline first in each group."""
    device = bench_device()
    samples = round(PAPER.sample_rate * CLIP_SECONDS)
    result = []
    for batch in BATCHES[device, quick]:
        for provider in PROVIDERS:
            if device not in provider.devices:
                continue
            result.append(Case(
                op="mel_db", provider=provider.name, shape=f"{batch}x{samples}", batch=batch,
                make=lambda p=provider, b=batch: make_call(p, b, samples, device),
                flop=flop_per_call(batch, samples), bytes=bytes_per_call(batch, samples),
                baseline=provider.name == BASELINE, device=device, triton=provider.triton,
                skip_reason=skip_reason(provider, batch, device)))
    return result
