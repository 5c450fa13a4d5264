"""``precision=`` through the op, the module and dispatch: tf32 / bfloat16 run on the triton
backend (interpreted here, on CPU tensors), with autograd, and every other request is refused
with each backend's reason."""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")
from dlr_engine.nn import DLR  # noqa: E402
from dlr_engine.ops import dlr_triton  # noqa: E402
from dlr_engine.ops.backends import BackendUnavailable  # noqa: E402
from dlr_engine.ops.dlr_op import dlr, dlr_fused, precision_unavailable  # noqa: E402
from dlr_engine.ops.dlr_reference import dlr_reference  # noqa: E402

pytestmark = pytest.mark.skipif(not dlr_triton.INTERPRETED,
                                reason="these run the triton backend on CPU tensors")
DILATIONS, POOL = (1, 3), 8


def small_module(precision: str) -> DLR:
    torch.manual_seed(0)
    return DLR(n_branches=2, channels=16, kernel_size=4, dilations=DILATIONS, pool=POOL,
               preprocess=None, backend="triton", precision=precision)


@pytest.mark.parametrize("precision", ["tf32", "bfloat16"])
def test_module_precision_runs_the_rounded_op_with_gradients(precision):
    module = small_module(precision)
    x = torch.randn(2, 120)
    out = module(x)
    rounded = [dlr_triton.round_operands(t.detach(), precision) for t in (x, module.weight)]
    leaves = [t.double().requires_grad_() for t in (*rounded, module.bias.detach())]
    ref = dlr_reference(*leaves, DILATIONS, POOL)
    tolerance = dlr_triton.PRECISION_TOLERANCE[precision]
    assert ((out.double() - ref).norm() / ref.norm()).item() < tolerance
    grad_out = torch.randn(out.shape)
    out.backward(grad_out)
    ref.backward(grad_out.double())
    for grad, leaf in zip((module.weight.grad, module.bias.grad), leaves[1:]):
        assert ((grad.double() - leaf.grad).norm() / leaf.grad.norm()).item() < tolerance


def test_op_with_precision_passes_opcheck():
    x, weight, bias = (torch.randn(shape, requires_grad=True)
                       for shape in ((1, 60), (2, 16, 4), (2, 16)))
    torch.library.opcheck(dlr_fused, (x, weight, bias, list(DILATIONS), POOL, "triton", "tf32"),
                          test_utils=("test_schema", "test_autograd_registration",
                                      "test_faketensor"))


def test_unavailable_precisions_are_refused_with_reasons():
    x, weight, bias = torch.randn(1, 60), torch.randn(2, 16, 4), torch.randn(2, 16)
    with pytest.raises(BackendUnavailable, match="cpu: offers precision float32, not tf32"):
        dlr(x, weight, bias, DILATIONS, POOL, precision="tf32")   # automatic: no CPU tf32
    with pytest.raises(BackendUnavailable, match="offers precision float32, not tf32"):
        dlr(x, weight, bias, DILATIONS, POOL, backend="torch", precision="tf32")
    with pytest.raises(ValueError, match="precision must be one of"):
        dlr(x, weight, bias, DILATIONS, POOL, precision="float16")
    assert precision_unavailable("float32", "cpu") is None
    assert "cpu: offers precision float32" in precision_unavailable("tf32", "cpu")
    if not torch.cuda.is_available():
        assert "no CUDA device" in precision_unavailable("bfloat16", "cuda")
