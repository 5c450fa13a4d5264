"""The published model runs its back-end in IEEE float32 on a GPU unless asked for TF32
(issue 14): torch's default lets cuDNN use TF32, which moved the logits ~7e-3 from TF's. The
flags are what cuDNN and cuBLAS read, so checking them inside the forward needs no GPU."""
from __future__ import annotations

import pytest
import torch
from test_tf_bundle import CHECKPOINT, reference_dir

from dlr_engine.models.pretrained import (PublishedDLRNet, float32_convolutions,
                                          load_pretrained, save_safetensors)

FLAGS = ("cudnn", "matmul")


def tf32_flags() -> dict[str, bool]:
    return {"cudnn": torch.backends.cudnn.allow_tf32,
            "matmul": torch.backends.cuda.matmul.allow_tf32}


@pytest.fixture
def tf32_enabled():
    """torch's GPU default for cuDNN (TF32 on), matmul too; restored after the test."""
    saved = tf32_flags()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved.values()


def flags_seen_by_backend(model: PublishedDLRNet, x: torch.Tensor) -> list[dict[str, bool]]:
    """The TF32 flags when the first 2D convolution and the style head run during
    ``model(x)``."""
    seen = []
    hooks = [module.register_forward_hook(lambda *_: seen.append(tf32_flags()))
             for module in (model.blocks[0].conv, model.style_head)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


def small_model() -> PublishedDLRNet:
    torch.manual_seed(0)
    return PublishedDLRNet().eval()


def test_forward_runs_without_tf32_and_restores_the_flags(tf32_enabled):
    model = small_model()
    x = torch.rand(1, model.min_samples)
    assert flags_seen_by_backend(model, x) == [dict.fromkeys(FLAGS, False)] * 2
    assert tf32_flags() == dict.fromkeys(FLAGS, True)
    model.allow_tf32 = True
    assert flags_seen_by_backend(model, x) == [dict.fromkeys(FLAGS, True)] * 2


def test_flags_restored_when_the_forward_raises(tf32_enabled):
    model = small_model()
    with pytest.raises(ValueError, match="too short"):
        model(torch.rand(1, model.min_samples - 1))
    with pytest.raises(RuntimeError, match="inside"):
        with float32_convolutions():
            raise RuntimeError("inside")
    assert tf32_flags() == dict.fromkeys(FLAGS, True)


def test_loaders_default_to_float32_and_pass_allow_tf32(tmp_path):
    prefix = reference_dir() / CHECKPOINT
    published = load_pretrained(prefix)
    assert isinstance(published, PublishedDLRNet) and published.allow_tf32 is False
    assert load_pretrained(prefix, allow_tf32=True).allow_tf32 is True
    save_safetensors(published, tmp_path / "m.safetensors")
    for allow in (False, True):
        loaded = load_pretrained(tmp_path / "m.safetensors", allow_tf32=allow)
        assert isinstance(loaded, PublishedDLRNet) and loaded.allow_tf32 is allow
