"""General MIDI drum grooves: the second training source, played through a GM SoundFont.

Where ``synth`` synthesises its own drum sounds for nine ballroom styles whose tempo ranges
follow the style, this module writes drum *performances* as General MIDI note events (channel
10 drum notes, plus an optional bass line and chords) that ``soundfont.render_events`` plays
through sampled instruments. The tempo is drawn independently of the groove over 60-240 BPM, so
the only cue to the tempo class is the beat itself.

Everything about clip ``index`` of corpus ``seed`` comes from ``SeedSequence(seed,
spawn_key=(...))`` streams, so clips render identically in any order:

- the groove (family, kit, pattern variants, swing, fills, ghost notes, humanisation,
  accompaniment, room) is drawn from the *pair* ``index // 2``: clips ``2k`` and ``2k + 1`` play
  the same groove. Each clip draws its tempo class uniformly (so the classes stay balanced);
  where the two classes admit tempi an octave apart, with probability
  ``OCTAVE_PAIR_PROBABILITY``, the pair plays at ``bpm`` and ``2 * bpm`` (labelled as such), so
  that a model cannot read the tempo from the pattern's density (about half of the pairs);
- the mix (``MIX_STREAM``): each voice's balance, and whether a train pair drops its kick
  (``KICK_DROP_PROBABILITY``: the voice leaves ``variants``, so the ``has_kick`` tag follows);
- the events (which variant each bar plays, fills, ghost notes, timing and velocity errors) are
  drawn per clip.

Labels: ``bpm`` is the felt beat rate, the beat a listener taps: the backbeat convention, with
the snare on felt beats 2 and 4. For most families the felt beat is the notated quarter note;
``Family.pulse`` says how many notated beats a felt beat spans otherwise (a half-time groove
puts its snare on notated beat 3: pulse 2, a groove notated at 140 is labelled 70; a
double-time groove puts it on every notated off-beat: pulse 0.5, notated 100 is labelled 200).
A label that followed the notation would give the same audio two tempi an octave apart.
``tempo_class`` follows from ``bpm``,
``style_index`` is ``NO_STYLE`` (the ballroom styles do not apply; the family name is the
``style``), ``tags`` as in ``synth.TAG_NAMES``.

Two disjoint *splits* share nothing but the note mapping: ``train`` (kits ``TRAIN_KITS``,
families ``TRAIN_FAMILIES``, the convolution room of ``synth.reverb_and_noise``, the voices mixed
at balances drawn per pair, ``VOICE_GAIN``) and
``out_of_source`` (kits ``HELD_OUT_KITS``, families ``HELD_OUT_FAMILIES``, FluidSynth's own reverb
and chorus as the room): a validation set from a source the model never trains on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlr_engine.data.styles import STEPS_PER_BEAT, onset_rate, parse_pattern
from dlr_engine.data.synth import (
    DENSE_ONSETS_PER_SECOND, MAJOR_PROGRESSIONS, MINOR_PROGRESSIONS, TAG_NAMES, _rng,
    _swing_phase, tempo_class,
)

NO_STYLE = -1
"""``style_index`` of clips that have no ballroom style (losses ignore it, metrics skip it)."""
BPM_RANGE = (60.0, 240.0)
CLASS_BPM_RANGES = ((60.0, 112.0), (112.0, 149.0), (149.0, 187.0), (187.0, 240.0))
"""A clip's tempo: a tempo class drawn uniformly, then a BPM uniformly within its range."""
OCTAVE_PAIR_PROBABILITY = 1.0
"""Probability that a pair whose two tempo classes admit tempi an octave apart plays at such
tempi (classes 0-1, 0-2, 0-3 and 1-3: half of the class pairs)."""
BARS_PER_PHRASE = 4
PRE_ROLL_SECONDS = 2.0
"""Events start this long before the clip, so that it opens inside a performance (ringing
cymbals, a fill leading in)."""

