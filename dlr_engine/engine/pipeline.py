"""The extraction loop of the main process: decode workers -> batcher -> model -> sink.

Each track goes to the worker with the fewest tracks not yet decoded when it is queued
(dynamic assignment: a worker busy with a long file gets fewer new ones); the main process reads
the tracks' messages in run order whichever worker decoded them, packs segments of equal length from many tracks into batches, runs the model
(only the main process touches the device) and hands each track's outputs, in segment order,
to a sink (memory for the iterator API, the writer thread for ``out=``). Given the same tracks
and batch size, batches are the same in every run, whatever the schedule, so outputs are
bit-identical.

A worker process that dies (a decoder crash, an OOM kill) fails the track it was decoding and
is replaced; its queued tracks go to the replacement.
"""
from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from . import worker as decode_workers
from .worker import DecodePlan, DecodeWorker, usable_cores

LOOKAHEAD_TRACKS = 6
"""Tracks queued ahead per worker, so a worker never waits for its next task."""
INBOX_AUDIO_SECONDS = 960.0
"""Audio a worker may decode ahead of the track being consumed (its inbox, in segments of
the run's length; at least a batch): tracks are consumed in order, so with a small inbox the
workers that finished short tracks block while a long one is read (on 2 cores, 8 segments of
30 s left the cores 1.82-1.84 busy and 32 segments 1.89-1.97). 960 s at 8 kHz is 31 MB of
float32 per worker."""
MODEL_ERRORS_TO_ABORT = 3
"""Model calls failing in a row before any succeeded: the model itself is broken, stop."""
STALL_SECONDS = 300.0
"""A worker silent this long while its track is awaited is stuck (a hung network read, a
decoder looping on a damaged file): the track fails and the worker is replaced."""


@dataclass(eq=False)
class TrackState:
    """Progress of one track through the pipeline (``position``: its order in the run)."""

    position: int
    path: str
    id: str
    received: int = 0                  # segments received from the worker
    delivered: int = 0                 # segments whose outputs reached the sink
    ended: bool = False
    error: str | None = None
    info: dict | None = None           # AudioInfo fields
    starts: list[int] = field(default_factory=list)
    decode_seconds: float = 0.0
    compute_seconds: float = 0.0
    waiting: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)


class Sink(Protocol):
    def append(self, track: TrackState, index: int, outputs: dict[str, np.ndarray]) -> None: ...
    def finish(self, track: TrackState) -> Any: ...
    def fail(self, track: TrackState) -> Any: ...


@dataclass(eq=False)
class Item:
    """One segment waiting for the model."""

    track: TrackState
    index: int
    samples: np.ndarray
    peak: float
    order: int


class Batcher:
    """Packs segments of equal length into batches of ``batch_size``; when more than
    ``max_pending`` segments wait (lengths that rarely repeat: short tracks, last chunks), the
    group holding the oldest segment goes as a partial batch. Deterministic in the input."""

    def __init__(self, batch_size: int, max_pending: int) -> None:
        self.batch_size = batch_size
        self.max_pending = max(max_pending, batch_size)
        self.groups: dict[int, list[Item]] = {}
        self.pending = 0

    def _pop(self, length: int) -> list[Item]:
        batch = self.groups.pop(length)
        self.pending -= len(batch)
        return batch

    def _oldest(self) -> int:
        return min(self.groups, key=lambda length: self.groups[length][0].order)

    def add(self, item: Item) -> list[list[Item]]:
        """Queue ``item``; return the batches that are now due."""
        length = len(item.samples)
        group = self.groups.setdefault(length, [])
        group.append(item)
        self.pending += 1
        ready = [self._pop(length)] if len(group) >= self.batch_size else []
        while self.pending > self.max_pending:
            ready.append(self._pop(self._oldest()))
        return ready

    def flush(self) -> list[list[Item]]:
        return [self._pop(self._oldest()) for _ in range(len(self.groups))]


Runner = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]
"""(samples (batch, n) float32, track peaks (batch,)) -> outputs name -> (batch, ...)."""


