"""The fused C++ kernels of the cpu backends against the float64 references: the mel
spectrogram (``dlr_engine::melspec_cpu``) and the tempogram's autocorrelation
(``dlr_engine::tempogram_cpu``), both on the lane-batched FFT: FFT sizes of every radix path
(4, 2, 3, 5, other primes; odd and even), random shapes and windows, tiles of 16 frames that
cross clip boundaries, every instruction set this CPU runs, NaN-poisoned outputs, opcheck, and
the switch to the differentiable torch formulations when a gradient is needed."""
from __future__ import annotations

import math

import pytest
import torch

from dlr_engine.ops import melspec as mel_op
from dlr_engine.ops import melspec_reference as ref
from dlr_engine.ops import spectral_cpu
from dlr_engine.ops import tempogram as tempo_op

pytestmark = pytest.mark.skipif(not spectral_cpu.available(), reason="C++ extension not built")

REL_TOL = 2e-5
"""Float32 FFT and sums against the float64 reference, relative to the output's largest value."""
DB_ABS_TOL = 1e-3
"""dB outputs: absolute, wherever the reference is within 60 dB of its maximum."""


def problem(seed: int, batch: int, samples: int, n_fft: int, win_length: int, n_mels: int,
            window: str, htk: bool):
    torch.manual_seed(seed)
    x = torch.randn(batch, samples, dtype=torch.float64)
    x *= torch.rand(batch, 1, dtype=torch.float64) * 3  # clips of different loudness
    win = ref.get_window(window, win_length)
    fb = ref.mel_filterbank(8000, n_fft, n_mels, htk=htk)
    return x, win, fb


