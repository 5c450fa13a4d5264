"""Render ``drums`` note events through a General MIDI SoundFont with FluidSynth, offline.

Needs the ``soundfont`` extra (``pip install 'dlr-engine[soundfont]'``: pyfluidsynth), the
FluidSynth library (Debian/Ubuntu ``apt-get install libfluidsynth3``, macOS ``brew install
fluid-synth``) and a GM SoundFont: ``DLR_ENGINE_SOUNDFONT=/path/to.sf2``, or FluidR3_GM from
Debian's ``fluid-soundfont-gm`` package at its usual paths (``SOUNDFONT_PATHS``).

FluidSynth renders at ``RENDER_RATE`` in float32 (no dither, so the same events give the same
samples), one 64-sample block at a time with events on block boundaries (2.9 ms), and soxr
resamples to the caller's rate.
The SoundFont is loaded once per process (~0.7 s for FluidR3_GM); every clip gets a new
synthesiser playing it, so that it renders the same whatever was rendered before.
"""
from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np
import soxr

from dlr_engine.config import PAPER
from dlr_engine.data.drums import (
    BASS_CHANNEL, CHORD_CHANNEL, DRUM_CHANNEL, DRUM_KITS, PRE_ROLL_SECONDS, SIGNAL_STREAM, SPLITS, DrumSpec,
    NoteEvents, draw_drum_spec, drum_events,
)
from dlr_engine.data.synth import (
    CORPUS_SAMPLE_RATE, SynthRhythmDataset, _rng, render_clip, reverb_and_noise,
)

SOUNDFONT_ENV = "DLR_ENGINE_SOUNDFONT"
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/local/share/soundfonts/FluidR3_GM.sf2",
    "/opt/homebrew/share/soundfonts/FluidR3_GM.sf2",
)
RENDER_RATE = 22050
BLOCK = 64
"""FluidSynth's block: events apply at the next block boundary."""
DRUM_BANK = 128
CC_VOLUME = 7
MIDI_CHANNELS = 16
FLUID_WARN = 2
SYNTH_GAIN = 0.5


class SoundFontUnavailable(RuntimeError):
    """The SoundFont source cannot run here; the message says what to install."""


def find_soundfont() -> Path:
    """The GM SoundFont to use: ``$DLR_ENGINE_SOUNDFONT``, else the first of ``SOUNDFONT_PATHS``."""
    explicit = os.environ.get(SOUNDFONT_ENV)
    if explicit:
        if not Path(explicit).is_file():
            raise SoundFontUnavailable(f"{SOUNDFONT_ENV}={explicit} is not a file; point it at a GM .sf2")
        return Path(explicit)
    for candidate in SOUNDFONT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise SoundFontUnavailable(
        "no General MIDI SoundFont found (looked in " + ", ".join(SOUNDFONT_PATHS) + "); install one "
        f"(Debian/Ubuntu: apt-get install fluid-soundfont-gm) or set {SOUNDFONT_ENV}=/path/to/GM.sf2")


def _fluidsynth():
    try:
        import fluidsynth
    except ImportError as exc:  # the package, or the library it loads, is missing
        raise SoundFontUnavailable(
            f"the SoundFont source needs pyfluidsynth and the FluidSynth library ({exc}); "
            "pip install 'dlr-engine[soundfont]' and apt-get install libfluidsynth3 "
            "(macOS: brew install fluid-synth)") from exc
    return fluidsynth


def availability() -> str | None:
    """None if the SoundFont source can render here, else the reason it cannot."""
    try:
        _fluidsynth()
        find_soundfont()
    except SoundFontUnavailable as exc:
        return str(exc)
    return None


