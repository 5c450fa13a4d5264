"""The literature's model families (DESIGN §5) as audio-in models for the registry, the trainer
and ``extract``: each owns its front-end, takes raw audio ``(batch, samples)`` at its
``sample_rate`` and returns a dict like ``FCNTagger``: ``embedding`` (batch, dim) (the features
the family's own output layer would see) and one ``*_logits`` per head.

Heads, the same options for every family (0 leaves a head out; at least one is needed):
``n_tags`` -> ``tag_logits`` (sigmoid), ``n_styles`` -> ``style_logits`` and
``n_tempo_classes`` -> ``tempo_logits`` (softmax). Taggers default to 50 tags, classifiers to
style classes only; the trainer's tasks pass ``n_tags`` (tagger) or ``n_styles`` +
``n_tempo_classes`` (source task).

- ``crnn`` (Choi 2017): neither DESIGN nor the issue gives its mel settings, so it uses the
  engine's "dlr" mel preset (8 kHz, n_fft 1024, window 512, hop 256, dB, per-clip z-score) with
  the paper's 96 bins (``n_mels``). 29.1 s is 910 frames here (1366 at the paper's 12 kHz).
- ``samplecnn`` (Lee 2017): raw waveform at the engine's 8 kHz; the 3^9 model's 59049-sample
  input is ~7.4 s there (2.7 s at the paper's 22.05 kHz). Longer inputs are averaged over time.
- ``pons`` (Pons 2016): the "dlr" mel preset with the paper's 40 bins; the clip's log-mel is cut
  into non-overlapping ``frames``-frame patches (250 = 8 s at hop 256), the patch embeddings
  are averaged (a clip shorter than one patch is an error; a shorter tail is dropped).
- ``mcclstm`` (Chen & Wang 2017): its own 40-band log-mel (``librosa.power_to_db``, 80 dB range)
  at ``sample_rate`` 44.1 kHz, Blackman-Harris window of 2048, hop 1024, as the paper;
  ``extract`` resamples to it. At another ``sample_rate`` (e.g. 8000 for the trainer's 8 kHz
  clips) window and hop keep the paper's durations (46.4 ms, 23.2 ms), rounded to samples.
- ``pooled`` (Pons review): ``pooling`` mean / max / attention / rnn over the frames of a DLR
  (8 kHz, the authors' ``|x / max|x||`` preprocessing); also returns ``dlr``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import PAPER
from ..nn import DLR
from ..spectral import MelSpectrogram
from . import crnn, mcclstm, pons, samplecnn
from .crnn import CRNN
from .mcclstm import MCCLSTM
from .pons import PonsCNN
from .pooling import DEFAULT_RNN_UNITS, PooledClassifier
from .samplecnn import SampleCNN

HEADS = {"n_tags": "tag_logits", "n_styles": "style_logits", "n_tempo_classes": "tempo_logits"}
"""head option -> output key."""
DEFAULT_STYLES = 13
"""Style classes of ``pooled`` (no paper fixes them): ``dlr_source``'s default, the DLR paper's
source task."""
MEL_PRESET = "dlr"
"""Mel preset of ``crnn`` and ``pons``: the engine's 8 kHz log-mel."""
MCCLSTM_RATE = 44100
MCCLSTM_WINDOW = 2048
MCCLSTM_HOP = 1024
MCCLSTM_WINDOW_NAME = "blackmanharris"
RAW_AUDIO = "mono float at sample_rate, no normalisation"
PEAK_ABS = "per clip x / max|x| (skipped when 0), then |x|"
"""The DLR authors' preprocessing (``dlr_engine.nn.peak_abs``), as saved models describe it."""


def _headless(model: nn.Module) -> tuple[nn.Module, int]:
    """``model`` with its output layer ``head`` replaced by the identity (so it returns the
    embedding), and the embedding's width."""
    width = model.head.in_features
    model.head = nn.Identity()
    return model, width


def _frames_to_samples(mel: MelSpectrogram, frames: int) -> int:
    """Fewest samples giving ``frames`` centred mel frames (``1 + samples // hop``)."""
    return max(mel.min_samples, (frames - 1) * mel.config.hop_length)


class AudioFamily(nn.Module):
    """Base: raw audio -> ``encode`` -> ``embedding`` -> heads. Subclasses set ``options`` (JSON
    constructor options), ``sample_rate``, ``min_samples``, ``preprocessing`` and ``encode``."""

    sample_rate: int
    min_samples: int
    preprocessing: str

    def _heads(self, width: int, n_tags: int, n_styles: int, n_tempo_classes: int) -> None:
        counts = {"n_tags": n_tags, "n_styles": n_styles, "n_tempo_classes": n_tempo_classes}
        if any(count < 0 for count in counts.values()) or not any(counts.values()):
            raise ValueError(f"head sizes {counts} must be >= 0 and at least one positive "
                             "(0 leaves a head out)")
        self.embedding_dim = width
        self.heads = nn.ModuleDict({HEADS[option]: nn.Linear(width, count)
                                    for option, count in counts.items() if count})

    def config(self) -> dict[str, Any]:
        """JSON-able constructor options (without ``backend``)."""
        return dict(self.options)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (batch, samples) -> {"embedding": (batch, embedding_dim), ...}."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 2:
            raise ValueError(f"expected raw audio (batch, samples) at {self.sample_rate} Hz, "
                             f"got shape {tuple(x.shape)}")
        if x.shape[1] < self.min_samples:
            raise ValueError(f"{x.shape[1]} samples are too few for {type(self).__name__}: it needs "
                             f"at least {self.min_samples} ({self.min_samples / self.sample_rate:.2f} s "
                             f"at {self.sample_rate} Hz); use longer clips or segments")
        out = self.encode(x)
        out.update({key: head(out["embedding"]) for key, head in self.heads.items()})
        return out


