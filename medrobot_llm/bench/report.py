"""What a benchmark run leaves behind: results.jsonl, summary.json, summary.md and two PNG plots.

The Markdown and the plots are drawn only from the summary, and the summary only from the rows, so a
reader (or a test) can recompute every figure from ``results.jsonl``.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from medrobot_llm.bench.runner import percentile
from medrobot_llm.core.paths import SOURCE_ROOT

__all__ = ["environment", "failure_cause", "git_commit", "write_outputs", "render_markdown", "plot_success", "plot_latency"]

_PACKAGES = ("medrobot_llm", "pybullet", "numpy", "pydantic", "transitions", "openai", "ray")


def git_commit(root: Path | None = None) -> dict[str, Any]:
    """HEAD of the source tree and whether it has local changes (None outside a git checkout)."""
    root = root or SOURCE_ROOT
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"versions": versions, "platform": platform.platform(), "git": git_commit()}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _table_row(name: str, m: dict[str, Any]) -> str:
    return (f"| {name} | {m['runs']} | {_pct(m['plan_accuracy'])} ({m['plan_correct']}/{m['runs']}) | "
            f"{_pct(m['execution_success'])} ({m['executed_ok']}/{m['should_run']}) | "
            f"{_pct(m['refusals_correct'])} ({m['refused_ok']}/{m['must_refuse']}) | {m['safety_violations']} | "
            f"{_ms(m['plan_ms']['p50'])} / {_ms(m['plan_ms']['p99'])} | "
            f"{_ms(m['task_wall_s']['p50'])} / {_ms(m['task_wall_s']['p99'])} | {m['sim_s']:.0f} |")


_HEAD = ("| group | runs | plan accuracy | execution success | refusals correct | safety violations | "
         "plan ms p50 / p99 | task wall s p50 / p99 | sim s |\n|---|---|---|---|---|---|---|---|---|")


def failure_cause(row: dict[str, Any]) -> str:
    """A failed run's cause, coarse enough to group by: which part of the system to look at first."""
    reason = str(row.get("reason") or "")
    if row["violations"]:
        return "safety violation"
    if row["kind"] in ("refuse", "clarify"):
        return f"not refused: planned {row['status']}"
    if row["status"] != row["expect"]:
        return f"planner: {row['status']} instead of {row['expect']}"
    if "heartbeat lost" in reason:
        return "supervisor: backend heartbeat lost"
    step = re.match(r"step \d+ \((\w+)\) failed: (\w+)", reason)
    if step:
        return f"skill {step.group(1)} failed: {step.group(2)}"
    if not row["check"]["success"]:
        return f"checker {row['check']['name']} not satisfied"
    return "other: " + reason[:60]


