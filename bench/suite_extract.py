"""dlr-bench suite ``extract``: whole-corpus throughput of DLR feature extraction, from audio
files on disk to features, against the naive loop and the decode floor (issue 3's benchmark).

The corpus is generated once per run into a temporary folder (`corpus`): synthetic music from
``dlr_engine.data.synth.render_clip``, stereo, cycling through WAV / FLAC / OGG Vorbis / MP3 and
44.1 / 48 kHz, written with soundfile (`CORPORA`: quick 8 tracks of 30 s; full 64 tracks of
30 s to 5 min). The model is the DLR features only (``DLR()``, no back-end, no heads).

Providers, each call processing the whole corpus and returning the number of tracks done:

- ``naive`` (the baseline): ``librosa.load(path, sr=8000)``, then the eager torch DLR
  (``DLR(backend="torch")``: conv1d + ReLU + average pooling per branch, the engine's weights)
  on the whole track, one file at a time.
- ``engine``: ``dlr_engine.extract(folder, out=<fresh folder>, model=DLR())``: decode workers,
  30 s segments batched across files, the fused kernel, arrays and tables written to disk. The
  call includes the engine's start-up and the writing; `WORKERS` decode workers
  (``default_workers()``: 0 on two cores or fewer, i.e. ``decode_threads()`` decode threads,
  one per core plus one).
- ``engine_bf16``: the same with ``DLR(precision="bfloat16")`` (the DLR in bfloat16 precision,
  ``extract --precision bfloat16``; CPUs with AVX512_BF16).
- ``decode_floor``: decode + downmix + resample to 8 kHz of every file with
  ``dlr_engine.audio.decode.load`` and no model, with the same parallelism (0 workers: a pool
  of ``decode_threads()`` threads in this process; n: a pool of n processes, its start-up
  included as the engine's is).

Op ``extract_default``: what the default command runs (``dlr-engine extract <folder> --out
<folder>``: the default model -- DLR front-end, conv back-end, heads -- in its inference form,
every option at its default) against a naive loop with the same outputs, on a corpus of long
tracks (2-5 min) and one of 30 s tracks (`DEFAULT_CORPORA`), in the same run:

- ``naive_model`` (the baseline): ``librosa.load(path, sr=8000)``, then the default model in eager
  torch with its DLR on the torch backend (``load_model("default", backend="torch")``) on the
  track's 30 s windows (the engine's: every 30 s, plus one ending at the track's end when a
  tail is left), one file at a time;
- ``default``: ``dlr_engine.extract(folder, out=<fresh folder>)``, all defaults;
- ``default_bf16``: the same with ``precision="bfloat16"`` (``--precision bfloat16``: the DLR and
  the conv blocks after the first in bfloat16; CPUs with AVX512_BF16);
- ``decode_floor``: as above.

Throughput is audio hours per second: the audio hours of the corpus (in the ``shape`` column,
e.g. ``8 tracks 0.0667 h``) divided by the median call in seconds. No FLOP or byte counts: the
work is mostly decoding, resampling and I/O.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch

from dlr_engine.audio.decode import load
from dlr_engine.config import PAPER
from dlr_engine.data.synth import render_clip
from dlr_engine.engine import extract
from dlr_engine.engine.extraction import default_workers
from dlr_engine.engine.pipeline import decode_threads
from dlr_engine.engine.worker import process_context
from dlr_engine.models import load_model
from dlr_engine.nn import DLR

from .harness import Call, Case, bench_device
from .suite_dlr import bf16_missing
from .suite_mel import missing_library


@dataclass(frozen=True)
class CorpusSpec:
    """``tracks`` files whose lengths are drawn uniformly in ``[min_seconds, max_seconds]``
    (whole seconds) from ``seed``."""

    tracks: int
    min_seconds: float
    max_seconds: float
    seed: int = 0


CORPORA = {True: CorpusSpec(8, 30.0, 30.0), False: CorpusSpec(64, 30.0, 300.0)}
"""Corpus of ``extract_dlr`` per quick flag."""
DEFAULT_CORPORA = {True: (CorpusSpec(2, 120.0, 150.0, seed=1), CorpusSpec(8, 30.0, 30.0)),
                   False: (CorpusSpec(16, 120.0, 300.0, seed=1), CorpusSpec(32, 30.0, 30.0, seed=2))}
"""Corpora of ``extract_default`` per quick flag: long tracks, then 30 s tracks."""
SEGMENT_SECONDS = 30.0
"""The engine's default window (``extract(segment_seconds=...)``)."""
FORMATS = ("wav", "flac", "ogg", "mp3")
"""File formats, cycled by track index (soundfile infers the container from the extension;
OGG is Vorbis, MP3 is MPEG layer III)."""
SOURCE_RATES = (44100, 48000)
"""Sample rates, alternating every ``len(FORMATS)`` tracks so every format gets both."""
WRITE_BLOCK_FRAMES = 65536
"""Frames per write when rendering the corpus."""
CHANNEL_DELAY_S = 0.001
RIGHT_GAIN = 0.8
"""The right channel is the left one delayed by 1 ms at 0.8x gain: real stereo to downmix."""
WORKERS = default_workers()
"""Decode workers of the engine and of the decode floor (the engine's default here)."""
BASELINE = "naive"
SECONDS_PER_HOUR = 3600.0

