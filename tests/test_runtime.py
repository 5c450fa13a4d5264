"""The inference runtime: the fused conv block against its plain-torch reference (float64,
every ISA variant, odd shapes, NaN), its memory (no full-size conv output), and the inference
forms of the model families against their eager models (random weights and the published
DLR(13) checkpoint), float32 and bfloat16."""
from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_tf_bundle import CHECKPOINT, reference_dir

from dlr_engine.data.synth import SynthRhythmDataset
from dlr_engine.models import get, load_model
from dlr_engine.ops.dlr_op import dlr_bf16_supported
from dlr_engine.runtime import FoldedBlock, InferenceModel, conv_block_cpu, conv_block_reference, inference_form
from dlr_engine.runtime import conv_block as conv_block_module
from dlr_engine.runtime.conv_block import cpu_kernel_reason
from dlr_engine.runtime.forms import fold_stack
from dlr_engine.runtime.stack import torch_blocks

pytestmark = pytest.mark.skipif(conv_block_module._extension() is None,
                                reason="the C++ extension (conv block) was not built")
needs_bf16 = pytest.mark.skipif(not dlr_bf16_supported(), reason="this CPU has no AVX512_BF16")


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.double() - ref.double()).norm() / ref.double().norm()).item()


def random_block(in_channels, out_channels, kernel, pool, activation, padding, seed=0):
    g = torch.Generator().manual_seed(seed)
    return FoldedBlock(torch.randn(out_channels, in_channels, *kernel, generator=g) * 0.2,
                       torch.randn(out_channels, generator=g), padding, pool, activation)


def run_kernel(x: torch.Tensor, block: FoldedBlock, dtype=torch.float32, out_padding=(0, 0, 0, 0),
               algorithm="direct", out_dtype=None):
    """x (N, C, H, W) -> the kernel's output (N, C', H', W') float64, written into the interior
    of a NaN-filled buffer padded by out_padding (the border must stay NaN: untouched)."""
    xp = F.pad(x, block.padding).permute(0, 2, 3, 1).contiguous().to(dtype)
    rows, cols = block.out_size(xp.shape[1], xp.shape[2])
    left, right, top, bottom = out_padding
    buffer = torch.full((x.shape[0], rows + top + bottom, cols + left + right, block.out_channels),
                        float("nan"), dtype=out_dtype or dtype)
    interior = buffer[:, top:top + rows, left:left + cols]
    conv_block_cpu(xp, block, interior, algorithm)
    border = buffer.clone()
    border[:, top:top + rows, left:left + cols] = 0
    assert border.isnan().sum() == border.numel() - interior.numel()
    return interior.permute(0, 3, 1, 2).double()


GEOMETRIES = [  # batch, in, out, rows, cols, kernel, pool, activation, padding
    (2, 1, 32, 37, 29, (4, 8), (2, 2), "relu", (3, 4, 1, 2)),   # dlr_source's first block
    (1, 32, 32, 21, 19, (3, 3), (2, 2), "relu", (1, 1, 1, 1)),  # odd sizes: pooled tails dropped
    (3, 32, 32, 17, 13, (3, 3), (4, 4), "relu", (1, 1, 1, 1)),
    (1, 32, 32, 3, 2, (3, 3), (1, 1), "relu", (1, 1, 1, 1)),    # tiny, no pool
    (2, 16, 64, 15, 31, (3, 3), (3, 3), "elu", (1, 1, 1, 1)),   # CRNN-like
    (7, 1, 64, 11, 40, (3, 3), (2, 2), "identity", (0, 0, 0, 0)),
    (2, 32, 32, 6, 26, (3, 3), (2, 2), "relu", (1, 1, 1, 1)),    # 13 Winograd tiles: 12 + 1
    (2, 16, 64, 10, 14, (3, 3), (2, 4), "elu", (1, 1, 1, 1)),
    (1, 128, 32, 1, 1001, (1, 3), (1, 3), "relu", (1, 1, 0, 0)),  # a long 1D row: column chunks
    (2, 1, 32, 40, 170, (32, 1), (1, 80), "relu", (0, 0, 0, 0)),  # mcclstm's pitch branch: wide pool
    (1, 1, 32, 41, 70, (1, 60), (40, 1), "relu", (0, 0, 0, 0)),   # its tempo branch: tall pool
    (1, 32, 32, 12, 23, (3, 3), (5, 5), "elu", (1, 1, 1, 1)),     # pool 5: tiles 4 + 1 per window
    (2, 32, 16, 12, 62, (3, 3), (2, 2), "relu", (1, 1, 1, 1)),    # 16, 48 channels: AVX-512's
    (1, 1, 48, 20, 61, (4, 8), (2, 2), "elu", (3, 4, 1, 2)),      # narrow tile (24 columns)
]
WINOGRAD = [g for g in GEOMETRIES if g[5] == (3, 3) and g[6][0] % 2 == 0 and g[6][1] % 2 == 0
            and g[1] % 16 == 0]
