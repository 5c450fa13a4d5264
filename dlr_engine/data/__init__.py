"""Training data: the synthetic ballroom-like rhythm corpus (DESIGN §6)."""
from .synth import (
    STYLE_NAMES, TAG_NAMES, SynthRhythmDataset, clip_labels, demo_corpus, read_labels,
    render_clip, tempo_class, write_corpus,
)

__all__ = [
    "STYLE_NAMES", "TAG_NAMES", "SynthRhythmDataset", "clip_labels", "demo_corpus",
    "read_labels", "render_clip", "tempo_class", "write_corpus",
]
