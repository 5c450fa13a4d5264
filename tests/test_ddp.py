"""Multi-process training: ``torchrun`` with 2 CPU processes (Gloo) and half the batch each
gives the loss curve and the weights of one process with the whole batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from dlr_engine.train.trainer import LAST, LOG

PROCESSES = 2
GLOBAL_BATCH = 8
RTOL = 1e-4
ARGS = ["train", "source-task", "--synthetic", str(GLOBAL_BATCH), "--val-synthetic", "4",
        "--seconds", "6", "--model-options", json.dumps({"dlr": {"channels": 8}}),
        "--epochs", "4", "--optimizer", "adamw", "--lr", "3e-3", "--device", "cpu",
        "--backend", "cpu", "--no-progress"]
"""One step per epoch: the epochs' train losses are the per-step loss curve."""


def _train(out, batch_size: int, launcher: list[str]) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, *launcher, "-m", "dlr_engine", *ARGS, "--batch-size",
                    str(batch_size), "--out", str(out)], check=True, env=env, timeout=120,
                   capture_output=True)
    return [json.loads(line) for line in (out / LOG).read_text().splitlines()]


def test_two_processes_match_one_with_the_global_batch(tmp_path):
    one = _train(tmp_path / "one", GLOBAL_BATCH, [])
    two = _train(tmp_path / "two", GLOBAL_BATCH // PROCESSES,
                 ["-m", "torch.distributed.run", "--nproc_per_node", str(PROCESSES), "--standalone"])
    assert len(one) == len(two) == 4
    curve = [record["train_loss"] for record in one]
    assert curve[-1] < curve[0]                                       # it did learn something
    assert [record["train_loss"] for record in two] == pytest.approx(curve, rel=RTOL)
    assert [record["val"]["loss"] for record in two] == pytest.approx(
        [record["val"]["loss"] for record in one], rel=RTOL)
    weights_one, weights_two = load_file(tmp_path / "one" / LAST), load_file(tmp_path / "two" / LAST)
    assert weights_one.keys() == weights_two.keys()                   # rank 0 saved the model
    # Adam turns rounding noise in a zero gradient into lr-sized steps (a batch norm's bias
    # whose shift the next batch norm removes), so only the weight tensors are compared
    weights = [name for name in weights_one if name.endswith("weight")]
    assert len(weights) > 10
    for name in weights:  # relative error of each tensor (an element near 0 may differ more)
        error = np.linalg.norm(weights_two[name] - weights_one[name])
        assert error <= RTOL * np.linalg.norm(weights_one[name]), name
