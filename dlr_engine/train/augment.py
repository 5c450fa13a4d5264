"""On-the-fly, seeded training augmentation: what a recording does to a drum performance.

``augment(audio, labels, rng, seconds, sample_rate, rates)`` applies, in order:

1. a playback-rate change by a factor ``s`` drawn log-uniformly in ``rates`` (default
   ``STRETCH``; soxr resampling: tempo and pitch move together, the groove stays intact); the
   ``bpm`` label is multiplied by ``s`` and the ``tempo_class`` recomputed from it, so labels
   follow the audio;
2. a random crop of ``seconds`` (the source clip must be at least ``seconds * rates[1]`` long);
2b. with probability ``P_SOFTEN``, soft attacks (``soften``): every hit smeared into a short
   swish, as brushes or a distant, diffuse recording play it (the beat stays where it was);
3. with probability ``P_ACCOMPANIMENT``, pitched accompaniment mixed in: chords of harmonic
   tones with soft attacks that change at random times unrelated to the beat (music that is not
   percussion and carries no tempo), ``ACCOMPANIMENT_DB`` relative to the clip's RMS;
4. with probability ``P_EQ``, an equaliser: a high-pass, a low-pass and a peaking band of random
   corners and gain (biquads, RBJ cookbook);
5. with probability ``P_COMPRESSION``, a feed-forward compressor (peak envelope with attack and
   release, ``ratio`` above ``threshold`` dB under the clip's peak, make-up to the same peak);
6. a room and noise (``synth.reverb_and_noise``): reverb with probability ``P_REVERB``, noise at
   ``NOISE_DB`` under the mix power (white to low-passed);
7. a gain of ``GAIN_DB`` (the DLR normalises by the clip's peak, the other front-ends do not).

Everything is drawn from ``rng``; ``Augmented`` draws it from ``(seed, epoch, index)``, so an
epoch is the same in any order, on any number of workers, and after a resume.
"""
from __future__ import annotations

import numpy as np
import scipy.signal
import soxr
import torch
from torch.utils.data import Dataset

from ..config import PAPER
from ..data.synth import _rng, reverb_and_noise, tempo_class

STRETCH = (0.92, 1.08)
"""Default playback-rate range of ``augment`` (``TrainConfig.stretch`` / ``--stretch`` set another)."""
P_ACCOMPANIMENT, P_EQ, P_COMPRESSION, P_REVERB, P_SOFTEN = 0.4, 0.7, 0.5, 0.5, 0.25
SOFT_ATTACK_SECONDS, SOFT_DECAY_SECONDS = (0.005, 0.03), (0.02, 0.08)
ACCOMPANIMENT_DB = (-18.0, 0.0)
ACCOMPANIMENT_CHANGE_SECONDS = (0.7, 4.0)  # chords last this long, drawn uniformly
ACCOMPANIMENT_ATTACK_SECONDS = (0.08, 0.4)
HIGHPASS_HZ, LOWPASS_HZ = (20.0, 300.0), (1200.0, 3900.0)
PEAK_HZ, PEAK_DB, PEAK_Q = (100.0, 3500.0), (-12.0, 12.0), (0.5, 3.0)
THRESHOLD_DB, RATIO = (-30.0, -6.0), (2.0, 10.0)
ATTACK_SECONDS, RELEASE_SECONDS = (0.001, 0.02), (0.03, 0.3)
REVERB_RT60_SECONDS, REVERB_WET, REVERB_DAMPING = (0.2, 1.5), (0.05, 0.5), (0.0, 0.9)
NOISE_DB = (-60.0, -15.0)
NOISE_CORNER_HZ = (200.0, 4000.0)
GAIN_DB = (-20.0, 0.0)


