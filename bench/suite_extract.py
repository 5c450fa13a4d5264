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
"""Corpus per quick flag."""
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


def _engine(files: list[Path], device: str, precision: str = "float32") -> Call:
    model = DLR(precision=precision)
    folder = files[0].parent

    def run() -> int:
        out = tempfile.mkdtemp(prefix="dlr-bench-extract-out-")
        try:
            summary = extract(folder, out=out, model=model, device=device, workers=WORKERS,
                              progress=False)
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


def make_call(provider: Provider, spec: CorpusSpec, device: str) -> Call:
    return provider.build(corpus(spec), device)


def cases(quick: bool) -> list[Case]:
    """The three providers on this run's corpus, the naive loop first."""
    device = bench_device()
    spec = CORPORA[quick]
    hours = float(track_seconds(spec).sum()) / SECONDS_PER_HOUR
    shape = f"{spec.tracks} tracks {hours:.3g} h"
    return [Case(op="extract_dlr", provider=p.name, shape=shape, batch=spec.tracks,
                 make=lambda p=p: make_call(p, spec, device), baseline=p.name == BASELINE,
                 device=device, skip_reason=p.unavailable())
            for p in PROVIDERS]
