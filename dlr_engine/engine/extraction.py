"""``dlr_engine.extract``: an audio corpus -> DLR (and log-mel / tempogram) features plus the
model's outputs, streamed, batched across files, resumable.

    for track in dlr_engine.extract("corpus/**/*.{mp3,flac}"):   # iterator of TrackResult
        track.features["dlr"]                                       # (segments, 128, frames)
    summary = dlr_engine.extract("corpus/**/*.wav", out="feats/")   # files + manifest
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..audio.segment import TAIL_POLICIES
from ..config import DLRConfig
from ..nn import DLR, PRECISIONS
from ..ops.dlr_op import precision_unavailable
from .discover import Corpus, discover, readable
from .pipeline import ModelRunner, Pipeline, Sink, TrackState, find_module
from .worker import DecodePlan, usable_cores
from .writer import Store, TrackRecord, WriterThread

OUTPUT_FORMAT_VERSION = 2
"""Part of the parameters hash: bump when the meaning of the files changes."""
FEATURES = ("dlr", "mel", "tempogram")
"""Representations: ``dlr`` comes from the model's DLR front-end, the others from
``dlr_engine.spectral.from_name``."""
DTYPES = ("float32", "float16")
MAX_DEFAULT_WORKERS = 16


@dataclass
class TrackResult:
    """One track of an extraction.

    path: the file as the OS names it (``os.fsencode(path)`` gives its bytes); id: its id
    (readable text, see ``discover.readable``).
    features: representation -> (segments, channels, frames) (continuous mode: one segment);
    outputs: model outputs per segment -- ``embedding`` (segments, dim), ``<head>_logits`` and
    ``<head>_probs`` (segments, classes); both empty in ``out=`` mode (the arrays are on disk).
    labels: ``<head>_logits`` / ``<head>_probs`` -> the class names of its last axis, for the
    heads whose model names them (``model.label_names``).
    segment_starts: (segments,) seconds. duration: seconds of audio (None when failed);
    sample_rate and channels are the file's own; warning: what the decoder worked around;
    seconds: decode and model time spent on the track.
    """

    path: str
    id: str
    status: str
    error: str | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    segment_starts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    codec: str | None = None
    seconds: float = 0.0
    labels: dict[str, list[str]] = field(default_factory=dict)
    warning: str | None = None


def _is_array_output(name: str) -> bool:
    """Model outputs stored as arrays beside the features (``embedding``, ...)."""
    return name not in FEATURES and not name.endswith(("_logits", "_probs"))


def _fingerprint(module: nn.Module) -> str:
    """Hash of a module's class, configuration and weights."""
    digest = hashlib.sha256(f"{type(module).__qualname__}\n{module!r}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _resolve_model(model: str | os.PathLike | nn.Module | None) -> nn.Module | None:
    if model is None or (isinstance(model, str) and model.lower() == "none"):
        return None
    if isinstance(model, nn.Module):
        return model
    from ..runtime import load_for_extraction  # conv blocks fused; '<spec>:dlr': the DLR alone
    return load_for_extraction(model)


def _with_precision(model: nn.Module | None, precision: str | None,
                    device: torch.device) -> nn.Module | None:
    """The model with every DLR front-end at ``precision`` (a copy when that changes one; None:
    as the model is). bfloat16 is checked here, before any file is touched."""
    if precision is None or model is None:
        return model
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if reason := precision_unavailable(precision, device.type):
        raise ValueError(f"precision={precision!r} cannot run on {device}: {reason}; use "
                         f"precision='float32'")
    if all(m.precision == precision for m in model.modules() if isinstance(m, DLR)):
        return model
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, DLR):
            module.precision = precision
    return model


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_workers() -> int:
    """One decode process per usable core, less one for the model; on two cores or fewer, 0
    (decode threads in this process, one per core plus one: no segment copied between
    processes)."""
    cores = usable_cores()
    return min(MAX_DEFAULT_WORKERS, cores - 1) if cores > 2 else 0