def _u(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def stretch(audio: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """``audio`` played ``factor`` times faster (float32, ``len / factor`` samples): soxr
    resampling from ``sample_rate * factor`` to ``sample_rate``."""
    return soxr.resample(audio, sample_rate * factor, sample_rate, quality="HQ").astype(np.float32)


def accompaniment(samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """(samples,) float32, RMS 1: triads of 1-4 harmonic tones (MIDI 40-76) with slow attacks
    and decays, each chord held for a random time, so their changes do not follow any beat."""
    t = np.arange(samples) / sample_rate
    out = np.zeros(samples)
    start = -_u(rng, ACCOMPANIMENT_CHANGE_SECONDS)
    while start < t[-1]:
        length = _u(rng, ACCOMPANIMENT_CHANGE_SECONDS)
        root = int(rng.integers(40, 64))
        notes = root + np.array([0, int(rng.choice([3, 4])), 7, 12])[:int(rng.integers(2, 5))]
        first, last = max(0, int(start * sample_rate)), min(samples, int((start + length) * sample_rate))
        if last > first:
            local = t[first:last] - start
            envelope = (1.0 - np.exp(-local / _u(rng, ACCOMPANIMENT_ATTACK_SECONDS))) * np.exp(-local / (2 * length))
            harmonics = int(rng.integers(1, 5))
            for note in notes:
                freq = 440.0 * 2.0 ** ((note - 69) / 12.0)
                for k in range(1, harmonics + 1):
                    if k * freq < 0.45 * sample_rate:
                        out[first:last] += envelope * np.sin(2 * np.pi * k * freq * local + rng.uniform(0, 2 * np.pi)) / k
        start += length
    rms = np.sqrt(np.mean(out ** 2))
    return (out / rms if rms > 0 else out).astype(np.float32)


def soften(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``audio`` (samples,) convolved with a noise burst that rises over ``SOFT_ATTACK_SECONDS``
    and decays over ``SOFT_DECAY_SECONDS`` (no direct sound): each onset becomes a swish with a
    soft attack at the same time; float32, same length and RMS."""
    attack, decay = _u(rng, SOFT_ATTACK_SECONDS), _u(rng, SOFT_DECAY_SECONDS)
    t = np.arange(int((attack + 5.0 * decay) * sample_rate)) / sample_rate
    response = rng.standard_normal(len(t)) * (1.0 - np.exp(-t / attack)) * np.exp(-t / decay)
    out = scipy.signal.fftconvolve(audio.astype(np.float64), response)[:len(audio)]
    rms_in, rms_out = np.sqrt(np.mean(audio.astype(np.float64) ** 2)), np.sqrt(np.mean(out ** 2))
    return (out * (rms_in / rms_out) if rms_out > 0 else out).astype(np.float32)


def equalise(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A 2nd-order high-pass, a 2nd-order low-pass and a peaking band (RBJ), corners drawn."""
    nyquist_safe = 0.49 * sample_rate
    high = scipy.signal.butter(2, _u(rng, HIGHPASS_HZ), "highpass", fs=sample_rate, output="sos")
    low = scipy.signal.butter(2, min(_u(rng, LOWPASS_HZ), nyquist_safe), "lowpass", fs=sample_rate, output="sos")
    w0 = 2 * np.pi * min(_u(rng, PEAK_HZ), nyquist_safe) / sample_rate
    gain = 10.0 ** (_u(rng, PEAK_DB) / 40.0)
    alpha = np.sin(w0) / (2 * _u(rng, PEAK_Q))
    b = [1 + alpha * gain, -2 * np.cos(w0), 1 - alpha * gain]
    a = [1 + alpha / gain, -2 * np.cos(w0), 1 - alpha / gain]
    peak = np.concatenate([b, a])[None] / a[0]
    return scipy.signal.sosfilt(np.concatenate([high, low, peak]), audio).astype(np.float32)


def compress(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Feed-forward compression: the peak envelope (attack and release one-pole smoothing of
    ``|x|``, its faster-rising side) above ``threshold`` is reduced by ``ratio``; made up to the
    input's peak."""
    magnitude = np.abs(audio).astype(np.float64)
    peak = magnitude.max()
    if peak == 0:
        return audio
    attack = np.exp(-1.0 / (_u(rng, ATTACK_SECONDS) * sample_rate))
    release = np.exp(-1.0 / (_u(rng, RELEASE_SECONDS) * sample_rate))
    fast = scipy.signal.lfilter([1 - attack], [1, -attack], magnitude)
    slow = scipy.signal.lfilter([1 - release], [1, -release], magnitude)
    envelope = np.maximum(fast, slow)
    threshold = peak * 10.0 ** (_u(rng, THRESHOLD_DB) / 20.0)
    ratio = _u(rng, RATIO)
    over = np.maximum(envelope / threshold, 1.0)
    out = audio * over ** (1.0 / ratio - 1.0)
    return (out * peak / np.abs(out).max()).astype(np.float32)


def check_rates(rates: tuple[float, float]) -> None:
    """Raise ``ValueError`` unless ``rates`` is a (low, high) playback-rate range, 0 < low <= high."""
    if len(rates) != 2 or not 0.0 < rates[0] <= rates[1]:
        raise ValueError(f"a stretch range is (low, high) with 0 < low <= high, got {tuple(rates)}")


def augment(audio: np.ndarray, labels: dict[str, torch.Tensor], rng: np.random.Generator, seconds: float,
            sample_rate: int = PAPER.sample_rate,
            rates: tuple[float, float] = STRETCH) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``audio`` (samples,) float32 of at least ``seconds * rates[1]`` seconds, augmented and
    cropped to ``round(seconds * sample_rate)`` samples (see the module docstring), and
    ``labels`` (a dataset item's) with ``bpm`` and ``tempo_class`` moved by the stretch.
    ``rates``: a range ``check_rates`` accepts (``Augmented`` checks it once, not per clip)."""
    samples = int(round(seconds * sample_rate))
    if len(audio) < int(np.ceil(samples * rates[1])):
        raise ValueError(f"augmentation needs clips of at least {seconds * rates[1]:.2f} s "
                         f"(seconds x the largest stretch {rates[1]}), got {len(audio) / sample_rate:.2f} s")
    factor = float(np.exp(rng.uniform(np.log(rates[0]), np.log(rates[1]))))
    audio = stretch(audio, factor, sample_rate)
    offset = int(rng.integers(0, len(audio) - samples + 1))
    audio = audio[offset:offset + samples]
    if rng.random() < P_SOFTEN:
        audio = soften(audio, sample_rate, rng)
    if rng.random() < P_ACCOMPANIMENT:
        rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2))
        audio = audio + np.float32(rms * 10.0 ** (_u(rng, ACCOMPANIMENT_DB) / 20.0)) * accompaniment(samples, sample_rate, rng)
    if rng.random() < P_EQ:
        audio = equalise(audio, sample_rate, rng)
    if rng.random() < P_COMPRESSION:
        audio = compress(audio, sample_rate, rng)
    wet = _u(rng, REVERB_WET) if rng.random() < P_REVERB else 0.0
    audio = reverb_and_noise(audio, _u(rng, REVERB_RT60_SECONDS), wet, _u(rng, REVERB_DAMPING), _u(rng, NOISE_DB),
                             _u(rng, NOISE_CORNER_HZ), sample_rate, rng)
    peak = np.abs(audio).max()
    gain = 10.0 ** (_u(rng, GAIN_DB) / 20.0) / peak if peak > 0 else 1.0
    bpm = labels["bpm"] * factor
    return torch.from_numpy((audio * gain).astype(np.float32)), {
        **labels, "bpm": bpm.to(torch.float32),
        "tempo_class": torch.tensor(tempo_class(float(bpm)), dtype=torch.int64)}


class Augmented(Dataset):
    """``dataset``'s items through ``augment`` (with ``probability``; otherwise only a random crop),
    cropped to ``seconds``; the draws of item ``index`` in epoch ``epoch`` (``set_epoch``; the
    trainer calls it) come from ``SeedSequence(seed, spawn_key=(epoch, index))``."""

    def __init__(self, dataset: Dataset, seconds: float, seed: int, sample_rate: int = PAPER.sample_rate,
                 probability: float = 1.0, rates: tuple[float, float] = STRETCH) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"augmentation probability must lie in [0, 1], got {probability}")
        check_rates(rates)
        self.dataset, self.seconds, self.seed, self.sample_rate = dataset, seconds, seed, sample_rate
        self.probability, self.rates = probability, tuple(rates)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        audio, labels = self.dataset[index]
        rng = _rng(self.seed, self.epoch, index)
        if self.probability < 1.0 and rng.random() >= self.probability:  # no draw at 1.0: runs stay as they were
            samples = int(round(self.seconds * self.sample_rate))
            offset = int(rng.integers(0, len(audio) - samples + 1))
            return audio[offset:offset + samples], labels
        return augment(audio.numpy(), labels, rng, self.seconds, self.sample_rate, self.rates)
