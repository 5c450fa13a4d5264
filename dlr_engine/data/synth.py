"""Synthetic ballroom-like rhythm corpus: clips with style, exact tempo and tag labels.

Everything about clip ``index`` of corpus ``seed`` comes from ``SeedSequence(seed,
spawn_key=(index, stream))``, so clips render identically in any order, in parallel, and the
labels do not depend on the sample rate or duration:

- stream 0 draws the ``ClipSpec`` (style, BPM, swing, key, parts, timbres, mix); labels come
  from the spec alone (``clip_labels``), without rendering;
- stream 1 draws the events (pattern variations, humanised timing and velocity, bass notes);
- stream 2 draws the signals (noise in the drum sounds, the reverb tail, the background).

Rendering places one-shot sounds (kick, snare, hat, clap, shaker; one bass sound per pitch, one
chord sound per chord of the progression) at the event times, adds a reverb tail (FFT
convolution with exponentially decaying noise) and background noise, and scales to a random
peak below 1.
"""
from __future__ import annotations

import bisect
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.signal
import soundfile as sf
import torch
from tqdm import tqdm

from dlr_engine.config import PAPER, TEMPO_CLASS_BOUNDARIES_BPM
from dlr_engine.data.styles import BARS_PER_PHRASE, PARTS, STEPS_PER_BEAT, STYLES, Style, onset_rate
from dlr_engine.io.atomic import write_atomic

STYLE_NAMES = tuple(style.name for style in STYLES)
TAG_NAMES = (
    "has_kick", "has_snare", "has_hat", "has_clap", "has_shaker", "has_bass", "has_chords",
    "swing", "triple_meter", "dense",
)
DENSE_ONSETS_PER_SECOND = 5.0
"""A clip is ``dense`` when its main patterns play at least this many grid steps per second."""

CORPUS_SAMPLE_RATE = 44100
MIN_SAMPLE_RATE = 8000
LABELS_CSV = "labels.csv"
CSV_COLUMNS = ("path", "style", "style_index", "bpm", "tempo_class", "meter") + TAG_NAMES
AUDIO_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}
"""Extension -> (soundfile format, subtype)."""

SPEC_STREAM, EVENT_STREAM, SIGNAL_STREAM = 0, 1, 2
MAX_ONE_SHOT_SECONDS = 1.5
FADE_SECONDS = 0.005
DECAY_TO_SILENCE = 6.91  # ln(1000): time constants for an exponential decay to fall by 60 dB

# Chord progressions: (root in semitones above the key, chord intervals), one chord per change.
MAJ, MIN, DOM7, MAJ7, MIN7 = (0, 4, 7), (0, 3, 7), (0, 4, 7, 10), (0, 4, 7, 11), (0, 3, 7, 10)
MAJOR_PROGRESSIONS = (
    ((0, MAJ), (7, MAJ), (9, MIN), (5, MAJ)),
    ((0, MAJ), (5, MAJ), (7, MAJ), (0, MAJ)),
    ((2, MIN7), (7, DOM7), (0, MAJ7), (0, MAJ7)),
    ((0, MAJ), (9, MIN), (2, MIN), (7, DOM7)),
)
MINOR_PROGRESSIONS = (
    ((0, MIN), (5, MIN), (7, DOM7), (0, MIN)),
    ((0, MIN), (8, MAJ), (3, MAJ), (10, MAJ)),
    ((0, MIN), (10, MAJ), (8, MAJ), (7, DOM7)),
)
BASS_LOWEST_MIDI = 36  # bass roots lie in MIDI 36..47
CHORD_LOWEST_MIDI = 55  # chord tones lie in MIDI 55..66
BASS_ROOT_PROBABILITY = 0.5  # off the downbeat, the bass plays the root this often