class CRNNTagger(AudioFamily):
    """``crnn``: 8 kHz audio -> "dlr" log-mel (``n_mels`` bins) -> ``CRNN`` (conv blocks, GRU);
    embedding = the GRU's last hidden state (batch, gru_units). Other options as ``CRNN``."""

    def __init__(self, n_tags: int = crnn.PAPER_TAGS, n_styles: int = 0, n_tempo_classes: int = 0,
                 n_mels: int = crnn.PAPER_MELS, channels: tuple[int, ...] = crnn.PAPER_CHANNELS,
                 pools: tuple[tuple[int, int], ...] = crnn.PAPER_POOLS,
                 gru_units: int = crnn.PAPER_GRU_UNITS, gru_layers: int = crnn.PAPER_GRU_LAYERS,
                 backend: str | None = None) -> None:
        """backend: accepted for the registry's uniform signature; there is no DLR here."""
        super().__init__()
        self.mel = MelSpectrogram(n_mels=n_mels, preset=MEL_PRESET)
        self.body, width = _headless(CRNN(1, n_mels, tuple(channels), tuple(map(tuple, pools)),
                                          gru_units, gru_layers))
        self.options = {"n_tags": n_tags, "n_styles": n_styles, "n_tempo_classes": n_tempo_classes,
                        **{k: v for k, v in self.body.config().items() if k != "n_tags"}}
        self._heads(width, n_tags, n_styles, n_tempo_classes)
        self.sample_rate = int(self.mel.config.sr)
        self.min_samples = _frames_to_samples(self.mel, self.body.min_frames)
        self.preprocessing = f"{RAW_AUDIO}; MelSpectrogram(preset={MEL_PRESET!r}, n_mels={n_mels})"

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self.body(self.mel(x))}


class SampleCNNTagger(AudioFamily):
    """``samplecnn``: 8 kHz waveform -> ``SampleCNN``; embedding = the time-averaged last conv
    features (batch, channels). ``min_samples`` = 3^(blocks + 1) (59049 = 7.4 s for 9 blocks)."""

    def __init__(self, n_tags: int = samplecnn.PAPER_TAGS, n_styles: int = 0, n_tempo_classes: int = 0,
                 first_channels: int = samplecnn.PAPER_FIRST_CHANNELS,
                 block_channels: tuple[int, ...] = samplecnn.PAPER_BLOCK_CHANNELS,
                 backend: str | None = None) -> None:
        """backend: accepted for the registry's uniform signature; there is no DLR here."""
        super().__init__()
        self.body, width = _headless(SampleCNN(1, first_channels, tuple(block_channels)))
        self.options = {"n_tags": n_tags, "n_styles": n_styles, "n_tempo_classes": n_tempo_classes,
                        **{k: v for k, v in self.body.config().items() if k != "n_tags"}}
        self._heads(width, n_tags, n_styles, n_tempo_classes)
        self.sample_rate = PAPER.sample_rate
        self.min_samples = self.body.input_samples
        self.preprocessing = RAW_AUDIO

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self.body(x)}


class PonsClassifier(AudioFamily):
    """``pons``: 8 kHz audio -> "dlr" log-mel (``n_mels`` bins) -> patches of ``frames`` frames
    -> ``PonsCNN`` without its output layer -> mean over patches (batch, embedding_dim)."""

    def __init__(self, n_tags: int = 0, n_styles: int = pons.PAPER_CLASSES, n_tempo_classes: int = 0,
                 n_mels: int = pons.PAPER_MELS, frames: int = pons.PAPER_FRAMES,
                 filters: int = pons.PAPER_FILTERS, timbre_bins: int = pons.TIMBRE_KERNEL_BINS,
                 temporal_frames: int = pons.TEMPORAL_KERNEL_FRAMES,
                 backend: str | None = None) -> None:
        """backend: accepted for the registry's uniform signature; there is no DLR here."""
        super().__init__()
        self.mel = MelSpectrogram(n_mels=n_mels, preset=MEL_PRESET)
        self.body, width = _headless(PonsCNN(1, n_mels, frames, filters, timbre_bins, temporal_frames))
        self.options = {"n_tags": n_tags, "n_styles": n_styles, "n_tempo_classes": n_tempo_classes,
                        **{k: v for k, v in self.body.config().items() if k != "n_classes"}}
        self._heads(width, n_tags, n_styles, n_tempo_classes)
        self.frames = frames
        self.sample_rate = int(self.mel.config.sr)
        self.min_samples = _frames_to_samples(self.mel, frames)
        self.preprocessing = f"{RAW_AUDIO}; MelSpectrogram(preset={MEL_PRESET!r}, n_mels={n_mels})"

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mel = self.mel(x)                                            # (N, n_mels, T)
        count = mel.shape[2] // self.frames
        patches = mel[:, :, :count * self.frames].unflatten(2, (count, self.frames))
        patches = patches.transpose(1, 2).flatten(0, 1)              # (N * P, n_mels, frames)
        return {"embedding": self.body(patches).unflatten(0, (x.shape[0], count)).mean(dim=1)}


