"""Extraction on a Ray cluster (``pip install dlr-engine[ray]``): the local engine's discovery,
resume, outputs and manifest, with decode and the model spread over Ray Data.

    summary = extract_ray("corpus/**/*.flac", "feats/", address="auto")

Rows of the Ray Data pipeline are the messages of the local decode protocol (``worker.py``),
pickled into the column ``message``, in run order (``preserve_order``):

1. **decode** (``flat_map``, CPU tasks): ``track_messages`` turns a file into
   ``("segment", track, index, start, samples, peak)`` rows then ``("end", ...)`` or
   ``("error", ...)``, exactly as a local decode worker does; rows stream out in blocks, so a
   long track is never in memory whole;
2. **model** (``map_batches`` on an actor pool: one actor per GPU; on a cluster without GPUs,
   1 to CPUs - 1 actors): the batch's segments run through the job's model, those of equal
   length together; a segment row leaves as ``("segment", track, index, start, outputs |
   error text, compute seconds)``;
3. **write** (this process, the driver): ``extraction.write_corpus`` with its ``DiskSink`` and
   writer thread, so the arrays, ``manifest.parquet`` and ``outputs.parquet`` are those of
   ``dlr_engine.extract`` (atomic writes, resume, ``retry_failed``, ``overwrite``, shards);
   either engine resumes the other's runs.

Ray, not the local batcher, packs the batches: DLR features (batch-independent kernels) equal
the local engine's bit for bit on the cpu backend; back-end outputs (embedding, logits) equal
them up to float rounding (torch's CPU kernels depend on the batch), exactly with
``batch_size=1``.

Not covered (the local engine has them): a file that crashes the decoder library (a segfault,
not a decode error) kills its decode task, which Ray Data retries without end; there is no
stall timeout for a hung read.

This module imports neither Ray nor torch at import time: Ray's decode workers import it to
run ``decode_track`` and stay light.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from .engine.worker import DecodePlan, track_messages

if TYPE_CHECKING:
    from torch import nn

    from .engine.extraction import Engine, Job, TrackResult
    from .engine.pipeline import Sink

DEVICES = ("auto", "cpu", "cuda")
"""``auto``: one model actor per GPU if the cluster has GPUs, else CPU actors."""
ENV_PREFIX = "DLR_ENGINE_"
"""The driver's variables with this prefix (``DLR_ENGINE_BACKEND``, ...) are set in the model
actors too."""
MESSAGE = "message"
PICKLE_PROTOCOL = 5


class RayMissing(ImportError):
    """Ray Data is not installed (the ``ray`` extra)."""


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise RayMissing("the Ray engine needs Ray Data: pip install 'dlr-engine[ray]' "
                          "(or pip install 'ray[data]')") from error
    return ray


def _pickle(message: tuple) -> bytes:
    return pickle.dumps(message, protocol=PICKLE_PROTOCOL)


def decode_track(row: dict, plan: DecodePlan) -> Iterator[dict]:
    """Ray Data stage 1 (``flat_map``): a row ``position, path`` -> the track's decode
    messages, one row each."""
    for message in track_messages(int(row["position"]), str(row["path"]), plan):
        yield {MESSAGE: _pickle(message)}


class ModelActor:
    """Ray Data stage 2: the job's model on ``device`` (``cpu`` or ``cuda``, the GPU Ray
    gave this actor). Each call runs the batch's segments, grouped by length, through the
    local engine's batch forward (a failing batch is retried segment by segment; a model
    failing on its first inputs stops the run)."""

    def __init__(self, job: Job, device: str) -> None:
        import torch

        job.device = job.runner.device = torch.device(device)
        for module in job.modules():
            module.to(job.device).eval()
        self.pipeline = job.pipeline(sink=None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .engine.pipeline import Item

        messages = [pickle.loads(data) for data in batch[MESSAGE]]
        groups: dict[int, list[int]] = {}
        for row, message in enumerate(messages):
            if message[0] == "segment":
                groups.setdefault(len(message[4]), []).append(row)
        for rows in groups.values():
            items = [Item(None, messages[row][2], messages[row][4], messages[row][5], row)
                     for row in rows]
            started = time.perf_counter()
            results = self.pipeline.forward(items)
            share = (time.perf_counter() - started) / len(rows)
            for row, result in zip(rows, results):
                if isinstance(result, Exception):
                    result = f"{type(result).__name__}: {result}"
                messages[row] = (*messages[row][:4], result, share)
        return {MESSAGE: np.array([_pickle(message) for message in messages], dtype=object)}


def deliver(messages: Iterable[tuple], tasks: list[tuple[str, str]], sink: Sink) -> Iterator:
    """Driver: the model stage's messages, in run order, into ``sink`` as the local pipeline
    does; yields the sink's result of each finished track."""
    from .engine.pipeline import TrackState

    tracks: dict[int, TrackState] = {}
    for message in messages:
        kind, position = message[:2]
        if position not in tracks:
            tracks[position] = TrackState(position, *tasks[position])
        track = tracks[position]
        if kind == "segment":
            _, _, index, start, result, seconds = message
            track.received += 1
            track.starts.append(start)
            track.compute_seconds += seconds
            if track.error is not None:
                continue
            if isinstance(result, str):
                track.error = f"model failed on segment {index}: {result}"
                yield sink.fail(track)
                continue
            if index != track.delivered:
                raise RuntimeError(f"Ray delivered segment {index} of {track.path} after "
                                   f"{track.delivered} segments: order was not preserved")
            sink.append(track, index, result)
            track.delivered += 1
            continue
        del tracks[position]
        if kind == "end":
            _, _, track.info, track.decode_seconds = message
            if track.error is None:
                yield sink.finish(track)
        else:
            _, _, reason, track.info, track.decode_seconds = message
            if track.error is None:
                track.error = reason
                yield sink.fail(track)


