"""Drop-in spectral front-ends: ``MelSpectrogram`` and ``Tempogram``, with presets.

Both take ``(batch, samples)`` (any leading dims) and keep librosa's argument names and
semantics (parity tested against librosa). Presets fill every argument not given:

- mel ``"librosa"``: ``librosa.feature.melspectrogram`` defaults of librosa 0.10+ (22.05 kHz,
  n_fft 2048, hop 512 whatever n_fft is, zero padding, Slaney mel with Slaney norm, power 2;
  ``hop_length=None`` gives ``librosa.stft``'s ``win_length // 4``).
- mel ``"torchaudio"``: ``torchaudio.transforms.MelSpectrogram`` defaults (16 kHz, n_fft 400,
  hop ``win_length // 2``, reflect padding, HTK mel, no norm). ``MelSpectrogram`` also takes
  torchaudio's argument names (``sample_rate``, ``f_min``, ``f_max``, ``mel_scale``,
  ``window_fn``, ...), with any preset.
- mel ``"dlr"``: the DLR authors' log-mel (DESIGN §5): 8 kHz, n_fft 1024, window 512, hop 256,
  128 mels, power 2, then ``librosa.amplitude_to_db`` applied to that power mel (their code's
  choice: ``20 log10``, amin 1e-5, top_db 80), then a per-clip z-score. Framing pads by
  reflection, the default of the librosa (< 0.10) their 2017 code ran on.
- tempogram ``"librosa"``: ``librosa.feature.tempogram`` with its ``onset_strength`` defaults.
- tempogram ``"dlr"``: the DLR code's: 8 kHz, onset strength at hop 128, autocorrelation over a
  256-frame Hann window, every second frame (hop 256 samples, aligned with the mel frames),
  linear-ramp centre padding, max-normalised per frame; reflect-padded STFT as for the mel.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from .config import PAPER
from .inputs import audio_tensor
from .ops.melspec import cpu_mel_plan, melspectrogram
from .ops.melspec_reference import (finish_db, frame_count, get_window, mel_filterbank,
                                    zscore_per_clip)
from .ops.tempogram import onset_strength_from_db, tempogram_from_onsets

DB_SCALES = {"power": (10.0, 1e-10), "amplitude": (20.0, 1e-5)}
"""``to_db`` -> (multiplier of log10, default amin): ``librosa.power_to_db`` /
``librosa.amplitude_to_db``."""


class _FromPreset:
    """Default of every module argument: take the value from the preset."""

    def __repr__(self) -> str:
        return "<from preset>"


FROM_PRESET: Any = _FromPreset()


@dataclass(frozen=True)
class MelConfig:
    """Arguments of ``MelSpectrogram`` (librosa's names). ``win_length`` None: ``n_fft``;
    ``hop_length`` None: ``win_length // hop_divisor``; ``fmax`` None: ``sr / 2``; ``to_db``:
    False, True / "power" (``power_to_db``) or "amplitude" (``amplitude_to_db``); ``amin`` None:
    that scale's librosa default; ``normalize``: None or "zscore" (per clip)."""

    sr: float = 22050
    n_fft: int = 2048
    win_length: int | None = None
    hop_length: int | None = None
    window: str | tuple = "hann"
    center: bool = True
    pad_mode: str = "constant"
    power: float = 2.0
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    norm: str | float | None = "slaney"
    to_db: bool | str = False
    ref: float | str = 1.0
    amin: float | None = None
    top_db: float | None = 80.0
    normalize: str | None = None
    hop_divisor: int = 4


MEL_PRESETS = {
    "librosa": MelConfig(hop_length=512),
    "torchaudio": MelConfig(sr=16000, n_fft=400, pad_mode="reflect", htk=True, norm=None,
                            hop_divisor=2),
    "dlr": MelConfig(sr=PAPER.sample_rate, n_fft=1024, win_length=512, hop_length=256,
                     pad_mode="reflect", to_db="amplitude", normalize="zscore"),
}


@dataclass(frozen=True)
class TempogramConfig:
    """Arguments of ``Tempogram``: ``librosa.feature.tempogram`` (sr, hop_length, win_length,
    center: of the autocorrelation windows, window, norm), its onset strength (n_fft, n_mels,
    fmin, fmax, lag, pad_mode of the mel STFT, always centred as librosa's; fmax None:
    ``sr / 2``) and ``frame_hop`` (keep every frame_hop-th frame)."""

    sr: float = 22050
    hop_length: int = 512
    win_length: int = 384
    center: bool = True
    window: str = "hann"
    norm: float | None = math.inf
    frame_hop: int = 1
    n_fft: int = 2048
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    lag: int = 1
    pad_mode: str = "constant"


TEMPOGRAM_PRESETS = {
    "librosa": TempogramConfig(),
    "dlr": TempogramConfig(sr=PAPER.sample_rate, hop_length=128, win_length=256, frame_hop=2,
                           pad_mode="reflect"),
}


TORCHAUDIO_ALIASES = {"sample_rate": "sr", "f_min": "fmin", "f_max": "fmax"}
"""``torchaudio.transforms.MelSpectrogram``'s argument name -> ours (both are accepted)."""
TORCHAUDIO_WINDOWS = {torch.hann_window: "hann", torch.hamming_window: "hamming",
                      torch.blackman_window: "blackman", torch.bartlett_window: "bartlett"}
"""torchaudio's ``window_fn`` -> the periodic window of the same name."""
TORCHAUDIO_MEL_SCALES = {"htk": True, "slaney": False}
"""torchaudio's ``mel_scale`` -> our ``htk``."""


def _from_torchaudio(given: dict[str, Any], torchaudio: dict[str, Any]) -> dict[str, Any]:
    """``given`` (our names) with torchaudio's names folded in; raises for a setting given under
    both names and for torchaudio options without an equivalent here."""
    renamed = {TORCHAUDIO_ALIASES.get(name, name): value for name, value in torchaudio.items()}
    if torchaudio["mel_scale"] is not FROM_PRESET:
        if torchaudio["mel_scale"] not in TORCHAUDIO_MEL_SCALES:
            raise ValueError(f"mel_scale must be 'htk' or 'slaney', got "
                             f"{torchaudio['mel_scale']!r}")
        renamed["htk"] = TORCHAUDIO_MEL_SCALES[torchaudio["mel_scale"]]
    if torchaudio["window_fn"] is not FROM_PRESET:
        if torchaudio["window_fn"] not in TORCHAUDIO_WINDOWS or torchaudio["wkwargs"]:
            raise ValueError(
                f"window_fn={torchaudio['window_fn']!r} with wkwargs={torchaudio['wkwargs']!r} has "
                f"no equivalent here: pass window= a scipy.signal.get_window name or tuple, "
                f"e.g. 'hann' or ('kaiser', 12.0), or a tensor of win_length values")
        renamed["window"] = TORCHAUDIO_WINDOWS[torchaudio["window_fn"]]
    unsupported = {"pad": 0, "normalized": False, "onesided": True}
    for name, default in unsupported.items():
        if torchaudio[name] not in (default, None):
            raise ValueError(f"{name}={torchaudio[name]!r} is not supported (only {name}="
                             f"{default!r}); pad the input or normalise the output yourself")
    for ours in ("sr", "fmin", "fmax", "htk", "window"):
        if ours in renamed and renamed[ours] is not FROM_PRESET:
            if given[ours] is not FROM_PRESET:
                raise ValueError(f"{ours} given twice, under librosa's and torchaudio's names")
            given = {**given, ours: renamed[ours]}
    return given


def _resolve(presets: dict, preset: str, given: dict[str, Any]):
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    return replace(presets[preset], **{k: v for k, v in given.items() if v is not FROM_PRESET})


def _describe(preset: str, config, base) -> str:
    """``preset='dlr', hop_length=...``: the preset and the arguments that differ from it."""
    changed = {k: v for k, v in asdict(config).items() if v != getattr(base, k)}
    return f"preset={preset!r}" + "".join(f", {k}={v!r}" for k, v in changed.items())


def _flatten(x: torch.Tensor, owner: str) -> torch.Tensor:
    """(..., samples) audio (``audio_tensor``: int PCM scaled) -> (batch, samples)."""
    x = audio_tensor(x, owner)
    return x.reshape(-1, x.shape[-1])


class MelSpectrogram(nn.Module):
    """Mel spectrogram (optionally dB, optionally z-scored) with librosa's arguments, or
    torchaudio's names for the same settings (``sample_rate``, ``f_min``, ``f_max``,
    ``mel_scale``, ``window_fn`` (``torch.hann_window``...), ``wkwargs``, ``pad``,
    ``normalized``, ``onesided``; ``pad``, ``normalized`` and ``onesided`` only at their
    defaults). ``window``: a ``scipy.signal.get_window`` name or tuple (``("kaiser", 8.0)``).

    forward(x: (batch, samples) float at ``sr`` Hz) -> (batch, n_mels, frames); leading dims
    beyond one batch axis are kept. Frames as librosa: ``1 + samples // hop_length`` when
    centred (even n_fft), ``1 + (samples - n_fft) // hop_length`` otherwise. Half-precision
    input gives float32 output. ``backend``: torch | cpu | triton (default: automatic, see
    ``dlr_engine.ops.melspec``). The window and filters are non-trainable buffers.
    """

    def __init__(self, sr: float = FROM_PRESET, n_fft: int = FROM_PRESET,
                 win_length: int | None = FROM_PRESET, hop_length: int | None = FROM_PRESET,
                 window: str = FROM_PRESET, center: bool = FROM_PRESET,
                 pad_mode: str = FROM_PRESET, power: float = FROM_PRESET,
                 n_mels: int = FROM_PRESET, fmin: float = FROM_PRESET,
                 fmax: float | None = FROM_PRESET, htk: bool = FROM_PRESET,
                 norm: str | float | None = FROM_PRESET, to_db: bool | str = FROM_PRESET,
                 ref: float | str = FROM_PRESET, amin: float | None = FROM_PRESET,
                 top_db: float | None = FROM_PRESET, normalize: str | None = FROM_PRESET, *,
                 preset: str = "librosa", backend: str | None = None,
                 sample_rate: float = FROM_PRESET, f_min: float = FROM_PRESET,
                 f_max: float | None = FROM_PRESET, mel_scale: str = FROM_PRESET,
                 window_fn: Any = FROM_PRESET, wkwargs: dict | None = None, pad: int = 0,
                 normalized: bool = False, onesided: bool | None = None) -> None:
        super().__init__()
        given = dict(sr=sr, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                     window=window, center=center, pad_mode=pad_mode, power=power,
                     n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm, to_db=to_db,
                     ref=ref, amin=amin, top_db=top_db, normalize=normalize)
        given = _from_torchaudio(given, dict(
            sample_rate=sample_rate, f_min=f_min, f_max=f_max, mel_scale=mel_scale,
            window_fn=window_fn, wkwargs=wkwargs, pad=pad, normalized=normalized,
            onesided=onesided))
        config = _resolve(MEL_PRESETS, preset, given)
        win_length = config.win_length or config.n_fft
        config = replace(config, win_length=win_length,
                         hop_length=config.hop_length or win_length // config.hop_divisor)
        scale = "power" if config.to_db is True else config.to_db or None
        if scale is not None and scale not in DB_SCALES:
            raise ValueError(f"to_db must be False, True, 'power' or 'amplitude', got "
                             f"{config.to_db!r}")
        if config.normalize not in (None, "zscore"):
            raise ValueError(f"normalize must be None or 'zscore', got {config.normalize!r}")
        self.config = config
        self.preset = preset
        self.backend = backend
        self.db_multiplier, default_amin = DB_SCALES[scale] if scale else (0.0, 1e-10)
        self.amin = default_amin if config.amin is None else config.amin
        self.register_buffer("window", get_window(config.window, win_length,
                                                  dtype=torch.float32), persistent=False)
        fb = mel_filterbank(config.sr, config.n_fft, config.n_mels, config.fmin, config.fmax,
                            config.htk, config.norm, dtype=torch.float32)
        self.register_buffer("mel_fb", fb, persistent=False)
        self.cpu_plan = cpu_mel_plan(fb)

    def frames(self, samples: int) -> int:
        """Output frames for a clip of ``samples`` samples (raises when there is none)."""
        return frame_count(samples, self.config.n_fft, self.config.hop_length, self.config.center)

    @property
    def min_samples(self) -> int:
        """Shortest clip accepted: one n_fft uncentred, more than n_fft // 2 to reflect."""
        if not self.config.center:
            return self.config.n_fft
        return self.config.n_fft // 2 + 1 if self.config.pad_mode == "reflect" else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        out = melspectrogram(_flatten(x, "MelSpectrogram"), self.window, self.mel_fb, c.n_fft,
                             c.hop_length, c.center, c.pad_mode, c.power, self.db_multiplier,
                             self.amin, self.cpu_plan, self.backend)
        # nothing saved it (in place ops have no ONNX translation)
        fresh = not (torch.is_grad_enabled() and out.requires_grad or torch.onnx.is_in_onnx_export())
        if self.db_multiplier:
            out = finish_db(out, self.db_multiplier, self.amin, c.ref, c.top_db, inplace=fresh)
        if c.normalize == "zscore":
            out = zscore_per_clip(out, inplace=fresh)
        return out.reshape(*x.shape[:-1], *out.shape[1:])

    def extra_repr(self) -> str:
        return _describe(self.preset, self.config, MEL_PRESETS[self.preset])


class Tempogram(nn.Module):
    """Autocorrelation tempogram of the onset strength, as ``librosa.feature.tempogram``.

    forward(x: (batch, samples) float at ``sr`` Hz) -> (batch, win_length, frames): row ``l`` is
    lag ``l`` onset frames (tempo ``60 * sr / (hop_length * l)`` BPM), frames every
    ``frame_hop * hop_length`` samples (``ceil(onset_frames / frame_hop)`` when centred; for the
    "dlr" preset, 938 for 30 s, like the mel). Each frame is divided by its max (``norm``).
    """

    def __init__(self, sr: float = FROM_PRESET, hop_length: int = FROM_PRESET,
                 win_length: int = FROM_PRESET, center: bool = FROM_PRESET,
                 window: str = FROM_PRESET, norm: float | None = FROM_PRESET,
                 frame_hop: int = FROM_PRESET, n_fft: int = FROM_PRESET,
                 n_mels: int = FROM_PRESET, fmin: float = FROM_PRESET,
                 fmax: float | None = FROM_PRESET, lag: int = FROM_PRESET,
                 pad_mode: str = FROM_PRESET, *, preset: str = "librosa",
                 backend: str | None = None) -> None:
        super().__init__()
        given = dict(sr=sr, hop_length=hop_length, win_length=win_length, center=center,
                     window=window, norm=norm, frame_hop=frame_hop, n_fft=n_fft, n_mels=n_mels,
                     fmin=fmin, fmax=fmax, lag=lag, pad_mode=pad_mode)
        self.config = config = _resolve(TEMPOGRAM_PRESETS, preset, given)
        self.preset = preset
        # librosa.onset.onset_strength: power_to_db(melspectrogram(...)) with its defaults
        self.onset_mel = MelSpectrogram(sr=config.sr, n_fft=config.n_fft, win_length=None,
                                        hop_length=config.hop_length, window="hann",
                                        center=True, pad_mode=config.pad_mode,
                                        n_mels=config.n_mels, fmin=config.fmin,
                                        fmax=config.fmax, to_db="power", ref=1.0,
                                        amin=None, top_db=80.0, normalize=None,
                                        preset="librosa", backend=backend)
        self.register_buffer("ac_window", get_window(config.window, config.win_length,
                                                     dtype=torch.float32), persistent=False)

    @property
    def min_samples(self) -> int:
        """Shortest clip accepted: the onset STFT's minimum, and uncentred, ``win_length``
        onset frames."""
        c = self.config
        if c.center:
            return self.onset_mel.min_samples
        return max(self.onset_mel.min_samples,
                   (c.win_length - 1) * c.hop_length + c.n_fft - 2 * (c.n_fft // 2))

    def onset_strength(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, samples) -> (batch, onset_frames), ``librosa.onset.onset_strength``."""
        c = self.config
        return onset_strength_from_db(self.onset_mel(_flatten(x, "Tempogram")), c.n_fft,
                                      c.hop_length, c.lag, center=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        out = tempogram_from_onsets(self.onset_strength(x), c.win_length, c.center,
                                    self.ac_window, c.norm, c.frame_hop)
        return out.reshape(*x.shape[:-1], *out.shape[1:])

    def extra_repr(self) -> str:
        return _describe(self.preset, self.config, TEMPOGRAM_PRESETS[self.preset])


REPRESENTATIONS = {
    "mel": lambda: MelSpectrogram(preset="dlr"),
    "tempogram": lambda: Tempogram(preset="dlr"),
}
"""Front-ends by the names the engine and trainers use (``representations=("mel", ...)``)."""


def from_name(name: str) -> nn.Module:
    """"mel" -> ``MelSpectrogram(preset="dlr")``, "tempogram" -> ``Tempogram(preset="dlr")``."""
    if name not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {name!r}; choose one of "
                         f"{', '.join(REPRESENTATIONS)} (the DLR itself is dlr_engine.DLR)")
    return REPRESENTATIONS[name]()
