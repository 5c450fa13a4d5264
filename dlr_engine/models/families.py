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
- ``ncms`` (Jeong & Lee 2016): the ``variant``'s DNN(s) (``models.ncms``: temporal 108-50-50-50 on
  each quefrency's NCMS modulation spectrum, spectral 513-50-50-50 on each STFT frame, or both)
  at the paper's 22.05 kHz; at another ``sample_rate`` (8000 for the trainer's clips) the clip is
  first resampled to 22.05 kHz (``fft_resample``). The heads are the DNNs' output layers: applied
  to every row (quefrency or frame) of every 5 s segment and averaged, which, the layer being
  linear, is one layer on the rows' mean last hidden layer, the ``embedding``. Our reading: the
  paper trains on rows, the trainer on clips (cross-entropy of the averaged logits). Also
  returns ``ncms_features`` (batch, segments, 100 per DNN): per segment the mean and variance
  over rows, the input of the paper's random forest (``models.ncms.NCMSForestClassifier``,
  ``fit_features`` / ``predict_features``).
- ``songsummary`` (Sankaran): the clip cut into non-overlapping ``segment_seconds`` segments
  (29.1 s; a shorter tail is dropped), each through an ``encoder`` family (any of the above but
  ``ncms``, default ``crnn``; its heads removed) to a segment embedding, the song's sequence of
  them through ``SongSummariser``'s GRU and MLP; embedding = the MLP's hidden layer.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..config import PAPER
from ..nn import DLR
from ..ops import ncms as ncms_op
from ..spectral import MelSpectrogram
from . import crnn, mcclstm, ncms, pons, samplecnn, songsummary
from .crnn import CRNN
from .mcclstm import MCCLSTM
from .ncms import FeatureDNN
from .pons import PonsCNN
from .pooling import DEFAULT_RNN_UNITS, PooledClassifier
from .samplecnn import SampleCNN
from .songsummary import SongSummariser

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
"""The DLR authors' preprocessing (``dlr_engine.ops.preprocess.peak_abs``), as saved models describe it."""


def checked_head_sizes(n_tags: int, n_styles: int, n_tempo_classes: int) -> dict[str, int]:
    """The head options as a dict; raises unless all are >= 0 and at least one is positive."""
    sizes = {"n_tags": n_tags, "n_styles": n_styles, "n_tempo_classes": n_tempo_classes}
    if any(size < 0 for size in sizes.values()) or not any(sizes.values()):
        raise ValueError(f"head sizes {sizes} must be >= 0 and at least one positive "
                         "(0 leaves a head out)")
    return sizes


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
        counts = checked_head_sizes(n_tags, n_styles, n_tempo_classes)
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


