"""Constants of the DLR paper (Jeong, Choi & Jeong 2017), kept in one place."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DLRConfig:
    """Geometry of the dilated-convolution front-end.

    sample_rate: Hz of the raw audio the op expects.
    dilations: one per branch; the published model uses ``13**i`` for ``i < 4``.
    """

    sample_rate: int = 8000
    n_branches: int = 4
    channels: int = 32
    kernel_size: int = 16
    dilation_base: int = 13
    pool: int = 256
    segment_seconds: float = 30.0
    dilations: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.dilations:
            dilations = tuple(self.dilation_base**i for i in range(self.n_branches))
            object.__setattr__(self, "dilations", dilations)
        if len(self.dilations) != self.n_branches:
            raise ValueError(f"{len(self.dilations)} dilations given for {self.n_branches} branches")

    @property
    def out_channels(self) -> int:
        return self.n_branches * self.channels

    @property
    def receptive_field(self) -> int:
        """Samples one output step sees: ``(kernel_size - 1) * max(dilations) + 1``."""
        return receptive_field(self.kernel_size, self.dilations)

    def frames(self, samples: int) -> int:
        """DLR frames for ``samples`` input samples (808 for 30 s at 8 kHz)."""
        return output_frames(samples, self.kernel_size, self.dilations, self.pool)


def receptive_field(kernel_size: int, dilations: tuple[int, ...]) -> int:
    return (kernel_size - 1) * max(dilations) + 1


def output_frames(samples: int, kernel_size: int, dilations: tuple[int, ...], pool: int) -> int:
    """``floor((samples - receptive_field + 1) / pool)``, never negative."""
    return max(0, (samples - receptive_field(kernel_size, dilations) + 1) // pool)


PAPER = DLRConfig()
TEMPO_CLASS_BOUNDARIES_BPM = (112.0, 149.0, 187.0)
"""Tempo classes of the paper, slow to fast: <112, 112-149, 149-187, >=187 BPM."""
