"""
Turn the passes' JSON into results.json, results.md and ratios.png.

A *pass* is one interpreter at one pinning; it holds scenario results as
written by :meth:`ScenarioResult.to_json`. Ratios are always
``tunnypy ÷ contender`` in the scenario's own metric, so a latency ratio
below 1 and a throughput ratio above 1 both favour tunnypy; the chart
converts both to an *advantage* (above 1 = tunnypy better).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["evaluate_targets", "write_chart", "write_json", "write_markdown"]

Pass = dict[str, Any]
Result = dict[str, Any]

PINS = ("pinned", "unpinned")


def _row(result: Result, contender: str) -> dict[str, Any] | None:
    for row in result["rows"]:
        if row["contender"] == contender:
            return row  # type: ignore[no-any-return]
    return None


def _stat(row: dict[str, Any], key: str) -> float:
    if key == "median":
        return float(row["median"])
    return float(row["extra"][key])


def ratio(result: Result, contender: str, key: str = "median") -> float | None:
    """``tunnypy ÷ contender`` for *key* in *result*, or ``None`` if either is missing."""
    subject = _row(result, result["subject"])
    other = _row(result, contender)
    if subject is None or other is None:
        return None
    base = _stat(other, key)
    return _stat(subject, key) / base if base else None


def paired_ratio(subject: dict[str, Any], base: dict[str, Any]) -> float | None:
    """
    The median over rounds of ``subject ÷ base`` within each round, or None.

    Informational: the verdict is the ratio of the two medians. Within a
    round the contenders run one after the other, so a round-by-round ratio
    compares numbers taken seconds apart. When the machine changes speed
    part-way through a pass (this one has two speeds), the medians may come
    from different speeds and their ratio says more about the machine than
    about the contenders; the paired ratio does not.
    """
    ours: list[float] = subject["rounds"]
    theirs: list[float] = base["rounds"]
    if len(ours) != len(theirs) or not ours or not all(theirs):
        return None
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def evaluate_targets(result: Result) -> list[dict[str, Any]]:
    """Each target of *result* with its measured value, whether it passed, and its paired ratio."""
    out = []
    for target in result["targets"]:
        subject = _row(result, target["subject"])
        value: float | None
        paired: float | None = None
        if subject is None:
            value = None
        elif target["baseline"] is None:
            value = _stat(subject, target["key"])
        else:
            base = _row(result, target["baseline"])
            value = (
                None if base is None else _stat(subject, target["key"]) / _stat(base, target["key"])
            )
            if base is not None and target["key"] == "median":
                paired = paired_ratio(subject, base)
        if value is None:
            verdict = "n/a"
        elif (value <= target["bound"]) if target["op"] == "<=" else (value >= target["bound"]):
            verdict = "PASS"
        else:
            verdict = "FAIL"
        out.append({**target, "value": value, "verdict": verdict, "paired": paired})
    return out


def _key(result: Result) -> tuple[str, str]:
    return result["scenario"], result["variant"]


def write_json(path: Path, meta: dict[str, Any], passes: list[Pass]) -> None:
    for p in passes:
        for result in p["results"]:
            result["evaluated"] = evaluate_targets(result)
    path.write_text(
        json.dumps({"meta": meta, "passes": passes}, indent=2, ensure_ascii=False) + "\n"
    )


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    magnitude = abs(value)
    if magnitude >= 10_000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _load(p: Pass) -> str:
    """The load averages (1, 5, 15 min) when the pass began and ended, if recorded."""
    if "loadavg_start" not in p:
        return ""
    start, end = (" ".join(f"{x:.2f}" for x in p[k]) for k in ("loadavg_start", "loadavg_end"))
    return f", load average {start} at the start, {end} at the end"


def _by_version(passes: list[Pass]) -> dict[str, dict[str, Pass]]:
    versions: dict[str, dict[str, Pass]] = {}
    for p in passes:
        versions.setdefault(p["python"], {})[p["pin"]] = p
    return versions


def _results(p: Pass | None) -> dict[tuple[str, str], Result]:
    return {} if p is None else {_key(r): r for r in p["results"]}


def _ordered_keys(passes: Iterable[Pass]) -> list[tuple[str, str]]:
    keys: dict[tuple[str, str], None] = {}
    for p in passes:
        for result in p["results"]:
            keys[_key(result)] = None
    return list(keys)


def _extras(row: dict[str, Any] | None) -> dict[str, float]:
    return {} if row is None else dict(row["extra"])


def markdown(meta: dict[str, Any], passes: list[Pass]) -> str:
    """The Markdown report: a targets summary, then every row per interpreter."""
    versions = _by_version(passes)
    columns = [(v, pin) for v, pins in versions.items() for pin in PINS if pin in pins]
    lines = [
        "# tunnypy benchmark results",
        "",
        f"Generated {meta['generated']} by `{meta['command']}` "
        f"({'smoke' if meta['smoke'] else 'full'} sizes, {meta['rounds']} rounds per scenario) "
        f"on {meta['cpu']} ({meta['cpus']} CPUs); tunnypy {meta['tunnypy_commit']} when written "
        "(each pass below notes the tree it ran on).",
        "",
        "Every scenario runs its contenders interleaved in one process, rotating the order "
        "each round; the median is over rounds and the spread is the interquartile range "
        "(q1-q3) of the rounds. *pinned* runs under `taskset -c 0` (one CPU), *unpinned* "
        "on every CPU. **tunnypy ÷ this** is tunnypy's median over the row's, in the row's "
        "metric: below 1 is better for latency, time and memory, above 1 for throughput.",
        "",
        "## Targets",
        "",
        "The verdict is on the ratio of the medians. In brackets, for information, the "
        "*paired* ratio: the median over rounds of the ratio within each round, whose two "
        "numbers were taken seconds apart, so a change in the machine's speed part-way "
        "through a pass moves it less.",
        "",
        "| scenario | target | " + " | ".join(f"{v} {pin}" for v, pin in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for key in _ordered_keys(passes):
        first = next(
            _results(p)[key]
            for pins in versions.values()
            for p in pins.values()
            if key in _results(p)
        )
        for i, target in enumerate(first["targets"]):
            cells = []
            for v, pin in columns:
                result = _results(versions[v][pin]).get(key)
                if result is None:
                    cells.append("—")
                    continue
                evaluated = evaluate_targets(result)[i]
                mark = f"**{evaluated['verdict']}**"
                paired = evaluated["paired"]
                aside = "" if paired is None else f" ({_fmt(paired)})"
                cells.append(f"{_fmt(evaluated['value'])} {mark}{aside}")
            label = target["label"] + (" *(informational)*" if target["informational"] else "")
            lines.append(f"| {first['title']} | {label} | " + " | ".join(cells) + " |")
    for version, pins in versions.items():
        lines += ["", f"## Python {version}", ""]
        for pin, p in pins.items():
            lines.append(
                f"*{pin}: Python {p.get('python_full', version)}, pass finished "
                f"{p.get('finished', '(not recorded)')} after {p['elapsed_s']:.0f} s, "
                f"tunnypy {p.get('tunnypy_commit', '(not recorded)')}{_load(p)}.*"
            )
            lines.append("")
            if p.get("skipped"):
                skipped = "; ".join(f"{k}: {v}" for k, v in p["skipped"].items())
                lines.append(f"*{pin}: skipped contenders — {skipped}*")
                lines.append("")
        lines += [
            "| scenario | contender | unit | pinned median | pinned q1-q3 | unpinned median "
            "| unpinned q1-q3 | tunnypy ÷ this (pinned / unpinned) | extras (pinned / unpinned) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        pinned, unpinned = _results(pins.get("pinned")), _results(pins.get("unpinned"))
        for key in _ordered_keys(pins.values()):
            some = pinned.get(key) or unpinned[key]
            for ref_row in some["rows"]:
                cid = ref_row["contender"]
                cells = [some["title"], ref_row["label"], some["unit"]]
                ratios = []
                for results in (pinned, unpinned):
                    result = results.get(key)
                    row = None if result is None else _row(result, cid)
                    if row is None or result is None:
                        cells += ["—", "—"]
                        ratios.append("—")
                        continue
                    cells += [_fmt(row["median"]), f"{_fmt(row['q1'])}-{_fmt(row['q3'])}"]
                    ratios.append(_fmt(ratio(result, cid)))
                cells.append(" / ".join(ratios))
                extras_p = _extras(_row(pinned[key], cid) if key in pinned else None)
                extras_u = _extras(_row(unpinned[key], cid) if key in unpinned else None)
                names = sorted(set(extras_p) | set(extras_u))
                cells.append(
                    "; ".join(
                        f"{n} {_fmt(extras_p.get(n))} / {_fmt(extras_u.get(n))}" for n in names
                    )
                )
                lines.append("| " + " | ".join(cells) + " |")
        notes = {
            key: (pinned.get(key) or unpinned[key])["notes"] for key in _ordered_keys(pins.values())
        }
        lines += ["", "Notes:", ""]
        lines += [
            f"- **{key[0]}{' ' + key[1] if key[1] else ''}**: {note}" for key, note in notes.items()
        ]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, meta: dict[str, Any], passes: list[Pass]) -> None:
    path.write_text(markdown(meta, passes))


def advantage(result: Result, contender: str) -> float | None:
    """How many times better tunnypy is than *contender* (above 1 = tunnypy better)."""
    value = ratio(result, contender)
    if value is None or value <= 0:
        return None
    return 1.0 / value if result["better"] == "lower" else value


def write_chart(path: Path, passes: list[Pass]) -> str:
    """Draw tunnypy's advantage over each contender; return a message saying what happened."""
    # Imported here so that the benchmarks run (and say so) without matplotlib.
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        return f"chart skipped: matplotlib is not installed ({exc})"
    versions = _by_version(passes)
    fig_height = 1.0
    panels = []
    for version, pins in versions.items():
        labels: list[str] = []
        values: dict[str, list[float]] = {pin: [] for pin in PINS}
        marks: list[float | None] = []
        for key in _ordered_keys(pins.values()):
            some = next(_results(p)[key] for p in pins.values() if key in _results(p))
            bounds = {
                t["baseline"]: t["bound"]
                for t in some["targets"]
                if t["baseline"] is not None and t["subject"] == some["subject"]
            }
            for row in some["rows"]:
                cid = row["contender"]
                if cid == some["subject"]:
                    continue
                labels.append(f"{some['title']}: vs {row['label']}")
                for pin in PINS:
                    result = _results(pins.get(pin)).get(key)
                    adv = None if result is None else advantage(result, cid)
                    values[pin].append(float("nan") if adv is None else adv)
                bound = bounds.get(cid)
                if bound is None:
                    marks.append(None)
                else:
                    marks.append(1.0 / bound if some["better"] == "lower" else bound)
        panels.append((version, labels, values, marks))
        fig_height = max(fig_height, 0.32 * len(labels) + 1.5)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(7.5 * len(panels), fig_height), sharey=True, squeeze=False
    )
    for ax, (version, labels, values, marks) in zip(axes[0], panels, strict=True):
        ys = list(range(len(labels)))
        ax.barh([y - 0.2 for y in ys], values["pinned"], height=0.4, label="pinned (1 CPU)")
        ax.barh([y + 0.2 for y in ys], values["unpinned"], height=0.4, label="unpinned")
        for y, mark in zip(ys, marks, strict=True):
            if mark is not None:
                ax.plot([mark, mark], [y - 0.45, y + 0.45], color="red", linewidth=2)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yticks(ys, labels, fontsize=8)
        ax.set_title(f"Python {version}")
        ax.set_xlabel("tunnypy advantage (x, >1 = tunnypy better); red = target")
        ax.legend(fontsize=8, loc="lower right")
    axes[0][0].invert_yaxis()  # once: the axes share y, so each call would flip it back
    fig.text(
        0.01,
        0.005,
        "Targets that are not ratios (shrink time, timeout overshoot, peak sockets) "
        "are in results.md.",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"
