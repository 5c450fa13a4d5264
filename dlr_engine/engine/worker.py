"""Decode workers: file -> model-rate segments, in worker processes (or a thread).

Worker processes come from a **forkserver** where the platform has one, else are spawned:
either way a fresh interpreter that never touched CUDA or started threads. The forkserver
imports this module once, then forks each worker in milliseconds (spawning re-imports the
package and the caller's main script per worker, seconds each), which also makes replacing
a crashed worker cheap.

A worker serves tracks in the order they are submitted and streams one message per segment,
so the main process sees every track's segments in a fixed order whatever the timing: batches,
and therefore outputs, are reproducible. Each worker has a bounded inbox in the main process;
a full inbox blocks the worker, which bounds memory. This module imports no torch.

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

import contextlib
import dataclasses
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from ..audio.decode import AudioInfo, AudioStream, DecodeError
from ..audio.segment import Segment, Segmenter, TooShortError, continuous_chunks

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
"""Thread-pool sizes forced to 1 in worker processes: parallelism comes from the workers."""
POLL_SECONDS = 0.5
START_METHODS = ("forkserver", "spawn")
"""Preferred multiprocessing start methods, first available wins (never plain fork)."""


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


def serve(receive: Callable[[], tuple | None], send: Callable[[tuple], None],
          plan: DecodePlan) -> None:
    """Run tasks ``(track, path)`` until ``None``."""
    while (task := receive()) is not None:
        for message in track_messages(*task, plan):
            send(message)


def _process_main(tasks, messages, plan: DecodePlan) -> None:
    """Entry point of a worker process: serve until the main process closes the task pipe
    (or dies, which closes it too)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):
        messages.send(("ready",))
        serve(tasks.recv, messages.send, plan)


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


def process_context():
    """The multiprocessing context of worker processes (see ``START_METHODS``)."""
    import multiprocessing
    method = next(m for m in START_METHODS if m in multiprocessing.get_all_start_methods())
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([__name__])
    return context


class _Stopped(Exception):
    """Raised in a worker thread whose owner closed it."""


class DecodeWorker:
    """One decoder and its bounded inbox.

    process: run in a worker process (else a thread of this process, where libsndfile and
    soxr release the GIL). ``submit(track, path)`` queues a task; ``get()`` returns the next
    message, or ``("died", why)`` if the worker vanished (crash, OOM kill).
    """

    def __init__(self, plan: DecodePlan, process: bool = True, inbox_size: int = 16,
                 context=None) -> None:
        self.inbox: queue.Queue = queue.Queue(maxsize=inbox_size)
        self._closed = threading.Event()
        self._ready = not process
        self.process = None
        if process:
            context = context or process_context()
            task_receiver, self._task_sender = context.Pipe(duplex=False)
            message_receiver, message_sender = context.Pipe(duplex=False)
            self.process = context.Process(target=_process_main, daemon=True,
                                           args=(task_receiver, message_sender, plan))
            with single_threaded_env():
                self.process.start()
            task_receiver.close()
            message_sender.close()
            self._submit = self._task_sender.send
            target, args = self._pump, (message_receiver,)
        else:
            tasks: queue.Queue = queue.Queue()
            self._submit = tasks.put
            target, args = self._serve_thread, (tasks.get, plan)
        self._thread = threading.Thread(target=target, args=args, daemon=True,
                                        name="dlr-engine-decode")
        self._thread.start()

    def _put(self, message: tuple) -> None:
        while True:
            try:
                self.inbox.put(message, timeout=POLL_SECONDS)
                return
            except queue.Full:
                if self._closed.is_set():
                    raise _Stopped from None

    def _pump(self, receiver) -> None:
        """Move messages from the worker process's pipe into the inbox."""
        try:
            while True:
                self._put(receiver.recv())
        except (EOFError, OSError):
            if not self._closed.is_set():
                self.process.join(timeout=5)
                with contextlib.suppress(_Stopped):
                    self._put(("died", f"exit code {self.process.exitcode}"))
        except _Stopped:
            pass
        finally:
            receiver.close()

    def _serve_thread(self, receive, plan: DecodePlan) -> None:
        try:
            serve(receive, self._put, plan)
        except _Stopped:
            pass
        except Exception as error:  # noqa: BLE001 - reported like a dead process
            with contextlib.suppress(_Stopped):
                self._put(("died", f"{type(error).__name__}: {error}"))

    def submit(self, track: int, path: str) -> None:
        """Queue a task. A worker process that has died cannot take it: the send fails, and
        the death reaches ``get()`` as ``("died", why)``, whose handler requeues the task."""
        try:
            self._submit((track, path))
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
                    f"error is printed above). In a script, call extract() under "
                    f"'if __name__ == \"__main__\":'; or pass workers=0 to decode in a thread")
            else:
                return message

    def close(self, stuck: bool = False) -> None:
        """Stop the worker; a process that does not exit within a few seconds is terminated.
        stuck: the worker hangs (in a read or the decoder): kill its process at once; a stuck
        thread cannot be stopped and is left behind."""
        self._closed.set()
        with contextlib.suppress(OSError, ValueError):
            self._submit(None)
        wait = 0.5 if stuck else 5.0
        if self.process is not None:
            self._task_sender.close()
            if stuck:
                self.process.kill()
            self.process.join(timeout=wait)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(timeout=wait)
        self._thread.join(timeout=wait)
