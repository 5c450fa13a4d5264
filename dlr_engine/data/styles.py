"""Ballroom-like styles of the synthetic rhythm corpus: meter, tempo range, swing, patterns.

A pattern is one or two bars on a sixteenth-note grid (``STEPS_PER_BEAT`` steps per beat),
written one character per step: ``X`` accent, ``x`` normal, ``o`` ghost, ``.`` rest; ``|``
separates beats for the reader and is ignored. Each part has a few variants: a clip plays one
main variant and now and then swaps in another for a two-bar phrase.

Tempo ranges are the usual ballroom tempi (beats per minute) widened a little, so that the
tempo class of a clip is not fully determined by its style.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEPS_PER_BEAT = 4
DRUM_PARTS = ("kick", "snare", "hat", "clap", "shaker")
PITCHED_PARTS = ("bass", "chords")
PARTS = DRUM_PARTS + PITCHED_PARTS
BARS_PER_PHRASE = 2
STEP_VELOCITY = {"X": 1.0, "x": 0.7, "o": 0.4, ".": 0.0}

# How likely each part plays in a clip; a style may override some of them.
DEFAULT_PRESENCE = {
    "kick": 0.85, "snare": 0.75, "hat": 0.65, "clap": 0.4, "shaker": 0.45, "bass": 0.8,
    "chords": 0.75,
}


@dataclass(frozen=True)
class Style:
    """One dance style.

    meter: beats per bar (3 for the waltzes, 2 for samba, 4 otherwise).
    bpm_range: (low, high) beats per minute, drawn uniformly.
    swing_probability: chance that a clip swings; its amount is drawn from ``swing_range``
        (0 straight, 1 triplet feel: the off-beat eighth moves to 2/3 of the beat).
    patterns: part -> variants (strings, see the module docstring).
    presence: part -> probability that a clip has it (defaults to ``DEFAULT_PRESENCE``).
    beat_offsets: per beat of the bar, a timing offset in beats (the early second beat of the
        Viennese waltz); empty means on the grid.
    minor_probability: chance that a clip is in a minor key.
    """

    name: str
    meter: int
    bpm_range: tuple[float, float]
    patterns: dict[str, tuple[str, ...]]
    swing_probability: float = 0.0
    swing_range: tuple[float, float] = (0.0, 0.0)
    presence: dict[str, float] | None = None
    beat_offsets: tuple[float, ...] = ()
    minor_probability: float = 0.3

    @property
    def steps_per_phrase(self) -> int:
        return BARS_PER_PHRASE * self.meter * STEPS_PER_BEAT

    def part_presence(self, part: str) -> float:
        return (self.presence or {}).get(part, DEFAULT_PRESENCE[part])

    def pattern_grid(self, part: str) -> np.ndarray:
        """Velocities of each variant of ``part``: (variants, steps_per_phrase) float32, 0..1."""
        where = f"{self.name}/{part}"
        return np.stack([parse_pattern(text, self.meter, self.steps_per_phrase, where)
                         for text in self.patterns[part]])

    def beat_offset_table(self) -> np.ndarray:
        """(meter,) offsets in beats for each beat of the bar."""
        return np.asarray(self.beat_offsets or (0.0,) * self.meter, dtype=np.float64)


def onset_rate(rows: list[np.ndarray], beats: float, bpm: float) -> float:
    """Steps played by any of ``rows`` (each (steps,) velocities spanning ``beats`` beats), per
    second at ``bpm``."""
    played = np.any(np.stack(rows) > 0, axis=0)
    return float(played.sum()) / beats * bpm / 60.0


def parse_pattern(text: str, meter: int, steps_per_phrase: int, where: str) -> np.ndarray:
    """Velocities (steps_per_phrase,) float32 of pattern ``text`` (one bar, or the whole phrase,
    tiled to the phrase); ``where`` names the pattern in errors."""
    steps = text.replace("|", "")
    unknown = set(steps) - set(STEP_VELOCITY)
    if unknown:
        raise ValueError(f"pattern {where} has unknown step characters {sorted(unknown)}; "
                         f"use {''.join(STEP_VELOCITY)}")
    bar = meter * STEPS_PER_BEAT
    if len(steps) not in (bar, steps_per_phrase):
        raise ValueError(f"pattern {where} has {len(steps)} steps; a bar has {bar}, "
                         f"a phrase {steps_per_phrase}")
    grid = np.array([STEP_VELOCITY[c] for c in steps], dtype=np.float32)
    return np.tile(grid, steps_per_phrase // len(steps))


STYLES: tuple[Style, ...] = (
    Style(
        name="cha_cha", meter=4, bpm_range=(112.0, 134.0),
        patterns={
            "kick": ("X...|....|X...|....", "X...|x...|X...|x...", "X...|....|X...|..x."),
            "snare": ("....|X...|....|X.x.", "....|x...|....|X.X.", "....|X...|..x.|X..."),
            "hat": ("x.x.|x.x.|x.x.|x.x.", "X.x.|x.x.|X.x.|x.x.", "x.o.|x.o.|x.o.|x.o."),
            "clap": ("....|....|....|X.X.|X...|....|....|X.X.", "....|X...|....|X.X."),
            "shaker": ("xoxo|xoxo|xoxo|xoxo", "Xooo|xooo|Xooo|xooo"),
            "bass": ("X...|....|..x.|X...", "X...|..x.|X...|..x."),
            "chords": ("..x.|..x.|..x.|.x..", "....|x...|....|x.x."),
        },
    ),
    Style(
        name="foxtrot", meter=4, bpm_range=(104.0, 124.0),
        swing_probability=0.8, swing_range=(0.2, 0.8),
        patterns={
            "kick": ("X...|....|x...|....", "X...|....|....|....", "x...|x...|x...|x..."),
            "snare": ("....|x...|....|x...", "....|o...|....|x..o"),
            "hat": ("x...|x.x.|x...|x.x.", "o.x.|o.x.|o.x.|o.x."),
            "clap": ("....|....|....|x...", "....|x...|....|x..."),
            "shaker": ("xoxo|xoxo|xoxo|xoxo", "x.o.|x.o.|x.o.|x.o."),
            "bass": ("X...|x...|x...|x...", "X...|....|x...|...."),
            "chords": ("X...|....|x...|....", "X...|....|....|....", "....|x...|....|x..."),
        },
        presence={"clap": 0.2},
    ),
    Style(
        name="jive", meter=4, bpm_range=(146.0, 182.0),
        swing_probability=1.0, swing_range=(0.4, 1.0),
        patterns={
            "kick": ("X...|....|X...|....", "X...|....|X...|..x.", "X...|x...|X...|x..."),
            "snare": ("....|X...|....|X...", "....|X...|....|X.x.", "....|X..x|....|X..."),
            "hat": ("x...|x.x.|x...|x.x.", "x.x.|x.x.|x.x.|x.x.", "X.x.|X.x.|X.x.|X.x."),
            "clap": ("....|X...|....|X...", "....|....|....|X..."),
            "shaker": ("x.x.|x.x.|x.x.|x.x.", "x.o.|x.o.|x.o.|x.o."),
            "bass": ("X...|x...|x...|x...", "X...|..x.|X...|..x."),
            "chords": ("....|X...|....|X...", "..x.|X...|..x.|X..."),
        },
        presence={"snare": 0.9},
    ),
    Style(
        name="quickstep", meter=4, bpm_range=(186.0, 214.0),
        swing_probability=0.6, swing_range=(0.2, 0.8),
        patterns={
            "kick": ("X...|....|X...|....", "X...|....|x...|....", "X...|x...|X...|x..."),
            "snare": ("....|X...|....|X...", "....|X...|....|X..x"),
            "hat": ("x...|x...|x...|x...", "x...|x.x.|x...|x.x."),
            "clap": ("....|X...|....|X...", "....|....|....|X..."),
            "shaker": ("x.x.|x.x.|x.x.|x.x.", "x.o.|x.o.|x.o.|x.o."),
            "bass": ("X...|....|x...|....", "X...|x...|x...|x..."),
            "chords": ("....|x...|....|x...", "X...|....|....|...."),
        },
    ),
    Style(
        name="rumba", meter=4, bpm_range=(92.0, 110.0),
        patterns={
            "kick": ("X...|....|X...|....", "X...|..x.|X...|....", "X..x|....|X...|...."),
            "snare": ("....|x...|....|X...", "....|....|....|X...", "....|..x.|....|X..."),
            "hat": ("x.x.|x.x.|x.x.|x.x.", "o.x.|o.x.|o.x.|o.x."),
            "clap": ("X..X|...X|..X.|X...", "X..X|..X.|..X.|X..."),
            "shaker": ("xoxo|xoxo|xoxo|xoxo", "x.o.|x.o.|x.o.|x.o."),
            "bass": ("....|..X.|....|X...", "X...|..x.|X...|...."),
            "chords": ("x..x|..x.|..x.|x...", "..x.|..x.|..x.|..x."),
        },
        presence={"clap": 0.6, "shaker": 0.6},
        minor_probability=0.6,
    ),
    Style(
        name="samba", meter=2, bpm_range=(92.0, 114.0),
        patterns={
            "kick": ("o...|X...", "o..x|X...", "x...|X..x"),
            "snare": ("x.xx|x.xx", "X.xx|x.xx|x.xx|X.xo"),
            "hat": ("x.xx|.x.x|x.xx|.xx.", "x..x|..x.|x..x|..x."),
            "clap": ("...x|..x.", "....|x..x|....|x..."),
            "shaker": ("Xoox|Xoox", "xoxo|Xoxo"),
            "bass": ("X..x|X...", "X...|x..x"),
            "chords": ("..x.|.x.x|..x.|x.x.", "x..x|..x.|.x..|x.x."),
        },
        presence={"shaker": 0.7},
    ),
    Style(
        name="tango", meter=4, bpm_range=(118.0, 138.0),
        patterns={
            "kick": ("X...|x...|X...|x...", "X..x|X...|X..x|X...", "X...|X...|X...|X.x."),
            "snare": ("....|....|....|X.x.", "....|x...|....|x...", "....|....|....|XxXx"),
            "hat": ("x...|x...|x...|x...", "x.x.|x.x.|x.x.|x.x."),
            "clap": ("....|....|....|X...", "X...|....|X..X|...."),
            "shaker": ("x.x.|x.x.|x.x.|x.x.",),
            "bass": ("X..x|x.x.|X..x|x.x.", "X...|x...|X...|x..."),
            "chords": ("X...|X...|X...|X...", "X...|X...|X.X.|X...", "X..x|..x.|X..x|..x."),
        },
        presence={"hat": 0.35, "shaker": 0.2, "chords": 0.9},
        minor_probability=0.7,
    ),
    Style(
        name="viennese_waltz", meter=3, bpm_range=(166.0, 192.0),
        patterns={
            "kick": ("X...|....|....", "X...|....|....|x...|....|...."),
            "snare": ("....|x...|x...", "....|X...|x..."),
            "hat": ("x...|x...|x...", "x.x.|x...|x..."),
            "clap": ("....|x...|x...",),
            "shaker": ("x.o.|x.o.|x.o.",),
            "bass": ("X...|....|....", "X...|....|....|x...|....|...."),
            "chords": ("....|X...|X...", "....|X...|x..."),
        },
        presence={"chords": 0.9},
        beat_offsets=(0.0, -0.06, 0.0),
    ),
    Style(
        name="waltz", meter=3, bpm_range=(78.0, 96.0),
        patterns={
            "kick": ("X...|....|....", "X...|....|o..."),
            "snare": ("....|x...|x...", "....|o...|x..."),
            "hat": ("x.x.|x.x.|x.x.", "x...|x...|x..."),
            "clap": ("....|x...|x...", "....|....|x..."),
            "shaker": ("xoxo|xoxo|xoxo", "x.o.|x.o.|x.o."),
            "bass": ("X...|....|....|X...|....|o...", "X...|....|x..."),
            "chords": ("....|X...|X...", "X...|x...|x..."),
        },
        presence={"chords": 0.9},
    ),
)
