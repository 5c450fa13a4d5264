"""Drop-in where the README says drop-in: the "librosa" mel preset has
``librosa.feature.melspectrogram``'s defaults (hop 512 whatever n_fft is), windows come from
``scipy.signal.get_window`` (tuples such as ``("kaiser", beta)`` too), and ``MelSpectrogram``
takes torchaudio's argument names."""
from __future__ import annotations

import inspect

import librosa
import numpy as np
import pytest
import torch

from dlr_engine import MelSpectrogram
from dlr_engine.spectral import MEL_PRESETS

POWER_REL_TOL = 1e-4


def relative_error(out: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(out - expected) / np.linalg.norm(expected))


def test_librosa_preset_has_librosa_melspectrogram_defaults():
    """Every default of ``librosa.feature.melspectrogram`` and of the ``librosa.filters.mel``
    it forwards to, read from librosa itself."""
    defaults = {name: p.default for function in (librosa.feature.melspectrogram,
                                                 librosa.filters.mel)
                for name, p in inspect.signature(function).parameters.items()
                if p.default is not inspect.Parameter.empty}
    config = MEL_PRESETS["librosa"]
    compared = [name for name in defaults if hasattr(config, name)]
    assert {"sr", "n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "power",
            "n_mels", "fmin", "fmax", "htk", "norm"} <= set(compared)
    for name in compared:
        assert getattr(config, name) == defaults[name], name


@pytest.mark.parametrize("n_fft", [1024, 512])
def test_default_hop_follows_librosa_melspectrogram(n_fft):
    """The issue's repro: n_fft 1024 at 22.05 kHz gives librosa's 44 frames (hop 512), not 87."""
    y = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
    expected = librosa.feature.melspectrogram(y=y, n_fft=n_fft)
    out = MelSpectrogram(n_fft=n_fft)(torch.from_numpy(y)[None])[0].numpy()
    assert out.shape == expected.shape == (128, 44)
    assert relative_error(out, expected) <= POWER_REL_TOL


def test_window_tuple_such_as_kaiser_matches_librosa():
    y = np.random.default_rng(1).standard_normal(8000)
    window = ("kaiser", 8.0)
    expected = librosa.feature.melspectrogram(y=y, sr=8000, n_fft=512, window=window)
    out = MelSpectrogram(sr=8000, n_fft=512, window=window)(torch.from_numpy(y)[None])[0]
    assert relative_error(out.numpy(), expected) <= 1e-6  # the window buffer is float32


def test_unknown_window_names_the_argument():
    with pytest.raises(ValueError, match="window='nope'.*get_window name"):
        MelSpectrogram(window="nope")


def test_torchaudio_names_configure_the_same_module_as_ours():
    theirs = MelSpectrogram(preset="torchaudio", sample_rate=8000, n_fft=256, f_min=50.0,
                            f_max=3000.0, mel_scale="slaney", window_fn=torch.hamming_window,
                            n_mels=40, wkwargs=None, pad=0, normalized=False, onesided=True)
    ours = MelSpectrogram(preset="torchaudio", sr=8000, n_fft=256, fmin=50.0, fmax=3000.0,
                          htk=False, window="hamming", n_mels=40)
    assert theirs.config == ours.config
    assert torch.equal(theirs.window, ours.window) and torch.equal(theirs.mel_fb, ours.mel_fb)
    assert theirs.config.hop_length == 128  # torchaudio's win_length // 2


@pytest.mark.filterwarnings("ignore:.*mel filters are empty")  # torchaudio's defaults, too
def test_torchaudio_window_fn_is_torch_s_window():
    module = MelSpectrogram(preset="torchaudio", window_fn=torch.hann_window)
    assert torch.allclose(module.window, torch.hann_window(400), atol=1e-7)


@pytest.mark.parametrize("kwargs,match", [
    (dict(sr=8000, sample_rate=16000), "sr given twice"),
    (dict(mel_scale="bark"), "mel_scale must be 'htk' or 'slaney'"),
    (dict(window_fn=torch.kaiser_window), "window_fn=.* has no equivalent here"),
    (dict(window_fn=torch.hann_window, wkwargs={"periodic": False}), "wkwargs="),
    (dict(pad=3), "pad=3 is not supported"),
    (dict(normalized=True), "normalized=True is not supported"),
])
def test_torchaudio_options_without_an_equivalent_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MelSpectrogram(preset="torchaudio", **kwargs)
