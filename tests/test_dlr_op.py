"""The fused DLR op on the cpu backend against the plain-torch reference (DESIGN §3)."""
from __future__ import annotations

import pytest
import torch

from dlr_engine import DLR
from dlr_engine.config import receptive_field
from dlr_engine.ops import BackendUnavailable, dlr, dlr_reference, explain
from dlr_engine.ops import dlr_cpu
from dlr_engine.ops.dlr_op import dlr_fused, dlr_fused_backward

PAPER_DILATIONS = (1, 13, 169, 2197)

# (batch, samples, channels, taps, dilations, pool): odd shapes on purpose
CASES = [
    (1, receptive_field(16, PAPER_DILATIONS) + 255, 32, 16, PAPER_DILATIONS, 256),  # one frame
    (2, receptive_field(16, PAPER_DILATIONS) + 256 + 255, 32, 16, PAPER_DILATIONS, 256),
    (7, 3000, 32, 16, (1, 2, 4, 8), 256),
    (3, 1001, 5, 3, (1, 7), 6),  # channels and pool not multiples of the register tile
    (2, 2000, 9, 4, (1, 3, 9), 100),
    (1, 700, 33, 16, (2, 3, 5, 7), 37),
]


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()


def random_params(branches: int, channels: int, taps: int, dtype=torch.float64):
    weight = torch.randn(branches, channels, taps, dtype=dtype) / taps**0.5
    bias = torch.randn(branches, channels, dtype=dtype) * 0.1
    return weight, bias


def test_cpu_backend_is_built():
    assert explain("cpu", torch.float32)["cpu"] == [], explain("cpu", torch.float32)["cpu"]


@pytest.mark.parametrize("batch,samples,channels,taps,dilations,pool", CASES)
def test_cpu_forward_and_grads_match_reference(batch, samples, channels, taps, dilations, pool,
                                               nan_poison):
    nan_poison(dlr_cpu)
    torch.manual_seed(samples)
    x = torch.randn(batch, samples, dtype=torch.float64, requires_grad=True)
    weight, bias = (p.requires_grad_() for p in random_params(len(dilations), channels, taps))
    ref = dlr_reference(x, weight, bias, dilations, pool)
    grad_out = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, weight, bias), grad_out)

    x32, w32, b32 = (t.detach().float().requires_grad_() for t in (x, weight, bias))
    out = dlr(x32, w32, b32, dilations, pool, backend="cpu")
    assert out.shape == ref.shape
    assert torch.isfinite(out).all()
    assert relative_error(out, ref) < 1e-5
    grads = torch.autograd.grad(out, (x32, w32, b32), grad_out.float())
    for name, grad, ref_grad in zip(("x", "weight", "bias"), grads, ref_grads):
        assert relative_error(grad, ref_grad) < 1e-5, name


@pytest.mark.parametrize("batch,samples,channels,taps,dilations,pool",
                         [CASES[2], CASES[3], CASES[5]])
def test_every_instruction_set_variant_matches_reference(cpu_isa, batch, samples, channels, taps,
                                                         dilations, pool):
    assert dlr_cpu.active_isa() == cpu_isa
    torch.manual_seed(5)
    x = torch.randn(batch, samples, dtype=torch.float64)
    weight, bias = (p.requires_grad_() for p in random_params(len(dilations), channels, taps))
    ref = dlr_reference(x, weight, bias, dilations, pool)
    grad_out = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (weight, bias), grad_out)
    w32, b32 = (t.detach().float().requires_grad_() for t in (weight, bias))
    out = dlr(x.float(), w32, b32, dilations, pool, backend="cpu")
    assert relative_error(out, ref) < 1e-5
    for grad, ref_grad in zip(torch.autograd.grad(out, (w32, b32), grad_out.float()), ref_grads):
        assert relative_error(grad, ref_grad) < 1e-5


def test_unsupported_instruction_set_is_refused():
    with pytest.raises(ValueError, match="cannot run on this CPU"):
        dlr_cpu.set_isa("sse9000")


def test_non_contiguous_input():
    x = torch.randn(3, 4000, 2)[..., 0]
    assert not x.is_contiguous()
    weight, bias = random_params(3, 8, 4, torch.float32)
    out = dlr(x, weight, bias, (1, 5, 25), 64, backend="cpu")
    ref = dlr_reference(x.contiguous(), weight, bias, (1, 5, 25), 64)
    assert relative_error(out, ref) < 1e-5


