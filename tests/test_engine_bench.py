"""dlr-bench suite ``engine``: every case, shrunk (2 tracks of 2 s, a rerun over 50 files), runs
and processes all its work, so the suite cannot report the time of a call that did nothing."""
from __future__ import annotations

from dlr_engine.bench import suite_engine
from dlr_engine.engine import worker


def test_engine_suite_cases_do_their_work(monkeypatch):
    monkeypatch.setattr(suite_engine, "EXTRACT_TRACKS", 2)
    monkeypatch.setattr(suite_engine, "EXTRACT_SECONDS", 2.0)
    monkeypatch.setitem(suite_engine.RERUN_FILES, True, 50)
    monkeypatch.setattr(suite_engine, "FILES_PER_FOLDER", 20)
    cases = suite_engine.cases(quick=True)
    assert [case.op for case in cases].count("pool_start_stop") == 3
    done = {}
    for case in cases:
        call = case.make()
        before = set(worker.pooled_processes())
        done[(case.op, case.provider)] = [call(), call()]
        if case.provider == "processes_new":                   # its workers end each call
            assert set(worker.pooled_processes()) <= before
    assert done == {
        ("pool_start_stop", "threads"): [2, 2],
        ("pool_start_stop", "processes_new"): [2, 2],
        ("pool_start_stop", "processes_pooled"): [2, 2],
        ("extract_mel", "workers0"): [2, 2],
        ("extract_mel", "workers2"): [2, 2],
        ("rerun_nothing_to_do", "engine"): [50, 50],
    }