GM_NOTES = {
    "kick": (35, 36), "snare": (38, 40), "rim": (37,), "clap": (39,), "hat": (42,), "open_hat": (46,),
    "pedal_hat": (44,), "ride": (51, 59), "ride_bell": (53,), "crash": (49, 57), "tom_hi": (50, 48),
    "tom_mid": (47, 45), "tom_lo": (43, 41), "tambourine": (54,), "cowbell": (56,), "shaker": (70, 69),
}
"""Voice -> General MIDI drum notes (channel 10) it may use; a clip picks one per voice."""
VOICES = tuple(GM_NOTES)
FILL_VOICES = ("snare", "tom_hi", "tom_mid", "tom_lo")
TAG_VOICES = {"has_kick": ("kick",), "has_snare": ("snare", "rim"),
              "has_hat": ("hat", "open_hat", "pedal_hat", "ride", "ride_bell"), "has_clap": ("clap",),
              "has_shaker": ("shaker", "tambourine")}

DRUM_KITS = {"standard": 0, "room": 8, "power": 16, "electronic": 24, "tr808": 25, "jazz": 32,
             "brush": 40}
"""GM drum-kit programs (bank 128) by name."""
TRAIN_KITS = ("standard", "room", "power", "electronic")
HELD_OUT_KITS = ("tr808", "jazz", "brush")
BASS_PROGRAMS = (32, 33, 34, 35, 36, 38)  # acoustic, finger, pick, fretless, slap, synth bass
CHORD_PROGRAMS = (0, 4, 16, 24, 25, 27, 48, 89)  # pianos, organ, guitars, strings, pad
BASS_CHANNEL, CHORD_CHANNEL, DRUM_CHANNEL = 0, 1, 9
BASS_LOWEST_MIDI, CHORD_LOWEST_MIDI = 33, 55

# Per-clip ranges, drawn uniformly.
SWING = (0.3, 1.0)  # for families that swing
TIMING_JITTER_SECONDS = (0.0, 0.012)
VOICE_OFFSET_SECONDS = 0.008
VELOCITY_JITTER = (0.03, 0.18)
VARIATION_PROBABILITY = (0.0, 0.3)
FILL_PROBABILITY = (0.0, 0.9)  # per phrase
GHOST_PROBABILITY = (0.0, 0.12)  # per empty sixteenth, for families with ghost notes
CRASH_AFTER_FILL_PROBABILITY = 0.7
DRIFT_BEATS = (0.0, 0.08)  # tempo drift: time error amplitude in beats ...
DRIFT_PERIOD_BEATS = (16.0, 64.0)  # ... over this period (a local tempo change of a few %)
ACCOMPANIMENT_PROBABILITY = {"bass": 0.5, "chords": 0.45}
VELOCITY_MIDI = (12, 127)
GAIN_DB = {"bass": (-10.0, -2.0), "chords": (-16.0, -5.0)}  # via MIDI volume (CC 7)
ROOM_RT60_SECONDS = (0.15, 1.0)
ROOM_WET = (0.0, 0.3)
ROOM_DAMPING = (0.0, 0.9)
NOISE_DB = (-65.0, -35.0)
NOISE_CORNER_HZ = (100.0, 10000.0)
PEAK_DBFS = (-20.0, -1.0)
FLUID_ROOM_SIZE = (0.1, 0.9)  # FluidSynth reverb of the out-of-source split
FLUID_REVERB_LEVEL = (0.1, 0.7)
FLUID_CHORUS_LEVEL = (0.0, 1.5)
VOICE_GAIN = {"train": (0.15, 1.0), "out_of_source": (1.0, 1.0)}
"""Per split, the range of each voice's velocity scale, drawn per pair: the train split mixes
every kit's voices at varied balances (the kick now and then quieter than the snare), so that a
model cannot read the tempo from the loudest voice alone (a kick on beats 1 and 3 gives half the
tempo); the out-of-source split plays each kit's own balance."""
KICK_DROP_PROBABILITY = {"train": 0.25, "out_of_source": 0.0}
"""Per split, the probability that a pair plays without its kick (families whose backbeat has
another voice: snare, rim or clap), so that the tempo must be read from the backbeat and the
cymbals; the label does not change (the felt beat is the snare's)."""
BACKBEAT_VOICES = ("snare", "rim", "clap")