"""The geometries Winograd F(2x2, 3x3) runs (3x3, even pools, channels a multiple of 16)."""
FFT = [  # one input channel, one-row kernels
    (3, 1, 16, 40, 250, (1, 60), (40, 1), "relu", (0, 0, 0, 0)),   # pons's temporal branch
    (17, 1, 16, 5, 100, (1, 33), (2, 3), "elu", (2, 1, 0, 0)),     # two lane groups, padded
    (2, 1, 32, 41, 70, (1, 60), (40, 1), "relu", (0, 0, 0, 0)),    # mcclstm's tempo branch
    (1, 1, 16, 3, 64, (1, 64), (1, 1), "identity", (0, 0, 0, 0)),  # one output, 64 points
    (5, 1, 48, 2, 2, (1, 1), (1, 1), "relu", (0, 0, 0, 0)),        # the smallest transform
    (2, 1, 16, 3, 300, (1, 40), (3, 7), "relu", (0, 0, 0, 0)),     # 512 points, pooled tails
]
"""Geometries of the FFT algorithm (``conv_block_fft.h``)."""
CASES = [(g, "direct") for g in GEOMETRIES] + [(g, "winograd") for g in WINOGRAD] + \
    [(g, "fft") for g in FFT]
BF16_CASES = [(g, a) for g, a in CASES if a != "fft"]
"""The cases the bfloat16 kernels run (the FFT algorithm is float32 only)."""


def reference(x: torch.Tensor, block: FoldedBlock) -> torch.Tensor:
    """The block in float64."""
    return conv_block_reference(x.double(), FoldedBlock(block.weight.double(), block.bias.double(),
                                                        block.padding, block.pool, block.activation))


@pytest.mark.parametrize("geometry, algorithm", CASES)
def test_conv_block_matches_reference(geometry, algorithm, cpu_isa):
    batch, cin, cout, rows, cols, kernel, pool, activation, padding = geometry
    block = random_block(cin, cout, kernel, pool, activation, padding)
    x = torch.randn(batch, cin, rows, cols)
    ref = reference(x, block)
    got = run_kernel(x, block, out_padding=(1, 2, 1, 0), algorithm=algorithm)
    assert got.shape == ref.shape
    assert rel_err(got, ref) < 1e-6


@needs_bf16
@pytest.mark.parametrize("geometry, algorithm",
                         [(g, a) for g, a in BF16_CASES if g[1] * g[5][1] % 2 == 0 and g[2] % 32 == 0])
def test_conv_block_bfloat16(geometry, algorithm):
    batch, cin, cout, rows, cols, kernel, pool, activation, padding = geometry
    block = random_block(cin, cout, kernel, pool, activation, padding)
    x = torch.randn(batch, cin, rows, cols)
    got = run_kernel(x, block, torch.bfloat16, out_padding=(1, 0, 0, 1), algorithm=algorithm)
    assert rel_err(got, reference(x, block)) < 1e-2


