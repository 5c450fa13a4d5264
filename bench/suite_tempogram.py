"""dlr-bench suite ``tempogram``: the autocorrelation tempogram per provider on 30 s clips at
8 kHz (240,000 samples), for the two presets of ``dlr_engine.Tempogram``:

- op ``tempogram_librosa``: ``Tempogram(preset="librosa", sr=8000)`` against
  ``librosa.feature.tempogram(y=clip, sr=8000)`` (its defaults: onset strength of a 2048-point,
  128-mel power-to-dB mel spectrogram at hop 512, 384-frame Hann autocorrelation windows, max
  norm): output ``(batch, 384, 469)``.
- op ``tempogram_dlr``: ``Tempogram(preset="dlr")`` (the DLR code's: onset strength at hop 128
  with reflect padding, 256-frame windows, every second frame) against librosa with the same
  parameters, ``librosa.feature.tempogram(onset_envelope=librosa.onset.onset_strength(y=clip,
  sr=8000, hop_length=128, pad_mode="reflect"), sr=8000, hop_length=128, win_length=256)[:,
  ::2]``: output ``(batch, 256, 938)``. librosa computes every frame and drops half.

Providers: ``librosa`` (the baseline; numpy, one clip at a time in a loop; on a GPU the call
includes the copy of the batch to the host) and ``engine`` (the batched module on the run's
device, its onset mel on the engine's automatic backend).

Work per call, the same count for every provider, from the two FFT-based stages (the arithmetic
of ``suite_mel``: real FFT ``2.5 N log2 N``, power 3 per bin, dense mel projection ``2 x 128 x
(N/2 + 1)``):

- onset mel, per onset frame with ``N = 2048``: 56,320 + 3,075 + 262,400 = 321,795 FLOP;
  onset frames ``1 + 240000 // hop``: 1,876 (dlr, hop 128), 469 (librosa, hop 512).
- autocorrelation, per kept tempogram frame: a real FFT and an inverse real FFT of
  ``n_pad`` points (the power of two >= ``2 x win_length - 1``) and the power in between:
  ``2 x 2.5 n_pad log2 n_pad + 3 (n_pad/2 + 1)`` = 23,811 FLOP (dlr, ``n_pad = 512``, 938
  frames), 52,739 FLOP (librosa, ``n_pad = 1024``, 469 frames).
- per clip: dlr 603.7 + 22.3 = **626.0 MFLOP**; librosa 150.9 + 24.7 = **175.7 MFLOP**. The
  dB step, spectral flux, windowing and normalisation (a few FLOP per value) are not counted.
- compulsory bytes (float32): signal read (960,000 B) and tempogram written (4 x 256 x 938 =
  960,512 B, dlr; 4 x 384 x 469 = 720,384 B, librosa): 1.92 MB (dlr), 1.68 MB (librosa) per
  clip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from dlr_engine.config import PAPER
from dlr_engine.spectral import Tempogram

from .harness import Call, Case, bench_device
from .suite_mel import (BYTES_PER_FLOAT, FFT_FLOP_PER_POINT_LOG2, POWER_FLOP_PER_BIN,
                        make_input, missing_library, stft_mel_flop_per_frame)

PRESETS: dict[str, dict[str, Any]] = {"librosa": dict(preset="librosa", sr=PAPER.sample_rate),
                                      "dlr": dict(preset="dlr")}
"""``Tempogram`` arguments per compared preset (op ``tempogram_<name>``)."""
CLIP_SECONDS = PAPER.segment_seconds
BATCHES = {("cpu", True): (1, 32), ("cpu", False): (1, 32),
           ("cuda", True): (1, 32), ("cuda", False): (1, 32)}
"""Batch sizes per (device, quick): issue 5's 1 and 32 clips (librosa needs ~1-2 s per call
at 32 on 2 cores, affordable even in quick runs)."""
BASELINE = "librosa"


def module(preset: str) -> Tempogram:
    return Tempogram(**PRESETS[preset])


def frame_counts(preset: str, samples: int) -> tuple[int, int]:
    """(onset frames, kept tempogram frames) of a clip of ``samples`` samples (centred)."""
    tempogram = module(preset)
    onset_frames = tempogram.onset_mel.frames(samples)
    return onset_frames, -(-onset_frames // tempogram.config.frame_hop)


def autocorrelation_flop_per_frame(win_length: int) -> float:
    """Nominal work of librosa's algorithm: real FFT + power + inverse real FFT of the window
    zero-padded to a power of two (see the module docstring). Every provider is credited with
    this same count (an "effective" GFLOP/s); the engine does less (2-3-5 FFT sizes, only the
    kept lags by matmul)."""
    n_pad = 1 << (2 * win_length - 2).bit_length()
    return (2 * FFT_FLOP_PER_POINT_LOG2 * n_pad * math.log2(n_pad)
            + POWER_FLOP_PER_BIN * (n_pad // 2 + 1))


def flop_per_call(preset: str, batch: int, samples: int) -> float:
    c = module(preset).config
    onset_frames, frames = frame_counts(preset, samples)
    return float(batch * (onset_frames * stft_mel_flop_per_frame(c.n_fft, c.n_mels)
                          + frames * autocorrelation_flop_per_frame(c.win_length)))


def bytes_per_call(preset: str, batch: int, samples: int) -> float:
    """Signal read and tempogram written, float32."""
    frames = frame_counts(preset, samples)[1]
    return float(batch * (samples + module(preset).config.win_length * frames) * BYTES_PER_FLOAT)


Op = Callable[[torch.Tensor], Any]
"""x (batch, samples) float32 on the run's device -> (batch, win_length, frames)."""


