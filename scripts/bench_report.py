#!/usr/bin/env python3
"""Turns scripts/bench.sh's CSV files into a table of medians, cmkfs's ratios per repetition,
a PNG plot (gnuplot) and, if asked, README.md's Performance section.

usage: bench_report.py RESULTS_DIR MACHINE_DESCRIPTION [README.md]
"""
import csv
import os
import shutil
import statistics
import sys

from bench_readme import kept_dir, plot, put_section

ENCRYPTED_PEERS = ["gocryptfs", "securefs", "cryfs"]
METRICS = [  # column, header, higher is better
    ("write_MBps", "write MB/s", True),
    ("read_MBps", "read MB/s", True),
    ("randread_iops", "rand 4k IOPS", True),
    ("create_s", "create s", False),
    ("stat_s", "stat s", False),
    ("rm_s", "rm s", False),
    ("randread8_p99_us", "p99 µs, 8 readers", False),
]


def load(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def fmt(v, col):
    if v is None:
        return "-"
    if col.endswith("_s"):
        return f"{v:.2f}"
    return f"{v:.0f}"


def main():
    out, machine = sys.argv[1], sys.argv[2]
    readme = sys.argv[3] if len(sys.argv) > 3 else None
    on_tmpfs = "backing: tmpfs" in machine
    rows = load(os.path.join(out, "results.csv"))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    reps = sorted({int(r["rep"]) for r in rows})
    by = {(int(r["rep"]), r["target"]): r for r in rows}

    def val(rep, t, col):
        r = by.get((rep, t))
        return float(r[col]) if r and r.get(col) not in ("", None) else None  # older CSVs lack newer columns

    def median(t, col):
        vs = [v for v in (val(rep, t, col) for rep in reps) if v is not None]
        return statistics.median(vs) if vs else None

    lines = ["| target | " + " | ".join(h for _, h, _ in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for t in targets:
        lines.append(f"| {t} | " + " | ".join(fmt(median(t, c), c) for c, _, _ in METRICS) + " |")
    table = "\n".join(lines)

    # Ratios inside each repetition, then their median: the machine's noise mostly cancels.
    def ratio_rows():
        peers = [p for p in ENCRYPTED_PEERS if p in targets]
        checks = []

        def per_rep(fn):
            vs = [fn(rep) for rep in reps]
            vs = [v for v in vs if v is not None]
            return (statistics.median(vs), vs) if vs else (None, [])

        def best_peer(rep, col, higher):
            vals = [val(rep, p, col) for p in peers]
            vals = [v for v in vals if v is not None]
            return (max(vals) if higher else min(vals)) if vals else None

        def rel(rep, col, other, invert=False):
            a, b = val(rep, "cmkfs", col), other
            if a is None or b is None or a == 0 or b == 0:
                return None
            return b / a if invert else a / b

        if "cmkfs" not in targets:
            return checks
        if "gocryptfs" in targets:
            checks.append(("sequential write vs gocryptfs", ">= 2.0x", per_rep(lambda r: rel(r, "write_MBps", val(r, "gocryptfs", "write_MBps"))), 2.0, True))
            checks.append(("sequential read vs gocryptfs", ">= 1.2x", per_rep(lambda r: rel(r, "read_MBps", val(r, "gocryptfs", "read_MBps"))), 1.2, True))
        if peers:
            checks.append(("random 4k read vs best encrypted peer", ">= 1.3x", per_rep(lambda r: rel(r, "randread_iops", best_peer(r, "randread_iops", True))), 1.3, True))
            # The first round's target on tmpfs; on the disk, where each batch waits for its sync, the best peer's time.
            create = 0.6 if on_tmpfs else 1.0
            checks.append(("create time vs best peer", f"<= {create:.1f}x", per_rep(lambda r: (val(r, "cmkfs", "create_s") or 0) / best_peer(r, "create_s", False) if best_peer(r, "create_s", False) else None), create, False))
            checks.append(("stat time vs best peer", "<= 1.0x", per_rep(lambda r: (val(r, "cmkfs", "stat_s") or 0) / best_peer(r, "stat_s", False) if best_peer(r, "stat_s", False) else None), 1.0, False))
            checks.append(("p99 of random 4k reads, 8 readers, vs best encrypted peer", "<= 1.0x", per_rep(lambda r: (val(r, "cmkfs", "randread8_p99_us") or 0) / best_peer(r, "randread8_p99_us", False) if best_peer(r, "randread8_p99_us", False) else None), 1.0, False))
            checks.append(("remove time vs best peer", "<= 1.0x", per_rep(lambda r: (val(r, "cmkfs", "rm_s") or 0) / best_peer(r, "rm_s", False) if best_peer(r, "rm_s", False) else None), 1.0, False))
        # Encryption for free: on tmpfs, where the backing costs least, cmkfs against an unencrypted
        # FUSE passthrough (mergerfs, tuned); elsewhere, and for bindfs, for information.
        free = {"write_MBps": 1.0, "read_MBps": 1.2, "randread_iops": 1.0} if on_tmpfs else {}
        for ceiling in ("mergerfs", "bindfs"):
            if ceiling in targets:
                for col, what in (("write_MBps", "sequential write"), ("read_MBps", "sequential read"), ("randread_iops", "random 4k read")):
                    bound = free.get(col) if ceiling == "mergerfs" else None
                    checks.append((f"{what} vs {ceiling} (unencrypted)", f">= {bound:.1f}x" if bound else "info",
                                   per_rep(lambda r, c=ceiling, k=col: rel(r, k, val(r, c, k))), bound, True))
        return checks

    checks = ratio_rows()
    reg_path = os.path.join(out, "registry.csv")
    if os.path.exists(reg_path):
        reg = load(reg_path)
        rr = {}
        for r in reg:
            rr.setdefault(int(r["rep"]), {})[r["target"]] = float(r["seconds"])
        vs = [d["cmkfs"] / d["raw"] for d in rr.values() if "cmkfs" in d and "raw" in d and d["raw"] > 0]
        if vs:
            checks.append(("registry push+pull vs plain directory", "<= 1.05x", (statistics.median(vs), vs), 1.05, False))

    ratio_lines = ["| cmkfs | target | median ratio | per repetition | met |", "|---|---|---|---|---|"]
    for name, target, (med, vs), bound, higher in checks:
        if med is None:  # not measured in this run
            continue
        met = "" if bound is None or med is None else ("yes" if (med >= bound if higher else med <= bound) else "**no**")
        ratio_lines.append(f"| {name} | {target} | {med:.2f}x | {', '.join(f'{v:.2f}' for v in vs)} | {met} |")

    rss_idle = [float(r["rss_idle_kB"]) for r in rows if r["target"] == "cmkfs" and r["rss_idle_kB"]]
    rss_peak = [float(r["rss_peak_kB"]) for r in rows if r["target"] == "cmkfs" and r["rss_peak_kB"]]
    extra = []
    if rss_idle:
        extra.append(f"cmkfs daemon RSS: {max(rss_idle) / 1024:.1f} MiB idle after mount (target < 64 MiB), "
                     f"peak {max(rss_peak) / 1024:.1f} MiB over the fio and small-file runs.")
    codec = os.path.join(out, "codec.csv")
    if os.path.exists(codec):
        speeds = {}
        with open(codec) as f:
            for line in f:
                if line.startswith('"BM_') and "1048576" in line or line.startswith('"BM_SealChunk/65536') or line.startswith('"BM_BareGcm/65536'):
                    parts = line.split(",")
                    name = parts[0].strip('"')
                    try:
                        speeds[name] = float(parts[5]) / 1e6
                    except (ValueError, IndexError):
                        pass
        if speeds:
            extra.append("Chunk codec alone (Google Benchmark, MB/s): " +
                         ", ".join(f"{k} {v:.0f}" for k, v in sorted(speeds.items())) + ".")
    ossl = os.path.join(out, "openssl-speed.txt")
    if os.path.exists(ossl) and open(ossl).read().strip():
        extra.append("`openssl speed -evp aes-256-gcm` on the same machine (kB/s for 16 B ... 16 KiB blocks): `" +
                     " ".join(open(ossl).read().split()[1:]) + "`.")

    report = "\n".join([f"Machine: {machine}.", "", "Medians:", "", table, "", "cmkfs's ratios, computed inside each repetition:", "",
                        "\n".join(ratio_lines), "", *[e + "\n" for e in extra]])
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(report)
    print(report)

    # The plot: throughput per target, and the small-file times.
    dat = os.path.join(out, "plot.dat")
    with open(dat, "w") as f:
        for t in [t for t in targets if t != "raw"]:  # raw tmpfs is off the scale; it is in the table
            m = [median(t, c) or 0 for c, _, _ in METRICS]
            f.write(f"{t} {m[0]} {m[1]} {m[2] / 1000} {m[3]} {m[4]} {m[5]}\n")
    kind = "tmpfs" if on_tmpfs else "disk"
    png = os.path.join(out, f"bench-{kind}.png")
    gp = f"""
set terminal pngcairo size 1100,460 font ",10"
set output "{png}"
set multiplot layout 1,3 title "cmkfs vs FUSE filesystems ({machine.split(';')[1].strip() if ';' in machine else ''}; medians; the raw backing store is in the table)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -35 nomirror
set key below horizontal
set yrange [0:*]
set grid ytics
set title "sequential 1 MiB (MB/s)"
plot "{dat}" using 2:xtic(1) title "write", "" using 3 title "read"
set title "random 4 KiB read (kIOPS)"
plot "{dat}" using 4:xtic(1) title "rand read" lc rgb "#2a9d8f"
set title "small files: 4 KiB each (s, lower is better)"
plot "{dat}" using 5:xtic(1) title "create+sync", "" using 6 title "stat", "" using 7 title "rm"
unset multiplot
"""
    plot(gp)

    if readme:
        keep = kept_dir(readme)
        for name in ("results.csv", "registry.csv", "results.md", f"bench-{kind}.png"):
            if os.path.exists(os.path.join(out, name)):
                base, ext = os.path.splitext(name)
                target = name if name.startswith("bench-") else f"{base}-{kind}{ext}"
                shutil.copy(os.path.join(out, name), os.path.join(keep, target))
        title = "On a tmpfs backing store (the CPU cost)" if kind == "tmpfs" else "On the disk (real use)"
        put_section(readme, kind, f"#### {title}\n\n![benchmark, {kind}](scripts/bench/bench-{kind}.png)\n\n{report}",
                    heading="## Performance\n\n")


if __name__ == "__main__":
    main()
