"""Training data: a folder of audio with a labels CSV, or the synthetic corpus, optionally held
in memory. Items are ``(audio (samples,) float32 at 8 kHz, labels)`` as ``SynthRhythmDataset``
gives them: labels ``style`` and ``tempo_class`` int64 scalars, ``bpm`` float32, ``tags``
float32 (n_tags,).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..audio.decode import load
from ..config import PAPER
from ..data.synth import LABELS_CSV, read_labels


class LabelledFolder(Dataset):
    """The clips listed in ``folder/labels.csv`` (as ``write_corpus`` writes it), decoded to mono
    at ``sample_rate`` and cut to their first ``seconds``; ``rows`` picks a subset of the CSV's
    rows (e.g. a split)."""

    def __init__(self, folder: str | Path, seconds: float, sample_rate: int = PAPER.sample_rate,
                 rows: list[int] | None = None) -> None:
        csv_path = Path(folder) / LABELS_CSV
        if not csv_path.exists():
            raise FileNotFoundError(f"{csv_path} not found; write a corpus with `dlr-engine synth "
                                    f"--out {folder}` or give a folder holding a labels.csv")
        table = read_labels(csv_path)
        self.rows = [table[i] for i in rows] if rows is not None else table
        self.samples = int(round(seconds * sample_rate))
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        row = self.rows[index]
        audio, _ = load(row["path"], self.sample_rate)
        if len(audio) < self.samples:
            raise ValueError(f"{row['path']} has {len(audio) / self.sample_rate:.2f} s of audio, "
                             f"less than the {self.samples / self.sample_rate:.2f} s asked for; "
                             f"lower --seconds")
        return torch.from_numpy(np.ascontiguousarray(audio[:self.samples])), {
            "style": torch.tensor(row["style_index"], dtype=torch.int64),
            "tempo_class": torch.tensor(row["tempo_class"], dtype=torch.int64),
            "bpm": torch.tensor(row["bpm"], dtype=torch.float32),
            "tags": torch.tensor(row["tags"], dtype=torch.float32),
        }


def split_rows(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Rows ``0..n-1`` shuffled by ``seed`` into (train, validation), at least one in each."""
    if n < 2:
        raise ValueError(f"a folder of {n} clip(s) cannot be split into training and validation")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    return sorted(order[n_val:]), sorted(order[:n_val])


class InMemory(Dataset):
    """Every item of ``dataset`` loaded (or rendered) once, up front, and kept in RAM: audio as
    one (n, samples) float32 tensor (4 bytes per sample: 1.3 GB for 4000 clips of 10 s at 8 kHz)."""

    def __init__(self, dataset: Dataset, progress: bool = True, desc: str = "load") -> None:
        audio, labels = dataset[0]
        self.audio = audio.new_empty((len(dataset), *audio.shape))
        self.labels = {key: value.new_empty((len(dataset), *value.shape)) for key, value in labels.items()}
        for index in tqdm(range(len(dataset)), desc=desc, unit="clip", disable=not progress):
            audio, labels = dataset[index] if index else (audio, labels)
            self.audio[index] = audio
            for key, value in labels.items():
                self.labels[key][index] = value

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.audio[index], {key: value[index] for key, value in self.labels.items()}
