"""dlr-bench suite ``engine``: the extraction engine's fixed costs (issue 17).

- ``pool_start_stop``: start ``WORKERS`` decode workers, decode one 0.25 s file on each, stop
  them. Providers: ``threads`` (the baseline: decode threads, ``workers=0``), ``processes_new``
  (fresh worker processes, forked by the forkserver, each ending by its queue; the pool is
  emptied after every call) and ``processes_pooled`` (the idle processes of the previous
  call reused, as consecutive ``extract`` calls do).
- ``extract_mel``: ``extract`` of 8 tracks of 30 s (44.1 kHz stereo WAV) to log-mel in memory,
  no model, from this process (which imports torch at its top, as user scripts do):
  ``workers0`` (baseline, decode threads) against ``workers2`` (two decode processes, pooled
  after the first call). Issue 17's bar: ``workers2`` within 15 % of ``workers0``.
- ``rerun_nothing_to_do``: a second ``extract(..., out=)`` over a folder of tiny WAV files
  (0.26 s each, 100 folders) whose first run finished: discovery, stat, the resume check of
  every track (its arrays and table rows) and nothing else. 10,000 files with ``--quick``,
  100,000 otherwise (the first run, untimed, takes about 2 minutes on 2 cores). Issue 17's
  bar: under 30 s for 100,000.
"""
from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from dlr_engine.engine import extract, worker
from dlr_engine.engine.worker import DecodePlan, DecodeWorker

from .harness import Call, Case

WORKERS = 2
"""Decode workers of the pool and extract cases (issue 17 measures workers=2 on 2 cores)."""
TINY_SECONDS = 0.25
RERUN_FILES = {True: 10_000, False: 100_000}
FILES_PER_FOLDER = 1000
EXTRACT_TRACKS, EXTRACT_SECONDS, EXTRACT_RATE = 8, 30.0, 44100


def _folder(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"dlr-bench-engine-{prefix}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _tiny_wav(rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(TINY_SECONDS * rate)) / rate
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 220 * t), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _pool_call(process: bool, pooled: bool) -> Call:
    path = str(_folder("pool") / "tiny.wav")
    Path(path).write_bytes(_tiny_wav())
    plan = DecodePlan(8000, 8000, 8000, "end", 1, False)

    def run() -> int:
        workers = (worker.acquire(WORKERS, True, 16) if process
                   else [DecodeWorker(process=False) for _ in range(WORKERS)])
        for index, decoder in enumerate(workers):
            decoder.submit(index, path, plan)
        for decoder in workers:
            while decoder.get()[0] == "segment":
                pass
        if pooled:
            worker.release(workers)
        else:
            for decoder in workers:
                decoder.close()
        return len(workers)
    return run


def _extract_call(workers: int) -> Call:
    folder = _folder("extract")
    rng = np.random.default_rng(0)
    for index in range(EXTRACT_TRACKS):
        audio = 0.1 * rng.standard_normal((int(EXTRACT_SECONDS * EXTRACT_RATE), 2))
        sf.write(folder / f"t{index}.wav", audio.astype(np.float32), EXTRACT_RATE,
                 subtype="PCM_16")

    def run() -> int:
        results = list(extract(folder, model=None, representations="mel", workers=workers,
                               progress=False))
        if any(r.status != "ok" for r in results):
            raise RuntimeError(f"extract failed: {[r.error for r in results][:3]}")
        return len(results)
    return run


def _rerun_call(files: int) -> Call:
    root = _folder("rerun")
    corpus, out = root / "corpus", root / "out"
    data = _tiny_wav()
    for index in range(files):
        folder = corpus / f"d{index // FILES_PER_FOLDER:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"t{index:06d}.wav").write_bytes(data)
    options = dict(out=out, model=None, representations="mel", workers=0, progress=False)
    first = extract(corpus, **options)
    if first["ok"] != files:
        raise RuntimeError(f"the first run finished {first['ok']} of {files} files")

    def run() -> int:
        summary = extract(corpus, **options)
        if summary["skipped"] != files:
            raise RuntimeError(f"the rerun redid {files - summary['skipped']} files")
        return files
    return run


def cases(quick: bool) -> list[Case]:
    pool_shape = f"{WORKERS} workers x 1 file of {TINY_SECONDS} s"
    extract_shape = f"{EXTRACT_TRACKS} tracks {EXTRACT_SECONDS:.0f} s"
    files = RERUN_FILES[quick]
    return [
        Case(op="pool_start_stop", provider="threads", shape=pool_shape, batch=WORKERS,
             make=lambda: _pool_call(False, False), baseline=True),
        Case(op="pool_start_stop", provider="processes_new", shape=pool_shape, batch=WORKERS,
             make=lambda: _pool_call(True, False)),
        Case(op="pool_start_stop", provider="processes_pooled", shape=pool_shape,
             batch=WORKERS, make=lambda: _pool_call(True, True)),
        Case(op="extract_mel", provider="workers0", shape=extract_shape, batch=EXTRACT_TRACKS,
             make=lambda: _extract_call(0), baseline=True),
        Case(op="extract_mel", provider=f"workers{WORKERS}", shape=extract_shape,
             batch=EXTRACT_TRACKS, make=lambda: _extract_call(WORKERS)),
        Case(op="rerun_nothing_to_do", provider="engine", shape=f"{files} files",
             batch=files, make=lambda: _rerun_call(files), baseline=True),
    ]