def fft_resample(x: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """x (batch, samples) at ``sample_rate`` -> (batch, round(samples * target_rate /
    sample_rate)) at ``target_rate``: the real spectrum zero-padded (up) or cut at the lower
    Nyquist frequency (down), i.e. ideal band-limited resampling of the clip taken as periodic."""
    if sample_rate == target_rate:
        return x
    samples = x.shape[-1]
    target = round(samples * target_rate / sample_rate)
    spectrum = torch.fft.rfft(x, dim=-1)[..., :target // 2 + 1]
    return torch.fft.irfft(spectrum, n=target, dim=-1) * (target / samples)


NCMS_INPUTS = {"temporal": (ncms_op.ncms, ncms_op.N_MODULATION),
               "spectral": (ncms_op.spectral_frames, ncms_op.N_QUEFRENCIES)}
"""DNN -> (audio at 22.05 kHz -> (batch, segments, rows, values) input, values per row)."""
FUSED_NCMS_INPUTS = {"temporal": ncms_op.ncms_fused, "spectral": ncms_op.spectral_frames_fused}
"""DNN -> the faster op giving the same input, for inference (``use_fused_ops``)."""


class NCMSClassifier(AudioFamily):
    """``ncms``: audio at ``sample_rate`` -> 22.05 kHz -> per 5 s segment the rows of the NCMS
    (temporal) and / or the STFT frames (spectral) -> the ``variant``'s ``FeatureDNN``(s), hidden
    units ``hidden`` -> ``embedding`` (batch, hidden[-1] per DNN): the last hidden layer averaged
    over rows and segments; ``ncms_features`` (batch, segments, 2 hidden[-1] per DNN): its mean
    and variance over each segment's rows (the forest's input). ``dnns``: name -> ``FeatureDNN``
    (output layer removed: the heads are the output layers)."""

    def __init__(self, n_tags: int = 0, n_styles: int = ncms.DEFAULT_GENRES, n_tempo_classes: int = 0,
                 variant: str = "temporal", hidden: tuple[int, ...] = ncms.HIDDEN_UNITS,
                 sample_rate: int = ncms_op.SAMPLE_RATE, backend: str | None = None) -> None:
        """backend: accepted for the registry's uniform signature; there is no DLR here."""
        super().__init__()
        if variant not in ncms.VARIANTS:
            raise ValueError(f"unknown NCMS variant {variant!r}; choose one of {', '.join(ncms.VARIANTS)}")
        names = list(NCMS_INPUTS) if variant == "combined" else [variant]
        self.dnns = nn.ModuleDict()
        width = 0
        for name in names:
            self.dnns[name], units = _headless(FeatureDNN(NCMS_INPUTS[name][1], 1, tuple(hidden)))
            width += units
        self.options = {"n_tags": n_tags, "n_styles": n_styles, "n_tempo_classes": n_tempo_classes,
                        "variant": variant, "hidden": list(hidden), "sample_rate": sample_rate}
        self._heads(width, n_tags, n_styles, n_tempo_classes)
        self.sample_rate = sample_rate
        self.input_ops = {name: NCMS_INPUTS[name][0] for name in names}
        self.min_samples = math.ceil(ncms_op.MIN_SAMPLES * sample_rate / ncms_op.SAMPLE_RATE)
        self.preprocessing = (f"{RAW_AUDIO}; resampled to {ncms_op.SAMPLE_RATE} Hz (FFT) when "
                              f"sample_rate differs; NCMS / z-scored log-STFT per 5 s segment")

    def use_fused_ops(self) -> None:
        """Compute the DNN inputs with ``FUSED_NCMS_INPUTS`` (the inference form calls this;
        the reference ops stay the default)."""
        self.input_ops = {name: FUSED_NCMS_INPUTS[name] for name in self.input_ops}

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = fft_resample(x, self.sample_rate, ncms_op.SAMPLE_RATE)
        hidden = [dnn.features(self.input_ops[name](x)) for name, dnn in self.dnns.items()]
        return {"embedding": torch.cat([h.mean(dim=(1, 2)) for h in hidden], dim=-1),
                "ncms_features": torch.cat([ncms.mean_and_variance(h, dim=2) for h in hidden], dim=-1)}


class SongSummaryTagger(AudioFamily):
    """``songsummary``: audio at the encoder's rate -> non-overlapping segments of
    ``segment_seconds`` -> ``encoder`` family (``encoder_options``, heads removed) -> segment
    embeddings (batch, segments, dim) -> ``SongSummariser`` GRU (``rnn_units``) -> its MLP's
    hidden layer (``mlp_units``) = ``embedding``. ``min_samples`` is one segment."""

    def __init__(self, n_tags: int = songsummary.DEFAULT_TAGS, n_styles: int = 0, n_tempo_classes: int = 0,
                 encoder: str = "crnn", encoder_options: dict[str, Any] | None = None,
                 segment_seconds: float = songsummary.SEGMENT_SECONDS,
                 rnn_units: int = songsummary.DEFAULT_RNN_UNITS,
                 mlp_units: int = songsummary.DEFAULT_MLP_UNITS, backend: str | None = None) -> None:
        """backend: passed to the encoder (a DLR op backend to force)."""
        super().__init__()
        encoders = [name for name, cls in FAMILIES.items() if cls not in (NCMSClassifier, SongSummaryTagger)]
        if encoder not in encoders:
            raise ValueError(f"encoder {encoder!r} is not one of {', '.join(encoders)}")
        self.encoder = FAMILIES[encoder](**(encoder_options or {}), backend=backend)
        self.encoder.heads = nn.ModuleDict()   # only its embedding is used
        self.summariser = SongSummariser(self.encoder.embedding_dim, 1, rnn_units, mlp_units)
        self.summariser.mlp[-1] = nn.Identity()
        self.options = {"n_tags": n_tags, "n_styles": n_styles, "n_tempo_classes": n_tempo_classes,
                        "encoder": encoder,
                        "encoder_options": {k: v for k, v in self.encoder.config().items() if k not in HEADS},
                        "segment_seconds": segment_seconds, "rnn_units": rnn_units, "mlp_units": mlp_units}
        self._heads(mlp_units, n_tags, n_styles, n_tempo_classes)
        self.sample_rate = self.encoder.sample_rate
        self.segment_samples = round(segment_seconds * self.sample_rate)
        if self.segment_samples < self.encoder.min_samples:
            raise ValueError(f"segments of {segment_seconds} s are too short for the {encoder} "
                             f"encoder: it needs at least {self.encoder.min_samples / self.sample_rate:.2f} s; "
                             f"raise segment_seconds")
        self.min_samples = self.segment_samples
        self.preprocessing = f"{self.encoder.preprocessing}; per {segment_seconds} s segment"

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        count = x.shape[1] // self.segment_samples
        segments = x[:, :count * self.segment_samples].unflatten(1, (count, self.segment_samples))
        embeddings = self.encoder.encode(segments.flatten(0, 1))["embedding"]
        return {"embedding": self.summariser(embeddings.unflatten(0, (x.shape[0], count)))}


FAMILIES: dict[str, type[AudioFamily]] = {
    "crnn": CRNNTagger,
    "samplecnn": SampleCNNTagger,
    "pons": PonsClassifier,
    "mcclstm": MCCLSTMClassifier,
    "pooled": PooledDLRClassifier,
    "ncms": NCMSClassifier,
    "songsummary": SongSummaryTagger,
}
"""registry name -> class (its constructor is the builder)."""
