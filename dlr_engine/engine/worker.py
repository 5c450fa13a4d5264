"""Decode workers: file -> model-rate segments, in worker processes (or a thread).

Worker processes come from a **forkserver** where the platform has one, else are spawned:
either way a fresh interpreter that never touched CUDA or started threads. The forkserver
imports this module once, then forks each worker in milliseconds. multiprocessing would also
make every worker re-import the caller's main script (as ``__mp_main__``): a script importing
torch at its top then cost each worker seconds (issue 17: 93x realtime instead of 4,184x on 16
cores). Workers run only this module's functions, so ``process_context()`` starts them without
the caller's main (see ``_main_module_hidden``).

Worker processes are generic (the ``DecodePlan`` comes with each task) and kept in a pool of
this process between runs (``acquire`` / ``release``): a worker whose tasks were all
answered is idle and safe to reuse; any other is killed. A worker exits by itself, code 0,
when its task queue ends (``close``, ``close_pool``, and at interpreter exit).

A worker serves tracks in the order they are submitted and streams one message per segment;
the main process reads the tracks in run order whichever worker decoded them, so batches, and
therefore outputs, do not depend on the schedule. Each worker has a bounded inbox in the main
process; a full inbox blocks the worker, which bounds memory. This module imports no torch.

Messages (tuples, first item the kind):
  ("segment", track, index, start_sample, samples (n,) float32, track_peak)
  ("end", track, info: dict, decode_seconds)
  ("error", track, reason: str, info: dict | None, decode_seconds)
  ("died", why: str)    -- made by the main process when a worker vanishes
A worker process first sends ("ready",); one that dies before that could not start at all,
which stops the run instead of failing every track.
``track_peak`` is the track's max |x| in continuous mode (0.0 otherwise).
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import multiprocessing
import os
import queue
import signal
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator

import numpy as np
from multiprocessing import context as mp_context
from multiprocessing import util as _mp_util  # noqa: F401 - its exit handler is registered first, so close_pool (registered later) runs before it

from ..audio.decode import AudioInfo, AudioStream, DecodeError
from ..audio.segment import Segment, Segmenter, TooShortError, continuous_chunks

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
"""Thread-pool sizes forced to 1 in worker processes: parallelism comes from the workers."""
POLL_SECONDS = 0.5
"""How often a decode thread blocked on a full inbox checks whether its owner closed it."""


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: a container or ``taskset`` limit),
    not the machine's count, which ``os.cpu_count()`` gives."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class DecodePlan:
    """How a worker turns a file into model inputs (all lengths in samples at ``sample_rate``).

    continuous: one chunked DLR per track (``receptive_field``, ``pool``, ``chunk_frames``
    define the chunks) instead of fixed ``segment_samples`` windows every ``hop_samples``.
    """

    sample_rate: int
    segment_samples: int
    hop_samples: int
    tail: str
    min_samples: int
    pad_short: bool
    continuous: bool = False
    receptive_field: int = 1
    pool: int = 1
    chunk_frames: int = 1


def _fixed_segments(stream: AudioStream, plan: DecodePlan) -> Iterator[tuple[Segment, float]]:
    segmenter = Segmenter(plan.segment_samples, plan.hop_samples, plan.tail, plan.min_samples,
                          plan.pad_short, plan.sample_rate)
    for block in stream:
        for segment in segmenter.push(block):
            yield segment, 0.0
    for segment in segmenter.finish():
        yield segment, 0.0


def _continuous_segments(stream: AudioStream, plan: DecodePlan) -> Iterator[tuple[Segment, float]]:
    """Spill the decoded track to an anonymous temporary file (gone even after SIGKILL) to learn
    its peak, then read it back chunk by chunk."""
    with tempfile.TemporaryFile() as spill:
        peak, samples = 0.0, 0
        for block in stream:
            peak = max(peak, float(np.abs(block).max()))
            spill.write(block.tobytes())
            samples += len(block)

        def read(start: int, stop: int) -> np.ndarray:
            chunk = np.empty(stop - start, np.float32)
            spill.seek(start * chunk.itemsize)
            spill.readinto(memoryview(chunk).cast("B"))
            return chunk

        for segment in continuous_chunks(read, samples, plan.receptive_field, plan.pool,
                                         plan.chunk_frames, plan.min_samples, plan.pad_short,
                                         plan.sample_rate):
            yield segment, peak


def _info_dict(info: AudioInfo | None) -> dict | None:
    return dataclasses.asdict(info) if info is not None else None


def track_messages(track: int, path: str, plan: DecodePlan) -> Iterator[tuple]:
    """The messages of one track: its segments, then ``end``; any failure of the file ends the
    stream with an ``error`` message instead."""
    started = time.perf_counter()
    stream = None
    try:
        stream = AudioStream(path, plan.sample_rate)
        segments = (_continuous_segments if plan.continuous else _fixed_segments)(stream, plan)
        for segment, peak in segments:
            yield ("segment", track, segment.index, segment.start, segment.samples, peak)
        final = ("end", track, _info_dict(stream.info), time.perf_counter() - started)
    except (DecodeError, TooShortError) as error:
        final = ("error", track, str(error), _info_dict(stream and stream.info),
                 time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001 - a decoder bug must not stop the corpus
        final = ("error", track, f"{type(error).__name__}: {error}",
                 _info_dict(stream and stream.info), time.perf_counter() - started)
    finally:
        if stream is not None:
            stream.close()
    yield final


def serve(receive: Callable[[], tuple | None], send: Callable[[tuple], None]) -> None:
    """Run tasks ``(track, path, plan)`` until ``None``."""
    while (task := receive()) is not None:
        for message in track_messages(*task):
            send(message)


def _process_main(tasks, messages) -> None:
    """Entry point of a worker process: serve until the main process ends the task queue
    (``None``, or the pipe closing when the main process dies); then return, exit code 0."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):
        messages.send(("ready",))
        serve(tasks.recv, messages.send)