def test_bfloat16_input():
    torch.manual_seed(1)
    x = torch.randn(2, 3000).bfloat16()
    weight, bias = (p.bfloat16() for p in random_params(4, 32, 16, torch.float32))
    out = dlr(x, weight, bias, (1, 2, 4, 8), 256, backend="cpu")
    ref = dlr_reference(x.float(), weight.float(), bias.float(), (1, 2, 4, 8), 256)
    assert out.dtype == torch.bfloat16
    assert relative_error(out, ref) < 1e-2  # bfloat16 output rounding (8-bit mantissa)


def test_x_gradient_only_when_needed():
    weight, bias = (p.requires_grad_() for p in random_params(2, 4, 3, torch.float32))
    x = torch.randn(2, 500)
    dlr(x, weight, bias, (1, 2), 16, backend="cpu").sum().backward()
    assert x.grad is None and weight.grad is not None and bias.grad is not None


def test_reference_gradcheck_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 60, dtype=torch.float64, requires_grad=True)
    weight, bias = (p.requires_grad_() for p in random_params(2, 3, 3))
    assert torch.autograd.gradcheck(lambda *a: dlr_reference(*a, (1, 4), 5), (x, weight, bias))


def test_deterministic_on_cpu_backend():
    torch.manual_seed(2)
    x = torch.randn(3, 40000)
    weight, bias = (p.requires_grad_() for p in random_params(4, 32, 16, torch.float32))
    runs = []
    for _ in range(2):
        out = dlr(x, weight, bias, (1, 3, 9, 27), 256, backend="cpu")
        grads = torch.autograd.grad(out.square().sum(), (weight, bias))
        runs.append((out, *grads))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_too_short_input_error_names_the_receptive_field():
    weight, bias = random_params(4, 32, 16, torch.float32)
    with pytest.raises(ValueError, match="receptive field"):
        dlr(torch.randn(1, 20000), weight, bias, PAPER_DILATIONS, 256)


def test_explicit_backend_that_cannot_run_lists_every_reason():
    weight, bias = random_params(2, 4, 3, torch.float32)
    with pytest.raises(BackendUnavailable) as info:
        dlr(torch.randn(1, 500), weight, bias, (1, 2), 16, backend="cuda")
    for name in ("cuda", "triton", "cpu", "torch"):
        assert f"  {name}:" in str(info.value)


def test_environment_variable_selects_backend(monkeypatch):
    monkeypatch.setenv("DLR_ENGINE_BACKEND", "cuda")
    weight, bias = random_params(2, 4, 3, torch.float32)
    with pytest.raises(BackendUnavailable):
        dlr(torch.randn(1, 500), weight, bias, (1, 2), 16)


def test_opcheck_forward_and_backward():
    torch.manual_seed(3)
    x = torch.randn(2, 700, requires_grad=True)
    weight, bias = (p.requires_grad_() for p in random_params(2, 5, 3, torch.float32))
    torch.library.opcheck(dlr_fused, (x, weight, bias, [1, 5], 16, "cpu"))
    grad = torch.randn(2, 10, (700 - 10) // 16)
    torch.library.opcheck(dlr_fused_backward, (grad, x.detach(), weight.detach(), bias.detach(),
                                               [1, 5], 16, "cpu", True))


def test_torch_compile_fullgraph_matches_reference():
    torch.manual_seed(4)
    model = torch.nn.Sequential(DLR(dilation_base=3, backend="cpu"), torch.nn.Flatten(),
                                torch.nn.LazyLinear(3))
    x = torch.randn(2, 12000)
    expected = model(x)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), expected)
    compiled(x).sum().backward()
    assert model[0].weight.grad is not None and torch.isfinite(model[0].weight.grad).all()


def test_module_pads_short_clips_when_asked():
    module = DLR(dilation_base=4)
    x = torch.randn(2, 1000)
    with pytest.raises(ValueError, match="receptive field"):
        module(x)
    padded = DLR(dilation_base=4, pad=True)
    assert padded(x).shape == (2, 128, 1)


def test_module_initialisation_follows_authors_code():
    module = DLR()
    assert torch.all(module.bias == 0.01)
    expected_std = (2.0 / (16 + 16 * 32)) ** 0.5
    assert abs(module.weight.std().item() - expected_std) / expected_std < 0.1
    assert module.frames(240000) == 808 and module.receptive_field == 32956
