"""Training augmentation (``train.augment``): determinism per (seed, epoch, clip), labels that
follow the playback-rate change, shapes, no NaN, and each stage doing what it says."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_synth import dominant_period_s, matches_tempo, onset_envelope

from dlr_engine.data.synth import SynthRhythmDataset, tempo_class
from dlr_engine.train import augment as aug
from dlr_engine.train.augment import STRETCH, Augmented, augment, compress, equalise, stretch
from dlr_engine.train.datasets import InMemory

RATE = 8000
SECONDS = 4.0
SOURCE_SECONDS = SECONDS * STRETCH[1] + 0.01


def click_track(bpm: float, seconds: float) -> np.ndarray:
    """Decaying noise bursts on every beat of ``bpm``: (samples,) float32."""
    rng = np.random.default_rng(0)
    audio = np.zeros(int(seconds * RATE), np.float32)
    burst = (rng.uniform(-1, 1, 400) * np.exp(-np.arange(400) / 60.0)).astype(np.float32)
    for start in np.arange(0.0, seconds - 0.06, 60.0 / bpm):
        audio[int(start * RATE):int(start * RATE) + 400] += burst
    return audio


def labels_of(bpm: float) -> dict[str, torch.Tensor]:
    return {"style": torch.tensor(3), "tempo_class": torch.tensor(tempo_class(bpm)),
            "bpm": torch.tensor(bpm, dtype=torch.float32), "tags": torch.zeros(10)}


@pytest.fixture(scope="module")
def clips() -> InMemory:
    return InMemory(SynthRhythmDataset(6, seed=11, seconds=SOURCE_SECONDS), progress=False)


def test_deterministic_per_seed_epoch_and_clip(clips):
    data = Augmented(clips, SECONDS, seed=3)
    first = [data[i] for i in range(len(clips))]
    data[4], data[0]  # other draws in between change nothing
    again = data[2]
    assert torch.equal(first[2][0], again[0]) and first[2][1]["bpm"] == again[1]["bpm"]
    data.set_epoch(1)
    assert not torch.equal(first[2][0], data[2][0])
    assert not torch.equal(Augmented(clips, SECONDS, seed=4)[2][0], first[2][0])
    data.set_epoch(0)
    assert torch.equal(first[2][0], data[2][0])


def test_probability_leaves_the_other_clips_only_cropped(clips):
    data = Augmented(clips, SECONDS, seed=5, probability=0.5)
    cropped = 0
    for epoch in range(3):
        data.set_epoch(epoch)
        for index in range(len(clips)):
            audio, labels = data[index]
            source, source_labels = clips[index]
            assert audio.shape == (int(SECONDS * RATE),)
            if labels["bpm"] == source_labels["bpm"]:  # not stretched: an exact slice of the source
                cropped += 1
                starts = [o for o in range(len(source) - len(audio) + 1) if source[o] == audio[0]]
                assert any(torch.equal(source[o:o + len(audio)], audio) for o in starts)
    assert 0 < cropped < 3 * len(clips)
    assert torch.equal(Augmented(clips, SECONDS, seed=5, probability=0.0)[1][1]["bpm"], clips[1][1]["bpm"])
    with pytest.raises(ValueError, match="probability"):
        Augmented(clips, SECONDS, seed=5, probability=1.5)


def test_shapes_finite_and_labels_follow_the_stretch(clips):
    data = Augmented(clips, SECONDS, seed=0)
    factors = []
    for epoch in range(4):
        data.set_epoch(epoch)
        for index in range(len(clips)):
            audio, labels = data[index]
            source_labels = clips[index][1]
            assert audio.shape == (int(SECONDS * RATE),) and audio.dtype == torch.float32
            assert torch.isfinite(audio).all() and 0 < audio.abs().max() <= 1.0
            factor = (labels["bpm"] / source_labels["bpm"]).item()
            assert STRETCH[0] - 1e-6 <= factor <= STRETCH[1] + 1e-6
            assert labels["tempo_class"].item() == tempo_class(labels["bpm"].item())
            assert labels["style"] == source_labels["style"] and torch.equal(labels["tags"], source_labels["tags"])
            factors.append(factor)
    assert np.ptp(factors) > 0.08  # the stretches spread over the range


@pytest.mark.parametrize("seed", range(3))
def test_the_audio_plays_at_the_moved_label(seed):
    """A click track at 120 BPM through the whole chain: the strongest periodicity is a beat
    multiple of the new label, not of the old one."""
    source = click_track(120.0, 12.0 * STRETCH[1] + 0.1)
    for attempt in range(8):
        rng = np.random.default_rng([seed, attempt])
        audio, labels = augment(source, labels_of(120.0), rng, 12.0, RATE)
        bpm = labels["bpm"].item()
        if abs(bpm / 120.0 - 1.0) > 0.03:  # far enough from the source tempo to tell them apart
            break
    period = dominant_period_s(onset_envelope(audio.numpy(), RATE))
    assert matches_tempo(period, bpm), (bpm, period)
    assert not matches_tempo(period, 120.0)


def test_stretch_moves_onsets_by_the_factor():
    source = click_track(100.0, 10.0)
    for factor in (0.92, 1.05):
        period = dominant_period_s(onset_envelope(stretch(source, factor, RATE), RATE))
        assert matches_tempo(period, 100.0 * factor)
        assert len(stretch(source, factor, RATE)) == pytest.approx(len(source) / factor, abs=2)


def test_stages_keep_shape_and_finite_values_on_silence_and_noise():
    rng = np.random.default_rng(0)
    silence = np.zeros(int(SOURCE_SECONDS * RATE), np.float32)
    audio, _ = augment(silence, labels_of(100.0), rng, SECONDS, RATE)
    assert torch.isfinite(audio).all() and audio.shape == (int(SECONDS * RATE),)
    noise = rng.standard_normal(RATE * 2).astype(np.float32)
    for stage in (equalise, compress):
        out = stage(noise, RATE, np.random.default_rng(1))
        assert out.shape == noise.shape and out.dtype == np.float32 and np.isfinite(out).all()
    accompaniment = aug.accompaniment(RATE * 3, RATE, rng)
    assert np.sqrt(np.mean(accompaniment.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_compression_reduces_the_dynamic_range(seed):
    """A sustained loud passage (a square wave, envelope at its peak: above every threshold) and
    a soft one (-40 dB, below every threshold): the loud one comes down relative to the soft one,
    and the peak is made up."""
    t = np.arange(RATE * 6) / RATE
    audio = np.sign(np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    audio[RATE * 3:] *= 0.01
    out = compress(audio, RATE, np.random.default_rng(seed))

    def loud_to_soft(x: np.ndarray) -> float:  # levels after the attack and release settle
        return np.abs(x[RATE * 2:RATE * 3]).mean() / np.abs(x[RATE * 5:]).mean()

    assert loud_to_soft(out) < loud_to_soft(audio) / 1.5
    assert np.abs(out).max() == pytest.approx(1.0, rel=1e-5)


def test_too_short_clips_say_how_long_they_must_be():
    with pytest.raises(ValueError, match="at least 4.32 s"):
        augment(np.zeros(RATE * 4, np.float32), labels_of(100.0), np.random.default_rng(0), SECONDS, RATE)


def _rise_seconds(audio: np.ndarray, start: int, length: int) -> float:
    """Seconds from ``start`` until the smoothed magnitude first reaches 90 % of its peak
    within ``length`` samples."""
    envelope = np.convolve(np.abs(audio[start:start + length]), np.ones(8) / 8, mode="same")
    return np.argmax(envelope >= 0.9 * envelope.max()) / RATE


@pytest.mark.parametrize("seed", range(3))
def test_soften_gives_hits_soft_attacks_on_the_same_beat(seed):
    """Clicks come out with a slower rise (a swish, not a hit), still at the click tempo, with
    the same length and RMS, finite, and the same for the same stream."""
    source = click_track(100.0, 6.0)
    out = aug.soften(source, RATE, np.random.default_rng(seed))
    assert out.shape == source.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) == pytest.approx(
        np.sqrt(np.mean(source.astype(np.float64) ** 2)), rel=1e-4)
    assert np.array_equal(out, aug.soften(source, RATE, np.random.default_rng(seed)))
    beat = int(0.6 * RATE)
    for start in (beat, 4 * beat):
        assert _rise_seconds(out, start, beat) > 2 * max(_rise_seconds(source, start, beat), 1 / RATE)
        assert _rise_seconds(out, start, beat) < aug.SOFT_ATTACK_SECONDS[1] + aug.SOFT_DECAY_SECONDS[1]
    assert matches_tempo(dominant_period_s(onset_envelope(out, RATE)), 100.0)
    silence = np.zeros(RATE, np.float32)
    assert np.array_equal(aug.soften(silence, RATE, np.random.default_rng(seed)), silence)


def test_a_wider_stretch_range_moves_labels_across_it():
    """``rates`` (``TrainConfig.stretch``): factors stay inside the range and spread over it
    (log-uniform: about as many above 1 as below), the label moves with every one."""
    rates = (0.8, 1.25)
    source = click_track(150.0, SECONDS * rates[1] + 0.01)
    factors = []
    for draw in range(40):
        audio, labels = augment(source, labels_of(150.0), np.random.default_rng(draw), SECONDS, RATE, rates)
        factor = labels["bpm"].item() / 150.0
        assert rates[0] - 1e-6 <= factor <= rates[1] + 1e-6
        assert labels["tempo_class"].item() == tempo_class(labels["bpm"].item())
        assert audio.shape == (int(SECONDS * RATE),)
        factors.append(factor)
    assert min(factors) < 0.87 and max(factors) > 1.15
    assert 10 <= sum(f > 1.0 for f in factors) <= 30
    with pytest.raises(ValueError, match="at least 5.00 s"):
        augment(source[:int(4.5 * RATE)], labels_of(150.0), np.random.default_rng(0), SECONDS, RATE, rates)


@pytest.mark.parametrize("rates", [(1.1, 0.9), (0.0, 1.2), (0.9,)])
def test_a_stretch_range_must_be_low_to_high_and_positive(rates, clips):
    with pytest.raises(ValueError, match="stretch range"):
        Augmented(clips, SECONDS, seed=0, rates=rates)
