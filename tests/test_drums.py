"""General MIDI drum grooves (``data.drums``) and their SoundFont rendering (``data.soundfont``):
determinism per seed, labels, tempo pairs, disjoint splits, events on the labelled tempo's
grid, audio at the stated BPM, the corpus CLI, and clear errors without a SoundFont.

Rendering needs pyfluidsynth, the FluidSynth library and a GM SoundFont (``apt-get install
fluid-soundfont-gm libfluidsynth3``); without them those tests skip, saying why, unless
``DLR_ENGINE_REQUIRE_SOUNDFONT=1`` (CI sets it), which makes the skip a failure.
"""
from __future__ import annotations

import argparse
import dataclasses
import os

import numpy as np
import pytest
import torch
from test_synth import dominant_period_s, matches_tempo, onset_envelope

from dlr_engine.data import drums, soundfont, synth_cli
from dlr_engine.data.drums import (
    BPM_RANGE, DRUM_CHANNEL, FAMILIES, HELD_OUT_FAMILIES, HELD_OUT_KITS, NO_STYLE, TRAIN_FAMILIES, TRAIN_KITS,
    draw_drum_spec, drum_events,
)
from dlr_engine.data.synth import TAG_NAMES, read_labels, tempo_class

RATE = 8000
SEED = 77


def needs_soundfont():
    """Skip (or, with DLR_ENGINE_REQUIRE_SOUNDFONT=1, fail) where the SoundFont source cannot run."""
    reason = soundfont.availability()
    if reason:
        if os.environ.get("DLR_ENGINE_REQUIRE_SOUNDFONT") == "1":
            pytest.fail(f"DLR_ENGINE_REQUIRE_SOUNDFONT=1 but the SoundFont source cannot run: {reason}")
        pytest.skip(reason)


def test_every_family_parses_with_its_meter():
    for family in FAMILIES.values():
        for voice in family.patterns:
            grid = family.grid(voice)
            assert grid.shape[1] == family.meter * 4 and grid.max() <= 1.0, (family.name, voice)
            assert voice in drums.GM_NOTES, (family.name, voice)
    assert not {f.name for f in TRAIN_FAMILIES} & {f.name for f in HELD_OUT_FAMILIES}


def test_specs_and_events_are_deterministic_in_any_order():
    later = drum_events(draw_drum_spec(9, SEED), 6.0)
    drum_events(draw_drum_spec(4, SEED), 6.0)
    again = drum_events(draw_drum_spec(9, SEED), 6.0)
    for a, b in zip(dataclasses.astuple(later), dataclasses.astuple(again)):
        assert np.array_equal(a, b)
    other = drum_events(draw_drum_spec(9, SEED + 1), 6.0)
    assert len(other) != len(later) or not np.array_equal(other.times_s, later.times_s)


def test_labels_pairs_and_splits():
    specs = {split: [draw_drum_spec(i, SEED, split) for i in range(160)] for split in drums.SPLITS}
    for split, kits, families in (("train", TRAIN_KITS, TRAIN_FAMILIES),
                                  ("out_of_source", HELD_OUT_KITS, HELD_OUT_FAMILIES)):
        assert {s.kit for s in specs[split]} == set(kits)  # every kit of the split, none of the other
        assert {s.family for s in specs[split]} == {f.name for f in families}
    octave_pairs = 0
    for spec in specs["train"]:
        labels = spec.labels()
        assert labels["style_index"] == NO_STYLE and labels["style"] == spec.family
        assert BPM_RANGE[0] <= labels["bpm"] <= BPM_RANGE[1]
        assert labels["tempo_class"] == tempo_class(labels["bpm"]) and len(labels["tags"]) == len(TAG_NAMES)
        if spec.index % 2:
            first = specs["train"][spec.index - 1]
            assert (first.family, first.kit, first.notes, first.variants) == (spec.family, spec.kit, spec.notes,
                                                                               spec.variants)
            if spec.octave_pair:
                octave_pairs += 1
                assert max(first.bpm, spec.bpm) / min(first.bpm, spec.bpm) == pytest.approx(2.0, abs=1e-3)
    assert 20 < octave_pairs < 60  # about half of the 80 pairs
    # Balanced classes, octave pairs included (expected 40 of 160 each; halving every fast
    # clip of an octave pair would put ~55 in the slowest class).
    counts = np.bincount([s.labels()["tempo_class"] for s in specs["train"]], minlength=4)
    assert counts.min() >= 25 and counts.max() <= 55, counts


def _unhumanised(index: int, **changes) -> drums.DrumSpec:
    return dataclasses.replace(draw_drum_spec(index, SEED), swing=0.0, timing_jitter_s=0.0, drift_beats=0.0,
                               voice_offsets_s=dict.fromkeys(drums.VOICES, 0.0), **changes)


