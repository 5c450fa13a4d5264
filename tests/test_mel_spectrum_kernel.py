"""The GPU mel forward (issue 14, item 4): FFT of the strided frames, then one Triton kernel for
power -> mel projection over each filter block's non-zero bins -> dB, interpreted on CPU
against the float64 reference, with several filter blocks (ragged, one all zero) and NaN."""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

mel_kernels = pytest.importorskip("dlr_engine.kernels.melspec")
from dlr_engine.ops import melspec as mel_op  # noqa: E402
from dlr_engine.ops import melspec_reference as ref  # noqa: E402

pytestmark = pytest.mark.skipif(not mel_kernels.INTERPRETED,
                                reason="runs the kernel interpreted on CPU tensors")


def problem(n_mels: int, zero_rows: slice | None = None):
    torch.manual_seed(0)
    n_fft, win_length = 128, 100
    x = torch.randn(2, 700, dtype=torch.float64)
    window = ref.get_window("hann", win_length, dtype=torch.float64)
    mel_fb = ref.mel_filterbank(8000, n_fft, n_mels, dtype=torch.float64)
    if zero_rows is not None:
        mel_fb[zero_rows] = 0.0
    return x, window, mel_fb, n_fft


def brute_force_bands(mel_fb: torch.Tensor, block: int) -> list[tuple[int, int]]:
    bands = []
    for start in range(0, mel_fb.shape[0], block):
        cols = (mel_fb[start:start + block] != 0).any(dim=0).nonzero().flatten().tolist()
        bands.append((cols[0], cols[-1] + 1) if cols else (0, 0))
    return bands


def test_filter_bands_cover_exactly_the_non_zero_bins():
    _, _, mel_fb, _ = problem(70, zero_rows=slice(32, 64))
    for block in (16, 32):
        bands = mel_kernels.filter_bands(mel_fb, block)
        assert bands.dtype == torch.int32
        assert [tuple(b) for b in bands.tolist()] == brute_force_bands(mel_fb, block)
    assert mel_kernels.filter_bands(mel_fb, 32)[1].tolist() == [0, 0]  # the all-zero block
    first, last = mel_kernels.filter_bands(mel_fb, 16).T
    assert (last - first).max() < mel_fb.shape[1] // 2  # bands are narrow: the point of them


@pytest.mark.parametrize("power,log_multiplier", [(2.0, 10.0), (1.0, 0.0), (1.5, 20.0)])
def test_fft_forward_matches_reference_over_several_filter_blocks(power, log_multiplier):
    x, window, mel_fb, n_fft = problem(70, zero_rows=slice(40, 45))
    args = (window, mel_fb, n_fft, 24, True, "reflect", power, log_multiplier, 1e-10)
    expected = mel_op.melspectrogram(x, *args, backend="torch")
    out = mel_op.melspectrogram(x.float(), *(a.float() if torch.is_tensor(a) else a
                                             for a in args), backend="triton")
    assert out.shape == expected.shape == (2, 70, ref.frame_count(700, n_fft, 24, True))
    if log_multiplier:  # the zeroed filters give the amin floor, like the reference
        floor = log_multiplier * torch.log10(torch.tensor(1e-10, dtype=torch.float64))
        assert torch.allclose(out[:, 40:45].double(), floor.expand(2, 5, out.shape[2]),
                              rtol=1e-6, atol=0)
    assert ((out.double() - expected).norm() / expected.norm()).item() <= 1e-5


def test_nan_sample_gives_nan_in_the_frames_that_read_it_only():
    x, window, mel_fb, n_fft = problem(40)
    x = x.float()
    x[0, 350] = float("nan")
    args = (window.float(), mel_fb.float(), n_fft, 24, True, "constant", 2.0, 10.0, 1e-10)
    out = mel_op.melspectrogram(x, *args, backend="triton")
    expected = mel_op.melspectrogram(x.double(), *(a.double() if torch.is_tensor(a) else a
                                                   for a in args), backend="torch")
    nan_frames = out.isnan().any(dim=1)
    assert torch.equal(nan_frames, expected.isnan().any(dim=1)) and nan_frames[0].any()
    assert not nan_frames[1].any()