@needs_bf16
@pytest.mark.parametrize("geometry, algorithm", [(g, a) for g, a in BF16_CASES if g[2] % 32 == 0])
def test_conv_block_float32_to_bfloat16(geometry, algorithm):
    """A float32 block writing bfloat16 (the block before a bfloat16 one) computes in float32:
    its output is the float32 kernel's rounded to bfloat16, bit for bit."""
    batch, cin, cout, rows, cols, kernel, pool, activation, padding = geometry
    block = random_block(cin, cout, kernel, pool, activation, padding)
    x = torch.randn(batch, cin, rows, cols)
    got = run_kernel(x, block, out_padding=(0, 1, 1, 0), algorithm=algorithm, out_dtype=torch.bfloat16)
    as_float32 = run_kernel(x, block, algorithm=algorithm)
    assert torch.equal(got, as_float32.to(torch.bfloat16).double())
    assert rel_err(got, reference(x, block)) < 1e-2


def test_winograd_kernels_transform():
    """U = G g G^T: for a 4 x 4 patch d, A^T (U * (B^T d B)) A is the 2 x 2 correlation of d with
    the 3 x 3 kernel g (the identity the kernel's transforms rest on)."""
    g = torch.randn(3, 3, dtype=torch.float64)
    d = torch.randn(4, 4, dtype=torch.float64)
    b_t = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
    a_t = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)
    u = conv_block_module.winograd_kernels(g[None, None]).view(4, 4)
    got = a_t @ (u * (b_t @ d @ b_t.T)) @ a_t.T
    expected = F.conv2d(d[None, None], g[None, None])[0, 0]
    assert torch.allclose(got, expected, atol=1e-12)


def test_fft_kernels_transform():
    """The inverse DFT of X conj(K) / M scaled by M is the circular correlation of x with the
    kernel row k: y[t] = sum_j k[j] x[t + j mod M] (the identity the FFT algorithm rests on)."""
    size, taps = 16, 5
    kernel = torch.randn(3, 1, 1, taps, dtype=torch.float64)
    x = torch.randn(size, dtype=torch.float64)
    packed = torch.view_as_complex(conv_block_module.fft_kernels(kernel, size).double())
    got = torch.fft.irfft(torch.fft.rfft(x) * packed, n=size) * size
    index = (torch.arange(size)[:, None] + torch.arange(taps)) % size
    expected = (x[index][None] * kernel[:, 0, 0, None, :]).sum(-1)
    assert torch.allclose(got, expected, atol=1e-5)


def test_fft_is_taken_for_long_rows_only():
    """The FFT algorithm is chosen for pons's 1 x 60 kernel on 250 frames, not for 3 clips (13
    of 16 lanes idle), not where a row has few outputs for its transform (mcclstm's 80-frame
    chunks), not for short kernels, rows longer than 4096, multi-channel inputs or bfloat16."""
    block = random_block(1, 16, (1, 60), (40, 1), "relu", (0, 0, 0, 0))
    assert conv_block_module.best_algorithm(block, (8, 40, 250, 1), False) == "fft"
    assert conv_block_module.best_algorithm(block, (24, 40, 250, 1), False) == "fft"
    assert conv_block_module.best_algorithm(block, (3, 40, 250, 1), False) == "direct"  # idle lanes
    assert conv_block_module.best_algorithm(block, (8, 40, 80, 1), False) == "direct"
    short = random_block(1, 16, (1, 9), (1, 1), "relu", (0, 0, 0, 0))
    assert conv_block_module.best_algorithm(short, (8, 4, 250, 1), False) == "direct"
    assert conv_block_module.best_algorithm(block, (2, 40, 5000, 1), False) == "direct"  # > 4096
    assert "4096" in cpu_kernel_reason(block, (2, 40, 5000, 1), False, algorithm="fft")
    wide = random_block(2, 16, (1, 60), (1, 1), "relu", (0, 0, 0, 0))
    assert "FFT" in cpu_kernel_reason(wide, (8, 4, 250, 2), False, algorithm="fft")
    block32 = random_block(1, 32, (1, 60), (40, 1), "relu", (0, 0, 0, 0))
    assert "FFT" in cpu_kernel_reason(block32, (8, 40, 250, 1), True, algorithm="fft")