def _model_stage(ray, device: str, actors: int | None, job: Job) -> dict:
    """``map_batches`` arguments of the model actors, sized to the cluster: one actor per GPU
    (or ``actors``); without GPUs, an autoscaling pool of up to one actor per CPU but one
    (which is left for decoding)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES} on Ray (Ray assigns each actor its "
                         f"GPU), got {device!r}")
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if device == "cuda" and not gpus:
        raise ValueError("device='cuda' but the Ray cluster has no GPU")
    on_gpus = device == "cuda" or (device == "auto" and gpus > 0)
    size = actors or (gpus if on_gpus else cpus - 1)
    if size < 1 or size >= cpus:
        raise ValueError(f"{size} model actors on a Ray cluster of {cpus} CPUs leave none for "
                         f"decoding: use a cluster with more CPUs or fewer actors")
    if actors or on_gpus:
        compute = ray.data.ActorPoolStrategy(size=size)
    else:
        compute = ray.data.ActorPoolStrategy(min_size=1, max_size=size)
    arguments = {"compute": compute, "num_cpus": 1, "num_gpus": 1 if on_gpus else 0,
                 "fn_constructor_kwargs": {"job": job, "device": "cuda" if on_gpus else "cpu"},
                 "batch_size": job.batch_size}
    env = {name: value for name, value in os.environ.items() if name.startswith(ENV_PREFIX)}
    if env:
        arguments["runtime_env"] = {"env_vars": env}
    return arguments


def ray_engine(job: Job, device: str = "auto", actors: int | None = None) -> Engine:
    """An ``extraction.Engine`` running ``job`` on the connected Ray cluster."""
    ray = _import_ray()
    model_stage = _model_stage(ray, device, actors, job)

    def run(sink: Sink, tasks: list[tuple[str, str]]) -> Iterator[TrackResult]:
        if not tasks:
            return
        dataset = ray.data.from_items([{"position": position, "path": path}
                                       for position, (path, _) in enumerate(tasks)])
        dataset.context.execution_options.preserve_order = True
        dataset.context.enable_progress_bars = False       # the engine has its own
        rows = (dataset
                .flat_map(decode_track, fn_kwargs={"plan": job.plan}, num_cpus=1)
                .map_batches(ModelActor, **model_stage)
                .iter_rows())
        yield from deliver((pickle.loads(row[MESSAGE]) for row in rows), tasks, sink)
    return run


@contextlib.contextmanager
def _connected(address: str | None, num_cpus: int | None) -> Iterator[None]:
    """Use the Ray already initialized in this process, else connect to ``address`` (None:
    start a local instance of ``num_cpus`` CPUs) and disconnect afterwards."""
    if address is not None and num_cpus is not None:
        raise ValueError("num_cpus sizes a local Ray instance (address=None); a cluster at "
                         f"{address!r} has its own")
    ray = _import_ray()
    if ray.is_initialized():
        yield
        return
    if address is None:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    else:
        ray.init(address=address)
    try:
        yield
    finally:
        ray.shutdown()


def extract_ray(paths, out: str | os.PathLike, *,
                representations: str | Iterable[str] = ("dlr",),
                model: str | os.PathLike | nn.Module | None = "default",
                device: str = "auto", batch_size: int = 8, segment_seconds: float = 30.0,
                hop_seconds: float | None = None, tail: str = "end", continuous: bool = False,
                dtype: str = "float32", pad_short: bool = False,
                shard: tuple[int, int] | None = None, address: str | None = None,
                num_cpus: int | None = None, actors: int | None = None,
                retry_failed: bool = False, overwrite: bool = False,
                progress: bool = True, precision: str | None = None) -> dict:
    """``dlr_engine.extract(paths, out=...)`` on Ray: the same files, outputs, manifest and
    summary dict, and the same resume (either engine resumes the other's runs).

    address: the Ray cluster (``"auto"``, ``"ray://head:10001"``); None starts a local
    instance of ``num_cpus`` CPUs (default: all). A Ray already initialized in this process
    is used as is. Every node needs dlr-engine installed.
    device: ``auto`` (the model on GPU actors if the cluster has GPUs), ``cpu`` or ``cuda``.
    actors: model actors (default: one per GPU; on CPUs, Ray scales them from 1 to CPUs - 1).
    The other arguments are those of ``dlr_engine.extract``; decode parallelism is Ray's.
    """
    from .engine.discover import discover
    from .engine.extraction import Job, write_corpus

    job = Job(representations, model, device="cpu", batch_size=batch_size, workers=0,
              segment_seconds=segment_seconds, hop_seconds=hop_seconds, tail=tail,
              continuous=continuous, dtype=dtype, pad_short=pad_short, precision=precision)
    corpus = discover(paths, shard)
    with _connected(address, num_cpus):
        return write_corpus(job, corpus, out, shard, progress, retry_failed, overwrite,
                            ray_engine(job, device, actors))
