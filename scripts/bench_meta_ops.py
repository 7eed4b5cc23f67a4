"""Metadata operations through a mount, timed: what bench-cluster.sh measures with one node
against two on one store whose metadata is in PostgreSQL.

usage: bench_meta_ops.py create DIR N    N files of 100 B in DIR/d00..d19 (made), open-write-close
       bench_meta_ops.py stat DIR N      stat each of them
       (both print the seconds taken)
       bench_meta_ops.py report CSV MD N [README_SECTION]
CSV rows: rep,create_s,stat_one_node_s,stat_two_nodes_s (the two nodes' times: the longer)."""
import csv
import os
import statistics
import sys
import time

import bench_readme


def report(path, md, n, section):
    rows = list(csv.DictReader(open(path)))
    creates = [n / float(r["create_s"]) for r in rows]
    one = [n / float(r["stat_one_node_s"]) for r in rows]
    two = [2 * n / float(r["stat_two_nodes_s"]) for r in rows]
    ratio = [t / o for t, o in zip(two, one)]
    fmt = lambda xs: f"{statistics.median(xs):,.0f} ({min(xs):,.0f}-{max(xs):,.0f})"
    lines = [f"{n} files of 100 B through the writer, then every one stated after dropping caches: by the "
             f"writer alone, then by the writer and a follower at once (their stats over the longer time). "
             f"PostgreSQL on localhost, objects in RADOS; median (range) of {len(rows)} repetitions:", "",
             "| operation | one node /s | two nodes /s | two / one |", "|---|---:|---:|---:|",
             f"| create (open, write, close) | {fmt(creates)} | | |",
             f"| stat, cold | {fmt(one)} | {fmt(two)} | {statistics.median(ratio):.2f}x |"]
    open(md, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))
    if section:
        bench_readme.publish(path, md, section, "\n".join(lines))


def paths(root, n):
    return [os.path.join(root, f"d{i % 20:02d}", f"f{i:07d}") for i in range(n)]


def main():
    if sys.argv[1] == "report":
        return report(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else "")
    op, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    files = paths(root, n)
    if op == "create":
        for d in sorted({os.path.dirname(p) for p in files}):
            os.makedirs(d, exist_ok=True)
    start = time.monotonic()
    if op == "create":
        data = b"x" * 100
        for p in files:
            with open(p, "wb") as f:
                f.write(data)
    elif op == "stat":
        for p in files:
            os.stat(p)
    else:
        sys.exit(f"unknown operation {op}")
    print(f"{time.monotonic() - start:.3f}")


if __name__ == "__main__":
    main()