@dataclass(frozen=True)
class Family:
    """A family of grooves: ``meter`` beats per bar, per voice its pattern variants (one bar on
    the sixteenth grid, the format of ``styles``; each bar plays one), whether it ``swings``,
    whether the snare plays ``ghosts``, and ``pulse``: notated beats per felt (labelled) beat,
    2 for a half-time feel, 0.5 for a double-time one (see the module docstring)."""

    name: str
    meter: int
    patterns: dict[str, tuple[str, ...]]
    swings: bool = False
    ghosts: bool = False
    pulse: float = 1.0

    @property
    def steps_per_bar(self) -> int:
        return self.meter * STEPS_PER_BEAT

    def grid(self, voice: str) -> np.ndarray:
        """(variants, steps_per_bar) float32 velocities 0..1 of ``voice``."""
        return np.stack([parse_pattern(text, self.meter, self.steps_per_bar, f"{self.name}/{voice}")
                         for text in self.patterns[voice]])


TRAIN_FAMILIES: tuple[Family, ...] = (
    Family("rock", 4, {
        "kick": ("X...|....|X...|....", "X...|....|X.x.|....", "X...|...x|X...|....", "X.x.|....|X...|..x."),
        "snare": ("....|X...|....|X...",),
        "hat": ("x.x.|x.x.|x.x.|x.x.", "X.x.|X.x.|X.x.|X.x.", "x...|x...|x...|x..."),
        "open_hat": ("....|....|....|....", "....|....|....|..x."),
    }, ghosts=True),
    Family("pop16", 4, {
        "kick": ("X...|....|X.x.|....", "X..x|....|X...|....", "X...|..x.|X...|...."),
        "snare": ("....|X...|....|X...", "....|X...|....|X..o"),
        "hat": ("xoxo|xoxo|xoxo|xoxo", "Xoxo|Xoxo|Xoxo|Xoxo", "xxxx|xxxx|xxxx|xxxx"),
        "clap": ("....|....|....|....", "....|X...|....|X..."),
    }),
    Family("funk", 4, {
        "kick": ("X..x|..x.|..x.|.x..", "X.x.|...x|..x.|....", "X...|..x.|.x..|..x."),
        "snare": ("....|X..o|.o..|X..o", "....|X...|.o.o|X...", "..o.|X..o|..o.|X.o."),
        "hat": ("xxxx|xxxx|xxxx|xxxx", "Xoxo|Xoxo|Xoxo|Xoxo"),
        "open_hat": ("....|....|....|....", "....|..x.|....|..x."),
    }, ghosts=True),
    Family("disco", 4, {
        "kick": ("X...|X...|X...|X...",),
        "snare": ("....|X...|....|X...",),
        "clap": ("....|....|....|....", "....|X...|....|X..."),
        "hat": ("x.x.|x.x.|x.x.|x.x.", "xxxx|xxxx|xxxx|xxxx"),
        "open_hat": ("..x.|..x.|..x.|..x.", "....|....|....|...."),
        "tambourine": ("....|....|....|....", "x.x.|x.x.|x.x.|x.x."),
    }),
    Family("shuffle", 4, {
        "kick": ("X...|....|X...|....", "X...|..x.|X...|....", "X...|....|X...|..x."),
        "snare": ("....|X...|....|X...", "....|X...|....|X.o."),
        "hat": ("x.x.|x.x.|x.x.|x.x.", "X.x.|X.x.|X.x.|X.x."),
        "ride": ("....|....|....|....", "x.x.|x.x.|x.x.|x.x."),
    }, swings=True, ghosts=True),
    Family("halftime", 4, {  # notated eighths are felt sixteenths: no notated sixteenth hats
        "kick": ("X...|....|....|..x.", "X..x|....|....|....", "X...|...x|....|.x.."),
        "snare": ("....|....|X...|....",),
        "hat": ("x.x.|x.x.|x.x.|x.x.", "x...|x...|x...|x...", "X.x.|x.x.|X.x.|x.x."),
    }, ghosts=True, pulse=2.0),
    Family("double_time", 4, {
        "kick": ("X...|X...|X...|X...", "X.x.|X...|X.x.|X..."),
        "snare": ("..X.|..X.|..X.|..X.", "..X.|..X.|..X.|..XX"),
        "hat": ("x...|x...|x...|x...", "x.x.|x.x.|x.x.|x.x."),
        "crash": ("....|....|....|....", "x...|....|....|...."),
    }, pulse=0.5),
    Family("hiphop", 4, {
        "kick": ("X...|....|..X.|....", "X..x|....|..X.|..x.", "X...|...x|..x.|...."),
        "snare": ("....|X...|....|X...", "....|X...|....|X..o"),
        "hat": ("x.x.|x.x.|x.x.|x.x.", "x.xx|x.x.|x.xx|x.x."),
        "clap": ("....|....|....|....", "....|X...|....|X..."),
    }, swings=True, ghosts=True),
    Family("reggae", 4, {
        "kick": ("....|....|X...|....", "X...|....|X...|...."),
        "rim": ("....|....|X...|....", "....|X...|....|X..."),
        "hat": ("..x.|..x.|..x.|..x.", "x.x.|x.x.|x.x.|x.x.", "x.xx|x.xx|x.xx|x.xx"),
    }, swings=True),
    Family("bossa", 4, {
        "kick": ("X..x|X..x|X..x|X..x", "X...|X...|X...|X..."),
        "rim": ("X..X|..X.|..X.|.X..", "..X.|.X..|X..X|..X."),
        "hat": ("x.x.|x.x.|x.x.|x.x.", "xxxx|xxxx|xxxx|xxxx"),
        "shaker": ("....|....|....|....", "xoxo|xoxo|xoxo|xoxo"),
    }),
    Family("waltz", 3, {
        "kick": ("X...|....|....", "X...|....|..x."),
        "snare": ("....|x...|x...", "....|X...|X..."),
        "hat": ("x.x.|x.x.|x.x.", "x...|x...|x..."),
        "ride": ("....|....|....", "x...|x.x.|x.x."),
    }),
    Family("jazz", 4, {
        "ride": ("x...|x.x.|x...|x.x.", "X...|x.x.|X...|x.x."),
        "pedal_hat": ("....|x...|....|x...",),
        "kick": ("o...|o...|o...|o...", "....|....|....|....", "....|..o.|....|...."),
        "snare": ("....|....|....|....", "....|..o.|....|o...", "..o.|....|.o..|...."),
    }, swings=True, ghosts=True),
    Family("metal", 4, {
        "kick": ("xxxx|xxxx|xxxx|xxxx", "x.x.|x.x.|x.x.|x.x."),
        "snare": ("....|X...|....|X...",),
        "crash": ("x...|x...|x...|x...", "x...|....|x...|...."),
        "ride": ("....|....|....|....", "x.x.|x.x.|x.x.|x.x."),
    }),
)
HELD_OUT_FAMILIES: tuple[Family, ...] = (
    Family("motown", 4, {
        "kick": ("X..x|..x.|X..x|....", "X...|..x.|X...|...."),
        "snare": ("X...|X...|X...|X...",),
        "tambourine": ("X...|X...|X...|X...", "....|X...|....|X..."),
        "hat": ("x.x.|x.x.|x.x.|x.x.",),
    }),
    Family("train_beat", 4, {
        "kick": ("X...|....|X...|....", "X...|..x.|X...|...."),
        "snare": ("ooxo|ooXo|ooxo|ooXo", "oxox|oXox|oxox|oXox"),
    }),
    Family("breakbeat", 4, {
        "kick": ("X.X.|....|..X.|....", "X...|....|..XX|...."),
        "snare": ("....|X..o|.o.o|X..o", "....|X...|....|X.o."),
        "hat": ("x.x.|x.x.|x.x.|x.x.", "xxxx|xxxx|xxxx|xxxx"),
        "ride_bell": ("....|....|....|....", "x...|x...|x...|x..."),
    }, ghosts=True),
    Family("slow_blues", 4, {
        "kick": ("X...|....|X..x|....", "X...|....|X...|...."),
        "snare": ("....|X...|....|X...",),
        "hat": ("x.x.|x.x.|x.x.|x.x.",),
        "ride": ("....|....|....|....", "x.x.|x.x.|x.x.|x.x."),
    }, swings=True),
)
FAMILIES = {family.name: family for family in TRAIN_FAMILIES + HELD_OUT_FAMILIES}
SPLITS = {"train": (TRAIN_KITS, TRAIN_FAMILIES), "out_of_source": (HELD_OUT_KITS, HELD_OUT_FAMILIES)}
"""Split -> (drum kits, groove families)."""
GROOVE_STREAM, TEMPO_STREAM, EVENT_STREAM, SIGNAL_STREAM, MIX_STREAM = 0, 1, 2, 3, 4


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def pair_bpms(pair: int, seed: int) -> tuple[float, float, bool]:
    """Felt tempi of clips ``2 * pair`` and ``2 * pair + 1``, and whether they are an octave apart.

    Each clip's tempo class is drawn uniformly and independently, so the classes stay balanced
    whatever the octave pairs do. If the two classes' BPM ranges hold tempi an octave apart, then
    with probability ``OCTAVE_PAIR_PROBABILITY`` the slower clip draws its BPM uniformly where
    that holds and the faster one plays at twice it; otherwise each draws within its class.
    """
    rng = _rng(seed, pair, TEMPO_STREAM)
    classes = rng.integers(len(CLASS_BPM_RANGES), size=2)
    (slow_low, slow_high), (fast_low, fast_high) = (CLASS_BPM_RANGES[c] for c in sorted(classes))
    low, high = max(slow_low, fast_low / 2.0), min(slow_high, fast_high / 2.0)
    if low < high and rng.random() < OCTAVE_PAIR_PROBABILITY:
        slow = round(_uniform(rng, (low, high)), 2)
        first_is_slow = classes[0] < classes[1]
        return (slow, 2.0 * slow, True) if first_is_slow else (2.0 * slow, slow, True)
    first, second = (round(_uniform(rng, CLASS_BPM_RANGES[c]), 2) for c in classes)
    return first, second, False