def test_events_lie_on_the_labelled_tempo_grid():
    """Without humanisation, swing and drift, every drum hit falls on a sixteenth of the
    notated tempo (a 32nd of the labelled beat in half-time grooves), and a tempo 2 % off does
    not fit."""
    seen = set()
    for index in range(0, 40, 3):
        spec = _unhumanised(index)
        seen.add(spec.groove.pulse)
        events = drum_events(spec, 8.0)
        drum = events.channels == DRUM_CHANNEL
        assert drum.sum() > 8 and np.all(np.diff(events.times_s) >= 0)
        assert (events.times_s >= -drums.PRE_ROLL_SECONDS).all() and (events.times_s < 8.0).all()
        assert ((1 <= events.velocities) & (events.velocities <= 127)).all()
        assert spec.notated_bpm == pytest.approx(spec.bpm * spec.groove.pulse)
        for bpm, fits in ((spec.notated_bpm, True), (spec.notated_bpm * 1.02, False)):
            sixteenths = (events.times_s[drum] * bpm / 60.0 + spec.start_beats) * 4
            assert np.allclose(sixteenths, np.round(sixteenths), atol=1e-6) == fits, (index, bpm)
    assert seen == {0.5, 1.0, 2.0}  # half-time and double-time grooves among them


BACKBEAT_FAMILIES = ("rock", "pop16", "funk", "disco", "shuffle", "halftime", "double_time", "hiphop", "metal")


@pytest.mark.parametrize("family", BACKBEAT_FAMILIES)
def test_the_label_counts_the_felt_beat_snare_on_2_and_4(family):
    """The labelled BPM is the beat a listener taps: in every backbeat groove, half-time and
    double-time feels included, the accented snare hits on whole beats of the *labelled* tempo
    fall on beats 2 and 4 (odd beats counted from 0), and nearly every such beat has one. A label
    that followed the notation (twice or half the felt tempo) fails both."""
    names = [f.name for f in TRAIN_FAMILIES]
    pair = names.index(family)
    spec = _unhumanised(2 * pair, fill_probability=0.0, ghost_probability=0.0, variation_probability=0.0,
                        velocity_jitter=0.0, voice_gains=dict.fromkeys(drums.VOICES, 1.0))
    assert spec.family == family
    events = drum_events(spec, 12.0)
    snare = (events.channels == DRUM_CHANNEL) & (events.keys == spec.notes["snare"]) & (events.velocities == 127)
    beat_s = 60.0 / spec.bpm
    felt = (events.times_s[snare] / beat_s + spec.start_beats / spec.groove.pulse)
    on_beats = np.round(felt[np.abs(felt - np.round(felt)) < 1e-6]).astype(np.int64)
    assert len(on_beats) and (on_beats % 2 == 1).all(), (family, felt)
    offset = spec.start_beats / spec.groove.pulse
    beats = np.arange(np.ceil(offset - drums.PRE_ROLL_SECONDS / beat_s), np.ceil(offset + 12.0 / beat_s))
    odd_beats = beats[beats % 2 == 1]  # the labelled tempo's beats 2 and 4 in the clip and its pre-roll
    assert len(odd_beats) >= 4 and len(set(on_beats.tolist())) >= 0.9 * len(odd_beats), (family, on_beats, odd_beats)


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="split"):
        draw_drum_spec(0, 1, "test")
    with pytest.raises(ValueError, match="non-negative"):
        draw_drum_spec(-1, 1)


def test_a_missing_soundfont_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv(soundfont.SOUNDFONT_ENV, str(tmp_path / "missing.sf2"))
    with pytest.raises(soundfont.SoundFontUnavailable, match="missing.sf2"):
        soundfont.find_soundfont()
    monkeypatch.delenv(soundfont.SOUNDFONT_ENV)
    monkeypatch.setattr(soundfont, "SOUNDFONT_PATHS", (str(tmp_path / "nowhere.sf2"),))
    with pytest.raises(soundfont.SoundFontUnavailable, match="apt-get install fluid-soundfont-gm"):
        soundfont.find_soundfont()
    assert "fluid-soundfont-gm" in soundfont.availability()
    with pytest.raises(soundfont.SoundFontUnavailable, match="DLR_ENGINE_SOUNDFONT"):
        soundfont.SoundFontDrumDataset(2, 0, 4.0)


@pytest.mark.parametrize("split", tuple(drums.SPLITS))
def test_rendering_is_deterministic_in_any_order(split):
    needs_soundfont()
    first = soundfont.render_drum_corpus_clip(3, SEED, 4.0, RATE, split)
    soundfont.render_drum_corpus_clip(6, SEED, 5.0, RATE, split)
    again = soundfont.render_drum_corpus_clip(3, SEED, 4.0, RATE, split)
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    audio = first[0]
    assert audio.dtype == np.float32 and audio.shape == (4 * RATE,)
    assert np.isfinite(audio).all() and 0.05 < np.abs(audio).max() < 1.0


