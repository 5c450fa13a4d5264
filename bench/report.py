"""Rows from results, and every output of dlr-bench: terminal table, JSON, markdown, plot,
comparison with an earlier JSON.

A row is a flat dict (`ROW_FIELDS`). ``ratio_to_baseline`` is a speed-up: the baseline
provider's median divided by this row's median, both measured in this run (> 1: faster than
the baseline). ``gflops`` / ``gbps`` divide the case's FLOP / byte count by the median time;
``pct_of_peak`` / ``pct_of_bandwidth`` relate them to the ceilings measured in the same run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .harness import Result
from .machine import CEILINGS, COMPARED_FIELDS, header_lines

ROW_FIELDS = ("op", "provider", "device", "shape", "batch", "median_ms", "p20_ms", "p80_ms",
              "repeats", "ratio_to_baseline", "baseline", "gflops", "pct_of_peak", "gbps",
              "pct_of_bandwidth", "peak_mem_mb", "allocator", "status", "note")
SCHEMA_VERSION = 1


def _group(row: dict) -> tuple:
    return row["op"], row["shape"], row["device"]


def build_rows(results: Iterable[Result], machine: dict) -> list[dict]:
    """One row per result, with ratios to the baseline of the same (op, shape, device)."""
    rows, baselines = [], {}
    peak = machine.get("matmul_peak_gflops")
    bandwidth = machine.get("copy_bandwidth_gbps")
    for result in results:
        case, timing = result.case, result.timing
        row = dict.fromkeys(ROW_FIELDS)
        row.update(op=case.op, provider=case.provider, device=case.device, shape=case.shape,
                   batch=case.batch, peak_mem_mb=result.peak_mem_mb,
                   allocator=machine.get("allocator"), status=result.status, note=result.note)
        if timing is not None:
            seconds = timing.median_ms / 1e3
            row.update(median_ms=timing.median_ms, p20_ms=timing.p20_ms, p80_ms=timing.p80_ms,
                       repeats=timing.repeats)
            if case.flop is not None:
                row["gflops"] = case.flop / seconds / 1e9
                row["pct_of_peak"] = 100 * row["gflops"] / peak if peak else None
            if case.bytes is not None:
                row["gbps"] = case.bytes / seconds / 1e9
                row["pct_of_bandwidth"] = 100 * row["gbps"] / bandwidth if bandwidth else None
        rows.append(row)
        if case.baseline:
            baselines[_group(row)] = row
    for row in rows:
        base = baselines.get(_group(row))
        if base is None:
            continue
        row["baseline"] = base["provider"]
        if row["median_ms"] and base["median_ms"]:
            row["ratio_to_baseline"] = base["median_ms"] / row["median_ms"]
    return rows


# --- formatting -------------------------------------------------------------------------------

def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ms(value) -> str:
    if value is None:
        return "-"
    return format(value, ".3g") if value < 100 else format(value, ".0f")


TABLE_COLUMNS = (
    # (header, cell)
    ("op", lambda r: r["op"]),
    ("shape", lambda r: r["shape"]),
    ("provider", lambda r: r["provider"]),
    ("median ms", lambda r: _ms(r["median_ms"])),
    ("p20-p80 ms", lambda r: "-" if r["p20_ms"] is None else f"{_ms(r['p20_ms'])}-{_ms(r['p80_ms'])}"),
    ("speed-up", lambda r: "-" if r["ratio_to_baseline"] is None
        else f"{r['ratio_to_baseline']:.2f}x {r['baseline']}"),
    ("GFLOP/s", lambda r: _fmt(r["gflops"], ".1f")),
    ("% peak", lambda r: _fmt(r["pct_of_peak"], ".1f")),
    ("GB/s", lambda r: _fmt(r["gbps"], ".3g")),
    ("peak MB", lambda r: _fmt(r["peak_mem_mb"], ".0f")),
    ("status", lambda r: r["status"] if r["status"] == "ok" else f"{r['status']}: {r['note']}"),
)


TEXT_HEADERS = ("op", "shape", "provider", "model", "status", "speed-up")
"""Left-aligned columns in the terminal; the others hold numbers."""


def _cells(rows: list[dict], columns: tuple) -> tuple[list[str], list[list[str]]]:
    headers = [header for header, _ in columns]
    return headers, [[cell(row) for _, cell in columns] for row in rows]


def format_table(rows: list[dict], machine: dict, columns: tuple = TABLE_COLUMNS,
                 lines: list[str] | None = None) -> str:
    """Terminal table of ``columns`` ((header, cell) pairs), the header ``lines`` first
    (default: the machine's ``header_lines``)."""
    headers, body = _cells(rows, columns)
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    numeric = {i for i, header in enumerate(headers) if header not in TEXT_HEADERS}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = (header_lines(machine) if lines is None else lines) + ["", line(headers),
                                                                  line(["-" * w for w in widths])]
    return "\n".join(out + [line(cells) for cells in body])


def to_markdown(rows: list[dict], machine: dict, columns: tuple = TABLE_COLUMNS,
                lines: list[str] | None = None) -> str:
    """The header ``lines`` (default: the machine's) as a list, then the table of ``columns``."""
    headers, body = _cells(rows, columns)
    lines = [f"- {text}" for text in (header_lines(machine) if lines is None else lines)] + [""]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def to_json(rows: list[dict], machine: dict, run: dict) -> dict:
    """``{"schema": 1, "machine": {...}, "run": {...}, "rows": [...]}``."""
    return {"schema": SCHEMA_VERSION, "machine": machine, "run": run, "rows": rows}


def write_json(path: str | Path, rows: list[dict], machine: dict, run: dict) -> None:
    Path(path).write_text(json.dumps(to_json(rows, machine, run), indent=1) + "\n")


def load_json(path: str | Path) -> dict:
    """A report written by ``--json``; raises ValueError naming what is missing otherwise."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "rows" not in data or "machine" not in data:
        raise ValueError(f"{path} is not a dlr-bench JSON report (needs 'machine' and 'rows'); "
                         f"write one with dlr-bench ... --json {path}")
    return data


def plot(rows: list[dict], path: str | Path, machine: dict) -> None:
    """Speed-up over the baseline per provider (bars) and batch size (x), one panel per op;
    the machine, allocator and commit in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r["ratio_to_baseline"] is not None]
    if not measured:
        raise ValueError("no row has a speed-up to plot (did the baselines run?)")
    ops = list(dict.fromkeys(r["op"] for r in measured))
    fig, axes = plt.subplots(1, len(ops), figsize=(5.5 * len(ops), 4), squeeze=False)
    for ax, op in zip(axes[0], ops):
        op_rows = [r for r in measured if r["op"] == op]
        batches = sorted({r["batch"] for r in op_rows}, key=lambda b: (b is None, b))
        providers = list(dict.fromkeys(r["provider"] for r in op_rows))
        width = 0.8 / len(providers)
        for k, provider in enumerate(providers):
            by_batch = {r["batch"]: r["ratio_to_baseline"] for r in op_rows
                        if r["provider"] == provider}
            xs = [i + (k - (len(providers) - 1) / 2) * width for i, b in enumerate(batches)
                  if b in by_batch]
            ys = [by_batch[b] for b in batches if b in by_batch]
            bars = ax.bar(xs, ys, width, label=provider)
            ax.bar_label(bars, labels=[f"{y:.1f}x" for y in ys], fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(batches)), [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"speed-up over {op_rows[0]['baseline']} (same run)")
        ax.set_title(f"{op} on {op_rows[0]['device']}")
        ax.legend(fontsize=8)
    fig.suptitle(f"{machine.get('cpu_model')}, {machine.get('torch_threads')} threads, "
                 f"{machine.get('allocator')}, {machine.get('gpu_name') or 'no GPU'}, "
                 f"torch {machine.get('torch')}, dlr-engine @ {machine.get('git_commit')}",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- comparison with an earlier run -----------------------------------------------------------

def _key(row: dict) -> tuple:
    return row["op"], row["provider"], row["shape"], row["device"]


def compare(old: dict, rows: list[dict], machine: dict,
            fail_pct: float | None = None) -> tuple[str, list[dict]]:
    """Per row measured in both runs: old and new median and ``old / new`` (> 1: faster now).

    Returns the text to print and the regressions (empty when ``fail_pct`` is None): rows more
    than ``fail_pct`` percent slower than in ``old``, or measured there but failed or missing
    now. Two runs also differ by machine drift; the text shows how the measured ceilings moved.
    """
    old_machine = old["machine"]
    old_rows = {_key(r): r for r in old["rows"] if r.get("median_ms")}
    new_rows = {_key(r): r for r in rows}
    lines, regressions = [], []
    different = [f"{field}: {old_machine.get(field)} -> {machine.get(field)}"
                 for field in COMPARED_FIELDS if machine.get(field) != old_machine.get(field)]
    if different:
        lines.append("warning: the old report ran on a different setup, so these ratios mix "
                     "setup and code changes: " + "; ".join(different))
    for ceiling in CEILINGS:
        before, now = old_machine.get(ceiling), machine.get(ceiling)
        if before and now:
            lines.append(f"machine drift: {ceiling} now / before = {now / before:.2f}")
    header = (f"{'op':12s} {'shape':12s} {'provider':10s} {'old ms':>9s} {'new ms':>9s} "
              f"{'old/new':>8s}")
    lines += [header, "-" * len(header)]
    for key, before in old_rows.items():
        op, provider, shape, _ = key
        start = f"{op:12s} {shape:12s} {provider:10s} {before['median_ms']:9.3g}"
        now = new_rows.get(key)
        if now is None or not now.get("median_ms"):
            state = "missing" if now is None else f"{now['status']}: {now['note']}"
            lines.append(f"{start} {'-':>9s} {'-':>8s}  REGRESSION ({state})")
            regressions.append(before)
            continue
        slower_pct = 100 * (now["median_ms"] / before["median_ms"] - 1)
        flag = ""
        if fail_pct is not None and slower_pct > fail_pct:
            flag = f"  REGRESSION ({slower_pct:.0f}% slower > {fail_pct:g}%)"
            regressions.append(now)
        lines.append(f"{start} {now['median_ms']:9.3g} "
                     f"{before['median_ms'] / now['median_ms']:8.2f}{flag}")
    new_only = sum(key not in old_rows for key in new_rows)
    if new_only:
        lines.append(f"{new_only} rows of this run have no measured counterpart in the old report")
    return "\n".join(lines), regressions if fail_pct is not None else []