@dataclass(frozen=True)
class DrumSpec:
    """Everything drawn for one clip before its events; the labels follow from it alone.

    notes: voice -> the GM note it plays. variants: voice -> indices of the variants its bars
    choose among (the first is the main one). accompaniment: part (``bass``, ``chords``) ->
    (GM program, volume dB). room: the split's room parameters. voice_gains: voice -> the scale
    of its velocities (``VOICE_GAIN``; a voice missing plays at 1).
    """

    index: int
    seed: int
    split: str
    family: str
    kit: str
    bpm: float
    octave_pair: bool
    swing: float
    notes: dict[str, int]
    variants: dict[str, tuple[int, ...]]
    variation_probability: float
    fill_probability: float
    ghost_probability: float
    timing_jitter_s: float
    voice_offsets_s: dict[str, float]
    velocity_jitter: float
    drift_beats: float
    drift_period_beats: float
    start_beats: float
    key: int
    progression: tuple[tuple[int, tuple[int, ...]], ...]
    accompaniment: dict[str, tuple[int, float]]
    room: dict[str, float] = field(default_factory=dict)
    voice_gains: dict[str, float] = field(default_factory=dict)

    @property
    def groove(self) -> Family:
        return FAMILIES[self.family]

    @property
    def notated_bpm(self) -> float:
        """Tempo of the family's notation (its grid's beats per minute): ``bpm * pulse``."""
        return self.bpm * self.groove.pulse

    def onsets_per_second(self) -> float:
        """Distinct sixteenths played by the main variants of all voices, per second."""
        family = self.groove
        return onset_rate([family.grid(voice)[variants[0]] for voice, variants in self.variants.items()],
                          family.meter, self.notated_bpm)

    def labels(self) -> dict:
        """As ``synth.ClipSpec.labels``: ``style`` (the family), ``style_index`` (``NO_STYLE``),
        ``bpm``, ``tempo_class``, ``meter``, ``tags``."""
        family = self.groove
        values = {tag: any(voice in self.variants and family.grid(voice)[list(self.variants[voice])].any()
                           for voice in voices) for tag, voices in TAG_VOICES.items()}
        values.update(has_bass="bass" in self.accompaniment, has_chords="chords" in self.accompaniment,
                      swing=self.swing > 0, triple_meter=family.meter == 3,
                      dense=self.onsets_per_second() >= DENSE_ONSETS_PER_SECOND)
        return {"style": family.name, "style_index": NO_STYLE, "bpm": self.bpm,
                "tempo_class": tempo_class(self.bpm), "meter": family.meter,
                "tags": tuple(int(values[name]) for name in TAG_NAMES)}