CASES = [  # batch, samples, n_fft, win_length, hop, n_mels, window, htk, center, pad_mode
    (3, 1500, 64, 48, 9, 20, "hann", False, True, "constant"),
    (2, 1001, 63, 63, 16, 12, "hamming", True, True, "reflect"),
    (1, 700, 128, 100, 32, 40, "boxcar", False, False, "constant"),
    (4, 257, 256, 256, 64, 64, "blackmanharris", True, True, "edge"),
    (5, 2000, 1024, 512, 256, 128, "hann", False, True, "constant"),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("power,log_multiplier", [(2.0, 0.0), (1.0, 20.0), (1.5, 0.0),
                                                  (2.0, 10.0)])
def test_cpp_path_matches_reference(nan_poison, cpu_isa, case, power,
                                    log_multiplier):
    batch, samples, n_fft, win_length, hop, n_mels, window, htk, center, pad_mode = case
    nan_poison(mel_op)
    x, win, fb = problem(len(CASES) * batch + samples, batch, samples, n_fft, win_length, n_mels,
                         window, htk)
    expected = ref.melspectrogram_reference(x, ref.padded_window(win, win_length, n_fft), fb,
                                            n_fft, hop, center, pad_mode, power)
    out = mel_op.melspectrogram(x.float(), win.float(), fb.float(), n_fft, hop, center,
                                pad_mode, power, log_multiplier, 1e-10, backend="cpu")
    assert out.shape == expected.shape and out.dtype == torch.float32
    if log_multiplier:
        expected = ref.log_scale(expected, log_multiplier, 1e-10)
        loud = expected > expected.amax() - 60.0
        assert (out.double() - expected)[loud].abs().max() <= DB_ABS_TOL
    else:
        assert (out.double() - expected).abs().max() <= REL_TOL * expected.abs().max()


@pytest.mark.parametrize("n_fft", [2, 3, 8, 30, 97, 154, 250, 768, 1000, 2048])
def test_power_spectrum_for_every_fft_size(cpu_isa, n_fft):
    """An identity "filterbank" makes the output the power spectrum itself: against torch.fft
    in float64 for sizes taking each radix path (n_fft / 2 points for even sizes)."""
    torch.manual_seed(n_fft)
    x = torch.randn(3, 5 * n_fft + 7, dtype=torch.float64)
    n_freq = n_fft // 2 + 1
    identity = torch.eye(n_freq, dtype=torch.float64)
    window = ref.get_window("hann", n_fft, dtype=torch.float64)
    hop = max(1, n_fft // 3)
    expected = ref.melspectrogram_reference(x, window, identity, n_fft, hop)
    out = mel_op.melspectrogram(x.float(), window.float(), identity.float(), n_fft, hop,
                                backend="cpu")
    assert out.shape == expected.shape
    assert (out.double() - expected).abs().max() <= REL_TOL * expected.abs().max()


def test_silence_floors_at_amin():
    x, win, fb = problem(0, 2, 600, 64, 64, 16, "hann", False)
    out = mel_op.melspectrogram(torch.zeros(2, 600), win.float(), fb.float(), 64, 16,
                                log_multiplier=10.0, amin=1e-10, backend="cpu")
    assert torch.equal(out, torch.full_like(out, -100.0))


def test_gradient_switches_to_the_torch_formulation():
    x, win, fb = problem(1, 2, 400, 64, 48, 16, "hann", False)
    x32 = x.float().requires_grad_(True)
    out = mel_op.melspectrogram(x32, win.float(), fb.float(), 64, 16, backend="cpu")
    out.sum().backward()
    expected = x.clone().requires_grad_(True)
    ref.melspectrogram_reference(expected, ref.padded_window(win, 48, 64), fb, 64, 16).sum() \
        .backward()
    assert torch.allclose(x32.grad.double(), expected.grad, rtol=1e-4,
                          atol=1e-4 * float(expected.grad.abs().max()))
    with torch.no_grad():
        cpp = mel_op.melspectrogram(x32, win.float(), fb.float(), 64, 16, backend="cpu")
    assert torch.allclose(cpp, out.detach(), rtol=1e-5, atol=1e-5 * float(out.detach().abs().max()))


def test_plan_keeps_every_weight():
    fb = ref.mel_filterbank(8000, 1024, 128, dtype=torch.float32)
    fb[3, 100] = 0.5  # a weight outside filter 3's triangle, with zeros between
    fb[7] = 0.0  # an empty filter
    plan = mel_op.cpu_mel_plan(fb)
    dense = torch.zeros_like(fb)
    for m in range(fb.shape[0]):
        start, length, offset = (int(t[m]) for t in (plan.starts, plan.lengths, plan.offsets))
        dense[m, start:start + length] = plan.weights[offset:offset + length]
    assert torch.equal(dense, fb)


def test_opcheck():
    x, win, fb = problem(2, 2, 300, 64, 48, 16, "hann", False)
    plan = mel_op.cpu_mel_plan(fb.float())
    for center, log_multiplier in ((True, 0.0), (False, 10.0)):
        torch.library.opcheck(mel_op.melspec_cpu,
                              (x.float(), win.float(), plan.starts, plan.lengths, plan.offsets,
                               plan.weights, 64, 16, center, "reflect", 2.0, log_multiplier,
                               1e-10),
                              test_utils=("test_schema", "test_faketensor"))


TEMPOGRAM_CASES = [  # batch, onset frames, win_length, frame_hop, center, window, norm
    (3, 200, 32, 1, True, "hann", math.inf),
    (2, 150, 31, 2, True, "hamming", None),
    (4, 90, 24, 3, False, "boxcar", math.inf),
    (1, 1876, 256, 2, True, "hann", math.inf),
]


@pytest.mark.parametrize("case", TEMPOGRAM_CASES)
def test_tempogram_cpp_path_matches_reference(nan_poison, cpu_isa, case):
    batch, n, win_length, frame_hop, center, window, norm = case
    nan_poison(tempo_op)
    torch.manual_seed(n)
    onsets = torch.rand(batch, n, dtype=torch.float64) ** 4  # spiky, like onset strength
    onsets[0, : n // 3] = 0.0  # silent frames: energy 0, left unnormalised
    expected = tempo_op.tempogram_from_onsets(onsets, win_length, center, window, norm,
                                              frame_hop)
    out = tempo_op.tempogram_from_onsets(onsets.float(), win_length, center, window, norm,
                                         frame_hop)
    assert out.shape == expected.shape and out.dtype == torch.float32
    assert (out.double() - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_tempogram_gradient_uses_torch_ops():
    onsets = torch.rand(2, 80, requires_grad=True)
    tempo_op.tempogram_from_onsets(onsets, 16, frame_hop=2).sum().backward()
    assert onsets.grad is not None and torch.isfinite(onsets.grad).all()


def test_tempogram_opcheck():
    onsets = torch.rand(2, 60)
    window = ref.get_window("hann", 16, dtype=torch.float32)
    torch.library.opcheck(tempo_op.tempogram_cpu, (onsets, window, 23, 2, True),
                          test_utils=("test_schema", "test_faketensor"))


CEPSTRUM_CASES = [  # batch, samples, n_fft, win_length, hop, n_quefrencies
    (3, 1500, 64, 64, 9, 33),
    (2, 1001, 64, 49, 16, 20),
    (1, 700, 128, 100, 32, 65),
    (5, 4000, 1024, 1024, 512, 513),
    (7, 2100, 256, 256, 100, 1),
]


def log_magnitude_reference(x, window, n_fft, hop, floor):
    """(batch, frames, n_fft // 2 + 1): log(|rfft(frame * window, n_fft)| + floor)."""
    frames = x.unfold(1, window.shape[0], hop) * window
    return torch.log(torch.fft.rfft(frames, n=n_fft).abs() + floor)


@pytest.mark.parametrize("kind", ["real_cepstrum", "log_magnitude"])
@pytest.mark.parametrize("case", CEPSTRUM_CASES)
def test_cepstrum_and_log_magnitude_match_reference(nan_poison, cpu_isa, case, kind):
    batch, samples, n_fft, win_length, hop, n_quefrencies = case
    nan_poison(spectral_cpu)
    torch.manual_seed(samples)
    x = torch.randn(batch, samples, dtype=torch.float64)
    x[0, : samples // 3] = 0.0  # silent frames: log(floor) everywhere
    window = ref.get_window("hann", win_length)
    n_frames = 1 + (samples - win_length) // hop
    log_magnitude = log_magnitude_reference(x, window, n_fft, hop, 1e-4)
    if kind == "real_cepstrum":
        expected = torch.fft.irfft(log_magnitude, n=n_fft)[..., :n_quefrencies].transpose(1, 2)
        out = spectral_cpu.real_cepstrum(x.float(), n_frames, hop, window.float(), n_fft,
                                         n_quefrencies, 1e-4)
    else:
        expected = log_magnitude.transpose(1, 2)
        out = spectral_cpu.log_magnitude(x.float(), n_frames, hop, window.float(), n_fft, 1e-4)
    assert out.shape == expected.shape and out.shape[::2] == (batch, n_frames)
    assert (out.double() - expected).abs().max() <= 2e-5 * expected.abs().max()


def test_real_cepstrum_refuses_bad_sizes():
    x, window = torch.randn(1, 100), torch.ones(16)
    with pytest.raises(ValueError, match="even n_fft"):
        spectral_cpu.real_cepstrum(x, 3, 16, window, 31, 8, 1e-4)
    with pytest.raises(ValueError, match="n_quefrencies"):
        spectral_cpu.real_cepstrum(x, 3, 16, window, 32, 18, 1e-4)