class ModelBroken(RuntimeError):
    """The model failed on every input it was given: a problem of the model, not the files."""


def decode_threads() -> int:
    """Decode threads of a run with ``workers=0``: one per core, plus one (libsndfile, soxr and
    numpy release the GIL, so threads decode in parallel without copying segments between
    processes). The extra thread keeps the cores busy while another waits for its inbox to
    drain (tracks are consumed in order) or the model runs: on 2 cores it took the engine from
    0.67x to 0.72x of the decode floor, which itself runs as fast with 3 threads as with 2."""
    return usable_cores() + 1


class Pipeline:
    """Decode with ``workers`` processes (0: ``decode_threads()`` threads), batch, run, deliver
    to ``sink``."""

    def __init__(self, plan: DecodePlan, runner: Runner, sink: Sink, workers: int,
                 batch_size: int, pin_memory: bool = False,
                 threads: tuple[int, int] | None = None) -> None:
        self.plan = plan
        self.pin_memory = pin_memory
        self.threads = threads
        self._workers: list[DecodeWorker] | None = None  # run()'s decoders
        self.runner = runner
        self.sink = sink
        self.processes = workers > 0
        self.n_workers = workers if self.processes else decode_threads()
        self.batch_size = batch_size
        segment_seconds = plan.segment_samples / plan.sample_rate
        self.inbox_size = max(4, batch_size, round(INBOX_AUDIO_SECONDS / segment_seconds))
        self.batcher = Batcher(batch_size, 2 * batch_size)
        self._order = itertools.count()
        self._model_ran = False
        self._early_errors: list[Exception] = []
        self._staging: np.ndarray | None = None

    def run(self, tasks: list[tuple[str, str]]) -> Iterator[Any]:
        """tasks: (path, id) in run order. Yields the sink's result of each finished track."""
        if not tasks:
            return
        self._tasks = tasks
        self._workers = decode_workers.acquire(self.n_workers, self.processes, self.inbox_size)
        self._queued: list[deque[int]] = [deque() for _ in range(self.n_workers)]
        self._slot_of: dict[int, int] = {}
        submitted = 0
        try:
            for position, (path, track_id) in enumerate(tasks):
                horizon = min(len(tasks), position + self.n_workers * LOOKAHEAD_TRACKS)
                for ahead in range(submitted, horizon):
                    self._submit(ahead)
                submitted = max(submitted, horizon)
                yield from self._consume(TrackState(position, path, track_id))
            for batch in self.batcher.flush():
                yield from self._run_batch(batch)
        finally:
            decode_workers.release(self._workers)

    def _new_worker(self) -> DecodeWorker:
        return DecodeWorker(process=self.processes, inbox_size=self.inbox_size)

    def choose_slot(self) -> int:
        """The worker to queue the next track on: the one with the fewest tracks not yet
        decoded (the lowest slot on a tie)."""
        return min(range(self.n_workers), key=lambda slot: (self._workers[slot].pending, slot))

    def _submit(self, position: int, slot: int | None = None) -> None:
        slot = self.choose_slot() if slot is None else slot
        self._workers[slot].submit(position, self._tasks[position][0], self.plan)
        self._queued[slot].append(position)
        self._slot_of[position] = slot

    def _restart(self, slot: int, stuck: bool = False) -> None:
        """Replace a dead or stuck worker; the tracks queued behind the lost one are queued
        again."""
        self._workers[slot].close(stuck=stuck)
        self._workers[slot] = self._new_worker()
        queued = list(self._queued[slot])[1:]
        self._queued[slot].clear()
        for position in queued:
            self._submit(position, slot)

    def _consume(self, track: TrackState) -> Iterator[Any]:
        slot = self._slot_of.pop(track.position)
        while True:
            try:
                message = self._workers[slot].get(timeout=STALL_SECONDS)
            except TimeoutError:
                self._restart(slot, stuck=True)
                yield from self._fail(track, f"the decoder produced nothing for "
                                             f"{STALL_SECONDS:.0f} s (a stalled read, or a decoder "
                                             f"stuck on a damaged file) and was stopped")
                return
            kind = message[0]
            if kind == "died":
                self._restart(slot)
                yield from self._fail(track, f"the decoder process died ({message[1]}); the "
                                             f"file probably crashes the decoder library")
                return
            if message[1] != track.position:
                raise RuntimeError(f"decode worker sent track {message[1]} while track "
                                   f"{track.position} was expected")
            if kind == "segment":
                _, _, index, start, samples, peak = message
                track.received += 1
                track.starts.append(start)
                if track.error is not None:
                    continue
                item = Item(track, index, samples, peak, next(self._order))
                for batch in self.batcher.add(item):
                    yield from self._run_batch(batch)
                continue
            self._queued[slot].popleft()
            if kind == "end":
                _, _, track.info, track.decode_seconds = message
                track.ended = True
                yield from self._finish_if_done(track)
            else:
                _, _, reason, track.info, track.decode_seconds = message
                yield from self._fail(track, reason)
            return

    def _fail(self, track: TrackState, reason: str) -> Iterator[Any]:
        """Report the track failed (once: the first reason wins)."""
        if track.error is not None:
            return
        track.error = reason
        track.waiting.clear()
        yield self.sink.fail(track)

    def _finish_if_done(self, track: TrackState) -> Iterator[Any]:
        if track.ended and track.error is None and track.delivered == track.received:
            yield self.sink.finish(track)

    def _set_threads(self) -> None:
        """torch threads for the next model call (``threads``: (while decoding, decoders
        idle)): every core once no decoder has a track left, the decoding share otherwise.
        Calls from outside ``run`` (Ray's model actors: ``forward`` alone) keep the threads
        they were given."""
        if self.threads is None or self._workers is None:
            return
        decoding = any(worker.pending for worker in self._workers)
        wanted = self.threads[0] if decoding else self.threads[1]
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    def _call(self, samples: np.ndarray, peaks: np.ndarray) -> dict[str, np.ndarray]:
        self._set_threads()
        try:
            outputs = self.runner(samples, peaks)
        except Exception as error:
            if not self._model_ran:
                self._early_errors.append(error)
                if len(self._early_errors) >= MODEL_ERRORS_TO_ABORT:
                    first = self._early_errors[0]
                    raise ModelBroken(f"the model failed on each of its first "
                                      f"{MODEL_ERRORS_TO_ABORT} inputs, first with "
                                      f"{type(first).__name__}: {first}") from first
            raise
        self._model_ran = True
        return outputs

    def forward(self, batch: list[Item]) -> list[dict[str, np.ndarray] | Exception]:
        """Outputs of each item; if the batch fails, each item is retried alone and an item
        that still fails gets its exception."""
        samples = self._stage(batch)
        peaks = np.array([item.peak for item in batch], np.float32)
        try:
            outputs = self._call(samples, peaks)
            if any(np.may_share_memory(value, samples) for value in outputs.values()):
                self._staging = None  # a model returned (a view of) its input: not reusable
            return [{name: value[i] for name, value in outputs.items()} for i in range(len(batch))]
        except ModelBroken:
            raise
        except Exception:  # noqa: BLE001 - retried item by item below
            pass
        results: list[dict[str, np.ndarray] | Exception] = []
        for i in range(len(batch)):
            try:
                outputs = self._call(samples[i:i + 1], peaks[i:i + 1])
                results.append({name: value[0] for name, value in outputs.items()})
            except ModelBroken:
                raise
            except Exception as error:  # noqa: BLE001 - recorded as the track's failure
                results.append(error)
        return results

    def _stage(self, batch: list[Item]) -> np.ndarray:
        """(len(batch), samples) float32: the items' samples, stacked into a buffer reused by
        every batch of the same shape (a fresh 8 x 30 s array per batch page-faults in); in
        page-locked memory with ``pin_memory`` (a CUDA device), so the runner's copy to the
        device is a direct, non-blocking DMA. Reusing it is safe: the runner returns only
        after its outputs came back to the host, which waits for that copy."""
        shape = (len(batch), len(batch[0].samples))
        if self._staging is None or self._staging.shape != shape:
            self._staging = (torch.empty(shape, dtype=torch.float32, pin_memory=True).numpy()
                             if self.pin_memory else np.empty(shape, np.float32))
        return np.stack([item.samples for item in batch], out=self._staging)

    def _run_batch(self, batch: list[Item]) -> Iterator[Any]:
        live = [item for item in batch if item.track.error is None]
        if not live:
            return
        started = time.perf_counter()
        results = self.forward(live)
        share = (time.perf_counter() - started) / len(live)
        touched: dict[int, TrackState] = {}
        for item, result in zip(live, results):
            track = item.track
            track.compute_seconds += share
            if track.error is not None:
                continue
            if isinstance(result, Exception):
                yield from self._fail(track, f"model failed on segment {item.index}: "
                                             f"{type(result).__name__}: {result}")
                continue
            track.waiting[item.index] = result
            while track.delivered in track.waiting:
                self.sink.append(track, track.delivered, track.waiting.pop(track.delivered))
                track.delivered += 1
            touched[track.position] = track
        for track in touched.values():
            yield from self._finish_if_done(track)