def draw_drum_spec(index: int, seed: int, split: str = "train") -> DrumSpec:
    """The spec of clip ``index`` of GM corpus ``seed`` in ``split`` (``train`` or
    ``out_of_source``); families cycle with the pair index."""
    if index < 0 or seed < 0:
        raise ValueError(f"index ({index}) and seed ({seed}) must be non-negative integers")
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    kits, families = SPLITS[split]
    pair = index // 2
    rng = _rng(seed, pair, GROOVE_STREAM)
    family = families[pair % len(families)]
    variants = {}
    for voice in family.patterns:
        n = len(family.patterns[voice])
        order = rng.permutation(n)
        variants[voice] = tuple(int(v) for v in order[:int(rng.integers(1, n + 1))])
    minor = rng.random() < 0.4
    progressions = MINOR_PROGRESSIONS if minor else MAJOR_PROGRESSIONS
    accompaniment = {}
    for part, programs in (("bass", BASS_PROGRAMS), ("chords", CHORD_PROGRAMS)):
        if rng.random() < ACCOMPANIMENT_PROBABILITY[part]:
            accompaniment[part] = (int(rng.choice(programs)), _uniform(rng, GAIN_DB[part]))
    if split == "train":
        room = {"rt60_s": _uniform(rng, ROOM_RT60_SECONDS), "wet": _uniform(rng, ROOM_WET),
                "damping": _uniform(rng, ROOM_DAMPING), "noise_db": _uniform(rng, NOISE_DB),
                "noise_corner_hz": float(np.exp(_uniform(rng, tuple(np.log(NOISE_CORNER_HZ)))))}
    else:
        room = {"room_size": _uniform(rng, FLUID_ROOM_SIZE), "reverb_level": _uniform(rng, FLUID_REVERB_LEVEL),
                "chorus_level": _uniform(rng, FLUID_CHORUS_LEVEL)}
    room["peak_dbfs"] = _uniform(rng, PEAK_DBFS)
    bpms = pair_bpms(pair, seed)
    mix = _rng(seed, pair, MIX_STREAM)  # its own stream: the other draws stay as they were
    voice_gains = {voice: _uniform(mix, VOICE_GAIN[split]) for voice in VOICES}
    if ("kick" in variants and any(voice in variants for voice in BACKBEAT_VOICES)
            and mix.random() < KICK_DROP_PROBABILITY[split]):
        del variants["kick"]
    return DrumSpec(
        index=index, seed=seed, split=split, family=family.name, kit=str(rng.choice(kits)),
        bpm=bpms[index % 2], octave_pair=bpms[2],
        swing=_uniform(rng, SWING) if family.swings and rng.random() < 0.8 else 0.0,
        notes={voice: int(rng.choice(GM_NOTES[voice])) for voice in VOICES},
        variants=variants,
        variation_probability=_uniform(rng, VARIATION_PROBABILITY),
        fill_probability=_uniform(rng, FILL_PROBABILITY),
        ghost_probability=_uniform(rng, GHOST_PROBABILITY) if family.ghosts else 0.0,
        timing_jitter_s=_uniform(rng, TIMING_JITTER_SECONDS),
        voice_offsets_s={voice: _uniform(rng, (-VOICE_OFFSET_SECONDS, VOICE_OFFSET_SECONDS)) for voice in VOICES},
        velocity_jitter=_uniform(rng, VELOCITY_JITTER),
        drift_beats=_uniform(rng, DRIFT_BEATS),
        drift_period_beats=_uniform(rng, DRIFT_PERIOD_BEATS),
        start_beats=_uniform(rng, (0.0, float(BARS_PER_PHRASE * family.meter))),
        key=int(rng.integers(12)),
        progression=progressions[rng.integers(len(progressions))],
        accompaniment=accompaniment,
        room=room,
        voice_gains=voice_gains,
    )


