"""Drop-in torch modules: ``DLR`` (and, re-exported, the spectral front-ends)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import DLRConfig
from .inputs import audio_tensor
from .ops import dlr
from .ops.dlr_op import PRECISIONS
from .ops.preprocess import peak_abs


class DLR(nn.Module):
    """Deep Learned Rhythmic representation: four parallel dilated Conv1d branches, ReLU,
    crop, concat and average pooling, run by the fused op.

    forward(x: (..., samples) float at 8 kHz, e.g. (batch, samples) or (samples,)) ->
    (..., n_branches * channels, frames), frames = (samples - receptive_field + 1) // pool (808
    for 30 s). int8 / int16 / int32 / uint8 PCM is scaled to [-1, 1) first
    (``dlr_engine.inputs.audio_tensor``); other dtypes are refused.
    preprocess: "peak_abs" (the published model's ``|x / max|x||`` per clip) or None.
    pad: zero-pad clips shorter than one output frame instead of raising.
    backend: force a backend of ``dlr_engine.ops.dlr`` (default: automatic / DLR_ENGINE_BACKEND).
    precision: "float32", "tf32" or "bfloat16" (``PRECISIONS``: x and the weights rounded,
    float32 sums). On a GPU, tf32 and bfloat16 run the Triton backend's tensor-core kernels
    (forward and backward; features ~2e-4 / ~2e-3 from float32 by relative norm); on CPU,
    bfloat16 is the AVX512_BF16 inference kernel (~1.8x faster, ~0.2 %). Raises where no
    backend offers it.
    """

    def __init__(self, n_branches: int = 4, channels: int = 32, kernel_size: int = 16,
                 dilation_base: int = 13, dilations: tuple[int, ...] | None = None,
                 pool: int = 256, preprocess: str | None = "peak_abs", pad: bool = False,
                 backend: str | None = None, precision: str = "float32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if preprocess not in ("peak_abs", None):
            raise ValueError(f"preprocess must be 'peak_abs' or None, got {preprocess!r}")
        self.config = DLRConfig(n_branches=n_branches, channels=channels, kernel_size=kernel_size,
                                dilation_base=dilation_base, pool=pool,
                                dilations=tuple(dilations or ()))
        self.preprocess = preprocess
        self.pad = pad
        self.backend = backend
        self.precision = precision
        self.weight = nn.Parameter(torch.empty(n_branches, channels, kernel_size))
        self.bias = nn.Parameter(torch.empty(n_branches, channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As the authors' code: normal with std sqrt(2 / (fan_in + fan_out)), bias 0.01."""
        fan_in = self.config.kernel_size
        fan_out = self.config.kernel_size * self.config.channels
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / (fan_in + fan_out)))
        nn.init.constant_(self.bias, 0.01)

    @property
    def dilations(self) -> tuple[int, ...]:
        return self.config.dilations

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def min_samples(self) -> int:
        """Shortest input giving one output frame."""
        return self.config.receptive_field + self.config.pool - 1

    def frames(self, samples: int) -> int:
        return self.config.frames(samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = audio_tensor(x, "DLR")
        leading = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        if self.pad and x.shape[-1] < self.min_samples:
            x = F.pad(x, (0, self.min_samples - x.shape[-1]))
        if self.preprocess == "peak_abs":
            x = peak_abs(x)
        out = dlr(x, self.weight, self.bias, self.dilations, self.config.pool,
                  backend=self.backend, precision=self.precision)
        return out.reshape(*leading, *out.shape[1:])

    def extra_repr(self) -> str:
        c = self.config
        return (f"branches={c.n_branches}, channels={c.channels}, kernel_size={c.kernel_size}, "
                f"dilations={c.dilations}, pool={c.pool}, preprocess={self.preprocess}"
                + (f", precision={self.precision}" if self.precision != "float32" else ""))