class _FluidSynth:
    """The process's FluidSynth binding with the SoundFont loaded once (by a synthesiser kept for
    that alone), and the C functions pyfluidsynth does not wrap."""

    def __init__(self, soundfont: Path) -> None:
        self.module = fluidsynth = _fluidsynth()
        self.owner = fluidsynth.Synth(samplerate=float(RENDER_RATE), channels=MIDI_CHANNELS)
        sfid = self.owner.sfload(str(soundfont))
        if sfid < 0:
            raise SoundFontUnavailable(f"FluidSynth could not load {soundfont}; is it a SoundFont (.sf2)?")
        self.sfont = fluidsynth.fluid_synth_get_sfont_by_id(self.owner.synth, sfid)
        synth, count, out = ("synth", ctypes.c_void_p, 1), ("len", ctypes.c_int, 1), ctypes.c_void_p
        # Synthesisers created before the SoundFont is added, or while it is removed, warn of
        # every channel without a preset: expected here, so FluidSynth's warnings are off.
        set_log = fluidsynth.cfunc("fluid_set_log_function", ctypes.c_void_p, ("level", ctypes.c_int, 1),
                                   ("fun", ctypes.c_void_p, 1), ("data", ctypes.c_void_p, 1))
        set_log(FLUID_WARN, None, None)
        self.add_sfont = fluidsynth.cfunc("fluid_synth_add_sfont", ctypes.c_int, synth, ("sfont", ctypes.c_void_p, 1))
        self.remove_sfont = fluidsynth.cfunc("fluid_synth_remove_sfont", ctypes.c_int, synth,
                                             ("sfont", ctypes.c_void_p, 1))
        self.write_float = fluidsynth.cfunc("fluid_synth_write_float", ctypes.c_int, synth, count,
                                            ("lout", out, 1), ("loff", ctypes.c_int, 1), ("lincr", ctypes.c_int, 1),
                                            ("rout", out, 1), ("roff", ctypes.c_int, 1), ("rincr", ctypes.c_int, 1))


@functools.lru_cache(maxsize=1)
def _loaded(soundfont: str) -> _FluidSynth:
    return _FluidSynth(Path(soundfont))


class _Renderer:
    """A new synthesiser (reverb and chorus on or off) playing the loaded SoundFont, writing
    float32 stereo at ``RENDER_RATE``. New for every clip: one with history renders a clip
    differently (FluidSynth's effects keep their state, and its voices play a sample a little
    differently once they have played it before); creating one takes milliseconds."""

    def __init__(self, effects: bool) -> None:
        self.fluid = _loaded(str(find_soundfont()))
        self.synth = self.fluid.module.Synth(gain=SYNTH_GAIN, samplerate=float(RENDER_RATE), channels=MIDI_CHANNELS, **{
            "synth.reverb.active": int(effects), "synth.chorus.active": int(effects)})
        self.sfid = self.fluid.add_sfont(self.synth.synth, self.fluid.sfont)

    def write(self, out: np.ndarray) -> None:
        """Render into ``out`` (blocks * BLOCK, 2) float32, C-contiguous. Whole blocks only: asked
        for part of one, FluidSynth renders it all and keeps the rest for the next call, and
        events sent meanwhile would land later."""
        if len(out) % BLOCK:
            raise ValueError(f"FluidSynth output is written in blocks of {BLOCK} samples, got {len(out)}")
        if len(out):
            pointer = out.ctypes.data
            self.fluid.write_float(self.synth.synth, len(out), pointer, 0, 2, pointer, 1, 2)

    def close(self) -> None:
        """Delete the synthesiser; the SoundFont stays loaded for the next."""
        self.fluid.remove_sfont(self.synth.synth, self.fluid.sfont)
        self.synth.delete()


