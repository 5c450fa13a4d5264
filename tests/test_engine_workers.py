"""Decode worker processes (issue 17): they never import the caller's main script, exit by
themselves (code 0) when their queue ends, are reused across runs of one process, and the
track-to-worker schedule does not change the outputs."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from dlr_engine.engine import extract, pipeline, worker

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, os, sys, time
import torch                      # as users write their scripts: heavy imports at the top
import dlr_engine
from dlr_engine.engine import worker
if __name__ != "__main__":        # the script re-imported by a worker (as __mp_main__)
    open(os.path.join(sys.argv[2], "reimported-%d" % os.getpid()), "w").close()
if __name__ == "__main__":
    folder, marks = sys.argv[1], sys.argv[2]
    runs = []
    for _ in range(2):
        results = list(dlr_engine.extract(folder, model=None, representations="mel",
                                          workers=2, progress=False))
        runs.append(sorted(p.pid for p in worker.pooled_processes()))
    processes = worker.pooled_processes()
    worker.close_pool()
    print(json.dumps({"status": [r.status for r in results], "runs": runs,
                      "exitcodes": [p.exitcode for p in processes]}))
"""


def tracks(folder: Path, count: int, seconds: float = 1.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        sf.write(folder / f"t{i}.wav", 0.1 * rng.standard_normal(int(8000 * seconds)), 8000)


def test_workers_skip_the_callers_main_exit_by_themselves_and_are_reused(tmp_path):
    """From a script importing torch and dlr_engine at its top, workers=2: no worker
    re-imports the script, the second run reuses the first run's two processes, and closing
    the pool ends each by its queue (exit code 0: none terminated or killed)."""
    tracks(tmp_path / "in", 4)
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "in"), str(marks)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["status"] == ["ok"] * 4
    assert list(marks.iterdir()) == []
    first, second = report["runs"]
    assert len(first) == 2 and first == second
    assert report["exitcodes"] == [0, 0]


def test_outputs_do_not_depend_on_the_schedule(tmp_path, monkeypatch):
    """Tracks sent to random workers give the arrays and tables of decode threads."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i, seconds in enumerate((2.5, 0.7, 4.0, 1.3, 3.1, 2.0)):
        sf.write(folder / f"t{i}.wav", np.sin(np.arange(int(8000 * seconds)) * (0.01 + i / 50)),
                 8000)
    chooser = random.Random(0)
    monkeypatch.setattr(pipeline.Pipeline, "choose_slot",
                        lambda self: chooser.randrange(self.n_workers))
    runs = []
    for workers in (0, 3):
        results = extract(folder, model=None, representations="mel", workers=workers,
                          batch_size=3, segment_seconds=1.0, progress=False)
        runs.append({r.id: r.features["mel"] for r in results})
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) == 6
    for track_id, mel in runs[0].items():
        np.testing.assert_array_equal(runs[1][track_id], mel)


def test_an_abandoned_run_does_not_leave_busy_workers_in_the_pool(tmp_path):
    """Closing the iterator after one track: the workers still holding tasks are killed, not
    pooled; the next run gets working ones and completes."""
    tracks(tmp_path / "in", 6, seconds=3.0)
    options = dict(model=None, representations="mel", workers=2, segment_seconds=1.0,
                   progress=False)
    before = set(worker.pooled_processes())
    results = extract(tmp_path / "in", **options)
    next(results)
    results.close()
    assert all(process.is_alive() for process in worker.pooled_processes())
    assert set(worker.pooled_processes()) <= before
    assert [r.status for r in extract(tmp_path / "in", **options)] == ["ok"] * 6


def test_worker_counts_follow_the_usable_cores(monkeypatch):
    """A process limited to 2 of the machine's cores (a container, taskset) decodes in
    threads, as on a 2-core machine; limited to 16, it gets 15 processes."""
    from dlr_engine.engine import extraction
    for usable, workers, threads in ((2, 0, 3), (16, 15, 17), (64, 16, 65)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=usable: set(range(n)))
        monkeypatch.setattr(os, "cpu_count", lambda: 128)
        assert (extraction.default_workers(), pipeline.decode_threads()) == (workers, threads)