MAX_HARMONICS = 7
# Per part, the timbre parameters a clip draws uniformly from these ranges (seconds, Hz, ratios);
# integer bounds draw an integer, both ends included.
TIMBRE_RANGES = {
    "kick": {"start_hz": (90.0, 240.0), "end_hz": (38.0, 70.0), "sweep_s": (0.008, 0.05),
             "decay_s": (0.08, 0.35), "click": (0.0, 0.4), "drive": (1.0, 4.0)},
    "snare": {"tone_hz": (150.0, 260.0), "tone_decay_s": (0.04, 0.15), "tone_mix": (0.15, 0.6),
              "noise_decay_s": (0.06, 0.25), "noise_low_hz": (800.0, 2500.0),
              "noise_high_hz": (5000.0, 11000.0)},
    "hat": {"low_hz": (5000.0, 9000.0), "decay_s": (0.015, 0.12)},
    "clap": {"center_hz": (800.0, 2200.0), "bursts": (3, 5), "burst_spacing_s": (0.005, 0.012),
             "decay_s": (0.05, 0.2)},
    "shaker": {"low_hz": (3000.0, 7000.0), "attack_s": (0.004, 0.02), "decay_s": (0.02, 0.07)},
    "bass": {"harmonics": (1, MAX_HARMONICS), "rolloff": (1.0, 2.5), "attack_s": (0.002, 0.01),
             "decay_s": (0.15, 0.6)},
    "chords": {"harmonics": (1, 6), "rolloff": (1.2, 3.0), "attack_s": (0.002, 0.04),
               "decay_s": (0.15, 1.2)},
}
GAIN_DB_RANGES = {
    "kick": (-4.0, 0.0), "snare": (-9.0, -2.0), "hat": (-18.0, -8.0), "clap": (-12.0, -4.0),
    "shaker": (-20.0, -9.0), "bass": (-9.0, -2.0), "chords": (-15.0, -6.0),
}
PART_OFFSET_SECONDS = 0.006  # each part leans ahead of or behind the beat by up to this much
TIMING_JITTER_SECONDS = (0.0, 0.008)  # standard deviation of the per-hit timing error
VELOCITY_JITTER = (0.03, 0.15)  # standard deviation of the per-hit log-velocity
VARIATION_PROBABILITY = (0.0, 0.25)  # chance that a phrase swaps in another pattern variant
REVERB_RT60_SECONDS = (0.2, 1.2)
REVERB_WET = (0.03, 0.35)
REVERB_DAMPING = (0.0, 0.9)  # one-pole low-pass coefficient applied to the reverb tail
NOISE_DB = (-60.0, -30.0)  # background noise level relative to the mix power
NOISE_CORNER_HZ = (50.0, 20000.0)  # low-pass corner of the background noise, drawn log-uniformly
PEAK_DBFS = (-20.0, -1.0)
NYQUIST_SAFE_FRACTION = 0.45  # filters and partials stay below this fraction of the sample rate
KICK_CLICK_DECAY_SECONDS = 0.002
CLAP_BURST_DECAY_SECONDS = 0.003
CLAP_BAND_RATIO = 1.5  # the clap's noise band spans center / ratio .. center * ratio
WAVETABLE_SIZE = 4096  # a power of two: phases wrap with a bit mask


def tempo_class(bpm: float) -> int:
    """Tempo class of the paper, slow to fast: 0 below 112 BPM, 1 to 149, 2 to 187, 3 from 187."""
    return bisect.bisect_right(TEMPO_CLASS_BOUNDARIES_BPM, bpm)


@dataclass(frozen=True)
class ClipSpec:
    """Everything drawn for one clip before rendering; the labels follow from it alone.

    bpm: beats per minute (rounded to 0.01 so that it survives a CSV round trip exactly).
    swing: 0 straight .. 1 triplet feel for off-beat eighths.
    start_beats: where in the two-bar phrase the clip starts, in beats.
    main_variants: present part -> index of its main pattern variant (absent parts are missing).
    timbres, gains_db, part_offsets_s: per present part (see ``TIMBRE_RANGES`` and friends).
    """

    index: int
    seed: int
    style_index: int
    bpm: float
    swing: float
    start_beats: float
    key: int
    progression: tuple[tuple[int, tuple[int, ...]], ...]
    bars_per_chord: int
    main_variants: dict[str, int]
    variation_probability: float
    timbres: dict[str, dict[str, float]]
    gains_db: dict[str, float]
    part_offsets_s: dict[str, float]
    timing_jitter_s: float
    velocity_jitter: float
    reverb_rt60_s: float
    reverb_wet: float
    reverb_damping: float
    noise_db: float
    noise_corner_hz: float
    peak_dbfs: float

    @property
    def style(self) -> Style:
        return STYLES[self.style_index]

    def onsets_per_second(self) -> float:
        """Distinct grid steps played by the main patterns of all present parts, per second."""
        style = self.style
        rows = [style.pattern_grid(part)[variant] for part, variant in self.main_variants.items()]
        return onset_rate(rows, style.steps_per_phrase / STEPS_PER_BEAT, self.bpm)

    def tags(self) -> tuple[int, ...]:
        """0/1 per entry of ``TAG_NAMES``."""
        values = {f"has_{part}": part in self.main_variants for part in PARTS}
        values["swing"] = self.swing > 0
        values["triple_meter"] = self.style.meter == 3
        values["dense"] = self.onsets_per_second() >= DENSE_ONSETS_PER_SECOND
        return tuple(int(values[name]) for name in TAG_NAMES)

    def labels(self) -> dict:
        """``style`` name, ``style_index``, exact ``bpm``, ``tempo_class``, ``meter``, ``tags``."""
        return {
            "style": self.style.name,
            "style_index": self.style_index,
            "bpm": self.bpm,
            "tempo_class": tempo_class(self.bpm),
            "meter": self.style.meter,
            "tags": self.tags(),
        }


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, stream)))


