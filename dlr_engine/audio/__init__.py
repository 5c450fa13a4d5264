"""Audio input: streaming decode to mono at the model rate, and segmentation."""
from .decode import AudioInfo, AudioStream, DecodeError, load
from .segment import (TAIL_POLICIES, Segment, Segmenter, TooShortError, chunk_bounds,
                      continuous_chunks)

__all__ = ["TAIL_POLICIES", "AudioInfo", "AudioStream", "DecodeError", "Segment", "Segmenter",
           "TooShortError", "chunk_bounds", "continuous_chunks", "load"]
