"""Cut a stream of mono samples into what the model runs on.

Two segmentations (DESIGN §2):

* **segments** (the paper's convention): fixed windows of ``segment_samples`` every
  ``hop_samples``; each window is peak-normalised on its own by the model. A track shorter than
  one window is one window of its own length. The tail that does not fill a window is handled
  by an explicit policy (``TAIL_POLICIES``).
* **continuous**: one DLR for the whole track, normalised by the track's peak, computed in
  chunks that overlap by the receptive field minus one sample and start on multiples of the
  pool stride, so the concatenated chunk outputs equal the one-shot DLR of the whole track.

Both work on blocks as they arrive and keep at most one window (plus one block) in memory.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

TAIL_POLICIES = ("end", "pad", "drop")
"""What becomes of samples after the last full window:
``end``: one more full window ending at the track's end (overlapping the previous one);
``pad``: one more window on the hop grid, zero-padded to full length;
``drop``: ignored."""


class TooShortError(ValueError):
    """A track shorter than the model's minimum input (and padding was not asked for)."""


TOO_SHORT = "shorter than the model's minimum input"
"""In the reason of every ``TooShortError`` (``dlr-engine merge`` advises --pad-short on it)."""


@dataclass(frozen=True)
class Segment:
    """One model input: ``samples`` (n,) float32 starting at sample ``start`` of the track."""

    index: int
    start: int
    samples: np.ndarray


def check_length(samples: int, min_samples: int, sample_rate: int) -> None:
    """Raise ``TooShortError`` when a track of ``samples`` cannot give one output frame."""
    if samples < min_samples:
        raise TooShortError(
            f"track of {samples / sample_rate:.2f} s ({samples} samples at {sample_rate} Hz) is "
            f"{TOO_SHORT} of {min_samples} samples "
            f"({min_samples / sample_rate:.2f} s: receptive field plus one pool window); "
            f"pass pad_short=True (--pad-short) to zero-pad it")


def _pad(samples: np.ndarray, length: int) -> np.ndarray:
    return np.pad(samples, (0, length - len(samples))) if len(samples) < length else samples


class Segmenter:
    """Fixed windows over a block stream.

    segment_samples: window length; hop_samples: distance between window starts;
    tail: one of ``TAIL_POLICIES``; min_samples: the model's minimum input, checked for a
    track shorter than one window, which is zero-padded to ``min_samples`` if ``pad_short``.

    ``push(block)`` yields the windows the block completes; ``finish()`` yields the rest.
    """

    def __init__(self, segment_samples: int, hop_samples: int, tail: str = "end",
                 min_samples: int = 1, pad_short: bool = False, sample_rate: int = 8000) -> None:
        if tail not in TAIL_POLICIES:
            raise ValueError(f"tail must be one of {TAIL_POLICIES}, got {tail!r}")
        if segment_samples < 1 or hop_samples < 1:
            raise ValueError(f"segment ({segment_samples}) and hop ({hop_samples}) must be "
                             f"positive sample counts")
        self.segment_samples = segment_samples
        self.hop_samples = hop_samples
        self.tail = tail
        self.min_samples = min_samples
        self.pad_short = pad_short
        self.sample_rate = sample_rate
        self.total = 0                  # samples pushed so far
        self._data = np.zeros(0, np.float32)
        self._lo = self._hi = 0         # the kept samples are self._data[lo:hi]
        self._buffer_start = 0          # track position of self._data[lo]
        self._next_start = 0            # start of the next window on the hop grid
        self._emitted = 0

    def _window(self, start: int, length: int) -> Segment:
        """The window at ``start``, zero-padded to ``length`` where the track ends first."""
        offset = self._lo + start - self._buffer_start
        samples = _pad(self._data[offset:min(offset + length, self._hi)], length).copy()
        segment = Segment(self._emitted, start, samples)
        self._emitted += 1
        return segment

    def _append(self, block: np.ndarray) -> None:
        """Append in place; the kept samples move to the front (into a larger array when needed)
        only when the end is reached, so each sample is copied O(1) times, not once per block."""
        end = self._hi + len(block)
        if end > len(self._data):
            kept = self._hi - self._lo
            data = self._data
            if kept + len(block) > len(data) // 2:
                data = np.empty(2 * (kept + len(block)), np.float32)
            data[:kept] = self._data[self._lo:self._hi]
            self._data, self._lo, self._hi = data, 0, kept
            end = kept + len(block)
        self._data[self._hi:end] = block
        self._hi = end

    def push(self, block: np.ndarray) -> Iterator[Segment]:
        self._append(np.asarray(block, np.float32))
        self.total += len(block)
        while self._next_start + self.segment_samples <= self.total:
            yield self._window(self._next_start, self.segment_samples)
            self._next_start += self.hop_samples
        keep_from = min(self._next_start, max(0, self.total - self.segment_samples))
        if keep_from > self._buffer_start:
            self._lo += keep_from - self._buffer_start
            self._buffer_start = keep_from

    def finish(self) -> Iterator[Segment]:
        if self._emitted == 0:
            if not self.pad_short:
                check_length(self.total, self.min_samples, self.sample_rate)
            yield self._window(0, max(self.total, self.min_samples))
            return
        covered = self._next_start - self.hop_samples + self.segment_samples
        if self.total <= covered:
            return
        if self.tail == "end":
            yield self._window(self.total - self.segment_samples, self.segment_samples)
        elif self.tail == "pad" and self._next_start < self.total:
            yield self._window(self._next_start, self.segment_samples)


# -- continuous --------------------------------------------------------------------------------

def chunk_bounds(samples: int, receptive_field: int, pool: int,
                 chunk_frames: int) -> list[tuple[int, int]]:
    """``(start, stop)`` sample ranges whose DLRs, concatenated along frames, equal the DLR of
    the whole track of ``samples``: output frame ``f`` reads samples
    ``[f * pool, f * pool + pool + receptive_field - 2]``, so frames ``[f0, f1)`` need
    ``x[f0 * pool : f1 * pool + receptive_field - 1]``. Chunks hold ``chunk_frames`` frames
    (the last one fewer); each start is a multiple of ``pool``."""
    frames = max(0, (samples - receptive_field + 1) // pool)
    return [(f0 * pool, min(f0 + chunk_frames, frames) * pool + receptive_field - 1)
            for f0 in range(0, frames, chunk_frames)]


def continuous_chunks(reader: Callable[[int, int], np.ndarray], samples: int,
                      receptive_field: int, pool: int, chunk_frames: int, min_samples: int,
                      pad_short: bool = False, sample_rate: int = 8000) -> Iterator[Segment]:
    """Chunks of a whole track for the continuous DLR.

    reader(start, stop) -> float32 samples of the track in ``[start, stop)``; the track holds
    ``samples`` samples. A track shorter than ``min_samples`` raises ``TooShortError`` or, with
    ``pad_short``, is zero-padded to ``min_samples`` (one frame).
    """
    if samples < min_samples:
        if not pad_short:
            check_length(samples, min_samples, sample_rate)
        yield Segment(0, 0, _pad(reader(0, samples), min_samples))
        return
    for index, (start, stop) in enumerate(chunk_bounds(samples, receptive_field, pool,
                                                       chunk_frames)):
        yield Segment(index, start, reader(start, stop))
