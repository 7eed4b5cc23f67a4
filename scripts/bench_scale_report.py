#!/usr/bin/env python3
"""Turns scripts/bench-scale.sh's scale.csv into a table, the issue's targets checked, a PNG
plot (gnuplot) and, if asked, README.md's Scale section.

usage: bench_scale_report.py RESULTS_DIR MACHINE_DESCRIPTION [README.md]
"""
import csv
import os
import shutil
import sys

from bench_readme import kept_dir, plot, put_section

COLUMNS = [  # column, header, format
    ("fill_us", "fill µs/file", "{:.0f}"),
    ("create_us", "create µs/file", "{:.0f}"),
    ("stat_us", "stat µs/file (cold)", "{:.0f}"),
    ("unlink_us", "unlink µs/file", "{:.0f}"),
    ("ls_s", "ls -f largest dir s", "{:.2f}"),
    ("ls_entries", "its entries", "{:.0f}"),
    ("find_s", "find s", "{:.2f}"),
    ("mount_s", "mount s", "{:.2f}"),
    ("umount_s", "unmount s", "{:.2f}"),
    ("umount_all_s", "until the kernel freed its cache s", "{:.2f}"),
    ("rss_kB", "RSS after find MiB", "{:.0f}"),
    ("rss_anon_kB", "of it heap MiB", "{:.0f}"),
    ("map_kB", "of it files mapped MiB", "{:.0f}"),
    ("fsck_MBps", "fsck MB/s", "{:.0f}"),
]


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def main():
    out, machine = sys.argv[1], sys.argv[2]
    readme = sys.argv[3] if len(sys.argv) > 3 else None
    with open(os.path.join(out, "scale.csv")) as f:
        rows = list(csv.DictReader(f))
    at = {(int(r["files"]), r["target"]): r for r in rows}
    levels = sorted({int(r["files"]) for r in rows})
    targets = list(dict.fromkeys(r["target"] for r in rows))

    def val(level, t, col):
        r = at.get((level, t))
        if r and col == "map_kB":  # the metadata file mapped (RssFile, or RssShmem on a tmpfs)
            rss, anon = num(r["rss_kB"]), num(r["rss_anon_kB"])
            return (rss - anon) / 1024 if rss is not None and anon is not None else None
        v = num(r.get(col)) if r else None  # older runs lack newer columns
        if v is not None and col.endswith("_kB"):
            v /= 1024
        return v

    lines = ["| files | target | " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for level in levels:
        for t in targets:
            cells = [("-" if val(level, t, c) is None else fmt.format(val(level, t, c))) for c, _, fmt in COLUMNS]
            lines.append(f"| {level:,} | {t} | " + " | ".join(cells) + " |")

    checks = []
    lo, hi = levels[0], levels[-1]

    def check(name, target, value, ok):
        checks.append(f"| {name} | {target} | {'-' if value is None else value} | {'' if value is None else ('yes' if ok else '**no**')} |")

    # The growth targets: the median ratio of the side-by-side rounds (scale-side.csv), each a
    # cost at the largest size over the same cost on a store of the smallest size beside it.
    side_path = os.path.join(out, "scale-side.csv")
    side = []
    if os.path.exists(side_path):
        with open(side_path) as f:
            side = [r for r in csv.DictReader(f) if r["target"] == "cmkfs" and int(r["files"]) == hi]
    side_lines = []
    if "cmkfs" in targets and hi != lo:
        for col, what in (("create_us", "create"), ("stat_us", "stat after dropping caches"), ("unlink_us", "unlink")):
            ratios = sorted(num(r[col]) / num(r[col.replace("_us", "_ref_us")]) for r in side
                            if num(r[col]) and num(r[col.replace("_us", "_ref_us")]))
            if ratios:
                r = ratios[len(ratios) // 2]
                how = f"median of {len(ratios)} side-by-side rounds"
                side_lines.append(f"{what}: " + ", ".join(f"{x:.2f}x" for x in ratios))
            else:
                a, b = val(lo, "cmkfs", col), val(hi, "cmkfs", col)
                r = b / a if a and b else None
                how = "one round each"
            check(f"{what}: cost per file at {hi:,} / at {lo:,} ({how})", "<= 1.3x", r and f"{r:.2f}x",
                  r is not None and r <= 1.3)
    if "cmkfs" in targets and "gocryptfs" in targets:
        for col, what in (("ls_s", "`ls -f` of the largest directory"), ("find_s", "`find` over the store")):
            a, b = val(hi, "cmkfs", col), val(hi, "gocryptfs", col)
            r = a / b if a and b else None
            check(f"{what} at {hi:,}, vs gocryptfs", "<= 1.2x", r and f"{r:.2f}x", r is not None and r <= 1.2)
    if "cmkfs" in targets:
        for col, what, bound in (("mount_s", "mount", 1.0), ("umount_s", "unmount, nothing dirty", 1.0)):
            v = val(hi, "cmkfs", col)
            check(f"{what} at {hi:,}", f"< {bound:.0f} s", v is not None and f"{v:.2f} s", v is not None and v < bound)
        v = val(hi, "cmkfs", "rss_kB")
        check(f"daemon RSS after `find` at {hi:,}", "< 256 MiB", v is not None and f"{v:.0f} MiB", v is not None and v < 256)
        v = val(hi, "cmkfs", "rss_anon_kB")
        check(f"of it the daemon's heap (the rest: the metadata file mapped, page cache)", "< 256 MiB",
              v is not None and f"{v:.0f} MiB", v is not None and v < 256)
        v = val(hi, "cmkfs", "fsck_MBps")
        check(f"`cmkfs fsck` at {hi:,}", ">= 1000 MB/s", v is not None and f"{v:.0f} MB/s", v is not None and v >= 1000)
    check_lines = ["| cmkfs | target | measured | met |", "|---|---|---|---|", *checks]

    side_text = ("Side by side at " + f"{hi:,}" + " files, each round's ratio, sorted: " + "; ".join(side_lines) + ".") if side_lines else ""
    report = "\n".join([f"Machine: {machine}.", "", "\n".join(lines), "", "\n".join(check_lines), "", side_text, ""])
    with open(os.path.join(out, "scale.md"), "w") as f:
        f.write(report)
    print(report)

    # The curve: per-file costs against the store's size, one line per target and operation.
    dat = os.path.join(out, "scale.dat")
    with open(dat, "w") as f:
        for t in targets:
            f.write(f"# {t}\n")
            for level in levels:
                f.write(f"{level} " + " ".join(str(val(level, t, c) or 0) for c in ("create_us", "stat_us", "unlink_us")) + "\n")
            f.write("\n\n")
    png = os.path.join(out, "scale.png")
    plots = []
    for i, t in enumerate(targets):
        for col, name in ((2, "create"), (3, "stat (cold)"), (4, "unlink")):
            plots.append(f'"{dat}" index {i} using 1:{col} with linespoints dt {i + 1} title "{t} {name}"')
    gp = f"""
set terminal pngcairo size 900,460 font ",10"
set output "{png}"
set title "Per-file cost against the number of files in the store (registry-shaped; lower is better)"
set logscale x
set format x "%.0s%c"
set xlabel "files in the store"
set ylabel "µs per file"
set yrange [0:*]
set grid
set key outside right
plot {", ".join(plots)}
"""
    plot(gp)

    if readme:
        keep = kept_dir(readme)
        for name in ("scale.csv", "scale.md", "scale.png"):
            if os.path.exists(os.path.join(out, name)):
                shutil.copy(os.path.join(out, name), os.path.join(keep, name))
        put_section(readme, "scale", f"#### Scale: from {lo:,} to {hi:,} files\n\n![scale curve](scripts/bench/scale.png)\n\n{report}")


if __name__ == "__main__":
    main()