_corpora: dict[CorpusSpec, list[Path]] = {}
"""Corpora generated in this run: spec -> files."""


def track_seconds(spec: CorpusSpec) -> np.ndarray:
    """Length of every track of ``spec`` in seconds, (tracks,)."""
    rng = np.random.default_rng(spec.seed)
    return np.round(rng.uniform(spec.min_seconds, spec.max_seconds, spec.tracks))


def write_track(folder: Path, index: int, seconds: float, seed: int) -> Path:
    """Track ``index``: synthetic clip ``index`` of ``seed`` as stereo in its format and rate."""
    rate = SOURCE_RATES[index // len(FORMATS) % len(SOURCE_RATES)]
    path = folder / f"t{index:03d}.{FORMATS[index % len(FORMATS)]}"
    left, _ = render_clip(index, seed, seconds, rate)
    right = RIGHT_GAIN * np.roll(left, round(CHANNEL_DELAY_S * rate))
    frames = np.stack([left, right], axis=1)
    # in blocks: libsndfile 1.2's Vorbis encoder crashes on one write of minutes of audio
    with sf.SoundFile(path, "w", rate, channels=2) as out:
        for start in range(0, len(frames), WRITE_BLOCK_FRAMES):
            out.write(frames[start:start + WRITE_BLOCK_FRAMES])
    return path


def corpus(spec: CorpusSpec) -> list[Path]:
    """The files of ``spec``, generated into a temporary folder on first use in
    this process and removed at exit."""
    if spec not in _corpora:
        folder = Path(tempfile.mkdtemp(prefix="dlr-bench-extract-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _corpora[spec] = [write_track(folder, i, float(seconds), spec.seed)
                          for i, seconds in enumerate(track_seconds(spec))]
    return _corpora[spec]


def _naive(files: list[Path], device: str) -> Call:
    import librosa

    model = DLR(backend="torch").to(device)
    model.load_state_dict(DLR().state_dict())

    @torch.no_grad()
    def run() -> int:
        for path in files:
            y, _ = librosa.load(path, sr=PAPER.sample_rate)
            model(torch.from_numpy(y)[None].to(device))
        return len(files)
    return run


def window_starts(samples: int, window: int) -> list[int]:
    """The engine's default windows of a track: every ``window`` samples, plus one ending at
    the track's end when a tail is left (one window from 0 for a track shorter than one)."""
    starts = list(range(0, max(samples - window, 0) + 1, window))
    if samples > window and (samples - window) % window:
        starts.append(samples - window)
    return starts


def _naive_model(files: list[Path], device: str) -> Call:
    import librosa

    model = load_model("default", backend="torch").to(device)
    window = round(SEGMENT_SECONDS * PAPER.sample_rate)

    def run() -> int:
        for path in files:
            naive_outputs(model, librosa.load(path, sr=PAPER.sample_rate)[0], window, device)
        return len(files)
    return run


@torch.no_grad()
def naive_outputs(model: torch.nn.Module, y: np.ndarray, window: int,
                  device: str = "cpu") -> dict[str, np.ndarray]:
    """What the engine writes for a track ``y`` (samples at 8 kHz): the model's outputs per
    window (``window_starts``) and a softmax ``<head>_probs`` per ``<head>_logits``."""
    windows = np.stack([y[start:start + window] for start in window_starts(len(y), window)])
    outputs = model(torch.from_numpy(windows).to(device))
    outputs.update({name[:-len("_logits")] + "_probs": torch.softmax(value, -1)
                    for name, value in list(outputs.items()) if name.endswith("_logits")})
    return {name: value.cpu().numpy() for name, value in outputs.items()}


def _engine(files: list[Path], device: str, precision: str = "float32",
            model: object = "dlr") -> Call:
    """``extract`` on the corpus folder on ``device``; model "dlr": a bare
    ``DLR(precision=...)`` (op ``extract_dlr``), "default": every other option at its default
    but ``precision``."""
    options = ({"model": DLR(precision=precision), "device": device, "workers": WORKERS}
               if model == "dlr" else {"precision": precision if precision != "float32" else None,
                                       "device": device})
    folder = files[0].parent

    def run() -> int:
        out = tempfile.mkdtemp(prefix="dlr-bench-extract-out-")
        try:
            summary = extract(folder, out=out, progress=False, **options)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        if summary["ok"] != len(files):
            raise RuntimeError(f"the engine finished {summary['ok']} of {len(files)} tracks: "
                               f"{summary['failures'][:3]}")
        return summary["ok"]
    return run


def decoded_samples(path: Path) -> int:
    """Decode, downmix and resample one file to the model rate; its length in samples."""
    return len(load(path, PAPER.sample_rate)[0])


def _decode_floor(files: list[Path], device: str) -> Call:
    def run() -> int:
        if WORKERS == 0:
            with ThreadPoolExecutor(decode_threads()) as pool:
                lengths = list(pool.map(decoded_samples, files))
        else:
            with process_context().Pool(WORKERS) as pool:
                lengths = pool.map(decoded_samples, files, chunksize=1)
        return sum(n > 0 for n in lengths)
    return run


@dataclass(frozen=True)
class Provider:
    """``build(files, device)`` returns the call processing the corpus, which returns the
    number of tracks it processed."""

    name: str
    build: Callable[[list[Path], str], Call]
    unavailable: Callable[[], str | None] = lambda: None


PROVIDERS = (Provider(BASELINE, _naive, lambda: missing_library("librosa")),
             Provider("engine", _engine),
             Provider("engine_bf16", lambda files, device: _engine(files, device, "bfloat16"),
                      bf16_missing),
             Provider("decode_floor", _decode_floor))
DEFAULT_BASELINE = "naive_model"
DEFAULT_PROVIDERS = (
    Provider(DEFAULT_BASELINE, _naive_model, lambda: missing_library("librosa")),
    Provider("default", lambda files, device: _engine(files, device, model="default")),
    Provider("default_bf16", lambda files, device: _engine(files, device, "bfloat16", "default"),
             bf16_missing),
    Provider("decode_floor", _decode_floor))
"""Providers of ``extract_default``."""


def make_call(provider: Provider, spec: CorpusSpec, device: str) -> Call:
    return provider.build(corpus(spec), device)


def _corpus_cases(op: str, providers: tuple[Provider, ...], baseline: str, spec: CorpusSpec,
                  device: str) -> list[Case]:
    hours = float(track_seconds(spec).sum()) / SECONDS_PER_HOUR
    shape = f"{spec.tracks} tracks {hours:.3g} h"
    return [Case(op=op, provider=p.name, shape=shape, batch=spec.tracks,
                 make=lambda p=p: make_call(p, spec, device), baseline=p.name == baseline,
                 device=device, skip_reason=p.unavailable())
            for p in providers]


def cases(quick: bool) -> list[Case]:
    """``extract_dlr`` on this run's corpus, then ``extract_default`` on the long-track and
    the 30 s corpora, the naive loops first."""
    device = bench_device()
    out = _corpus_cases("extract_dlr", PROVIDERS, BASELINE, CORPORA[quick], device)
    for spec in DEFAULT_CORPORA[quick]:
        out += _corpus_cases("extract_default", DEFAULT_PROVIDERS, DEFAULT_BASELINE, spec, device)
    return out