@dataclass(frozen=True)
class NoteEvents:
    """Notes of one clip, sorted by time, each (notes,): ``times_s`` float64 onset seconds from
    the clip start (negative: pre-roll), ``channels``, ``keys``, ``velocities`` (1..127) int64 MIDI
    values, ``durations_s`` float64 (0 for drums: one-shots)."""

    times_s: np.ndarray
    channels: np.ndarray
    keys: np.ndarray
    velocities: np.ndarray
    durations_s: np.ndarray

    def __len__(self) -> int:
        return len(self.times_s)


def _fill(family: Family, beats: int, rng: np.random.Generator) -> list[tuple[int, str, float]]:
    """A fill over the last ``beats`` beats of a bar: (step, voice, velocity) on sixteenths,
    moving from snare to floor tom as it goes, louder towards its end."""
    steps = beats * STEPS_PER_BEAT
    start = family.steps_per_bar - steps
    hits = []
    for k in range(steps):
        if rng.random() < 0.75 or k == 0:
            voice = FILL_VOICES[min(len(FILL_VOICES) - 1, int(len(FILL_VOICES) * (k + rng.random()) / steps))]
            hits.append((start + k, voice, 0.6 + 0.4 * k / steps))
    return hits


def drum_events(spec: DrumSpec, seconds: float) -> NoteEvents:
    """The notes of ``spec`` from ``PRE_ROLL_SECONDS`` before the clip to its end."""
    family = spec.groove
    rng = _rng(spec.seed, spec.index, EVENT_STREAM)
    beat_s = 60.0 / spec.notated_bpm
    first_bar = -int(np.ceil((PRE_ROLL_SECONDS / beat_s + spec.start_beats) / family.meter)) - 1
    last_bar = int(np.ceil((seconds / beat_s + spec.start_beats) / family.meter)) + 1
    grids = {voice: family.grid(voice) for voice in spec.variants}
    hits: list[tuple[float, str, float]] = []  # (grid position in beats, voice, velocity 0..1)
    after_fill = False
    for bar in range(first_bar, last_bar):
        phrase_end = bar % BARS_PER_PHRASE == BARS_PER_PHRASE - 1
        fill = _fill(family, int(rng.integers(1, 3)), rng) if phrase_end and rng.random() < spec.fill_probability else []
        fill_start = min((step for step, _, _ in fill), default=family.steps_per_bar)
        taken = np.zeros(family.steps_per_bar, dtype=bool)
        for voice, grid in grids.items():
            variants = spec.variants[voice]
            variant = variants[rng.integers(len(variants))] if rng.random() < spec.variation_probability else variants[0]
            for step in np.flatnonzero(grid[variant]):
                if step < fill_start or voice in ("kick", "pedal_hat"):
                    hits.append((bar * family.meter + step / STEPS_PER_BEAT, voice, float(grid[variant, step])))
                    taken[step] |= voice in ("snare", "rim")
        if spec.ghost_probability:
            for step in np.flatnonzero(~taken[:fill_start] & (rng.random(fill_start) < spec.ghost_probability)):
                hits.append((bar * family.meter + step / STEPS_PER_BEAT, "snare", 0.25))
        hits += [(bar * family.meter + step / STEPS_PER_BEAT, voice, velocity) for step, voice, velocity in fill]
        if after_fill and rng.random() < CRASH_AFTER_FILL_PROBABILITY:
            hits.append((bar * family.meter, "crash", 0.9))
        after_fill = bool(fill)
    grid_beats = np.array([position for position, _, _ in hits])
    whole = np.floor(grid_beats)
    beats = whole + _swing_phase(grid_beats - whole, spec.swing) - spec.start_beats
    voices = [voice for _, voice, _ in hits]
    times = _beat_times(spec, beats)
    times += np.array([spec.voice_offsets_s[voice] for voice in voices])
    times += rng.normal(0.0, spec.timing_jitter_s, len(times))
    velocity = np.array([velocity * spec.voice_gains.get(voice, 1.0) for _, voice, velocity in hits])
    velocity *= np.exp(rng.normal(0.0, spec.velocity_jitter, len(hits)))
    drums = (times, np.full(len(times), DRUM_CHANNEL), np.array([spec.notes[voice] for voice in voices]),
             _midi_velocity(velocity), np.zeros(len(times)))
    parts = [drums] + [_accompaniment(spec, part, beats, voices, rng) for part in spec.accompaniment]
    times, channels, keys, velocities, durations = (np.concatenate(column) for column in zip(*parts))
    keep = (times >= -PRE_ROLL_SECONDS) & (times < seconds)
    order = np.argsort(times[keep], kind="stable")
    return NoteEvents(*(column[keep][order] for column in (times, channels.astype(np.int64), keys.astype(np.int64),
                                                          velocities.astype(np.int64), durations)))


