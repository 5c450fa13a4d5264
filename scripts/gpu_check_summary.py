"""The short table ``scripts/gpu_check.sh`` prints last, and the JSON it keeps.

    python scripts/gpu_check_summary.py BENCH_JSON ERRORS_JSONL OUT_JSON [--commit SHA]

BENCH_JSON: ``dlr-bench ... --json`` output; ERRORS_JSONL: the lines
``tests/test_gpu_real_shapes.py`` appends to ``$DLR_GPU_CHECK_JSON``. Prints, per op and
shape, each provider's microseconds per clip, its ratio to the baseline (x eager / x torch /
x librosa) and peak memory; then the real-shape errors against the CPU float64 reference with
the tolerance each row was held to. Writes OUT_JSON: the bench report plus ``commit`` and
``real_shape_errors`` (what ``bench/results/<gpu-name>.json`` holds).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ERROR_KEYS = ("out", "grad_x", "grad_weight", "grad_bias")


def read_errors(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def timing_lines(rows: list[dict]) -> list[str]:
    lines = [f"{'op':16s} {'shape':12s} {'provider':12s} {'us/clip':>9s} {'ratio':>14s} "
             f"{'peak MB':>9s}  status"]
    for row in rows:
        batch = row.get("batch") or 1
        per_clip = "-" if row.get("median_ms") is None else f"{1e3 * row['median_ms'] / batch:.1f}"
        ratio = row.get("ratio_to_baseline")
        ratio = "-" if ratio is None else f"{ratio:.2f}x {row.get('baseline') or ''}"
        memory = "-" if row.get("peak_mem_mb") is None else f"{row['peak_mem_mb']:.0f}"
        status = row["status"] + (f": {row['note'][:60]}" if row.get("note") else "")
        lines.append(f"{row['op']:16s} {row['shape']:12s} {row['provider']:12s} {per_clip:>9s} "
                     f"{ratio:>14s} {memory:>9s}  {status}")
    return lines


def error_lines(errors: list[dict]) -> list[str]:
    lines = [f"{'backend':8s} {'precision':10s} {'batch':>5s} "
             + " ".join(f"{k:>11s}" for k in ERROR_KEYS) + "  tolerance"]
    for row in errors:
        name, precision, tolerance = row["backend"], row["precision"], row["tolerance"]
        measured = [row[k] for k in ERROR_KEYS if k in row]  # mel rows: the output only
        verdict = "ok" if max(measured) < tolerance else "FAILS"
        lines.append(f"{name:8s} {precision:10s} {row['batch']:>5d} "
                     + " ".join(f"{row[k]:11.2e}" if k in row else f"{'-':>11s}"
                                for k in ERROR_KEYS)
                     + f"  {tolerance:.0e} {verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_json", type=Path)
    parser.add_argument("errors_jsonl", type=Path)
    parser.add_argument("out_json", type=Path)
    parser.add_argument("--commit", default=None, help="the commit measured")
    args = parser.parse_args(argv)
    report = json.loads(args.bench_json.read_text()) if args.bench_json.exists() else {
        "machine": {}, "rows": []}
    errors = read_errors(args.errors_jsonl)
    report.update(commit=args.commit, real_shape_errors=errors)
    args.out_json.write_text(json.dumps(report, indent=1) + "\n")
    machine = report.get("machine", {})
    print(f"\n=== gpu_check summary: {machine.get('gpu_name') or machine.get('device') or '?'}, "
          f"commit {args.commit or '?'} ===")
    print("\n".join(timing_lines(report["rows"]) if report["rows"] else ["(no timings)"]))
    print()
    print("\n".join(error_lines(errors) if errors else ["(no real-shape errors recorded)"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