def _check_options(batch_size: int, workers: int | None, segment_seconds: float,
                   hop_seconds: float | None, tail: str, dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0 (0: decode in a thread), got {workers}")
    if tail not in TAIL_POLICIES:
        raise ValueError(f"tail must be one of {TAIL_POLICIES}, got {tail!r}")
    if segment_seconds <= 0 or (hop_seconds is not None and hop_seconds <= 0):
        raise ValueError(f"segment_seconds ({segment_seconds}) and hop_seconds ({hop_seconds}) "
                         f"must be positive")


def _parse_representations(representations: str | Iterable[str]) -> tuple[str, ...]:
    names = representations.split(",") if isinstance(representations, str) else representations
    features = tuple(dict.fromkeys(name.strip() for name in names if name.strip()))
    unknown = [name for name in features if name not in FEATURES]
    if unknown:
        raise ValueError(f"unknown representations {unknown}; choose from {FEATURES}")
    return features


class Job:
    """A validated extraction: what to decode, how to run the model, the parameters hash.
    Errors in the arguments are raised here, before any file is touched."""

    def __init__(self, representations: str | Iterable[str], model, device, batch_size: int,
                 workers: int | None, segment_seconds: float, hop_seconds: float | None,
                 tail: str, continuous: bool, dtype: str, pad_short: bool,
                 precision: str | None = None) -> None:
        _check_options(batch_size, workers, segment_seconds, hop_seconds, tail, dtype)
        self.features = _parse_representations(representations)
        self.dtype, self.batch_size, self.continuous = dtype, batch_size, continuous
        self.workers = default_workers() if workers is None else workers
        self.device = _resolve_device(device)
        self.model = _with_precision(_resolve_model(model), precision, self.device)
        self.label_names = dict(getattr(self.model, "label_names", None) or {})
        self.labels = {f"{name[:-len('_logits')]}{suffix}": list(names)
                       for name, names in self.label_names.items() if name.endswith("_logits")
                       for suffix in ("_logits", "_probs")}
        dlr = find_module(self.model, DLR) if self.model is not None else None
        if "dlr" in self.features and dlr is None:
            raise ValueError("representation 'dlr' needs a model with a DLR front-end "
                             "(model='default', a weights path, or a module containing DLR)")
        if continuous and self.features != ("dlr",):
            raise ValueError("continuous mode computes the DLR alone: use representations=('dlr',)")
        self.spectral = {}
        if any(name != "dlr" for name in self.features):
            from ..spectral import from_name
            self.spectral = {name: from_name(name) for name in self.features if name != "dlr"}
        self.sample_rate = int(getattr(self.model, "sample_rate", None)
                               or (dlr.config.sample_rate if dlr is not None
                                   else DLRConfig.sample_rate))
        self.plan = self._plan(dlr, segment_seconds, hop_seconds, tail, pad_short)
        self.runner = ModelRunner(None if continuous else self.model, self.spectral, self.device,
                                  continuous_dlr=dlr if continuous else None)
        self.params_hash = self._hash()

    def _min_samples(self, dlr: DLR | None) -> int:
        """The shortest input every module accepts (the model's own ``min_samples`` covers
        its back-end; continuous mode runs the DLR alone)."""
        if self.continuous:
            return dlr.min_samples
        candidates = [getattr(module, "min_samples", 1) for module in self.spectral.values()]
        if self.model is not None:
            candidates.append(getattr(self.model, "min_samples", None)
                              or (dlr.min_samples if dlr is not None else 1))
        return max(candidates, default=1)

    def _plan(self, dlr: DLR | None, segment_seconds: float, hop_seconds: float | None,
              tail: str, pad_short: bool) -> DecodePlan:
        min_samples = self._min_samples(dlr)
        segment_samples = round(segment_seconds * self.sample_rate)
        hop_samples = round((hop_seconds or segment_seconds) * self.sample_rate)
        if segment_samples < min_samples:
            raise ValueError(
                f"segment_seconds={segment_seconds} gives {segment_samples} samples, fewer than "
                f"the model's minimum input of {min_samples} samples "
                f"({min_samples / self.sample_rate:.2f} s); use a longer segment")
        if not self.continuous:
            return DecodePlan(self.sample_rate, segment_samples, hop_samples, tail, min_samples,
                              pad_short)
        return DecodePlan(self.sample_rate, segment_samples, hop_samples, tail, min_samples,
                          pad_short, continuous=True, receptive_field=dlr.receptive_field,
                          pool=dlr.config.pool, chunk_frames=dlr.frames(segment_samples))

    def _hash(self) -> str:
        modules = {name: _fingerprint(module) for name, module in self.spectral.items()}
        if self.model is not None:
            modules["model"] = _fingerprint(self.model)
        self.params = {"format": OUTPUT_FORMAT_VERSION, "features": sorted(self.features),
                       "dtype": self.dtype, "plan": vars(self.plan), "modules": modules,
                       "model": None if self.model is None else type(self.model).__qualname__,
                       "label_names": self.label_names}
        hashed = {k: v for k, v in self.params.items() if k not in ("model", "label_names")}
        return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:16]

    def pipeline(self, sink) -> Pipeline:
        return Pipeline(self.plan, self.runner, sink, self.workers, self.batch_size,
                        pin_memory=self.device.type == "cuda", threads=self.model_threads())

    def model_threads(self) -> tuple[int, int] | None:
        """torch threads of the model on the CPU (None on other devices): (while tracks are
        decoding, once the decoders have nothing left). While decoding, the cores the decode
        processes leave free, or with decode threads (``workers=0``) half the cores: the model
        then shares the cores with the decode threads instead of holding them at its barriers
        (on 2 cores one model thread took the engine from 0.76x to 0.78-0.83x of the decode
        floor in bfloat16, 0.69x to 0.70x in float32). With nothing left to decode (the end of
        a run, or every queued track decoded before a batch filled) the model takes every core."""
        if self.device.type != "cpu":
            return None
        cores = usable_cores()
        return max(1, cores - self.workers if self.workers > 0 else cores // 2), cores

    def modules(self) -> list[nn.Module]:
        return [m for m in (self.model, *self.spectral.values()) if m is not None]

    def segment_starts(self, track: TrackState) -> list[float]:
        """Start (seconds) of each row of the track's arrays: the windows, or in continuous
        mode the single whole-track row."""
        if self.continuous:
            return [0.0]
        return [start / self.sample_rate for start in track.starts]


class _Session:
    """For the run: the job's modules on its device in eval mode, and on CPU torch's threads at
    ``Job.model_threads``' first count; restores both afterwards."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def __enter__(self) -> None:
        self.training = [(module, module.training) for module in self.job.modules()]
        for module, _ in self.training:
            module.to(self.job.device).eval()
        self.threads = torch.get_num_threads()
        threads = self.job.model_threads()
        if threads is not None:
            torch.set_num_threads(threads[0])

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.threads)
        for module, training in self.training:
            module.train(training)


def _info_fields(track: TrackState) -> dict:
    """The decoder's facts about the track; no duration for a failed one (the audio decoded
    before the failure says nothing of the file's length)."""
    info = track.info or {}
    rate = info.get("sample_rate")
    ok = track.error is None
    return {"duration": info["frames"] / rate if rate and ok else None, "sample_rate": rate,
            "channels": info.get("channels"), "codec": info.get("codec"),
            "warning": info.get("warning") or None}


class MemorySink:
    """Collects each track's outputs into a ``TrackResult`` (iterator mode)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._parts: dict[int, dict[str, list[np.ndarray]]] = {}

    def append(self, track: TrackState, index: int, outputs: dict[str, np.ndarray]) -> None:
        parts = self._parts.setdefault(track.position, {})
        for name, value in outputs.items():
            if name in FEATURES and name not in self.job.features:
                continue
            parts.setdefault(name, []).append(value)

    def _join(self, name: str, values: list[np.ndarray]) -> np.ndarray:
        if self.job.continuous:
            array = np.concatenate(values, axis=-1)[None]
        else:
            array = np.stack(values)
        if name in FEATURES or _is_array_output(name):
            array = array.astype(self.job.dtype, copy=False)
        return array

    def finish(self, track: TrackState) -> TrackResult:
        parts = self._parts.pop(track.position, {})
        arrays = {name: self._join(name, values) for name, values in parts.items()}
        return TrackResult(
            track.path, track.id, "ok",
            features={name: arrays[name] for name in self.job.features},
            outputs={name: array for name, array in arrays.items() if name not in FEATURES},
            segment_starts=np.array(self.job.segment_starts(track)),
            seconds=track.decode_seconds + track.compute_seconds, labels=self.job.labels,
            **_info_fields(track))

    def fail(self, track: TrackState) -> TrackResult:
        self._parts.pop(track.position, None)
        return TrackResult(track.path, track.id, "failed", error=track.error,
                           seconds=track.decode_seconds + track.compute_seconds,
                           labels=self.job.labels, **_info_fields(track))


class DiskSink:
    """Streams each track's arrays to the writer thread and journals its manifest row and
    per-segment probabilities (``out=`` mode)."""

    def __init__(self, job: Job, writer: WriterThread, stats: dict[str, tuple]) -> None:
        self.job = job
        self.writer = writer
        self.stats = stats
        self._segments: dict[int, list[dict]] = {}
        self._arrays: dict[int, dict[str, None]] = {}

    def append(self, track: TrackState, index: int, outputs: dict[str, np.ndarray]) -> None:
        row = {"id": track.id, "segment": index,
               "start": track.starts[index] / self.job.sample_rate}
        for name, value in outputs.items():
            if name in self.job.features or _is_array_output(name):
                self.writer.append(track, track.id, name, value)
                self._arrays.setdefault(track.position, {})[name] = None
            elif name.endswith("_probs"):
                head = name[:-len("_probs")]
                labels = self.job.label_names.get(f"{head}_logits") or range(len(value))
                row.update({f"{head}_{label}": float(p) for label, p in zip(labels, value)})
        if len(row) > 3:
            self._segments.setdefault(track.position, []).append(row)

    def _row(self, track: TrackState, status: str, segments: list[dict]) -> dict:
        size, mtime = self.stats[track.path]
        ok = status == "ok"
        path = readable(track.path)
        exact = os.fsencode(track.path)
        return {"path": path, "path_bytes": None if path.encode() == exact else exact,
                "id": track.id, "size": size, "mtime": mtime,
                "status": status, "error": track.error, **_info_fields(track),
                "segments": len(self.job.segment_starts(track)) if ok else None,
                "segment_starts": self.job.segment_starts(track) if ok else None,
                "arrays": list(self._arrays.pop(track.position, {})) if ok else None,
                "output_rows": len(segments) if ok else None,
                "seconds": track.decode_seconds + track.compute_seconds,
                "params_hash": self.job.params_hash}

    def _result(self, track: TrackState, row: dict) -> TrackResult:
        return TrackResult(track.path, row["id"], row["status"], error=row["error"],
                           segment_starts=np.array(row["segment_starts"] or [], np.float64),
                           duration=row["duration"], sample_rate=row["sample_rate"],
                           channels=row["channels"], codec=row["codec"], seconds=row["seconds"],
                           labels=self.job.labels, warning=row["warning"])

    def finish(self, track: TrackState) -> TrackResult:
        segments = self._segments.pop(track.position, [])
        row = self._row(track, "ok", segments)
        self.writer.commit(track, TrackRecord(row, segments))
        return self._result(track, row)

    def fail(self, track: TrackState) -> TrackResult:
        self._segments.pop(track.position, None)
        self._arrays.pop(track.position, None)
        row = self._row(track, "failed", [])
        self.writer.abort(track, TrackRecord(row))
        return self._result(track, row)


def _stat(path: str) -> tuple[int | None, float | None]:
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime


class Progress:
    """tqdm bar over tracks with audio hours, x-realtime and failures."""

    def __init__(self, total: int, enabled: bool, skipped: int = 0) -> None:
        from tqdm.auto import tqdm
        self.bar = tqdm(total=total, unit="track", disable=not enabled, dynamic_ncols=True,
                        desc="extract")
        self.started = time.perf_counter()
        self.audio_seconds = 0.0
        self.ok = self.failed = 0
        self.skipped = skipped
        self.failures: list[tuple[str, str]] = []

    def update(self, result: TrackResult) -> None:
        if result.status == "ok":
            self.ok += 1
            self.audio_seconds += result.duration or 0.0
        else:
            self.failed += 1
            self.failures.append((readable(result.path), result.error))
        self.bar.update(1)
        self.bar.set_postfix(hours=f"{self.audio_seconds / 3600:.2f}",
                             x_rt=f"{self.x_realtime:.0f}", failed=self.failed, refresh=False)

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def x_realtime(self) -> float:
        return self.audio_seconds / max(self.wall_seconds, 1e-9)

    def close(self) -> None:
        self.bar.close()

    def summary(self) -> dict:
        return {"ok": self.ok, "failed": self.failed, "skipped": self.skipped,
                "audio_hours": self.audio_seconds / 3600, "wall_seconds": self.wall_seconds,
                "x_realtime": self.x_realtime, "failures": self.failures}


Engine = Callable[[Sink, list[tuple[str, str]]], Iterator[TrackResult]]
"""Runs tracks ``(path, id)`` (in run order) through decode and model into a sink; yields the
sink's result of each finished track. ``local_engine`` here, ``dlr_engine.distributed`` on Ray."""


def local_engine(job: Job) -> Engine:
    """This machine's engine: decode processes, the model in this process."""
    def run(sink: Sink, tasks: list[tuple[str, str]]) -> Iterator[TrackResult]:
        with _Session(job):
            yield from job.pipeline(sink).run(tasks)
    return run


def with_known_failures(engine: Engine, failures: dict[str, str]) -> Engine:
    """``engine``, with the tracks whose failure discovery already knows (``Corpus.failures``:
    a folder that cannot be listed) failed by the sink without being decoded."""
    if not failures:
        return engine

    def run(sink: Sink, tasks: list[tuple[str, str]]) -> Iterator[TrackResult]:
        for position, (path, track_id) in enumerate(tasks):
            if path in failures:
                yield sink.fail(TrackState(-1 - position, path, track_id, error=failures[path]))
        yield from engine(sink, [task for task in tasks if task[0] not in failures])
    return run


def _in_order(results: Iterator[TrackResult], ids: list[str]) -> Iterator[TrackResult]:
    """``results`` in the order of ``ids`` (tracks finish nearly in run order: only those
    finished ahead of an earlier one wait here)."""
    position = {track_id: index for index, track_id in enumerate(ids)}
    waiting: dict[int, TrackResult] = {}
    following = 0
    for result in results:
        waiting[position[result.id]] = result
        while following in waiting:
            yield waiting.pop(following)
            following += 1


def _iterate(job: Job, corpus: Corpus, progress: bool, ordered: bool) -> Iterator[TrackResult]:
    tasks = [(path, corpus.track_id(path)) for path in corpus.paths]
    bar = Progress(len(tasks), progress)
    engine = with_known_failures(local_engine(job), corpus.failures)

    def counted(results: Iterator[TrackResult]) -> Iterator[TrackResult]:
        for result in results:
            bar.update(result)
            yield result
    try:
        with contextlib.closing(engine(MemorySink(job), tasks)) as results:
            finished = counted(results)
            yield from _in_order(finished, [task[1] for task in tasks]) if ordered else finished
    finally:
        bar.close()


def _is_done(row: dict | None, job: Job, store: Store, stat: tuple, retry_failed: bool) -> bool:
    """A track finished by an earlier run with the same parameters and an unchanged file, all
    of whose outputs are still there: every array it wrote (features, embeddings, ...) and its
    rows in the outputs table."""
    if row is None or row["params_hash"] != job.params_hash or (row["size"], row["mtime"]) != stat:
        return False
    if row["status"] == "failed":
        return not retry_failed
    arrays = row.get("arrays") or []
    return (row["status"] == "ok" and set(job.features) <= set(arrays)
            and row.get("table_rows", 0) == (row.get("output_rows") or 0)
            and all(os.path.exists(store.array_path(name, row["id"])) for name in arrays))


def write_corpus(job: Job, corpus: Corpus, out: str | os.PathLike, shard, progress: bool,
                 retry_failed: bool, overwrite: bool, engine: Engine) -> dict:
    """Run the tracks of ``corpus`` not done yet through ``engine`` into the tables and arrays
    of ``out``; return the summary of ``extract(..., out=)``."""
    store = Store(out, shard)
    done = store.open()
    try:
        store.write_params(job.params_hash, job.params)
        stats = {path: _stat(path) for path in corpus.paths}
        tasks = [(path, corpus.track_id(path)) for path in corpus.paths]
        if not overwrite:
            tasks = [(path, track_id) for path, track_id in tasks
                     if not _is_done(done.get(track_id), job, store, stats[path], retry_failed)]
        bar = Progress(len(tasks), progress, skipped=len(corpus.paths) - len(tasks))
        writer = WriterThread(store, job.dtype, concat_frames=job.continuous)
        try:
            engine = with_known_failures(engine, corpus.failures)
            with contextlib.closing(engine(DiskSink(job, writer, stats), tasks)) as results:
                for result in results:
                    bar.update(result)
        finally:
            bar.close()
            writer.close()
    finally:
        store.close()
    return {**bar.summary(), "tracks": len(corpus.paths), "out": os.fspath(out),
            "manifest": store.manifest_path, "params_hash": job.params_hash}


def extract(paths, out: str | os.PathLike | None = None,
            representations: str | Iterable[str] = ("dlr",),
            model: str | os.PathLike | nn.Module | None = "default",
            device: str | torch.device = "auto", batch_size: int = 8, workers: int | None = None,
            segment_seconds: float = 30.0, hop_seconds: float | None = None,
            shard: tuple[int, int] | None = None, dtype: str = "float32",
            pad_short: bool = False, progress: bool = True, *, tail: str = "end",
            continuous: bool = False, retry_failed: bool = False, overwrite: bool = False,
            precision: str | None = None, ordered: bool = True):
    """Extract features and model outputs from a corpus.

    paths: a glob (``**`` and ``{mp3,flac}`` allowed), a directory, a manifest (.txt/.csv/
      .parquet list of files), a file, or a list of these; sorted and de-duplicated.
    out: None to get an iterator of ``TrackResult`` (arrays in memory, failed tracks included);
      a folder to write arrays, manifest, outputs table and ``params.json`` (the parameters
      behind each ``params_hash``) there and get a summary dict
      (``ok``, ``failed``, ``skipped``, ``tracks``, ``audio_hours``, ``wall_seconds``,
      ``x_realtime``, ``failures`` [(path, reason)], ``manifest``). A rerun skips tracks done
      with the same parameters whose arrays and table rows are all there (``retry_failed``:
      also retry failures; ``overwrite``: redo all).
    representations: any of ``dlr``, ``mel``, ``tempogram``.
    model: ``"default"`` (the shipped model), a weights path, an ``nn.Module`` (forward
      (batch, samples) at 8 kHz -> dict of tensors or a DLR tensor), or None (spectral only).
    device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:1"``, ...
    batch_size: segments per model call, packed across files.
    workers: decode processes (default: cores - 1; 0 on two cores or fewer); 0 decodes in
      threads of this process, one per core plus one.
    segment_seconds / hop_seconds: window length and hop (default hop: no overlap);
      ``tail``: what to do with the samples after the last full window (``TAIL_POLICIES``).
      A track shorter than one window is one shorter window.
    continuous: one DLR per track, normalised by the track's peak, computed in chunks of about
      ``segment_seconds`` (equal to the one-shot DLR); DLR only, no model heads.
    shard: (i, n) to process every n-th file from the i-th (0-based), for n parallel jobs.
    dtype: ``float32`` or ``float16`` for feature and embedding arrays.
    pad_short: zero-pad tracks shorter than the model's minimum input instead of failing them.
    progress: show a progress bar (tracks, audio hours, x-realtime, failures).
    precision: the DLR front-end's arithmetic, ``float32`` or ``bfloat16`` (inputs and weights
      rounded to bfloat16, float32 sums: ~1.8x the DLR throughput, features within ~0.2 %;
      CPUs with AVX512_BF16); None: as the model is (float32 unless built otherwise). Part of the
      parameters hash, so a rerun in the other precision recomputes.
    ordered: the iterator yields tracks in input order (sorted paths); False: as they finish.

    Reproducibility: features (``dlr``, ``mel``, ``tempogram``) are bit-identical for the same
    input and parameters whatever the batching, the worker count or the schedule (each clip
    is computed on its own). Model outputs (``embedding``, logits, probabilities) are
    bit-identical for the same batches; a track computed in a batch of another size (a
    resumed or sharded run, another ``batch_size``) can differ by rounding (measured up to
    1.8e-7 in probabilities), because the back-end's kernels may change their summation
    order with the batch size.

    Decode worker processes come from a forkserver (else spawn) and never import the calling
    script; they are kept for the next call in this process (``worker.close_pool()`` ends
    them) and exit by themselves at interpreter exit.
    """
    job = Job(representations, model, device, batch_size, workers, segment_seconds, hop_seconds,
              tail, continuous, dtype, pad_short, precision)
    corpus = discover(paths, shard, progress=progress)
    if out is None:
        return _iterate(job, corpus, progress, ordered)
    return write_corpus(job, corpus, out, shard, progress, retry_failed, overwrite,
                        local_engine(job))