def _engine(preset: str, device: str) -> Op:
    return module(preset).to(device)


def _librosa(preset: str, device: str) -> Op:
    import librosa

    c = module(preset).config

    def one(y: np.ndarray) -> np.ndarray:
        onsets = librosa.onset.onset_strength(y=y, sr=c.sr, hop_length=c.hop_length,
                                              n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin,
                                              fmax=c.fmax, lag=c.lag, pad_mode=c.pad_mode)
        tempogram = librosa.feature.tempogram(onset_envelope=onsets, sr=c.sr,
                                              hop_length=c.hop_length, win_length=c.win_length,
                                              center=c.center, window=c.window, norm=c.norm)
        return tempogram[:, ::c.frame_hop]

    return lambda x: np.stack([one(y) for y in x.cpu().numpy()])


@dataclass(frozen=True)
class Provider:
    """An implementation of a preset's tempogram: ``build(preset, device)`` returns ``op(x)``."""

    name: str
    build: Callable[[str, str], Op]
    unavailable: Callable[[str], str | None] = lambda device: None


PROVIDERS = (Provider("librosa", _librosa, lambda device: missing_library("librosa")),
             Provider("engine", _engine))


def make_call(provider: Provider, preset: str, batch: int, samples: int, device: str) -> Call:
    op = provider.build(preset, device)
    x = make_input(batch, samples, device)
    return lambda: op(x)


def cases(quick: bool) -> list[Case]:
    """Every (preset, batch, provider) on this run's device, librosa first in each group."""
    device = bench_device()
    samples = round(PAPER.sample_rate * CLIP_SECONDS)
    result = []
    for preset in PRESETS:
        for batch in BATCHES[device, quick]:
            for provider in PROVIDERS:
                result.append(Case(
                    op=f"tempogram_{preset}", provider=provider.name, shape=f"{batch}x{samples}",
                    batch=batch,
                    make=lambda p=provider, s=preset, b=batch: make_call(p, s, b, samples, device),
                    flop=flop_per_call(preset, batch, samples),
                    bytes=bytes_per_call(preset, batch, samples),
                    baseline=provider.name == BASELINE, device=device,
                    skip_reason=provider.unavailable(device)))
    return result
