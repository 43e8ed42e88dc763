"""What a run of the notebooks reports: one record per notebook, the summary table and file, and the
section of the docs it updates."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtkit.util.jsonable import to_plain
from mtkit.util.report import machine_line, replace_marked_section

__all__ = ['time_limit_failures', 'NotebookRun', 'environment_line', 'summary_table', 'write_summary', 'update_docs']


# ---------------------------------------------------------------------------------------------- running
@dataclass
class NotebookRun:
    name: str
    status: str  # "ok" | "failed" | "skipped"
    seconds: float
    parameters: dict
    output: str  # the executed notebook
    results: dict | None = None  # the notebook's JSON
    error: str | None = None
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- summaries
def _format_metric(value) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _metrics_text(results: dict | None, limit: int = 8) -> str:
    if not results:
        return ""
    items = list(results.get("metrics", {}).items())
    text = ", ".join(f"{k} {_format_metric(v)}" for k, v in items[:limit])
    return text + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def environment_line(runs: list[NotebookRun]) -> str:
    devices = sorted({(r.results or {}).get("device", "?") for r in runs if r.results})
    return machine_line() + f"; notebooks ran on: {', '.join(devices) or '?'}"


def _cpu_text(value) -> str:
    return "" if value is None else f"{value:.1f}"


def summary_table(runs: list[NotebookRun]) -> str:
    """Runtime (wall clock) and the kernel's CPU time per notebook: on a busy machine the runtime grows while the
    CPU time stays about the same, so the pair tells a slow notebook from a loaded machine."""
    lines = ["| notebook | status | runtime (s) | cpu (s) | data | key metrics |", "|---|---|---:|---:|---|---|"]
    for r in runs:
        data = (r.results or {}).get("data", "")
        metrics = _metrics_text(r.results) if r.status == "ok" else (r.error or "")
        lines.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {_cpu_text(r.extra.get('cpu_seconds'))} | {data} "
                     f"| {metrics.replace('|', '/')} |")
    total = sum(r.seconds for r in runs)
    cpus = [r.extra.get("cpu_seconds") for r in runs]
    cpu_total = _cpu_text(sum(cpus)) if cpus and None not in cpus else ""
    lines.append(f"| **total** | {sum(r.status == 'ok' for r in runs)}/{len(runs)} ok | {total:.1f} | {cpu_total} | | |")
    return "\n".join(lines)


def write_summary(runs: list[NotebookRun], out: str | Path, profile: str, data_dir: str | None,
                  max_seconds: float | None = None) -> tuple[Path, Path]:
    out = Path(out)
    over = time_limit_failures(runs, max_seconds)
    record = {
        "profile": profile,
        "data_dir": data_dir or "demo",
        "environment": environment_line(runs),
        "total_seconds": round(sum(r.seconds for r in runs), 2),
        "max_seconds": max_seconds,
        "over_budget": over,
        "notebooks": [{"name": r.name, "status": r.status, "seconds": round(r.seconds, 2),
                       "cpu_seconds": None if r.extra.get("cpu_seconds") is None else round(r.extra["cpu_seconds"], 2),
                       "load_average": r.extra.get("load"),
                       "parameters": r.parameters, "output": r.output, "error": r.error,
                       "results": r.results} for r in runs],
    }
    json_path = out / "summary.json"
    json_path.write_text(json.dumps(to_plain(record, nonfinite="null"), indent=2) + "\n", encoding="utf-8")
    md = [f"# Notebook run: profile `{profile}`, data `{'the CS224N files' if data_dir else 'demo set'}`", "",
          f"Environment: {record['environment']}.", "", summary_table(runs), ""]
    if max_seconds is not None:
        md += [f"Budget: {max_seconds:g} s per notebook; "
               + ("every notebook is within it." if not over else "over it: " + "; ".join(over) + "."), ""]
    md_path = out / "summary.md"
    md_path.write_text("\n".join(md), encoding="utf-8")
    return json_path, md_path


def update_docs(doc: str | Path, section: str, runs: list[NotebookRun], profile: str, data_dir: str | None,
                command: str) -> Path:
    """Write the summary table into ``doc`` between ``<!-- runner:begin SECTION -->`` and
    ``<!-- runner:end SECTION -->`` (appended when the markers are not there yet)."""
    begin, end = f"<!-- runner:begin {section} -->", f"<!-- runner:end {section} -->"
    data = "the CS224N files" if data_dir else "mtkit's demo set"
    block = "\n".join([
        f"### {section}",
        "",
        f"Profile `{profile}` on {data}; written by `{command}` on {time.strftime('%Y-%m-%d')}.",
        f"Environment: {environment_line(runs)}.",
        "",
        summary_table(runs),
    ])
    return replace_marked_section(doc, begin, end, block, "# Notebooks: runtimes and key metrics")


def time_limit_failures(runs: list[NotebookRun], max_seconds: float | None) -> list[str]:
    """One message per notebook that ran longer than ``max_seconds`` (none when the budget is None)."""
    if max_seconds is None:
        return []
    return [f"{r.name} took {r.seconds:.1f} s, over the budget of {max_seconds:g} s per notebook"
            + (" (it was retried after a timeout)" if r.extra.get("retried") else "")
            for r in runs if r.status != "skipped" and r.seconds > max_seconds]