@contextlib.contextmanager
def single_threaded_env() -> Iterator[None]:
    """Set ``THREAD_ENV`` to 1 while child processes start (they copy the environment)."""
    saved = {name: os.environ.get(name) for name in THREAD_ENV}
    os.environ.update({name: "1" for name in THREAD_ENV})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Show multiprocessing a ``__main__`` without file or spec while a process starts.

    ``multiprocessing.spawn.get_preparation_data`` tells every forkserver or spawn child to
    re-import the caller's main script (``init_main_from_path``) before it unpickles its
    target; our targets live in this module, so the child needs none of it. The swap lasts as
    long as ``Process.start()`` (the preparation data is pickled there); another thread that
    looks up ``sys.modules["__main__"]`` in that window sees the stand-in."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class _StartWithoutMain:
    """Mixin of the worker ``Process`` classes: ``start()`` without the caller's main script,
    with single-threaded math libraries (a forkserver started now keeps that environment)."""

    def start(self) -> None:
        with _main_module_hidden(), single_threaded_env():
            super().start()


class _ForkServerProcess(_StartWithoutMain, mp_context.ForkServerProcess):
    pass


class _SpawnProcess(_StartWithoutMain, mp_context.SpawnProcess):
    pass


class _ForkServerContext(mp_context.ForkServerContext):
    Process = _ForkServerProcess


class _SpawnContext(mp_context.SpawnContext):
    Process = _SpawnProcess