def find_module(model: nn.Module, kind: type) -> nn.Module | None:
    """The first submodule of ``model`` (or itself) that is a ``kind``."""
    return next((module for module in model.modules() if isinstance(module, kind)), None)


class ModelRunner:
    """Runs the model and the spectral front-ends on a batch, in the main process.

    model: returns a dict of (batch, ...) tensors (a plain tensor counts as ``dlr``), or None.
    spectral: name -> module (batch, samples) -> (batch, bins, frames).
    continuous_dlr: in continuous mode, the DLR module whose op runs on chunks normalised by
      their track's peak (the module's own per-clip preprocessing would be per chunk).
    Outputs ``<head>_logits`` also give ``<head>_probs`` (softmax). Everything returns as
    float32 numpy arrays.
    """

    def __init__(self, model: nn.Module | None, spectral: dict[str, nn.Module],
                 device: torch.device, continuous_dlr: nn.Module | None = None) -> None:
        self.model = model
        self.spectral = spectral
        self.device = device
        self.continuous_dlr = continuous_dlr

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """The array on the device; on CUDA through page-locked memory (the pipeline's pinned
        staging buffer as it is, anything else pinned first) with a non-blocking copy."""
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":
            if not tensor.is_pinned():
                tensor = tensor.pin_memory()
            return tensor.to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def _continuous(self, x: torch.Tensor, peaks: torch.Tensor) -> dict[str, torch.Tensor]:
        from ..ops import dlr as dlr_op
        from ..ops.dlr_op import dlr_bf16
        module = self.continuous_dlr
        if module.preprocess == "peak_abs":
            x = (x / torch.where(peaks > 0, peaks, torch.ones_like(peaks))[:, None]).abs()
        if module.precision == "bfloat16":
            return {"dlr": dlr_bf16(x, module.weight, module.bias, module.dilations,
                                    module.config.pool)}
        return {"dlr": dlr_op(x, module.weight, module.bias, module.dilations,
                              module.config.pool, backend=module.backend)}

    @torch.inference_mode()
    def __call__(self, samples: np.ndarray, peaks: np.ndarray) -> dict[str, np.ndarray]:
        x = self._to_device(samples)
        if self.continuous_dlr is not None:
            outputs = self._continuous(x, self._to_device(peaks))
        else:
            outputs = {}
            if self.model is not None:
                result = self.model(x)
                outputs.update(result if isinstance(result, dict) else {"dlr": result})
            for name, module in self.spectral.items():
                outputs[name] = module(x)
        for name in [name for name in outputs if name.endswith("_logits")]:
            outputs[name[:-len("_logits")] + "_probs"] = torch.softmax(outputs[name].float(), -1)
        return {name: value.float().cpu().numpy() for name, value in outputs.items()}

