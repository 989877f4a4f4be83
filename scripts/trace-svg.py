#!/usr/bin/python3
"""Draw a `skiff --trace` timeline as an SVG picture.

    scripts/trace-svg.py TRACE.json OUT.svg [--title TEXT] [--min-label-ms MS]

The trace is Chrome's trace-event JSON, as `skiff --trace` and
`skiff-agent serve --trace-dir` write it. Each process gets one band, top
to bottom in order of its first event. Inside a band, spans nest: a phase
("create: cgroup") is drawn above the phases and steps within it ("mkdir
memory", "writing pid ... to cgroup.procs"), so the deepest row holds the
finest steps. All bands share one time axis, in milliseconds from the first
event: the runtime's bars and the container init's line up because both
stamp their events with the same clock (CLOCK_MONOTONIC).

Drawn with matplotlib (Debian's python3-matplotlib, in scripts/packages.txt).
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("agg")  # no display; savefig writes SVG (or PNG) by the name
import matplotlib.pyplot as plt  # noqa: E402

PHASE = "#4c72b0"
STEP = "#dd8452"
AGENT = "#55a868"


def load(path):
    with open(path) as f:
        doc = json.load(f)
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    names = {}
    spans = []
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            names[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "X":
            spans.append(e)
    if not spans:
        sys.exit(f"{path}: no complete (\"ph\": \"X\") events")
    return names, spans


def depths(spans):
    """Nesting depth of each span within its process: the number of spans
    that contain it (longer first when two start together)."""
    out = {}
    by_pid = {}
    for i, s in enumerate(spans):
        by_pid.setdefault(s["pid"], []).append(i)
    for idx in by_pid.values():
        idx.sort(key=lambda i: (spans[i]["ts"], -spans[i]["dur"]))
        stack = []  # end times of the open spans
        for i in idx:
            s = spans[i]
            while stack and stack[-1] <= s["ts"] + 1e-3:
                stack.pop()
            out[i] = len(stack)
            stack.append(s["ts"] + s["dur"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--title", default=None)
    ap.add_argument("--min-label-ms", type=float, default=None,
                    help="label bars at least this long (default: 4%% of the span of the trace)")
    a = ap.parse_args()

    names, spans = load(a.trace)
    depth = depths(spans)
    t0 = min(s["ts"] for s in spans)
    t1 = max(s["ts"] + s["dur"] for s in spans)
    total_ms = (t1 - t0) / 1000.0
    min_label = a.min_label_ms if a.min_label_ms is not None else total_ms * 0.04

    pids = sorted({s["pid"] for s in spans},
                  key=lambda p: min(s["ts"] for s in spans if s["pid"] == p))
    rows = {p: 1 + max(depth[i] for i, s in enumerate(spans) if s["pid"] == p) for p in pids}
    row_h = 0.36
    gap = 0.5
    height = sum(rows.values()) * row_h + gap * len(pids) + 1.2
    fig, ax = plt.subplots(figsize=(15, max(2.5, height)))

    y = 0.0
    yticks, ylabels = [], []
    for p in pids:
        band = rows[p]
        top = y + band * row_h
        yticks.append(y + band * row_h / 2)
        ylabels.append(names.get(p, f"pid {p}"))
        for i, s in enumerate(spans):
            if s["pid"] != p:
                continue
            start = (s["ts"] - t0) / 1000.0
            width = max(s["dur"] / 1000.0, total_ms * 0.0015)
            row_top = top - depth[i] * row_h
            colour = {"step": STEP, "agent": AGENT}.get(s.get("cat"), PHASE)
            ax.broken_barh([(start, width)], (row_top - row_h * 0.92, row_h * 0.84),
                           facecolors=colour, edgecolors="white", linewidth=0.4)
            if s["dur"] / 1000.0 >= min_label:
                label = f'{s["name"]} ({s["dur"] / 1000.0:.1f} ms)'
                ax.text(start + width / 2, row_top - row_h * 0.5, label, ha="center",
                        va="center", fontsize=6.5, color="white", clip_on=True)
        y = top + gap
        ax.axhline(y - gap / 2, color="#dddddd", linewidth=0.6)

    ax.set_ylim(y, -0.2)  # first process at the top
    ax.set_xlim(0, total_ms * 1.01)
    ax.set_yticks(yticks)
    ax.set_yticklabels(ylabels, fontsize=8)
    ax.set_xlabel("milliseconds since the first event (CLOCK_MONOTONIC, shared by every process)")
    ax.grid(axis="x", color="#eeeeee", linewidth=0.6)
    ax.set_axisbelow(True)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in (PHASE, STEP, AGENT)]
    ax.legend(handles, ["phase", "narrated step (--explain)", "agent"], loc="lower right",
              fontsize=7, frameon=False)
    ax.set_title(a.title or f"{a.trace}: {total_ms:.1f} ms", fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out)  # the format follows the extension: .svg, or .png to look at quickly


if __name__ == "__main__":
    main()
