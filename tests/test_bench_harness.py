"""dlr-bench's harness on trivial ops: statistics from injected clocks, peak memory, rows, JSON
schema, markdown, comparison and --fail-if-slower. Timings are never asserted."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from dlr_engine.bench import cli, harness, machine, report, suite_dlr
from dlr_engine.bench.harness import Case, Result, Timing, TimingPlan

PLAN = TimingPlan(warmup=2, min_repeats=3, max_repeats=3, budget_s=1.0)
FAKE_MACHINE = {"cpu_model": "test cpu", "torch_threads": 2, "allocator": "glibc malloc",
                "torch": "2.x", "device": "cpu", "gpu_name": None, "matmul_peak_gflops": 100.0,
                "copy_bandwidth_gbps": 10.0, "memory_method": "test"}


def fake_clock(durations_s):
    """A clock whose consecutive (start, end) readings are ``durations_s`` apart."""
    readings = itertools.chain.from_iterable((10.0 * i, 10.0 * i + d)
                                             for i, d in enumerate(durations_s))
    return lambda: next(readings)


def counting_call():
    calls = []
    return calls, (lambda: calls.append(1))


def test_summarize_gives_median_and_20_80_percentiles_of_shuffled_samples():
    samples = [11.0, 1.0, 10.0, 2.0, 9.0, 3.0, 8.0, 4.0, 7.0, 5.0, 6.0]
    timing = harness.summarize(samples)
    assert (timing.median_ms, timing.p20_ms, timing.p80_ms) == (6.0, 3.0, 9.0)
    assert timing.repeats == len(samples)
    even = harness.summarize([30.0, 10.0, 20.0])  # linear interpolation between samples
    assert even.median_ms == 20.0 and even.p20_ms == pytest.approx(14.0)
    assert even.p80_ms == pytest.approx(26.0)
    with pytest.raises(ValueError, match="no timing samples"):
        harness.summarize([])


def test_repeat_count_fills_the_budget_within_bounds():
    plan = TimingPlan(warmup=1, min_repeats=3, max_repeats=5, budget_s=1.0)
    assert plan.repeats_for(0.3) == 4
    assert plan.repeats_for(0.001) == 5
    assert plan.repeats_for(10.0) == 3


def test_time_wall_reads_the_injected_clock_around_each_call():
    calls, call = counting_call()
    timing = harness.time_wall(call, PLAN, fake_clock([0.010, 0.030, 0.020]))
    assert len(calls) == 3
    assert timing.median_ms == pytest.approx(20.0)
    assert (timing.p20_ms, timing.p80_ms) == (pytest.approx(14.0), pytest.approx(26.0))


def test_run_case_warms_up_measures_memory_then_times():
    calls, call = counting_call()
    case = Case("noop", "python", "1", 1, make=lambda: call, flop=1e9)
    result = harness.run_case(case, PLAN, fake_clock([0.004, 0.002, 0.003]))
    assert result.status == "ok"
    assert len(calls) == PLAN.warmup + 1 + 3  # warm-up, memory call, timed calls
    assert result.timing.median_ms == pytest.approx(3.0)
    if harness.cpu_memory_unsupported() is None:
        assert result.peak_mem_mb is not None and result.peak_mem_mb >= 0


def test_run_case_reports_failures_and_skips_instead_of_raising():
    def explode():
        raise RuntimeError("out of memory: tried to allocate 9 GB")

    failed = harness.run_case(Case("noop", "broken", "1", 1, make=lambda: explode), PLAN)
    assert failed.status == "error" and "out of memory" in failed.note
    assert failed.timing is None
    skipped = harness.run_case(Case("noop", "absent", "1", 1, make=None, skip_reason="no GPU"), PLAN)
    assert (skipped.status, skipped.note) == ("skipped", "no GPU")


@pytest.mark.skipif(harness.cpu_memory_unsupported() is not None,
                    reason="peak RSS cannot be reset on this machine")
def test_rounds_interleave_the_timed_calls_of_every_case():
    log = []
    plan = TimingPlan(warmup=1, min_repeats=4, max_repeats=4, budget_s=1.0)

    def make(name):
        return lambda: (lambda: log.append(name))

    def explode():
        raise RuntimeError("compiler error")

    calls_made = itertools.count()

    def fails_in_round_two():
        if next(calls_made) == 3:  # the warm-up and round 1's two calls pass
            raise RuntimeError("lost the device")

    cases = [Case("op", "a", "1", 1, make=make("a")), Case("op", "b", "1", 1, make=make("b")),
             Case("op", "gone", "1", 1, make=None, skip_reason="no GPU"),
             Case("op", "broken", "1", 1, make=lambda: explode),
             Case("op", "flaky", "1", 1, make=lambda: fails_in_round_two)]
    results = harness.run_cases_in_rounds(cases, plan, rounds=2, measure_memory=False)
    assert [r.status for r in results] == ["ok", "ok", "skipped", "error", "error"]
    assert "compiler error" in results[3].note and "lost the device" in results[4].note
    # warm-up a, b; then two rounds of 4 / 2 = 2 timed calls each, a before b in each round
    assert "".join(log) == "ab" + "aabb" + "aabb"
    assert results[0].timing.repeats == results[1].timing.repeats == 4
    assert harness.round_plan(plan, 3).min_repeats == 2 and harness.round_plan(plan, 8).max_repeats == 1


def test_peak_memory_sees_a_call_that_touches_64_mb_and_not_a_noop():
    size_mb = 64

    def allocate():
        np.ones(int(size_mb * harness.MB) // 8)  # written, so every page becomes resident

    for _ in range(2):  # a repeated call is seen again: freed pages do not hide it
        touched = harness.peak_memory_mb(allocate, "cpu")
        assert size_mb * 0.9 <= touched <= size_mb * 2
    assert harness.peak_memory_mb(lambda: None, "cpu") < 16  # the peak was reset


def results_for(medians_ms: dict[str, float | None]) -> list[Result]:
    """A group of one op and shape: first provider the baseline; None: skipped."""
    results = []
    for index, (provider, median) in enumerate(medians_ms.items()):
        case = Case("op", provider, "8x100", 8, make=None, flop=2e9, bytes=1e8,
                    baseline=index == 0)
        if median is None:
            results.append(Result(case, status="skipped", note="unavailable"))
        else:
            results.append(Result(case, Timing(median, median * 0.9, median * 1.1, 5), 12.5))
    return results


def test_rows_carry_ratio_to_baseline_and_roofline_shares():
    rows = report.build_rows(results_for({"eager": 20.0, "fused": 5.0, "gpu": None}), FAKE_MACHINE)
    eager, fused, gpu = rows
    assert fused["ratio_to_baseline"] == pytest.approx(4.0)
    assert eager["ratio_to_baseline"] == pytest.approx(1.0)
    assert fused["baseline"] == "eager"
    assert fused["gflops"] == pytest.approx(2e9 / 5e-3 / 1e9)
    assert fused["pct_of_peak"] == pytest.approx(100 * fused["gflops"] / 100.0)
    assert fused["gbps"] == pytest.approx(1e8 / 5e-3 / 1e9)
    assert fused["pct_of_bandwidth"] == pytest.approx(100 * fused["gbps"] / 10.0)
    assert gpu["status"] == "skipped" and gpu["ratio_to_baseline"] is None
    assert all(set(row) == set(report.ROW_FIELDS) for row in rows)


def test_json_report_has_machine_and_rows_with_the_documented_fields(tmp_path):
    rows = report.build_rows(results_for({"eager": 20.0, "fused": 5.0}), FAKE_MACHINE)
    path = tmp_path / "bench.json"
    report.write_json(path, rows, FAKE_MACHINE, {"suites": ["op"]})
    data = json.loads(path.read_text())
    assert data["machine"] == FAKE_MACHINE
    required = {"op", "provider", "shape", "median_ms", "p20_ms", "p80_ms", "ratio_to_baseline",
                "gflops", "pct_of_peak", "gbps", "peak_mem_mb"}
    assert len(data["rows"]) == 2 and all(required <= set(row) for row in data["rows"])
    assert report.load_json(path)["rows"] == data["rows"]
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a dlr-bench JSON report"):
        report.load_json(tmp_path / "other.json")


def test_markdown_has_the_header_and_one_table_line_per_row():
    rows = report.build_rows(results_for({"eager": 20.0, "fused": 5.0, "gpu": None}), FAKE_MACHINE)
    text = report.to_markdown(rows, FAKE_MACHINE)
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(rows)
    assert "4.00x eager" in table[3] and "skipped: unavailable" in table[4]
    assert "test cpu" in text
    assert "4.00x eager" in report.format_table(rows, FAKE_MACHINE)


def test_compare_flags_slower_and_missing_rows_beyond_the_threshold():
    old_rows = report.build_rows(results_for({"eager": 20.0, "fused": 5.0, "gpu": 1.0}),
                                 FAKE_MACHINE)
    old = report.to_json(old_rows, FAKE_MACHINE, {})
    new_rows = report.build_rows(results_for({"eager": 10.0, "fused": 6.0, "gpu": None}),
                                 FAKE_MACHINE)
    text, regressions = report.compare(old, new_rows, FAKE_MACHINE, fail_pct=10)
    assert [r["provider"] for r in regressions] == ["fused", "gpu"]  # 20 % slower; now skipped
    assert "2.00" in text  # eager: old / new
    _, regressions = report.compare(old, new_rows, FAKE_MACHINE, fail_pct=25)
    assert [r["provider"] for r in regressions] == ["gpu"]
    text, regressions = report.compare(old, new_rows, {**FAKE_MACHINE, "allocator": "tcmalloc"})
    assert regressions == [] and "different setup" in text and "tcmalloc" in text


@pytest.fixture
def trivial_suite(monkeypatch):
    """``dlr-bench trivial``: a registered suite of two providers of a sum; tiny ceilings."""
    def cases(quick):
        data = np.ones(10_000)
        return [Case("sum", "numpy", "10000", 1, make=lambda: data.sum, flop=1e4, baseline=True),
                Case("sum", "python", "10000", 1, make=lambda: lambda: sum(data), flop=1e4)]

    monkeypatch.setitem(cli.SUITES, "trivial", "a sum, for the tests")
    monkeypatch.setattr(cli, "load_suite", lambda name: cases)
    monkeypatch.setitem(machine.CEILING_SIZES, "cpu", {"matmul_n": 64, "copy_mb": 1})
    monkeypatch.setenv(harness.BENCH_DEVICE_ENV, "cpu")


def test_cli_writes_every_output_and_fails_only_on_regression(trivial_suite, tmp_path, capsys):
    out = {name: tmp_path / name for name in ("run.json", "run.md", "run.png")}
    assert cli.main(["trivial", "--quick", "--json", str(out["run.json"]), "--markdown",
                     str(out["run.md"]), "--plot", str(out["run.png"])]) == 0
    data = report.load_json(out["run.json"])
    assert [row["provider"] for row in data["rows"]] == ["numpy", "python"]
    ceilings = data["machine"]
    assert ceilings["matmul_peak_gflops"] == max(ceilings["matmul_peak_gflops_start"],
                                                 ceilings["matmul_peak_gflops_end"]) > 0
    assert data["run"]["quick"] is True and data["run"]["rounds"] == 1
    assert out["run.md"].read_text().count("| sum |") == 2
    assert out["run.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "speed-up" in capsys.readouterr().out

    assert cli.main(["trivial", "--quick", "--compare", str(out["run.json"]),
                     "--fail-if-slower", "1e9"]) == 0
    for row in data["rows"]:
        row["median_ms"] /= 1e6  # an impossibly fast old run: every row regressed
    faster = tmp_path / "faster.json"
    faster.write_text(json.dumps(data))
    assert cli.main(["trivial", "--quick", "--compare", str(faster),
                     "--fail-if-slower", "50"]) == 1
    with pytest.raises(SystemExit):
        cli.main(["trivial", "--fail-if-slower", "5"])
    with pytest.raises(SystemExit):
        cli.main(["trivial", "--rounds", "0"])
    assert cli.main(["trivial", "--quick", "--rounds", "3", "--json", str(out["run.json"])]) == 0
    data = report.load_json(out["run.json"])
    assert data["run"]["rounds"] == 3 and all(row["status"] == "ok" for row in data["rows"])


def test_dlr_suite_cases_have_one_baseline_per_group_and_run_at_a_small_size():
    all_cases = suite_dlr.cases(quick=True)
    groups = {}
    for case in all_cases:
        groups.setdefault((case.op, case.shape), []).append(case)
    assert all(sum(c.baseline for c in group) == 1 for group in groups.values())
    fwd, fwd_bwd = (next(c for c in all_cases if c.op == op) for op in ("dlr_fwd", "dlr_fwd_bwd"))
    assert fwd_bwd.flop == suite_dlr.BACKWARD_FACTOR * fwd.flop

    small = suite_dlr.PAPER.receptive_field + 3 * suite_dlr.PAPER.pool
    results = [harness.run_case(Case("dlr_fwd_bwd", p.name, f"2x{small}", 2,
                                     make=lambda p=p: suite_dlr.make_call(p, 2, small, True, "cpu"),
                                     baseline=p.name == "eager",
                                     skip_reason=suite_dlr.availability_reason(p, "cpu", True)),
                                TimingPlan(warmup=1, min_repeats=1, max_repeats=1, budget_s=0))
               for p in suite_dlr.providers_on("cpu") if p.name != "compile"]
    rows = report.build_rows(results, FAKE_MACHINE)
    assert rows[0]["status"] == "ok" and rows[0]["ratio_to_baseline"] == pytest.approx(1.0)
    assert all(row["status"] in ("ok", "skipped") for row in rows), rows