def test_rendered_pairs_play_at_the_stated_bpm():
    """Both clips of octave pairs (one groove at BPM and 2 x BPM): the strongest periodicity
    of the onsets is a beat multiple of the label, and not of a tempo 2 % off."""
    needs_soundfont()
    first = {}  # the first octave pair of each family, half-time and double-time included
    for pair in range(80):
        spec = draw_drum_spec(2 * pair, SEED)
        if spec.octave_pair and spec.family in ("rock", "halftime", "double_time"):
            first.setdefault(spec.family, pair)
    assert len(first) == 3
    pairs = list(first.values())
    for pair in pairs:
        for index in (2 * pair, 2 * pair + 1):
            audio, labels = soundfont.render_drum_corpus_clip(index, SEED, 20.0, RATE)
            period = dominant_period_s(onset_envelope(audio, RATE))
            assert matches_tempo(period, labels["bpm"]), (labels, period)
            assert not matches_tempo(period, labels["bpm"] * 1.02)


def test_dataset_items_and_corpus_cli(tmp_path):
    needs_soundfont()
    dataset = soundfont.SoundFontDrumDataset(3, SEED, 4.0, RATE)
    audio, labels = dataset[1]
    assert audio.shape == (4 * RATE,) and audio.dtype == torch.float32
    assert labels["style"].item() == NO_STYLE and labels["tags"].shape == (len(TAG_NAMES),)
    assert labels["tempo_class"].item() == tempo_class(labels["bpm"].item())
    parser = argparse.ArgumentParser()
    synth_cli.register(parser.add_subparsers())
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--n", "2", "--seed", str(SEED), "--seconds", "3",
                              "--sample-rate", "22050", "--source", "soundfont"])
    assert args.func(args) == 0
    rows = read_labels(tmp_path / "labels.csv")
    assert [row["style_index"] for row in rows] == [NO_STYLE, NO_STYLE]
    assert [row["bpm"] for row in rows] == [draw_drum_spec(i, SEED).bpm for i in range(2)]


def test_the_train_split_varies_the_mix_and_the_out_of_source_split_keeps_the_kit_balance():
    """Train clips scale each voice's velocities by a gain drawn per pair (the kick sometimes
    quieter than the snare); out-of-source clips play every voice at 1."""
    train = [draw_drum_spec(i, SEED) for i in range(0, 60, 2)]
    gains = np.array([[spec.voice_gains[voice] for voice in drums.VOICES] for spec in train])
    low, high = drums.VOICE_GAIN["train"]
    assert (gains >= low).all() and (gains <= high).all() and gains.std() > 0.1
    assert any(spec.voice_gains["kick"] < 0.6 * spec.voice_gains["snare"] for spec in train)
    assert train[1].voice_gains == draw_drum_spec(3, SEED).voice_gains  # one mix per pair
    for index in range(6):
        assert set(draw_drum_spec(index, SEED, "out_of_source").voice_gains.values()) == {1.0}
    spec = _unhumanised(next(i for i in range(0, 40, 2) if "kick" in draw_drum_spec(i, SEED).variants),
                        velocity_jitter=0.0)
    events = drum_events(spec, 6.0)
    flat = drum_events(dataclasses.replace(spec, voice_gains=dict.fromkeys(drums.VOICES, 1.0)), 6.0)
    assert np.array_equal(events.times_s, flat.times_s) and np.array_equal(events.keys, flat.keys)
    for voice in ("kick", "snare"):
        hits = (events.channels == DRUM_CHANNEL) & (events.keys == spec.notes[voice])
        expected = np.clip(flat.velocities[hits] * spec.voice_gains[voice], *drums.VELOCITY_MIDI)
        assert hits.any() and np.allclose(events.velocities[hits], expected, atol=1.0), voice


def test_some_train_pairs_drop_the_kick_and_the_labels_follow():
    """A quarter of the train pairs with a kick and a backbeat voice play without the kick (both
    clips of the pair; its ``has_kick`` tag is 0 and no kick note sounds); the felt-beat label
    does not change; the out-of-source split keeps every kick."""
    has_kick = TAG_NAMES.index("has_kick")
    train = [draw_drum_spec(i, SEED) for i in range(400)]
    could = [s for s in train if "kick" in s.groove.patterns
             and any(v in s.groove.patterns for v in drums.BACKBEAT_VOICES)]
    dropped = [s for s in could if "kick" not in s.variants]
    assert 0.15 < len(dropped) / len(could) < 0.35, (len(dropped), len(could))
    for spec in dropped[:6]:
        assert spec.labels()["tags"][has_kick] == 0
        assert "kick" not in draw_drum_spec(spec.index ^ 1, SEED).variants  # the other clip of the pair
        events = drum_events(spec, 6.0)
        assert not ((events.channels == DRUM_CHANNEL) & (events.keys == spec.notes["kick"])).any()
        assert len(events) > 8
        kept = dataclasses.replace(spec, variants={**spec.variants, "kick": (0,)})
        assert kept.labels()["bpm"] == spec.labels()["bpm"] and kept.labels()["tags"][has_kick] == 1
    assert all("kick" in s.variants for s in train if s.labels()["tags"][has_kick])
    for index in range(0, 200, 2):
        spec = draw_drum_spec(index, SEED, "out_of_source")
        assert ("kick" in spec.variants) == ("kick" in spec.groove.patterns)