def _beat_times(spec: DrumSpec, beats: np.ndarray) -> np.ndarray:
    """Seconds of positions ``beats`` (notated beats from the clip start): the notated tempo with
    a slow drift of ``drift_beats`` around it."""
    beat_s = 60.0 / spec.notated_bpm
    drift = spec.drift_beats * np.sin(2.0 * np.pi * beats / spec.drift_period_beats)
    return (beats + drift) * beat_s


def _midi_velocity(velocity: np.ndarray) -> np.ndarray:
    return np.clip(np.round(velocity * VELOCITY_MIDI[1]), *VELOCITY_MIDI).astype(np.int64)


def _accompaniment(spec: DrumSpec, part: str, beats: np.ndarray, voices: list[str],
                   rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Bass on the kick hits (chord roots, sometimes the fifth) or chords on each bar's first beat
    and (in 4/4) its third, following ``spec.progression`` one chord per bar."""
    meter = spec.groove.meter
    beat_s = 60.0 / spec.notated_bpm
    if part == "bass":
        at = beats[np.array([voice == "kick" for voice in voices], dtype=bool)]
        if not len(at):
            at = np.arange(np.floor(beats.min()), beats.max(), meter, dtype=np.float64)
        bars = np.floor((at + spec.start_beats) / meter).astype(np.int64)
        roots = np.array([(spec.key + spec.progression[bar % len(spec.progression)][0]) % 12 for bar in bars])
        keys = BASS_LOWEST_MIDI + roots + np.where(rng.random(len(at)) < 0.2, 7, 0)
        durations = np.full(len(at), 0.9 * beat_s)
        channel = BASS_CHANNEL
    else:
        first = np.floor((beats.min() + spec.start_beats) / meter) * meter - spec.start_beats
        onsets = np.arange(first, beats.max(), meter / 2 if meter == 4 else meter)
        bars = np.floor((onsets + spec.start_beats + 1e-9) / meter).astype(np.int64)
        at, keys = [], []
        for onset, bar in zip(onsets, bars):
            root, intervals = spec.progression[bar % len(spec.progression)]
            tones = CHORD_LOWEST_MIDI + (spec.key + root + np.array(intervals) - CHORD_LOWEST_MIDI) % 12
            at += [onset] * len(tones)
            keys += tones.tolist()
        at, keys = np.array(at), np.array(keys)
        durations = np.full(len(at), 0.95 * beat_s * (meter / 2 if meter == 4 else meter))
        channel = CHORD_CHANNEL
    times = _beat_times(spec, at) + rng.normal(0.0, spec.timing_jitter_s, len(at))
    velocity = 0.75 * np.exp(rng.normal(0.0, spec.velocity_jitter, len(at)))
    return times, np.full(len(at), channel), keys, _midi_velocity(velocity), durations
