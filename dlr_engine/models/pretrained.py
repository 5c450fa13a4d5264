"""The authors' published DLR(13) model: import from their TensorFlow checkpoint (no
TensorFlow needed), and save / load converted weights as safetensors with metadata.

Variable mapping (DESIGN §4; TF layouts on the left):
  DLR/dilated_conv{i}/weight (taps, 1, channels)   -> dlr.weight[i] (channels, taps)
  DLR/dilated_conv{i}/bias (channels,)             -> dlr.bias[i]
  DLR_conv/conv2d_{j}/weight (kh, kw, in, out)     -> blocks[j-1].conv.weight (out, in, kh, kw)
  DLR_conv/conv2d_{j}/batch_norm/{gamma, beta, moving_mean, moving_variance}
                                                   -> blocks[j-1].bn.{weight, bias, running_*}
  post/class_fc/{weight (128, 13), bias}           -> style_head (genre logits), weight.T
  post/bpm_class_fc/{weight (128, 4), bias}        -> tempo_head (tempo-class logits), weight.T
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..config import TEMPO_CLASS_BOUNDARIES_BPM
from ..io.tf_bundle import TFBundle, is_optimizer_slot
from ..nn import DLR
from .dlr_source import DLRSourceTaskNet

PUBLISHED_GENRES = 13
PUBLISHED_TEMPO_CLASSES = len(TEMPO_CLASS_BOUNDARIES_BPM) + 1
PUBLISHED_STYLE_KEYS = ("genre_logits", "style_logits")
"""The published head predicts ballroom genres; ``style_logits`` keeps the engine's name."""
SAFETENSORS_FORMAT = "dlr-engine/DLRSourceTaskNet"
PREPROCESSING = {True: "peak_abs: per clip x / max|x| (skipped when 0), then |x|; 8 kHz mono",
                 False: "none; 8 kHz mono"}