def _draw(rng: np.random.Generator, bounds: tuple) -> float:
    low, high = bounds
    if isinstance(low, int) and isinstance(high, int):
        return int(rng.integers(low, high + 1))
    return float(rng.uniform(low, high))


def draw_spec(index: int, seed: int) -> ClipSpec:
    """The spec of clip ``index`` of corpus ``seed``; styles cycle with the index, so any run of
    ``len(STYLES)`` consecutive clips holds every style once."""
    if index < 0 or seed < 0:
        raise ValueError(f"index ({index}) and seed ({seed}) must be non-negative integers")
    rng = _rng(seed, index, SPEC_STREAM)
    style_index = index % len(STYLES)
    style = STYLES[style_index]
    present = [part for part in PARTS if rng.random() < style.part_presence(part)]
    if "kick" not in present and "bass" not in present:
        present.insert(0, "kick")  # something must mark the beat
    swings = rng.random() < style.swing_probability
    minor = rng.random() < style.minor_probability
    progressions = MINOR_PROGRESSIONS if minor else MAJOR_PROGRESSIONS
    return ClipSpec(
        index=index,
        seed=seed,
        style_index=style_index,
        bpm=round(_draw(rng, style.bpm_range), 2),
        swing=_draw(rng, style.swing_range) if swings else 0.0,
        start_beats=_draw(rng, (0.0, float(BARS_PER_PHRASE * style.meter))),
        key=int(rng.integers(12)),
        progression=progressions[rng.integers(len(progressions))],
        bars_per_chord=int(rng.integers(1, 3)),
        main_variants={part: int(rng.integers(len(style.patterns[part]))) for part in present},
        variation_probability=_draw(rng, VARIATION_PROBABILITY),
        timbres={part: {name: _draw(rng, bounds) for name, bounds in TIMBRE_RANGES[part].items()}
                 for part in present},
        gains_db={part: _draw(rng, GAIN_DB_RANGES[part]) for part in present},
        part_offsets_s={part: _draw(rng, (-PART_OFFSET_SECONDS, PART_OFFSET_SECONDS))
                        for part in present},
        timing_jitter_s=_draw(rng, TIMING_JITTER_SECONDS),
        velocity_jitter=_draw(rng, VELOCITY_JITTER),
        reverb_rt60_s=_draw(rng, REVERB_RT60_SECONDS),
        reverb_wet=_draw(rng, REVERB_WET),
        reverb_damping=_draw(rng, REVERB_DAMPING),
        noise_db=_draw(rng, NOISE_DB),
        noise_corner_hz=float(np.exp(_draw(rng, tuple(np.log(NOISE_CORNER_HZ))))),
        peak_dbfs=_draw(rng, PEAK_DBFS),
    )


def clip_labels(index: int, seed: int) -> dict:
    """Labels of clip ``index`` of corpus ``seed`` without rendering it (``ClipSpec.labels``)."""
    return draw_spec(index, seed).labels()


# ----------------------------------------------------------------------------------------------
# Events: when each part plays, how loud, and (for bass and chords) what.


@dataclass(frozen=True)
class _Events:
    """Hits of one part, each (hits,): ``times_s`` float64 seconds, ``gains`` linear amplitude,
    ``bars`` int index of the bar on the grid (it picks the chord), ``downbeats`` bool (first
    step of a bar)."""

    times_s: np.ndarray
    gains: np.ndarray
    bars: np.ndarray
    downbeats: np.ndarray