def test_fft_block_leaves_non_finite_inputs_to_the_direct_kernel():
    """A NaN or infinity would spread over a whole row through the transform: the block runs
    the direct kernel then, and NaN marks exactly the windows the reference marks."""
    block = random_block(1, 16, (1, 60), (2, 1), "relu", (0, 0, 0, 0))
    x = torch.randn(2, 1, 4, 250)
    x[0, 0, 1, 100] = float("nan")
    x[1, 0, 2, 10] = float("inf")
    xp = x.permute(0, 2, 3, 1).contiguous()
    out = torch.empty(2, *block.out_size(4, 250), 16)
    conv_block_cpu(xp, block, out)
    ref = conv_block_reference(x, block).permute(0, 2, 3, 1)
    assert torch.equal(out.isnan(), ref.isnan()) and ref.isnan().any()
    finite = ~ref.isnan()
    assert torch.allclose(out[finite], ref[finite], rtol=1e-5, atol=1e-5)


def test_conv_block_reasons():
    block = random_block(1, 24, (3, 3), (2, 2), "relu", (1, 1, 1, 1))
    assert "multiple" in cpu_kernel_reason(block, (1, 10, 10, 1), False)
    block = random_block(1, 32, (3, 3), (5, 5), "relu", (1, 1, 1, 1))
    assert "geometry" in cpu_kernel_reason(block, (1, 2, 10, 1), False)  # no output row
    block = random_block(1, 32, (3, 3), (2, 2), "relu", (1, 1, 1, 1))
    assert cpu_kernel_reason(block, (1, 10, 10, 1), False) is None
    if dlr_bf16_supported():
        assert "is odd" in cpu_kernel_reason(block, (1, 10, 10, 1), True)  # run 3 x 1
    with pytest.raises(ValueError, match="conv_block_cpu cannot run"):
        conv_block_cpu(torch.zeros(1, 10, 10, 2), block, torch.zeros(1, 4, 4, 32))
    assert "Winograd" in cpu_kernel_reason(block, (1, 10, 10, 1), False, algorithm="winograd")  # 1 channel
    assert "Winograd" in cpu_kernel_reason(random_block(32, 32, (3, 3), (3, 3), "relu", (1, 1, 1, 1)),
                                           (1, 10, 10, 32), False, algorithm="winograd")  # odd pool
    with pytest.raises(ValueError, match="bfloat16 x needs a bfloat16 out"):
        conv_block_cpu(torch.zeros(1, 10, 10, 1, dtype=torch.bfloat16), block, torch.zeros(1, 4, 4, 32))


def test_conv_block_nan_propagates():
    block = random_block(32, 32, (3, 3), (2, 2), "relu", (1, 1, 1, 1))
    x = torch.randn(1, 32, 8, 8)
    x[0, 5, 3, 4] = float("nan")
    ref = conv_block_reference(x, block)
    got = run_kernel(x, block)
    assert torch.equal(got.isnan(), ref.isnan()) and ref.isnan().any()