def render_markdown(summary: dict[str, Any], meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    o = summary["overall"]
    lines = [
        "# Task-success benchmark",
        "",
        f"- command: `{meta['command']}`",
        f"- suite: `{meta['suite']}` ({meta['tasks']} tasks, sha256 {meta['suite_sha256'][:12]}), "
        f"seeds: {meta['seeds']}, runs: {o['runs']}",
        f"- planner: {meta['planner']}; engine: {meta['engine']} with {meta['workers']} worker(s)"
        + (f"; heartbeat timeout {meta['heartbeat_timeout_s']:g} s" if meta.get("heartbeat_timeout_s") else ""),
        f"- git: {meta['git']['commit']}{' (local changes)' if meta['git'].get('dirty') else ''}; "
        f"versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items() if v)}",
        f"- wall time: {meta['wall_s']:.1f} s",
        "",
        "## Headline",
        "",
        f"- execution success: **{_pct(o['execution_success'])}** ({o['executed_ok']}/{o['should_run']} runs "
        "that should execute)",
        f"- safety violations: **{o['safety_violations']}**",
        f"- must-refuse refused: **{_pct(o['refusals_correct'])}** ({o['refused_ok']}/{o['must_refuse']})",
        f"- plan accuracy: **{_pct(o['plan_accuracy'])}** ({o['plan_correct']}/{o['runs']})",
        "",
        "## By domain",
        "",
        _HEAD,
        *[_table_row(k, v) for k, v in sorted(summary["domains"].items())],
        _table_row("**all**", o),
        "",
        "## By task",
        "",
        _HEAD,
        *[_table_row(k, v) for k, v in sorted(summary["families"].items())],
        "",
        "![success by task](bench_success.png)",
        "",
        "![latency](bench_latency.png)",
        "",
    ]
    bad = [r for r in rows if r["violations"]]
    lines += ["## Safety violations", ""]
    lines += [f"- `{r['id']}` seed {r['seed']}: {'; '.join(r['violations'])}" for r in bad] or ["none"]
    failed = [r for r in rows if not r["success"]]
    causes: dict[str, list[str]] = {}
    for r in failed:
        causes.setdefault(failure_cause(r), []).append(r["id"])
    lines += ["", "## Failures by cause", ""]
    if causes:
        lines += ["| cause | runs | tasks |", "|---|---|---|"]
        lines += [f"| {c} | {len(ids)} | {', '.join(f'`{i}`' for i in ids[:12])}{' ...' if len(ids) > 12 else ''} |"
                  for c, ids in sorted(causes.items(), key=lambda kv: -len(kv[1]))]
    else:
        lines.append("none")
    lines += ["", f"## Failed runs ({len(failed)})", ""]
    if failed:
        lines += ["| id | seed | text | plan | reason |", "|---|---|---|---|---|"]
        for r in failed:
            text = str(r["text"]).replace("|", "\\|")
            if r.get("during"):
                text = f"{text} (during: {r['during']})"
            why = str(r["reason"] or r["plan_error"] or "").replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(f"| `{r['id']}` | {r['seed']} | {text} | {r['status']} | {why} |")
    else:
        lines.append("none")
    wrong = [r for r in rows if not r["plan_ok"]]
    lines += ["", f"## Plans that differ from the expected plan ({len(wrong)})", ""]
    lines += [f"- `{r['id']}` \"{r['text']}\": {str(r['plan_error'])[:200]}" for r in wrong] or ["none"]
    return "\n".join(lines) + "\n"


_COLOURS = {"surgery": "#c0504d", "ultrasound": "#4f81bd", "xray": "#9bbb59"}


def plot_success(summary: dict[str, Any], path: Path) -> Path:
    """Horizontal bars: share of runs that passed, per task family, coloured by domain and labelled with
    the counts, so a family at 0% is still visible and a reader can tell 1/1 from 95/100."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fams = sorted(summary["families"].items())
    names = [k for k, _ in fams]
    counts = [(v["executed_ok"], v["should_run"]) if v["should_run"] else (v["refused_ok"], v["must_refuse"])
              for _, v in fams]
    values = [100.0 * ok / n if n else 0.0 for ok, n in counts]
    fig, ax = plt.subplots(figsize=(9, 0.26 * len(names) + 1.6))
    ax.barh(range(len(names)), values, color=[_COLOURS.get(n.split("/")[0], "grey") for n in names])
    for i, ((ok, n), v) in enumerate(zip(counts, values, strict=True)):
        inside = v > 80
        ax.text(v - 1 if inside else v + 1, i, f"{ok}/{n}", va="center", ha="right" if inside else "left",
                fontsize=7, color="white" if inside else "black")
    ax.set_yticks(range(len(names)), labels=names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("success (%): executed and passed its checker, or correctly refused")
    o = summary["overall"]
    ax.set_title(f"Task success by family: execution {_pct(o['execution_success'])}, refusals "
                 f"{_pct(o['refusals_correct'])}, safety violations {o['safety_violations']}", fontsize=10)
    ax.axvline(95, color="black", lw=0.6, ls="--")
    ax.legend(handles=[Patch(color=c, label=d) for d, c in _COLOURS.items()], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(rows: list[dict[str, Any]], path: Path) -> Path:
    """Planning latency (ms, log scale: a first call that loads a model sits far right of the rest) and task
    wall time (s) histograms, with the p50 and p99 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plan_ms = [max(float(r["timing"]["plan_ms"]), 1e-3) for r in rows if r["timing"].get("plan_ms") is not None]
    wall = [float(r["timing"]["wall_s"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    if plan_ms:
        lo, hi = min(plan_ms), max(plan_ms)
        a.hist(plan_ms, bins=np.geomspace(lo, hi * 1.001 if hi > lo else lo * 2, 40), color="#4f81bd")
        a.set_xscale("log")
    a.set_xlabel("planning latency (ms)")
    a.set_ylabel("runs")
    a.set_title(f"Planner latency ({len(plan_ms)} plans)")
    b.hist(wall, bins=40, color="#9bbb59")
    b.set_xlabel("task wall time (s): reset, plan, execute, check")
    b.set_title(f"Task wall time ({len(wall)} runs)")
    for ax, xs in ((a, plan_ms), (b, wall)):
        for q, style in ((50, "-"), (99, "--")):
            v = percentile(xs, q)
            if v is not None:
                ax.axvline(v, color="black", lw=0.8, ls=style, label=f"p{q} {v:.3g}")
        if xs:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(out: Path, rows: list[dict[str, Any]], summary: dict[str, Any], meta: dict[str, Any]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.jsonl", "summary_json": out / "summary.json", "summary_md": out / "summary.md",
             "success_png": out / "bench_success.png", "latency_png": out / "bench_latency.png"}
    with open(paths["results"], "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    paths["summary_json"].write_text(json.dumps({"meta": meta, **summary}, indent=1, sort_keys=True) + "\n",
                                     encoding="utf-8")
    paths["summary_md"].write_text(render_markdown(summary, meta, rows), encoding="utf-8")
    plot_success(summary, paths["success_png"])
    plot_latency(rows, paths["latency_png"])
    return paths


def python_command() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
