"""Tempogram: librosa parity of the onset strength and the tempogram for both presets, batched
clips independent, the DLR preset's frame grid, building blocks against numpy / librosa."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

librosa = pytest.importorskip("librosa")

from dlr_engine.ops.tempogram import (autocorrelate, linear_ramp_pad,  # noqa: E402
                                      tempogram_from_onsets)
from dlr_engine.spectral import TEMPOGRAM_PRESETS, Tempogram, from_name  # noqa: E402

from test_melspec import music_like  # noqa: E402

TEMPOGRAM_TOL = 1e-4
"""Largest absolute difference of max-normalised tempogram values (issue 5)."""
ONSET_REL_TOL = 1e-4
"""Largest ``max |ours - librosa| / max librosa`` of the onset envelope."""


def librosa_onsets(y: np.ndarray, module: Tempogram) -> np.ndarray:
    c = module.config
    return librosa.onset.onset_strength(y=y, sr=c.sr, hop_length=c.hop_length, n_fft=c.n_fft,
                                        n_mels=c.n_mels, fmin=c.fmin, lag=c.lag,
                                        pad_mode=c.pad_mode)


def librosa_tempogram(y: np.ndarray, module: Tempogram) -> np.ndarray:
    """``librosa.feature.tempogram`` of the preset's onset envelope, every frame_hop-th frame."""
    c = module.config
    tempogram = librosa.feature.tempogram(onset_envelope=librosa_onsets(y, module), sr=c.sr,
                                          hop_length=c.hop_length, win_length=c.win_length,
                                          center=c.center, window=c.window, norm=c.norm)
    return tempogram[:, ::c.frame_hop]


@pytest.mark.parametrize("preset", list(TEMPOGRAM_PRESETS))
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("extra_onsets", [13, 301])  # uncentred needs >= win_length onsets
def test_tempogram_matches_librosa(preset, center, extra_onsets):
    module = Tempogram(preset=preset, center=center)
    c = module.config
    samples = (c.win_length + extra_onsets) * c.hop_length + 37  # odd
    y = music_like(samples, c.sr, seed=extra_onsets)
    x = torch.from_numpy(y)[None]
    expected_onsets = librosa_onsets(y, module)
    onsets = module.onset_strength(x)[0].numpy()
    assert onsets.shape == expected_onsets.shape
    assert np.abs(onsets - expected_onsets).max() <= ONSET_REL_TOL * expected_onsets.max()
    expected = librosa_tempogram(y, module)
    out = module(x)[0].numpy()
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= TEMPOGRAM_TOL


def test_librosa_preset_equals_librosa_feature_tempogram_defaults():
    y = music_like(3 * 22050 + 1, 22050, seed=1)
    expected = librosa.feature.tempogram(y=y, sr=22050)
    out = Tempogram(preset="librosa")(torch.from_numpy(y)[None])[0].numpy()
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= TEMPOGRAM_TOL


def test_dlr_tempogram_of_30_seconds_is_aligned_with_the_mel():
    x = torch.from_numpy(music_like(240000, 8000, seed=2))[None]
    out = from_name("tempogram")(x)
    assert out.shape == (1, 256, 938)  # lags of 16 ms, frames every 256 samples like the mel
    assert torch.allclose(out.amax(dim=1), torch.ones(1, 938))  # max-normalised, lag 0 = max


def test_batched_clips_are_independent():
    module = Tempogram(preset="dlr")
    y = np.stack([music_like(3 * 8000 + 7, 8000, seed=s) * g for s, g in ((0, 1.0), (1, 0.01))])
    out = module(torch.from_numpy(y))
    for i in range(2):
        expected = librosa_tempogram(y[i], module)
        assert np.abs(out[i].numpy() - expected).max() <= TEMPOGRAM_TOL


def test_silence_gives_no_nan_in_output_or_gradient():
    x = torch.zeros(2, 8000, requires_grad=True)
    out = Tempogram(preset="dlr")(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and (out == 0).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("width", [0, 1, 5])
def test_linear_ramp_pad_matches_numpy(width):
    x = np.random.default_rng(0).standard_normal((2, 9))
    expected = np.pad(x, ((0, 0), (width, width)), mode="linear_ramp", end_values=0)
    assert np.abs(linear_ramp_pad(torch.from_numpy(x), width).numpy() - expected).max() < 1e-12


def test_autocorrelate_matches_librosa():
    x = np.random.default_rng(0).standard_normal((3, 37))
    expected = librosa.autocorrelate(x, max_size=20, axis=-1)
    assert np.abs(autocorrelate(torch.from_numpy(x), 20).numpy() - expected).max() < 1e-10


def test_frame_hop_keeps_every_nth_frame_and_norms():
    onsets = torch.rand(2, 50, dtype=torch.float64)
    every = tempogram_from_onsets(onsets, 16, norm=None)
    assert torch.allclose(tempogram_from_onsets(onsets, 16, frame_hop=3, norm=None),
                          every[..., ::3])
    unit = tempogram_from_onsets(onsets, 16, norm=2.0)
    assert torch.allclose(unit.norm(dim=1), torch.ones(2, 50, dtype=torch.float64))
    assert torch.allclose(tempogram_from_onsets(onsets, 16, norm=math.inf).amax(dim=1),
                          torch.ones(2, 50, dtype=torch.float64))


def test_gradcheck_tempogram_float64():
    onsets = torch.rand(2, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda o: tempogram_from_onsets(o, 6, frame_hop=2),
                                    (onsets,), fast_mode=True)


@pytest.mark.parametrize("preset,center", [("dlr", True), ("dlr", False), ("librosa", False)])
def test_min_samples_is_the_shortest_accepted_clip(preset, center):
    module = Tempogram(preset=preset, center=center)
    assert torch.isfinite(module(torch.rand(1, module.min_samples))).all()
    with pytest.raises(ValueError):
        module(torch.rand(1, module.min_samples - 1))


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="center=True"):
        tempogram_from_onsets(torch.rand(1, 10), 16, center=False)
    with pytest.raises(ValueError, match="choose one of"):
        Tempogram(preset="madmom")