def test_fused_block_writes_no_full_size_output():
    """Peak RSS grows by far less than the conv output (N, 32, 808, 128 floats: 53 MB) while
    the fused block runs; the eager block in the same process grows by about that much. The peak
    (VmHWM) is reset before each step through /proc/self/clear_refs, so an earlier, higher peak
    cannot hide a step's growth."""
    script = textwrap.dedent("""
        import torch, torch.nn.functional as F
        from dlr_engine.runtime import FoldedBlock, conv_block_cpu, conv_block_reference
        torch.set_num_threads(2)
        block = FoldedBlock(torch.randn(32, 1, 4, 8), torch.randn(32), (3, 4, 1, 2), (2, 2), "relu")
        x = torch.randn(4, 1, 808, 128)
        xp = F.pad(x, block.padding).permute(0, 2, 3, 1).contiguous()
        out = torch.zeros(4, 404, 64, 32)

        def status(key):
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

        def growth(step):
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            before = status("VmRSS:")
            step()
            return status("VmHWM:") - before

        print(growth(lambda: conv_block_cpu(xp, block, out)),
              growth(lambda: conv_block_reference(x, block)))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    fused, eager = map(int, result.stdout.split())
    conv_output = 4 * 32 * 808 * 128 * 4
    assert fused < conv_output / 20
    assert eager > conv_output / 2


def randomize_batch_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial running statistics and affine parameters, so folding them is tested."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


FAMILIES = [("dlr_source", {}, 48000), ("fcn", {"input": "mel+dlr"}, 48000),
            ("crnn", {}, 40000), ("pooled", {}, 40000), ("samplecnn", {}, 60000),
            ("mcclstm", {}, 90000), ("pons", {}, 64000), ("ncms", {}, 130000),
            ("ncms", {"variant": "combined"}, 130000)]
FUSED_STACKS = {"pooled": 0, "fcn": 2, "mcclstm": 3, "pons": 2, "ncms": 0}
"""Fused conv stacks per family (default 1); pons's two branches have 15 channels each (padded
to 16 (one AVX-512 vector) with zero kernels, the padding dropped from the output); ncms has none (its
form computes its DNNs' inputs by ``ops.ncms.ncms_fused`` and ``spectral_frames_fused``)."""


def check_parity(model, samples, precision, tolerance, x=None):
    torch.manual_seed(1)
    x = torch.randn(2, samples) if x is None else x
    form = inference_form(model, precision)
    with torch.no_grad():
        ref, got = model(x), form(x)
    assert set(got) == set(ref)
    for key in ref:
        assert rel_err(got[key], ref[key]) < tolerance, key
    return form


@pytest.mark.parametrize("name, options, samples", FAMILIES)
def test_family_inference_form_float32(name, options, samples):
    torch.manual_seed(0)
    model = randomize_batch_norms(get(name, **options))
    form = check_parity(model, samples, "float32", 1e-5)
    assert len(form.fused) == FUSED_STACKS.get(name, 1)


def test_pons_form_runs_its_temporal_branch_on_the_fft(monkeypatch):
    """8 clips of 30 s give 24 patches: the temporal branch's 1 x 60 block takes the FFT
    algorithm there (the family test above, 2 patches, runs it direct), within 1e-5 of eager."""
    chosen = []
    best = conv_block_module.best_algorithm
    monkeypatch.setattr(conv_block_module, "best_algorithm",
                        lambda *args, **kwargs: chosen.append(best(*args, **kwargs)) or chosen[-1])
    torch.manual_seed(0)
    model = randomize_batch_norms(get("pons"))
    check_parity(model, 240000, "float32", 1e-5, x=torch.randn(8, 240000))
    assert chosen.count("fft") == 1 and chosen.count("direct") == 1


@needs_bf16
@pytest.mark.parametrize("name, options, samples", FAMILIES)
def test_family_inference_form_bfloat16(name, options, samples):
    torch.manual_seed(0)
    check_parity(randomize_batch_norms(get(name, **options)), samples, "bfloat16", 1e-2)


@pytest.fixture(scope="module")
def published():
    return load_model(reference_dir() / CHECKPOINT)


def test_published_checkpoint_float32(published):
    check_parity(published, 60000, "float32", 1e-5)


@needs_bf16
def test_published_checkpoint_bfloat16(published):
    """On the authors' 30 s synthetic loop (0.6 % embedding error; white noise, which the model
    never saw, gives 1.2-1.5 %: its first two batch norms divide by std down to 0.03)."""
    with np.load(reference_dir() / "tf_reference_synthetic.npz") as npz:
        x = torch.from_numpy(npz["loop_120bpm_30s/input"]).float().reshape(1, -1)
    check_parity(published, 0, "bfloat16", 1e-2, x)


@needs_bf16
def test_default_model_bfloat16():
    """On 30 s rhythm clips, the input the model is made for (0.24 % on tempo_logits when
    measured). White noise is harder on bfloat16: 1.2 % on tempo_logits for the shipped model,
    1.75 % for the published one (see the issue-15 note), so it is not the parity input here."""
    clips = SynthRhythmDataset(2, seed=99, seconds=30.0)
    check_parity(load_model("default"), 0, "bfloat16", 1e-2, torch.stack([clips[i][0] for i in range(2)]))


def test_load_model_for_inference():
    form = load_model("default", for_inference=True)
    assert isinstance(form, InferenceModel)
    eager = form.source
    assert form.sample_rate == eager.sample_rate and form.label_names == eager.label_names
    assert form.min_samples == eager.min_samples
    assert "source.dlr.weight" not in form.state_dict()
    x = torch.randn(1, eager.min_samples)
    with torch.no_grad():
        assert rel_err(form(x)["embedding"], eager(x)["embedding"]) < 1e-5
    with pytest.raises(ValueError, match="too short"):
        form(torch.randn(1, eager.min_samples - 1))


def test_precision_follows_the_dlr():
    form = inference_form(get("dlr_source"))
    form.model.dlr.precision = "bfloat16"
    assert form.precision == "bfloat16"
    form.precision = "float32"
    assert form.model.dlr.precision == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        form.precision = "float16"


def test_extract_front_end_only_from_the_cli(tmp_path):
    """``--model default:dlr``: the DLR features of the default model's front-end, end to end,
    and nothing of its back-end."""
    import soundfile as sf

    from dlr_engine.cli import main
    audio = np.random.default_rng(0).standard_normal(8000 * 32).astype(np.float32) * 0.1
    sf.write(tmp_path / "noise.wav", audio, 8000, subtype="FLOAT")
    out = tmp_path / "out"
    code = main(["extract", str(tmp_path / "noise.wav"), "--out", str(out), "--model", "default:dlr",
                 "--workers", "0", "--segment-seconds", "30", "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["dlr"]
    dlr = np.load(out / "dlr" / "noise.wav.npy")
    model = load_model("default")
    with torch.no_grad():
        expected = model.dlr(torch.from_numpy(audio[:240000])[None])
    np.testing.assert_allclose(dlr[0], expected[0].numpy(), rtol=1e-5, atol=1e-6)


def test_front_end_spec_errors():
    from dlr_engine.runtime import load_for_extraction
    assert isinstance(load_for_extraction("default"), InferenceModel)
    with pytest.warns(UserWarning, match="untrained"), \
            pytest.raises(ValueError, match="has no DLR front-end; drop ':dlr'"):
        load_for_extraction("crnn:dlr")


class TinyStackModel(torch.nn.Module):
    """A conv stack with 24 channels (padded to the kernel's 32 with zero kernels), an input
    batch norm, ELU and an asymmetric pool."""

    def __init__(self) -> None:
        super().__init__()
        self.stack = torch.nn.Sequential(
            torch.nn.BatchNorm2d(1), torch.nn.Conv2d(1, 24, 3, padding=1), torch.nn.BatchNorm2d(24),
            torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(24, 32, (3, 5), padding=(1, 2)),
            torch.nn.BatchNorm2d(32), torch.nn.ELU(), torch.nn.MaxPool2d((2, 4)), torch.nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self.stack(x.unsqueeze(1)).mean(dim=(2, 3))}


@pytest.mark.parametrize("precision, extension", [("float32", True), ("bfloat16", True),
                                                  ("float32", False)])
def test_stack_of_padded_channels(precision, extension, monkeypatch):
    """24 channels run on the kernel (padded); without the C++ extension every block runs in
    torch, with the same outputs."""
    if precision == "bfloat16" and not dlr_bf16_supported():
        pytest.skip("this CPU has no AVX512_BF16")
    if not extension:
        monkeypatch.setattr(conv_block_module, "_extension", lambda: None)
    torch.manual_seed(0)
    model = randomize_batch_norms(TinyStackModel())
    form = inference_form(model, precision)
    [fused] = form.fused
    image = torch.randn(3, 37, 45)
    second = "cpu_bf16" if precision == "bfloat16" else "cpu"
    assert fused.stack.backends(image.unsqueeze(3), precision == "bfloat16") == (
        ["cpu", second] if extension else ["torch", "torch"])
    with torch.no_grad():
        ref, got = model(image)["embedding"], form(image)["embedding"]
    assert got.shape == ref.shape == (3, 32)
    assert rel_err(got, ref) < (1e-2 if precision == "bfloat16" else 1e-5)


def test_fused_stack_off_the_cpu_runs_torch_blocks():
    """On a non-CPU device the stack runs its folded blocks in torch (NCHW); the meta device
    checks that path's shapes and that .to(device) reaches the blocks' weights."""
    form = inference_form(get("dlr_source"))
    [fused] = form.fused
    image = torch.randn(2, 1, 64, 128)
    with torch.no_grad():
        expected = fused(image)
        got = copy.deepcopy(fused).to("meta")(image.to("meta"))
    assert got.device.type == "meta" and got.shape == expected.shape == (2, 32, 2, 4)


def test_inference_form_pickles_and_copies():
    """Ray actors get the model pickled; the engine deep-copies it to change precision."""
    import pickle
    form = load_model("default", for_inference=True)
    x = torch.randn(1, form.min_samples)
    expected = form(x)
    for clone in (pickle.loads(pickle.dumps(form)), copy.deepcopy(form)):
        got = clone(x)
        assert all(torch.equal(got[key], expected[key]) for key in expected)


def test_conv_block_op_opcheck():
    block = random_block(32, 32, (3, 3), (2, 2), "relu", (1, 1, 1, 1))
    x = F.pad(torch.randn(2, 32, 9, 11), block.padding).permute(0, 2, 3, 1).contiguous()
    out = torch.empty(2, *block.out_size(x.shape[1], x.shape[2]), 32)
    geometry = conv_block_module._geometry(tuple(x.shape), x.stride(), block, out.stride())
    multiple = conv_block_module._extension().conv_block_channel_multiple()
    for algorithm, code in conv_block_module.ALGORITHMS.items():
        if algorithm == "fft":  # one input channel, a one-row kernel
            block = random_block(1, 32, (1, 5), (1, 2), "relu", (0, 0, 0, 0))
            x = torch.randn(2, 3, 20, 1)
            out = torch.empty(2, *block.out_size(3, 20), 32)
            geometry = conv_block_module._geometry(tuple(x.shape), x.stride(), block, out.stride())
        torch.library.opcheck(conv_block_module._conv_block_op,
                              (x, block.packed(False, multiple, algorithm, 32 if algorithm == "fft" else 0),
                               block.bias, out,
                               geometry, 1, code, 0))


@pytest.mark.parametrize("stride, pool", [(3, (1, 1)), (2, (1, 3)), (3, (1, 2))])
def test_conv_block_column_stride(stride, pool, cpu_isa):
    """Strided columns (the sample-level CNN's first conv: 3 taps, stride 3)."""
    g = torch.Generator().manual_seed(0)
    block = FoldedBlock(torch.randn(32, 2, 1, 3, generator=g), torch.randn(32, generator=g),
                        (0, 0, 0, 0), pool, "relu", stride)
    x = torch.randn(2, 2, 1, 301, generator=g)
    ref = conv_block_reference(x.double(), FoldedBlock(block.weight.double(), block.bias.double(),
                                                       block.padding, pool, "relu", stride))
    got = run_kernel(x, block)
    assert got.shape == ref.shape and rel_err(got, ref) < 1e-6


@pytest.mark.parametrize("bfloat16", [False, True])
def test_torch_blocks_precision(bfloat16):
    """The stack's torch path (what runs off the CPU) agrees with the fused CPU stack in float32,
    and in bfloat16 really rounds (the first, one-channel block stays float32)."""
    stack = fold_stack(randomize_batch_norms(get("dlr_source")).blocks)
    image = torch.rand(2, 1, 96, 128)
    fused = stack(image[:, 0].unsqueeze(3)).permute(0, 3, 1, 2)
    got = torch_blocks(image, stack.blocks, bfloat16)[:, :stack.out_channels]
    assert got.dtype == torch.float32 and got.shape == fused.shape
    error = rel_err(got, fused)
    assert (1e-4 < error < 2e-2) if bfloat16 else error < 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision, tolerance", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_inference_form_on_gpu(precision, tolerance):
    """The default model's inference form on the GPU (DLR on the GPU backends, conv blocks in
    cuDNN without TF32 / in bfloat16) against the eager model on the CPU."""
    model = load_model("default")
    clips = SynthRhythmDataset(2, seed=99, seconds=30.0)
    x = torch.stack([clips[i][0] for i in range(2)])
    with torch.no_grad():
        ref = model(x)
    got = inference_form(model, precision).cuda()(x.cuda())
    for key in ref:
        assert rel_err(got[key].cpu(), ref[key]) < tolerance, key