def process_context() -> mp_context.BaseContext:
    """The multiprocessing context of worker processes: forkserver (preloading this module),
    else spawn, whose processes (``Process``, ``Pool``) never import the caller's main script;
    their targets must live in importable modules."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = _ForkServerContext()
        context.set_forkserver_preload([__name__])
        return context
    return _SpawnContext()


class _Stopped(Exception):
    """Raised in a worker thread whose owner closed it."""


class DecodeWorker:
    """One decoder and its bounded inbox.

    process: run in a worker process (else a thread of this process, where libsndfile and
    soxr release the GIL). ``submit(track, path, plan)`` queues a task; ``get()`` returns the
    next message, or ``("died", why)`` if the worker vanished (crash, OOM kill). ``pending``:
    tasks submitted whose last message has not reached the inbox yet.
    """

    @property
    def pending(self) -> int:
        # two counters, each written by one thread only (submit: the caller; answered: the
        # pump), so no update is lost as with one counter updated from both
        return self._submitted - self._answered


    def __init__(self, process: bool = True, inbox_size: int = 16, context=None) -> None:
        self.inbox: queue.Queue = queue.Queue(maxsize=inbox_size)
        self.inbox_size = inbox_size
        self._submitted = self._answered = 0
        self._closed = threading.Event()
        self._ready = not process
        self.process = None
        if process:
            context = context or process_context()
            task_receiver, self._task_sender = context.Pipe(duplex=False)
            message_receiver, message_sender = context.Pipe(duplex=False)
            self.process = context.Process(target=_process_main, daemon=True,
                                           args=(task_receiver, message_sender))
            self.process.start()
            task_receiver.close()
            message_sender.close()
            self._submit = self._task_sender.send
            target, args = self._pump, (message_receiver,)
        else:
            tasks: queue.Queue = queue.Queue()
            self._submit = tasks.put
            target, args = self._serve_thread, (tasks.get,)
        self._thread = threading.Thread(target=target, args=args, daemon=True,
                                        name="dlr-engine-decode")
        self._thread.start()

    def _put(self, message: tuple) -> None:
        while not self._closed.is_set():
            try:
                self.inbox.put(message, timeout=POLL_SECONDS)
            except queue.Full:
                continue
            if message[0] in ("end", "error"):
                self._answered += 1
            return
        raise _Stopped

    def _pump(self, receiver) -> None:
        """Move messages from the worker process's pipe into the inbox."""
        try:
            while True:
                self._put(receiver.recv())
        except (EOFError, OSError):
            if not self._closed.is_set():
                self.process.join()  # its pipe closed: the process has exited
                with contextlib.suppress(_Stopped):
                    self._put(("died", f"exit code {self.process.exitcode}"))
        except _Stopped:
            pass
        finally:
            receiver.close()

    def _serve_thread(self, receive) -> None:
        def next_task() -> tuple | None:
            task = receive()
            return None if self._closed.is_set() else task
        try:
            serve(next_task, self._put)
        except _Stopped:
            pass
        except Exception as error:  # noqa: BLE001 - reported like a dead process
            with contextlib.suppress(_Stopped):
                self._put(("died", f"{type(error).__name__}: {error}"))

    def submit(self, track: int, path: str, plan: DecodePlan) -> None:
        """Queue a task. A worker process that has died cannot take it: the send fails, and
        the death reaches ``get()`` as ``("died", why)``, whose handler requeues the task."""
        self._submitted += 1
        try:
            self._submit((track, path, plan))
        except OSError:  # BrokenPipeError: the process is gone; _pump reports it
            if self.process is None or self.process.is_alive():
                raise

    def get(self, timeout: float | None = None) -> tuple:
        """The next message. Raises ``TimeoutError`` after ``timeout`` seconds without one,
        ``RuntimeError`` if the worker process could not start."""
        while True:
            try:
                message = self.inbox.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no message for {timeout} s") from None
            if message[0] == "ready":
                self._ready = True
            elif message[0] == "died" and not self._ready:
                raise RuntimeError(
                    f"a decode worker process could not start ({message[1]}; its "
                    f"error is printed above); pass workers=0 to decode in threads")
            else:
                return message

    def idle(self) -> bool:
        """Every task answered and nothing but ``ready`` left in the inbox (which is
        emptied): the worker can serve another run."""
        if self.pending or (self.process is not None and not self.process.is_alive()):
            return False
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return True
            if message[0] != "ready":
                return False
            self._ready = True

    def close(self, stuck: bool = False) -> None:
        """Stop the worker. An idle one (every task answered: the normal end of a run) is sent
        the end of its task queue and exits by itself, code 0; it is joined without a
        timeout. Any other (a run abandoned midway, or ``stuck`` in a read or the decoder) is
        killed at once; a stuck thread cannot be stopped and is left behind."""
        normal = not stuck and self.idle()
        self._closed.set()
        if self.process is None:
            self._submit(None)
            if normal:
                self._thread.join()
            return
        if normal:
            with contextlib.suppress(OSError):
                self._task_sender.send(None)
        else:
            self.process.kill()
        self._task_sender.close()
        self.process.join()
        self._thread.join()


_idle: dict[int, list[DecodeWorker]] = {}
"""Idle worker processes of this process, by inbox size."""
_idle_pid: int | None = None
_idle_lock = threading.Lock()


def acquire(count: int, process: bool, inbox_size: int) -> list[DecodeWorker]:
    """``count`` workers: idle processes of earlier runs first, then new ones (threads are
    always new: they start in microseconds)."""
    global _idle_pid
    reused: list[DecodeWorker] = []
    if process:
        with _idle_lock:
            if _idle_pid != os.getpid():  # a forked child: the pool is its parent's
                _idle.clear()
                _idle_pid = os.getpid()
                atexit.register(close_pool)
            pool = _idle.setdefault(inbox_size, [])
            while pool and len(reused) < count:
                reused.append(pool.pop())
    return reused + [DecodeWorker(process, inbox_size) for _ in range(count - len(reused))]


def release(workers: list[DecodeWorker]) -> None:
    """Return the idle worker processes of a run to the pool; close the others."""
    for worker in workers:
        if worker.process is not None and _idle_pid == os.getpid() and worker.idle():
            with _idle_lock:
                _idle.setdefault(worker.inbox_size, []).append(worker)
        else:
            worker.close()


def pooled_processes() -> list:
    """The ``multiprocessing.Process`` of every idle pooled worker."""
    with _idle_lock:
        return [worker.process for pool in _idle.values() for worker in pool]


def close_pool() -> None:
    """End the idle worker processes: each reads the end of its queue and exits, code 0.
    Runs at interpreter exit (before multiprocessing's own exit handler, which would
    terminate them)."""
    with _idle_lock:
        workers = [worker for pool in _idle.values() for worker in pool]
        _idle.clear()
    for worker in workers:
        worker.close()