def render_events(events: NoteEvents, spec: DrumSpec, seconds: float) -> np.ndarray:
    """FluidSynth's stereo mix of ``events`` as (samples, 2) float32 at ``RENDER_RATE``, from
    ``PRE_ROLL_SECONDS`` before the clip (the pre-roll is cut off) to ``seconds``."""
    fluid = spec.split == "out_of_source"
    renderer = _Renderer(effects=fluid)
    synth = renderer.synth
    if fluid:
        synth.set_reverb(roomsize=spec.room["room_size"], damping=0.3, width=0.8, level=spec.room["reverb_level"])
        synth.set_chorus(nr=3, level=spec.room["chorus_level"], speed=0.4, depth=6.0, type=0)
    synth.program_select(DRUM_CHANNEL, renderer.sfid, DRUM_BANK, DRUM_KITS[spec.kit])
    for part, channel in (("bass", BASS_CHANNEL), ("chords", CHORD_CHANNEL)):
        if part in spec.accompaniment:
            program, gain_db = spec.accompaniment[part]
            synth.program_select(channel, renderer.sfid, 0, program)
            synth.cc(channel, CC_VOLUME, int(np.clip(round(127 * 10 ** (gain_db / 40.0)), 1, 127)))
    pre_roll = int(PRE_ROLL_SECONDS * RENDER_RATE)
    total = pre_roll + int(round(seconds * RENDER_RATE))
    blocks = -(-total // BLOCK)
    # (block, order, channel, key, velocity): note-offs (order 0) before note-ons in one block.
    starts = (np.round(events.times_s * RENDER_RATE).astype(np.int64) + pre_roll) // BLOCK
    ons = [(int(b), 1, int(c), int(k), int(v)) for b, c, k, v in
           zip(starts, events.channels, events.keys, events.velocities)]
    has_end = events.durations_s > 0
    ends = starts[has_end] + np.round(events.durations_s[has_end] * RENDER_RATE / BLOCK).astype(np.int64)
    offs = [(int(b), 0, int(c), int(k), 0) for b, c, k in
            zip(ends, events.channels[has_end], events.keys[has_end])]
    out = np.zeros((blocks * BLOCK, 2), np.float32)
    position = 0
    for block, is_on, channel, key, velocity in sorted(ons + offs):
        block = min(max(block, 0), blocks)
        renderer.write(out[position * BLOCK:block * BLOCK])
        position = block
        if is_on:
            synth.noteon(channel, key, velocity)
        else:
            synth.noteoff(channel, key)
    renderer.write(out[position * BLOCK:])
    renderer.close()
    return out[pre_roll:total]


def render_drum_clip(spec: DrumSpec, seconds: float, sample_rate: int) -> np.ndarray:
    """Clip ``spec``: float32 (round(seconds * sample_rate),) mono, peak ``spec.room['peak_dbfs']``.

    The ``train`` split is rendered dry and given a room by ``synth.reverb_and_noise``; the
    ``out_of_source`` split uses FluidSynth's reverb and chorus instead (another rendering chain).
    """
    stereo = render_events(drum_events(spec, seconds), spec, seconds)
    mono = stereo.mean(axis=1)
    if sample_rate != RENDER_RATE:
        mono = soxr.resample(mono, RENDER_RATE, sample_rate, quality="HQ")
    samples = int(round(seconds * sample_rate))
    mono = np.pad(mono[:samples], (0, max(0, samples - len(mono)))).astype(np.float32)
    if spec.split == "train":
        rng = _rng(spec.seed, spec.index, SIGNAL_STREAM)
        room = spec.room
        mono = reverb_and_noise(mono, room["rt60_s"], room["wet"], room["damping"], room["noise_db"],
                                min(room["noise_corner_hz"], 0.45 * sample_rate), sample_rate, rng)
    peak = np.abs(mono).max()
    return (mono * (10.0 ** (spec.room["peak_dbfs"] / 20.0) / peak if peak > 0 else mono)).astype(np.float32)


def render_drum_corpus_clip(index: int, seed: int, seconds: float = 30.0, sample_rate: int = CORPUS_SAMPLE_RATE,
                            split: str = "train") -> tuple[np.ndarray, dict]:
    """Clip ``index`` of GM corpus ``seed`` in ``split``: (audio float32 (samples,) mono, labels
    of ``DrumSpec.labels``), as ``synth.render_clip`` gives them."""
    spec = draw_drum_spec(index, seed, split)
    return render_drum_clip(spec, seconds, sample_rate), spec.labels()


class SoundFontDrumDataset(SynthRhythmDataset):
    """Clips ``0..n-1`` of GM corpus ``seed`` in ``split`` (``drums.SPLITS``), rendered on the
    fly through the SoundFont; items as ``SynthRhythmDataset``'s, with ``style`` = ``NO_STYLE``.
    Raises ``SoundFontUnavailable`` (saying what to install) if it cannot render here."""

    def __init__(self, n: int, seed: int, seconds: float = PAPER.segment_seconds,
                 sample_rate: int = PAPER.sample_rate, split: str = "train") -> None:
        super().__init__(n, seed, seconds, sample_rate)
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        reason = availability()
        if reason:
            raise SoundFontUnavailable(reason)
        self.split = split
        self.render = functools.partial(render_drum_corpus_clip, split=split)


SOURCES = {
    "synth": render_clip,
    "soundfont": functools.partial(render_drum_corpus_clip, split="train"),
    "soundfont-out-of-source": functools.partial(render_drum_corpus_clip, split="out_of_source"),
}
"""``dlr-engine synth --source``: name -> ``render(index, seed, seconds, sample_rate)``."""