def _swing_phase(phase: np.ndarray, swing: float) -> np.ndarray:
    """Map positions within a beat (0..1) so the off-beat eighth moves from 1/2 to 1/2 + swing/6."""
    middle = 0.5 + swing / 6.0
    return np.where(phase < 0.5, phase * 2.0 * middle,
                    middle + (phase - 0.5) * 2.0 * (1.0 - middle))


def _part_events(spec: ClipSpec, part: str, seconds: float, rng: np.random.Generator) -> _Events:
    """Hits of ``part`` that sound within the clip: its pattern grid phrase by phrase, swung,
    shifted by the style's beat offsets and the clip start, then humanised."""
    style = spec.style
    variants = style.pattern_grid(part)
    phrase_beats = style.steps_per_phrase // STEPS_PER_BEAT
    beat_s = 60.0 / spec.bpm
    # One phrase before the clip starts, so that it opens inside a piece already playing.
    n_phrases = 1 + int(np.ceil((seconds / beat_s + spec.start_beats) / phrase_beats))
    swapped = rng.random(n_phrases) < spec.variation_probability
    chosen = np.where(swapped, rng.integers(0, len(variants), n_phrases), spec.main_variants[part])
    grid = variants[chosen]  # (phrases, steps)
    phrase, step = np.nonzero(grid)
    velocity = grid[phrase, step]
    grid_beat = (phrase - 1) * phrase_beats + step // STEPS_PER_BEAT  # whole beats, 0 on phrase 1
    phase = _swing_phase((step % STEPS_PER_BEAT) / STEPS_PER_BEAT, spec.swing)
    beat_offset = style.beat_offset_table()[grid_beat % style.meter]
    beats = grid_beat + phase + beat_offset - spec.start_beats
    hits = len(beats)
    times = beats * beat_s + spec.part_offsets_s[part] + rng.normal(0.0, spec.timing_jitter_s, hits)
    gains = (velocity * np.exp(rng.normal(0.0, spec.velocity_jitter, hits))
             * 10.0 ** (spec.gains_db[part] / 20.0))
    keep = (times > -MAX_ONE_SHOT_SECONDS) & (times < seconds)
    downbeats = step % (style.meter * STEPS_PER_BEAT) == 0
    return _Events(times[keep], gains[keep], (grid_beat // style.meter)[keep], downbeats[keep])


def _chord_index(spec: ClipSpec, bars: np.ndarray) -> np.ndarray:
    return (bars // spec.bars_per_chord) % len(spec.progression)


def _bass_notes(spec: ClipSpec, events: _Events, rng: np.random.Generator) -> np.ndarray:
    """MIDI note per bass hit: the chord root on downbeats and often elsewhere, otherwise
    another chord tone or the octave."""
    chord = _chord_index(spec, events.bars)
    roots = np.array([BASS_LOWEST_MIDI + (spec.key + root) % 12 for root, _ in spec.progression])
    others = [intervals[1:] + (12,) for _, intervals in spec.progression]
    use_root = events.downbeats | (rng.random(len(chord)) < BASS_ROOT_PROBABILITY)
    pick = rng.random(len(chord))
    interval = [0 if root else others[c][int(u * len(others[c]))]
                for c, u, root in zip(chord, pick, use_root)]
    return roots[chord] + np.array(interval, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# One-shot sounds: float32 (samples,) at ``sample_rate``, peak 1, faded out at the end.


def _time(seconds: float, sample_rate: int) -> np.ndarray:
    samples = max(1, int(min(seconds, MAX_ONE_SHOT_SECONDS) * sample_rate))
    return np.arange(samples, dtype=np.float32) / sample_rate


def _finish(sound: np.ndarray, sample_rate: int) -> np.ndarray:
    fade = min(len(sound), int(FADE_SECONDS * sample_rate))
    sound[len(sound) - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = np.abs(sound).max()
    return (sound / peak if peak > 0 else sound).astype(np.float32)


def _filtered_noise(n: int, kind: str, cutoffs: tuple[float, float] | float, sample_rate: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(n,) white noise through a 2nd-order Butterworth ``kind`` filter, cutoffs below Nyquist."""
    nyquist_safe = NYQUIST_SAFE_FRACTION * sample_rate
    if kind == "bandpass":
        low, high = (min(cutoff, nyquist_safe) for cutoff in cutoffs)
        cutoffs = (min(low, 0.7 * high), high)
    else:
        cutoffs = min(cutoffs, nyquist_safe)
    sos = scipy.signal.butter(2, cutoffs, btype=kind, fs=sample_rate, output="sos")
    return scipy.signal.sosfilt(sos, rng.uniform(-1.0, 1.0, n)).astype(np.float32)


def _kick(p: dict, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Sine swept down from ``start_hz`` to ``end_hz``, a noise click, soft-clipped."""
    t = _time(DECAY_TO_SILENCE * p["decay_s"], sample_rate)
    freq = p["end_hz"] + (p["start_hz"] - p["end_hz"]) * np.exp(-t / p["sweep_s"])
    body = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * np.exp(-t / p["decay_s"])
    click = p["click"] * rng.uniform(-1.0, 1.0, len(t)) * np.exp(-t / KICK_CLICK_DECAY_SECONDS)
    return _finish(np.tanh(p["drive"] * (body + click)), sample_rate)


def _snare(p: dict, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A decaying tone under band-passed noise."""
    t = _time(DECAY_TO_SILENCE * max(p["tone_decay_s"], p["noise_decay_s"]), sample_rate)
    tone = np.sin(2 * np.pi * p["tone_hz"] * t) * np.exp(-t / p["tone_decay_s"])
    band = (p["noise_low_hz"], p["noise_high_hz"])
    noise = _filtered_noise(len(t), "bandpass", band, sample_rate, rng)
    noise = noise / np.abs(noise).max() * np.exp(-t / p["noise_decay_s"])
    return _finish(p["tone_mix"] * tone + (1.0 - p["tone_mix"]) * noise, sample_rate)


def _hat(p: dict, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """High-passed noise with a fast decay."""
    t = _time(DECAY_TO_SILENCE * p["decay_s"], sample_rate)
    noise = _filtered_noise(len(t), "highpass", p["low_hz"], sample_rate, rng)
    return _finish(noise * np.exp(-t / p["decay_s"]), sample_rate)


def _clap(p: dict, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Band-passed noise: a few short bursts, then a decaying tail."""
    tail_start = (p["bursts"] - 1) * p["burst_spacing_s"]
    t = _time(tail_start + DECAY_TO_SILENCE * p["decay_s"], sample_rate)
    envelope = (t >= tail_start) * np.exp(-np.clip(t - tail_start, 0.0, None) / p["decay_s"])
    for burst in range(p["bursts"] - 1):
        since = t - burst * p["burst_spacing_s"]
        envelope += (since >= 0) * np.exp(-np.abs(since) / CLAP_BURST_DECAY_SECONDS)
    band = (p["center_hz"] / CLAP_BAND_RATIO, p["center_hz"] * CLAP_BAND_RATIO)
    noise = _filtered_noise(len(t), "bandpass", band, sample_rate, rng)
    return _finish(noise * envelope, sample_rate)


def _shaker(p: dict, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """High-passed noise that swells in and decays."""
    t = _time(p["attack_s"] * 3 + DECAY_TO_SILENCE * p["decay_s"], sample_rate)
    envelope = (1.0 - np.exp(-t / p["attack_s"])) * np.exp(-t / p["decay_s"])
    noise = _filtered_noise(len(t), "highpass", p["low_hz"], sample_rate, rng)
    return _finish(noise * envelope, sample_rate)


DRUM_SOUNDS = {"kick": _kick, "snare": _snare, "hat": _hat, "clap": _clap, "shaker": _shaker}

_HARMONIC_WAVES = np.sin(2 * np.pi * np.outer(np.arange(WAVETABLE_SIZE) / WAVETABLE_SIZE,
                                               np.arange(1, MAX_HARMONICS + 1)))
"""(WAVETABLE_SIZE, MAX_HARMONICS): one period of each harmonic."""


def _tone(freqs_hz: np.ndarray, p: dict, sample_rate: int) -> np.ndarray:
    """Harmonic tones on the fundamentals ``freqs_hz`` with a 1/k**rolloff spectrum, an attack
    and an exponential decay, read from one wavetable per fundamental; partials above
    ``NYQUIST_SAFE_FRACTION * sample_rate`` are left out."""
    t = _time(DECAY_TO_SILENCE * p["decay_s"], sample_rate)
    harmonics = np.arange(1, p["harmonics"] + 1)
    steps = np.arange(len(t), dtype=np.float64)
    sound = np.zeros(len(t), dtype=np.float32)
    for freq in np.asarray(freqs_hz, dtype=np.float64):
        audible = harmonics * freq < NYQUIST_SAFE_FRACTION * sample_rate
        weights = np.where(audible, 1.0 / harmonics ** p["rolloff"], 0.0)
        table = (_HARMONIC_WAVES[:, :len(harmonics)] @ weights).astype(np.float32)
        phase = (steps * (freq * WAVETABLE_SIZE / sample_rate)).astype(np.int64)
        sound += table[phase & (WAVETABLE_SIZE - 1)]
    envelope = (1.0 - np.exp(-t / p["attack_s"])) * np.exp(-t / p["decay_s"])
    return _finish(sound * envelope, sample_rate)


def _midi_hz(midi: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _chord_sound(spec: ClipSpec, chord: int, sample_rate: int) -> np.ndarray:
    """Chord ``chord`` of the progression. Its tones are not detuned: the beating of detuned
    voices would add a tremolo of a few Hz that competes with the rhythm."""
    root, intervals = spec.progression[chord]
    midi = CHORD_LOWEST_MIDI + (spec.key + root + np.array(intervals) - CHORD_LOWEST_MIDI) % 12
    return _tone(_midi_hz(midi), spec.timbres["chords"], sample_rate)


# ----------------------------------------------------------------------------------------------
# Mixing.


def _place(out: np.ndarray, sound: np.ndarray, times_s: np.ndarray, gains: np.ndarray,
           sample_rate: int) -> None:
    """Add ``gain * sound`` into ``out`` (samples,) at each time, cut at both ends of ``out``."""
    starts = np.round(times_s * sample_rate).astype(np.int64)
    for start, gain in zip(starts.tolist(), gains.tolist()):
        first, last = max(start, 0), min(start + len(sound), len(out))
        if last > first:
            out[first:last] += np.float32(gain) * sound[first - start:last - start]


def reverb_and_noise(dry: np.ndarray, rt60_s: float, wet: float, damping: float, noise_db: float,
                     noise_corner_hz: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``dry + wet * (dry conv tail) + noise``, (samples,) float32, in one FFT round trip.

    The tail is noise decaying by 60 dB over ``rt60_s`` seconds, through a one-pole low-pass of
    coefficient ``damping`` (0..1), of unit energy. The noise is a random spectrum through a
    first-order low-pass at ``noise_corner_hz``, ``noise_db`` dB below the power of the
    reverberated mix.
    """
    t = np.arange(max(1, int(rt60_s * sample_rate)), dtype=np.float32) / sample_rate
    tail = rng.random(len(t), dtype=np.float32) - np.float32(0.5)
    tail *= np.exp(-DECAY_TO_SILENCE * t / rt60_s)
    tail = scipy.signal.lfilter([1.0 - damping], [1.0, -damping], tail).astype(np.float32)
    tail /= np.sqrt(np.dot(tail, tail))
    n_fft = scipy.fft.next_fast_len(len(dry) + len(tail) - 1, real=True)
    spectrum = scipy.fft.rfft(dry, n_fft)
    spectrum *= 1.0 + np.float32(wet) * scipy.fft.rfft(tail, n_fft)
    noise = np.empty_like(spectrum)
    noise.real = rng.random(len(noise), dtype=np.float32) - np.float32(0.5)
    noise.imag = rng.random(len(noise), dtype=np.float32) - np.float32(0.5)
    bin_hz = np.arange(len(noise), dtype=np.float32) * np.float32(sample_rate / n_fft)
    noise *= 1.0 / np.sqrt(1.0 + (bin_hz / np.float32(noise_corner_hz)) ** 2)
    power_ratio = np.vdot(spectrum, spectrum).real / np.vdot(noise, noise).real
    spectrum += np.float32(np.sqrt(power_ratio * 10.0 ** (noise_db / 10.0))) * noise
    return scipy.fft.irfft(spectrum, n_fft)[:len(dry)]


def _check_render_args(seconds: float, sample_rate: int) -> None:
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate {sample_rate} Hz is too low for the hats and shakers; use "
                         f"at least {MIN_SAMPLE_RATE} Hz and resample afterwards if you need less")


def render_spec(spec: ClipSpec, seconds: float, sample_rate: int) -> np.ndarray:
    """Render ``spec``: float32 (round(seconds * sample_rate),) mono, peak below 1."""
    _check_render_args(seconds, sample_rate)
    event_rng = _rng(spec.seed, spec.index, EVENT_STREAM)
    signal_rng = _rng(spec.seed, spec.index, SIGNAL_STREAM)
    mix = np.zeros(int(round(seconds * sample_rate)), dtype=np.float32)
    for part, timbre in spec.timbres.items():
        events = _part_events(spec, part, seconds, event_rng)
        if part in DRUM_SOUNDS:
            sound = DRUM_SOUNDS[part](timbre, sample_rate, signal_rng)
            _place(mix, sound, events.times_s, events.gains, sample_rate)
            continue
        if part == "bass":
            keys = _bass_notes(spec, events, event_rng)
            sounds = {note: _tone(_midi_hz([note]), timbre, sample_rate)
                      for note in np.unique(keys)}
        else:
            keys = _chord_index(spec, events.bars)
            sounds = {chord: _chord_sound(spec, chord, sample_rate) for chord in np.unique(keys)}
        for key, sound in sounds.items():
            _place(mix, sound, events.times_s[keys == key], events.gains[keys == key], sample_rate)
    mix = reverb_and_noise(mix, spec.reverb_rt60_s, spec.reverb_wet, spec.reverb_damping, spec.noise_db,
                           spec.noise_corner_hz, sample_rate, signal_rng)
    peak = np.abs(mix).max()  # 0 only if a (far too short) clip catches no sound at all
    return (mix * (10.0 ** (spec.peak_dbfs / 20.0) / peak if peak > 0 else mix)).astype(np.float32)


def render_clip(index: int, seed: int, seconds: float = 30.0,
                sample_rate: int = CORPUS_SAMPLE_RATE) -> tuple[np.ndarray, dict]:
    """Clip ``index`` of corpus ``seed``: (audio float32 (samples,) mono, labels dict).

    The labels are those of ``clip_labels``: ``style`` (name), ``style_index`` (into
    ``STYLE_NAMES``), ``bpm`` (exact), ``tempo_class`` (0..3), ``meter`` (beats per bar) and
    ``tags`` (0/1 per ``TAG_NAMES``); they do not depend on ``seconds`` or ``sample_rate``.
    """
    spec = draw_spec(index, seed)
    return render_spec(spec, seconds, sample_rate), spec.labels()


# ----------------------------------------------------------------------------------------------
# Streaming and writing.


class SynthRhythmDataset(torch.utils.data.Dataset):
    """Clips ``0..n-1`` of corpus ``seed``, rendered on the fly.

    Item: (audio float32 (round(seconds * sample_rate),), labels) with labels ``style`` and
    ``tempo_class`` int64 scalars, ``bpm`` float32 scalar, ``tags`` float32 (len(TAG_NAMES),).
    Use different seeds for the training, validation and test splits.
    """

    style_names = STYLE_NAMES
    tag_names = TAG_NAMES
    render = staticmethod(render_clip)
    """``(index, seed, seconds, sample_rate) -> (audio, labels)``: the source of the clips."""

    def __init__(self, n: int, seed: int, seconds: float = PAPER.segment_seconds,
                 sample_rate: int = PAPER.sample_rate) -> None:
        if n < 1:
            raise ValueError(f"a synthetic corpus needs at least one clip, got n={n}")
        _check_render_args(seconds, sample_rate)
        self.n, self.seed, self.seconds, self.sample_rate = n, seed, seconds, sample_rate

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not 0 <= index < self.n:
            raise IndexError(f"clip {index} is outside this corpus of {self.n} clips")
        return as_item(*self.render(index, self.seed, self.seconds, self.sample_rate))


def as_item(audio: np.ndarray, labels: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A dataset item from ``render_clip``'s (audio, labels): the audio as a tensor and labels
    ``style`` (``style_index``) and ``tempo_class`` int64 scalars, ``bpm`` float32 scalar,
    ``tags`` float32 (len(TAG_NAMES),)."""
    return torch.from_numpy(audio), {
        "style": torch.tensor(labels["style_index"], dtype=torch.int64),
        "tempo_class": torch.tensor(labels["tempo_class"], dtype=torch.int64),
        "bpm": torch.tensor(labels["bpm"], dtype=torch.float32),
        "tags": torch.tensor(labels["tags"], dtype=torch.float32),
    }


def _check_format(fmt: str) -> None:
    if fmt not in AUDIO_FORMATS:
        raise ValueError(f"cannot write '{fmt}' audio; choose one of {', '.join(AUDIO_FORMATS)}")


def _write_audio(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write (samples,) or (samples, channels) audio in the format of ``path``'s extension."""
    fmt = path.suffix.lstrip(".")
    _check_format(fmt)
    file_format, subtype = AUDIO_FORMATS[fmt]
    write_atomic(path, lambda tmp: sf.write(tmp, audio, sample_rate, format=file_format,
                                             subtype=subtype))


def _write_labels(csv_path: Path, rows: list[tuple[str, dict]]) -> Path:
    """Write (relative path, labels) rows as ``CSV_COLUMNS``; return ``csv_path``."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for relative, labels in rows:
                writer.writerow([relative, labels["style"], labels["style_index"],
                                 repr(labels["bpm"]), labels["tempo_class"], labels["meter"],
                                 *labels["tags"]])
    write_atomic(csv_path, write)
    return csv_path


def read_labels(csv_path: str | Path) -> list[dict]:
    """Rows of a ``labels.csv``: the labels of ``render_clip`` plus ``path`` (absolute Path)."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{csv_path} lacks columns {sorted(missing)}; "
                             "was it written by write_corpus?")
        return [{
            "path": (csv_path.parent / row["path"]).resolve(),
            "style": row["style"],
            "style_index": int(row["style_index"]),
            "bpm": float(row["bpm"]),
            "tempo_class": int(row["tempo_class"]),
            "meter": int(row["meter"]),
            "tags": tuple(int(row[name]) for name in TAG_NAMES),
        } for row in reader]


def write_corpus(out_dir: str | Path, n: int, seed: int, seconds: float = 30.0,
                 sample_rate: int = CORPUS_SAMPLE_RATE, fmt: str = "wav",
                 progress: bool = True, render=None) -> Path:
    """Render clips ``0..n-1`` of corpus ``seed`` into ``out_dir/clip_NNNNNN.<fmt>`` (mono,
    16-bit for wav/flac) plus ``out_dir/labels.csv`` (``CSV_COLUMNS``, paths relative to it).
    ``render(index, seed, seconds, sample_rate) -> (audio, labels)`` is the source (default
    ``render_clip``; ``sources.RENDERERS`` lists them all).

    Every file is written to a temporary name and renamed, so an interrupted run leaves no
    partial file; the CSV is written last. Returns the CSV path.
    """
    render = render or render_clip
    if n < 1:
        raise ValueError(f"a synthetic corpus needs at least one clip, got n={n}")
    _check_format(fmt)
    _check_render_args(seconds, sample_rate)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in tqdm(range(n), desc="synth", unit="clip", disable=not progress):
        audio, labels = render(index, seed, seconds, sample_rate)
        name = f"clip_{index:06d}.{fmt}"
        _write_audio(out_dir / name, audio, sample_rate)
        rows.append((name, labels))
    return _write_labels(out_dir / LABELS_CSV, rows)


DEMO_SEED = 2017
DEMO_CLIPS = (  # (format, sample rate, channels, seconds)
    ("wav", 44100, 2, 12.0),
    ("flac", 48000, 1, 20.0),
    ("ogg", 44100, 2, 40.0),
    ("wav", 48000, 1, 10.0),
    ("flac", 44100, 2, 30.0),
    ("ogg", 48000, 1, 25.0),
)
STEREO_DELAY_SECONDS = 0.0004  # the right channel lags a little: stereo, not two equal channels


def demo_corpus(out_dir: str | Path) -> list[Path]:
    """A handful of short clips in mixed formats, rates and channel counts (``DEMO_CLIPS``) for
    trying the extraction engine, plus their ``labels.csv``; returns the audio paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (fmt, sample_rate, channels, seconds) in enumerate(DEMO_CLIPS):
        audio, labels = render_clip(index, DEMO_SEED, seconds, sample_rate)
        if channels == 2:
            delay = int(STEREO_DELAY_SECONDS * sample_rate)
            delayed = np.concatenate([np.zeros(delay, np.float32), audio[:-delay]])
            audio = np.stack([audio, delayed], axis=1)
        name = f"demo_{index:02d}_{labels['style']}.{fmt}"
        _write_audio(out_dir / name, audio, sample_rate)
        rows.append((name, labels))
    _write_labels(out_dir / LABELS_CSV, rows)
    return [out_dir / name for name, _ in rows]
