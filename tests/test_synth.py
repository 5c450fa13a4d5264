"""Synthetic rhythm corpus: determinism, labels, tempo of the rendered onsets, files, dataset."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import soundfile as sf
import torch

from dlr_engine.config import TEMPO_CLASS_BOUNDARIES_BPM
from dlr_engine.data import synth_cli
from dlr_engine.data.styles import STYLES, parse_pattern
from dlr_engine.data.synth import (
    DEMO_CLIPS, STYLE_NAMES, TAG_NAMES, SynthRhythmDataset, clip_labels, demo_corpus,
    read_labels, render_clip, tempo_class, write_corpus,
)

RATE = 8000
SEED = 1234
HOP_SECONDS = 0.002
BEAT_MULTIPLES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)  # half, one, dotted, two beats; bars of 3 and 4
TEMPO_TOLERANCE = 0.01


def onset_envelope(audio: np.ndarray, sample_rate: int, window_s: float = 0.032) -> np.ndarray:
    """Rectified rise of the log energy in ``window_s`` windows: (frames,), one per HOP_SECONDS."""
    hop, window = round(HOP_SECONDS * sample_rate), round(window_s * sample_rate)
    cumulative = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    starts = np.arange(0, len(audio) - window, hop)
    energy = (cumulative[starts + window] - cumulative[starts]) / window
    rise = np.maximum(np.diff(np.log1p(1e3 * energy / energy.mean())), 0.0)
    return rise - rise.mean()


def dominant_period_s(envelope: np.ndarray, shortest_s: float = 0.25, longest_s: float = 1.6,
                      harmonics: int = 8) -> float:
    """The lag in ``[shortest_s, longest_s]`` whose multiples 1..harmonics are, summed, the most
    autocorrelated: the strongest periodicity, sharpened by its multiples."""
    n = len(envelope)
    autocorrelation = np.fft.irfft(np.abs(np.fft.rfft(envelope, 2 * n)) ** 2)[:n]
    lags = np.arange(shortest_s / HOP_SECONDS, longest_s / HOP_SECONDS, 0.1)
    score = sum(np.interp(k * lags, np.arange(n), autocorrelation)
                for k in range(1, harmonics + 1))
    return float(lags[np.argmax(score)] * HOP_SECONDS)


def matches_tempo(period_s: float, bpm: float) -> bool:
    """Whether ``period_s`` is one of ``BEAT_MULTIPLES`` of the beat of ``bpm``, within
    ``TEMPO_TOLERANCE``."""
    beats = period_s / (60.0 / bpm)
    return min(abs(beats / multiple - 1.0) for multiple in BEAT_MULTIPLES) < TEMPO_TOLERANCE


def test_same_seed_gives_the_same_audio_in_any_order():
    later, labels_later = render_clip(7, SEED, 4.0, RATE)
    render_clip(3, SEED, 4.0, RATE)
    again, labels_again = render_clip(7, SEED, 4.0, RATE)
    assert np.array_equal(later, again)
    assert labels_later == labels_again


def test_different_seeds_and_indices_differ():
    audio, _ = render_clip(7, SEED, 4.0, RATE)
    assert not np.allclose(audio, render_clip(7, SEED + 1, 4.0, RATE)[0])
    assert not np.allclose(audio, render_clip(7 + len(STYLES), SEED, 4.0, RATE)[0])  # same style


@pytest.mark.parametrize("sample_rate", [8000, 44100])
def test_audio_is_mono_float32_finite_with_peak_below_one(sample_rate):
    audio, _ = render_clip(2, SEED, 1.5, sample_rate)
    assert audio.dtype == np.float32 and audio.shape == (round(1.5 * sample_rate),)
    assert np.isfinite(audio).all()
    assert 0.05 < np.abs(audio).max() < 1.0


def test_labels_do_not_depend_on_rate_or_duration():
    for index in range(len(STYLES)):
        expected = clip_labels(index, SEED)
        assert render_clip(index, SEED, 1.0, RATE)[1] == expected
        assert render_clip(index, SEED, 2.5, 22050)[1] == expected


def test_tempo_class_boundaries():
    low, middle, high = TEMPO_CLASS_BOUNDARIES_BPM
    edges = (low - 0.01, low, middle - 0.01, middle, high - 0.01, high, 300.0)
    assert [tempo_class(bpm) for bpm in edges] == [0, 1, 1, 2, 2, 3, 3]


def test_labels_are_consistent():
    labels = [clip_labels(index, SEED) for index in range(20 * len(STYLES))]
    for label in labels:
        style = STYLES[label["style_index"]]
        assert label["style"] == style.name == STYLE_NAMES[label["style_index"]]
        assert style.bpm_range[0] <= label["bpm"] <= style.bpm_range[1]
        assert label["tempo_class"] == sum(label["bpm"] >= b for b in TEMPO_CLASS_BOUNDARIES_BPM)
        assert label["meter"] == style.meter
        tags = dict(zip(TAG_NAMES, label["tags"]))
        assert tags["triple_meter"] == (style.meter == 3)
        assert tags["has_kick"] or tags["has_bass"], "every clip needs a part that marks the beat"
        if style.swing_probability == 0:
            assert not tags["swing"]
    # Every style, every tempo class and both values of every tag occur.
    assert {label["style_index"] for label in labels} == set(range(len(STYLES)))
    assert {label["tempo_class"] for label in labels} == {0, 1, 2, 3}
    tag_matrix = np.array([label["tags"] for label in labels])
    assert (tag_matrix.min(axis=0) == 0).all() and (tag_matrix.max(axis=0) == 1).all()


@pytest.mark.parametrize("style_index", range(len(STYLES)), ids=[style.name for style in STYLES])
def test_rendered_onsets_are_at_the_stated_bpm(style_index):
    for index in (style_index, style_index + len(STYLES)):  # two clips of this style
        audio, labels = render_clip(index, SEED, 30.0, RATE)
        period = dominant_period_s(onset_envelope(audio, RATE))
        assert matches_tempo(period, labels["bpm"]), (labels, period)
        # A tempo only 2 % off must fail the same check, or the check proves nothing.
        assert not matches_tempo(period, labels["bpm"] * 1.02)
        assert not matches_tempo(period, labels["bpm"] / 1.02)


def test_rendered_onsets_at_44100_hz():
    audio, labels = render_clip(3, SEED, 20.0, 44100)  # quickstep, the fastest style
    assert matches_tempo(dominant_period_s(onset_envelope(audio, 44100)), labels["bpm"])


def test_patterns_are_validated():
    for style in STYLES:
        for part in style.patterns:
            grid = style.pattern_grid(part)
            assert grid.shape[1] == style.steps_per_phrase, (style.name, part)
            assert (grid.max(axis=1) > 0).all(), (style.name, part)
    with pytest.raises(ValueError, match="unknown step characters"):
        parse_pattern("X..y", 1, 8, "test")
    with pytest.raises(ValueError, match="a bar has 16"):
        parse_pattern("X..", 4, 32, "test")


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_corpus_files_and_csv_round_trip(tmp_path, fmt):
    csv_path = write_corpus(tmp_path / "corpus", n=3, seed=SEED, seconds=1.0, sample_rate=RATE,
                            fmt=fmt, progress=False)
    rows = read_labels(csv_path)
    assert len(rows) == 3
    for index, row in enumerate(rows):
        expected_audio, expected_labels = render_clip(index, SEED, 1.0, RATE)
        assert {key: value for key, value in row.items() if key != "path"} == expected_labels
        audio, sample_rate = sf.read(row["path"], dtype="float32")
        assert sample_rate == RATE and audio.shape == expected_audio.shape
        if fmt != "ogg":  # 16-bit PCM: the rendered clip up to quantisation
            np.testing.assert_allclose(audio, expected_audio, atol=1.0 / 32768)
    expected_files = [f"clip_00000{index}.{fmt}" for index in range(3)] + ["labels.csv"]
    assert sorted(path.name for path in csv_path.parent.iterdir()) == expected_files


def test_bad_arguments_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="choose one of wav, flac, ogg"):
        write_corpus(tmp_path, n=1, seed=SEED, seconds=1.0, sample_rate=RATE, fmt="mp3")
    with pytest.raises(ValueError, match="at least 8000 Hz"):
        render_clip(0, SEED, 1.0, 4000)
    with pytest.raises(ValueError, match="seconds must be positive"):
        render_clip(0, SEED, 0.0, RATE)
    with pytest.raises(ValueError, match="non-negative"):
        render_clip(0, -1, 1.0, RATE)
    header_only = tmp_path / "labels.csv"
    header_only.write_text("path,style\n")
    with pytest.raises(ValueError, match="lacks columns"):
        read_labels(header_only)


def test_dataset_items_and_batches():
    dataset = SynthRhythmDataset(n=4, seed=SEED, seconds=2.0, sample_rate=RATE)
    assert len(dataset) == 4
    audio, labels = dataset[1]
    expected_audio, expected = render_clip(1, SEED, 2.0, RATE)
    assert audio.dtype == torch.float32 and torch.equal(audio, torch.from_numpy(expected_audio))
    assert labels["style"].dtype == torch.int64
    assert labels["style"].item() == expected["style_index"]
    assert labels["tempo_class"].item() == expected["tempo_class"]
    assert labels["bpm"].item() == pytest.approx(expected["bpm"])
    assert labels["tags"].shape == (len(TAG_NAMES),)
    assert labels["tags"].tolist() == list(expected["tags"])
    audio_batch, label_batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert audio_batch.shape == (3, 2 * RATE)
    assert label_batch["tags"].shape == (3, len(TAG_NAMES))
    assert label_batch["tempo_class"].shape == (3,)
    with pytest.raises(IndexError):
        dataset[4]


def test_demo_corpus_has_mixed_formats_rates_and_channels(tmp_path):
    paths = demo_corpus(tmp_path)
    assert len(paths) == len(DEMO_CLIPS)
    for path, (fmt, sample_rate, channels, seconds) in zip(paths, DEMO_CLIPS):
        info = sf.info(path)
        assert path.suffix == "." + fmt
        assert (info.samplerate, info.channels) == (sample_rate, channels)
        assert info.frames == pytest.approx(seconds * sample_rate, abs=1)
    rows = read_labels(tmp_path / "labels.csv")
    assert [row["path"] for row in rows] == [path.resolve() for path in paths]


def test_cli_writes_a_corpus(tmp_path):
    parser = argparse.ArgumentParser()
    synth_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--n", "2", "--seed", "5",
                              "--seconds", "1", "--sample-rate", "8000", "--format", "flac"])
    assert args.func(args) == 0
    rows = read_labels(tmp_path / "labels.csv")
    assert [row["path"].name for row in rows] == ["clip_000000.flac", "clip_000001.flac"]
    assert rows[1]["style"] == clip_labels(1, 5)["style"]
