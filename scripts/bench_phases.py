"""The table of a concurrent push/pull benchmark (bench-clients.sh, bench-cluster.sh): the median
seconds of each phase on the baseline and on cmkfs, and cmkfs's ratio in each repetition.

usage: bench_phases.py CSV MD TITLE BASELINE BASELINE_LABEL TARGET_RATIO [README_SECTION]
CSV rows: rep,target,push_s,pull_s with target BASELINE or a cmkfs variant (cmkfs, cmkfs-s3, ...):
one row per phase and variant. With README_SECTION the table
also goes into README.md (and the CSV and table into scripts/bench/).
BENCH_PHASES (default "push,pull") may add "push+pull": the round trip, both phases' seconds."""
import csv
import os
import statistics
import sys

import bench_readme


def main():
    path, md, title, base, base_label, limit = sys.argv[1:7]
    section = sys.argv[7] if len(sys.argv) > 7 else ""
    limit = float(limit)
    rows = list(csv.DictReader(open(path)))
    reps = sorted({r["rep"] for r in rows})
    by = {(r["rep"], r["target"]): r for r in rows}
    # Every target but the baseline, in the order they first ran (cmkfs, cmkfs-s3, ...).
    targets = list(dict.fromkeys(r["target"] for r in rows if r["target"] != base))
    lines = [title, "",
             f"| phase | {base_label} s (median) | cmkfs s (median) | cmkfs / {base_label}, per repetition | target | met |",
             "|---|---|---|---|---|---|"]
    phases = os.environ.get("BENCH_PHASES", "push,pull").split(",")

    def seconds(rep, target, phase):
        return sum(float(by[(rep, target)][p + "_s"]) for p in phase.split("+"))

    for t in targets:
        for phase in phases:
            b = [seconds(r, base, phase) for r in reps]
            c = [seconds(r, t, phase) for r in reps]
            ratios = [x / y for x, y in zip(c, b)]
            met = statistics.median(ratios) <= limit
            name = phase if len(targets) == 1 else f"{phase}, {t}"
            lines.append(f"| {name} | {statistics.median(b):.1f} | {statistics.median(c):.1f} | "
                         f"{', '.join(f'{x:.2f}' for x in ratios)} | <= {limit:g}x | {'yes' if met else '**no**'} |")
    open(md, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))
    if section:
        bench_readme.publish(path, md, section, "\n".join(lines))


if __name__ == "__main__":
    main()