class MCCLSTMClassifier(AudioFamily):
    """``mcclstm``: audio at ``sample_rate`` -> 40-band log-mel (paper settings at 44.1 kHz) ->
    ``MCCLSTM`` over the clip's 80-frame chunks; embedding = the LSTM's last hidden state (R4:
    the mean FC output). ``min_samples`` is one chunk (~1.9 s)."""

    def __init__(self, n_tags: int = 0, n_styles: int = mcclstm.DEFAULT_CLASSES, n_tempo_classes: int = 0,
                 variant: str = "R0", filters: int = mcclstm.DEFAULT_FILTERS,
                 fc_units: int = mcclstm.FC_UNITS, lstm_units: int = mcclstm.LSTM_UNITS,
                 sample_rate: int = MCCLSTM_RATE, backend: str | None = None) -> None:
        """backend: accepted for the registry's uniform signature; there is no DLR here."""
        super().__init__()
        scale = sample_rate / MCCLSTM_RATE
        self.mel = MelSpectrogram(sr=sample_rate, n_fft=round(MCCLSTM_WINDOW * scale),
                                  hop_length=round(MCCLSTM_HOP * scale), window=MCCLSTM_WINDOW_NAME,
                                  n_mels=mcclstm.CHUNK_MELS, to_db="power", preset="librosa")
        self.body, width = _headless(MCCLSTM(1, variant, filters, fc_units, lstm_units))
        self.options = {"n_tags": n_tags, "n_styles": n_styles, "n_tempo_classes": n_tempo_classes,
                        **{k: v for k, v in self.body.config().items() if k != "n_classes"},
                        "sample_rate": sample_rate}
        self._heads(width, n_tags, n_styles, n_tempo_classes)
        self.sample_rate = sample_rate
        self.min_samples = _frames_to_samples(self.mel, mcclstm.CHUNK_FRAMES)
        self.preprocessing = (f"{RAW_AUDIO}; 40-band log-mel (power_to_db), {MCCLSTM_WINDOW_NAME} "
                              f"window {self.mel.config.n_fft}, hop {self.mel.config.hop_length}")

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self.body(self.mel(x))}


def dlr_options(dlr: DLR) -> dict[str, Any]:
    """The JSON geometry of ``dlr`` (``DLR`` keyword arguments)."""
    c = dlr.config
    return {"n_branches": c.n_branches, "channels": c.channels, "kernel_size": c.kernel_size,
            "dilations": list(c.dilations), "pool": c.pool}


class PooledDLRClassifier(AudioFamily):
    """``pooled``: 8 kHz audio -> ``DLR`` (batch, channels, frames) -> ``pooling`` over frames
    (``PooledClassifier`` without its output layer). Returns ``dlr`` and ``embedding``.

    dlr: DLR geometry (``DLR`` keyword arguments); preprocess: the authors' ``|x / max|x||``;
    backend: a DLR op backend to force (default: automatic).
    """

    def __init__(self, n_tags: int = 0, n_styles: int = DEFAULT_STYLES, n_tempo_classes: int = 0,
                 pooling: str = "mean", rnn_units: int = DEFAULT_RNN_UNITS,
                 dlr: dict[str, Any] | None = None, preprocess: bool = True,
                 backend: str | None = None) -> None:
        super().__init__()
        self.dlr = DLR(**(dlr or {}), preprocess="peak_abs" if preprocess else None, backend=backend)
        self.body, width = _headless(PooledClassifier(self.dlr.config.out_channels, 1, pooling, rnn_units))
        self.options = {"n_tags": n_tags, "n_styles": n_styles, "n_tempo_classes": n_tempo_classes,
                        "pooling": pooling, "rnn_units": rnn_units, "dlr": dlr_options(self.dlr),
                        "preprocess": preprocess}
        self._heads(width, n_tags, n_styles, n_tempo_classes)
        self.sample_rate = PAPER.sample_rate
        self.min_samples = self.dlr.min_samples
        self.preprocessing = f"8 kHz mono float; DLR input: {PEAK_ABS}" if preprocess else RAW_AUDIO

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        dlr = self.dlr(x)
        return {"dlr": dlr, "embedding": self.body(dlr)}


FAMILIES: dict[str, type[AudioFamily]] = {
    "crnn": CRNNTagger,
    "samplecnn": SampleCNNTagger,
    "pons": PonsClassifier,
    "mcclstm": MCCLSTMClassifier,
    "pooled": PooledDLRClassifier,
}
"""registry name -> class (its constructor is the builder)."""
