"""``dlr-bench``: throughput of dlr-engine's ops per provider, against the baselines, measured
in one process run, with this machine's ceilings measured in the same run.

    dlr-bench dlr --quick --json out.json --markdown out.md --plot out.png
    dlr-bench dlr,mel,tempogram --device cuda --json gpu.json
    dlr-bench all --compare old.json --fail-if-slower 10
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Callable

from . import harness, machine, report

SUITES: dict[str, str] = {
    "dlr": "the DLR op: eager torch, torch.compile and the fused backends, fwd and fwd+bwd",
    "mel": "dB mel spectrogram (DLR geometry): plain torch, the engine's backends, librosa",
    "tempogram": "tempogram, presets librosa and dlr: the engine's batched module vs librosa",
    "extract": "corpus to DLR features: the engine vs librosa.load + eager model vs decode floor",
    "engine": "the engine's fixed costs: decode pool start/stop, workers=2 vs 0, a rerun with "
              "nothing to do over 10k (quick) / 100k files",
    "inference": "model forward per family, batch 8 x 30 s: eager vs the fused inference form",
    "models": "held-out style / tempo-class accuracy of every registry model and the FCN inputs, "
              "trained on the synthetic corpus (minutes; not part of all)",
}
"""Registered suites, name -> description. The cases of suite ``name`` come from
``cases(quick: bool) -> list[Case]`` in ``bench/suite_<name>.py``; registering a new suite is
one line here (and one in ``TRAINING_SUITES`` for a suite that trains models)."""
TRAINING_SUITES = ("models",)
"""Suites that train and evaluate models instead of timing cases: ``bench/suite_<name>.py`` has
``run(quick) -> (rows, header)``, ``TABLE_COLUMNS`` and ``header_lines(header)``. ``all``,
``--plot`` and ``--compare`` leave them out (they take minutes and time nothing)."""


def suite_names(text: str) -> list[str]:
    """The ``suite`` argument: one name, names joined by commas, or ``all`` (every suite but
    the training ones, which run alone)."""
    if text == "all":
        return [n for n in SUITES if n not in TRAINING_SUITES]
    names = text.split(",")
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown suite {', '.join(unknown)}; choose from "
                                         f"{', '.join(SUITES)} or all")
    if len(names) > 1 and set(names) & set(TRAINING_SUITES):
        raise argparse.ArgumentTypeError(f"{', '.join(TRAINING_SUITES)} trains models: run it "
                                         f"alone")
    return names


def load_suite(name: str) -> Callable[[bool], list[harness.Case]]:
    return importlib.import_module(f"{__package__}.suite_{name}").cases


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlr-bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="suites:\n" + "\n".join(f"  {name:10s} {text}" for name, text in SUITES.items())
        + "\n  all        every suite above but " + ", ".join(TRAINING_SUITES) + ", in one run")
    parser.add_argument("suite", type=suite_names,
                        help="a suite, several joined by commas (dlr,mel), or all")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and the smaller sizes of each suite")
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        help=f"device of the cases (default: cuda when torch sees a GPU; "
                             f"${harness.BENCH_DEVICE_ENV} works too)")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="spread each suite's timed calls over N rounds that time every "
                             "case in turn, so that a machine whose speed drifts (a shared "
                             "host) slows every provider alike (default 1: each case's calls "
                             "in one block)")
    parser.add_argument("--json", metavar="PATH", help="write {machine, run, rows} as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the header and table")
    parser.add_argument("--plot", metavar="PNG", help="speed-up per provider and batch size")
    parser.add_argument("--compare", metavar="OLD_JSON",
                        help="print old / new median per row of an earlier --json report")
    parser.add_argument("--fail-if-slower", metavar="PCT", type=float,
                        help="with --compare: exit 1 when a row is more than PCT %% slower "
                             "than in OLD_JSON, or failed / missing now")
    return parser


def _progress(result: harness.Result, seconds: float | None) -> None:
    """One case's line on stderr; seconds: how long it took (None: interleaved in rounds)."""
    case = result.case
    shown = (f"{result.timing.median_ms:.3g} ms median" if result.timing
             else f"{result.status}: {result.note}")
    took = "" if seconds is None else f" ({seconds:.1f} s)"
    print(f"  {case.op} {case.shape} {case.provider}: {shown}{took}", file=sys.stderr, flush=True)


def run(names: list[str], quick: bool, rounds: int = 1) -> tuple[list[dict], dict]:
    """Every case of the named suites (with ``rounds`` > 1 each suite's cases interleaved:
    ``harness.run_cases_in_rounds``), between two measurements of the machine's ceilings;
    returns (rows, machine header). Progress goes to stderr."""
    plan = harness.QUICK if quick else harness.FULL
    device = harness.bench_device()
    header = machine.describe(device)
    start = machine.measure_ceilings(device)
    for line in machine.header_lines({**header, **machine.ceilings(device, start, start)}):
        print(line, file=sys.stderr)
    results = []
    for name in names:
        cases = load_suite(name)(quick)
        if rounds > 1:
            suite_results = harness.run_cases_in_rounds(cases, plan, rounds)
            for result in suite_results:
                _progress(result, None)
            results += suite_results
            continue
        for case in cases:
            started = time.perf_counter()
            result = harness.run_case(case, plan)
            _progress(result, time.perf_counter() - started)
            results.append(result)
    header.update(machine.ceilings(device, start, machine.measure_ceilings(device)),
                  load_average_end=machine.load_average())
    return report.build_rows(results, header), header


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fail_if_slower is not None and not args.compare:
        parser.error("--fail-if-slower needs --compare OLD_JSON")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    for path in (args.json, args.markdown, args.plot):  # fail before measuring, not after
        if path and not Path(path).resolve().parent.is_dir():
            parser.error(f"the folder of {path} does not exist; create it first")
    names = args.suite
    training = names[0] in TRAINING_SUITES
    if training and (args.plot or args.compare):
        parser.error(f"--plot and --compare compare timings; the {names[0]} suite times nothing")
    old = report.load_json(args.compare) if args.compare else None
    if args.device:
        os.environ[harness.BENCH_DEVICE_ENV] = args.device
    started = time.perf_counter()
    layout: tuple = ()
    if training:
        suite = importlib.import_module(f"{__package__}.suite_{names[0]}")
        rows, header = suite.run(args.quick)
        layout = (suite.TABLE_COLUMNS, suite.header_lines(header))
    else:
        rows, header = run(names, args.quick, args.rounds)
    run_info = {"suites": names, "quick": args.quick, "rounds": args.rounds,
                "argv": sys.argv[1:] if argv is None
                else list(argv), "seconds": round(time.perf_counter() - started, 1)}
    print(report.format_table(rows, header, *layout))
    if args.json:
        report.write_json(args.json, rows, header, run_info)
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(report.to_markdown(rows, header, *layout))
    if args.plot:
        report.plot(rows, args.plot, header)
    if old is None:
        return 0
    text, regressions = report.compare(old, rows, header, args.fail_if_slower)
    print("\n" + text)
    if regressions:
        print(f"\n{len(regressions)} regression(s) beyond {args.fail_if_slower:g}%",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