@contextlib.contextmanager
def float32_convolutions(allow_tf32: bool = False) -> Iterator[None]:
    """Inside, torch's CUDA convolutions (cuDNN) and matmuls use TF32 tensor cores only if
    ``allow_tf32``; the previous settings are restored on exit. torch's default lets cuDNN
    round float32 inputs to TF32 (10-bit mantissa), which moved the published model's logits
    6-7e-3 from TF's on an H200 (1.3e-5 on CPU); CPU kernels ignore these flags."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class PublishedDLRNet(DLRSourceTaskNet):
    """``DLRSourceTaskNet`` whose ``forward`` and ``forward_dlr`` run in IEEE float32 on a GPU
    (`float32_convolutions`), so that it reproduces the TF reference within the CPU tolerance;
    set ``allow_tf32 = True`` to trade that for TF32 speed."""

    allow_tf32: bool = False

    def forward_dlr(self, dlr: torch.Tensor) -> dict[str, torch.Tensor]:
        with float32_convolutions(self.allow_tf32):
            return super().forward_dlr(dlr)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with float32_convolutions(self.allow_tf32):
            return super().forward(x)


class TFVariable(NamedTuple):
    """Where one TF variable goes: ``state[key]`` (or ``state[key][index]`` for one branch of
    the DLR kernels), its expected TF shape, and the layout change (None: copy)."""

    key: str
    index: int | None
    shape: tuple[int, ...]
    layout: Callable[[np.ndarray], np.ndarray] | None


def _dlr_kernel(w: np.ndarray) -> np.ndarray:
    """(taps, 1, channels) -> (channels, taps)."""
    return w[:, 0, :].T


def _conv2d_kernel(w: np.ndarray) -> np.ndarray:
    """HWIO (kh, kw, in, out) -> OIHW (out, in, kh, kw)."""
    return w.transpose(3, 2, 0, 1)


def tf_variable_map(model: DLRSourceTaskNet) -> dict[str, TFVariable]:
    """TF variable name -> its place in ``model.state_dict()`` (DESIGN §4's table)."""
    dlr = model.dlr.config
    mapping: dict[str, TFVariable] = {}
    for i in range(dlr.n_branches):
        mapping[f"DLR/dilated_conv{i}/weight"] = TFVariable(
            "dlr.weight", i, (dlr.kernel_size, 1, dlr.channels), _dlr_kernel)
        mapping[f"DLR/dilated_conv{i}/bias"] = TFVariable("dlr.bias", i, (dlr.channels,), None)
    for j, block in enumerate(model.blocks, start=1):
        out_ch, in_ch, kh, kw = block.conv.weight.shape
        tf, torch_prefix = f"DLR_conv/conv2d_{j}", f"blocks.{j - 1}"
        mapping[f"{tf}/weight"] = TFVariable(f"{torch_prefix}.conv.weight", None,
                                             (kh, kw, in_ch, out_ch), _conv2d_kernel)
        for tf_name, torch_name in (("gamma", "weight"), ("beta", "bias"),
                                    ("moving_mean", "running_mean"),
                                    ("moving_variance", "running_var")):
            mapping[f"{tf}/batch_norm/{tf_name}"] = TFVariable(
                f"{torch_prefix}.bn.{torch_name}", None, (out_ch,), None)
    for tf, head in (("post/class_fc", "style_head"), ("post/bpm_class_fc", "tempo_head")):
        linear = getattr(model, head)
        mapping[f"{tf}/weight"] = TFVariable(
            f"{head}.weight", None, (linear.in_features, linear.out_features), np.transpose)
        mapping[f"{tf}/bias"] = TFVariable(f"{head}.bias", None, (linear.out_features,), None)
    return mapping


def load_tf_checkpoint(prefix: str | Path, backend: str | None = None,
                       allow_tf32: bool = False) -> PublishedDLRNet:
    """The published DLR(13) model from its TF checkpoint ``prefix`` (e.g. ``.../model-523``),
    in eval mode; ``forward(x)`` returns ``genre_logits`` (also as ``style_logits``),
    ``dlr``, ``embedding`` and ``tempo_logits``. ``backend`` forces a DLR op backend.
    ``allow_tf32``: let the back-end's convolutions use TF32 on a GPU (faster, logits ~1e-2
    from TF's); by default it runs in IEEE float32 (`PublishedDLRNet`).

    Raises ValueError listing the missing and mis-shaped variables when the checkpoint is not
    a DLR(13) source-task model.
    """
    model = PublishedDLRNet(PUBLISHED_GENRES, PUBLISHED_TEMPO_CLASSES,
                            dlr=DLR(preprocess="peak_abs", backend=backend),
                            style_keys=PUBLISHED_STYLE_KEYS)
    model.allow_tf32 = allow_tf32
    mapping = tf_variable_map(model)
    state = model.state_dict()
    bundle = TFBundle(prefix)
    _check_variables(bundle, mapping)
    for name, target in mapping.items():
        value = bundle.read(name)
        value = torch.from_numpy(np.ascontiguousarray(target.layout(value)
                                                      if target.layout else value))
        if target.index is None:
            state[target.key] = value
        else:
            state[target.key][target.index] = value
    model.load_state_dict(state)
    return model.eval()


def _check_variables(bundle: TFBundle, mapping: dict[str, TFVariable]) -> None:
    names = set(bundle.names())
    missing = [name for name in mapping if name not in names]
    wrong = [f"{name}: {bundle.shape(name)} {bundle.dtype(name)}, expected {target.shape} float32"
             for name, target in mapping.items() if name in names
             and (bundle.shape(name) != target.shape or bundle.dtype(name) != "float32")]
    if not (missing or wrong):
        return
    unused = sorted(n for n in names - set(mapping) if not is_optimizer_slot(n))
    lines = [f"checkpoint {bundle.prefix} is not the DLR(13) source-task model:"]
    if missing:
        lines.append(f"  missing variables ({len(missing)}): " + ", ".join(missing))
    if wrong:
        lines.append("  wrong shape or dtype:\n    " + "\n    ".join(wrong))
    if unused:
        lines.append(f"  unrecognised variables ({len(unused)}): " + ", ".join(unused[:20])
                     + (" ..." if len(unused) > 20 else ""))
    lines.append("  list its variables with `dlr-engine convert-tf PREFIX --list`")
    raise ValueError("\n".join(lines))


def save_safetensors(model: DLRSourceTaskNet, path: str | Path,
                     metadata: dict[str, str] | None = None) -> None:
    """Write ``model``'s weights to ``path`` with its architecture (JSON) and preprocessing in
    the metadata; ``metadata`` adds string entries such as ``source`` or ``labels``."""
    config = model.config()
    header = {"format": SAFETENSORS_FORMAT, "architecture": json.dumps(config),
              "preprocessing": PREPROCESSING[config["preprocess"]],
              "sample_rate": str(model.dlr.config.sample_rate)}
    extra = dict(metadata or {})
    bad = [key for key, value in extra.items() if not isinstance(value, str)]
    if bad:
        raise TypeError(f"safetensors metadata values must be strings; encode {bad} as JSON")
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(tensors, str(path), metadata={**extra, **header})


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The metadata stored by ``save_safetensors``."""
    with safe_open(str(path), framework="pt") as file:
        return dict(file.metadata() or {})


def load_safetensors(path: str | Path, backend: str | None = None,
                     allow_tf32: bool = False) -> PublishedDLRNet:
    """A model written by ``save_safetensors``, in eval mode; ``allow_tf32`` as in
    `load_tf_checkpoint`."""
    metadata = safetensors_metadata(path)
    if metadata.get("format") != SAFETENSORS_FORMAT or "architecture" not in metadata:
        raise ValueError(f"{path} was not written by dlr-engine's save_safetensors (metadata "
                         f"format is {metadata.get('format')!r}, expected {SAFETENSORS_FORMAT!r})")
    model = PublishedDLRNet.from_config(json.loads(metadata["architecture"]), backend=backend)
    model.load_state_dict(load_file(str(path)))
    model.allow_tf32 = allow_tf32
    return model.eval()


def load_pretrained(source: str | Path, backend: str | None = None,
                    allow_tf32: bool = False) -> PublishedDLRNet:
    """A ``.safetensors`` file from ``save_safetensors``, or else a TF checkpoint prefix;
    ``allow_tf32`` as in `load_tf_checkpoint`."""
    loader = load_safetensors if Path(source).suffix == ".safetensors" else load_tf_checkpoint
    return loader(source, backend=backend, allow_tf32=allow_tf32)
