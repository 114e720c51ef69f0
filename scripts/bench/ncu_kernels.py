#!/usr/bin/env python3
"""ncu_kernels.py — the kernels of a profiled run, summed.

Reads `ncu --csv --page raw --metrics gpu__time_duration.sum,launch__grid_size`
output (one row per kernel launch, each timed alone by Nsight Compute's
replay, so no launch gap and no other kernel counts) and prints, for the
launches after --skip, the total time and the time per kernel name and grid,
largest first: where a step's device time goes, kernel by kernel.

Usage: ncu_kernels.py NCU.csv [--skip N] [--top N] [--steps S]
  --steps S divides the totals by S (the steps the launches cover).
"""
import csv
import re
import sys


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    skip = int(args[args.index("--skip") + 1]) if "--skip" in args else 0
    top = int(args[args.index("--top") + 1]) if "--top" in args else 50
    steps = float(args[args.index("--steps") + 1]) if "--steps" in args else 1.0
    with open(args[0], newline="", errors="replace") as f:
        lines = [l for l in f if l.startswith('"')]
    rows = list(csv.reader(lines))
    if not rows:
        print("ncu_kernels: no CSV rows in", args[0])
        return 1
    head = rows[0]
    col = {n: i for i, n in enumerate(head)}
    need = ["Kernel Name", "gpu__time_duration.sum"]
    if any(n not in col for n in need):
        print("ncu_kernels: columns missing:", [n for n in need if n not in col])
        return 1
    unit = rows[1][col["gpu__time_duration.sum"]] if len(rows) > 1 else ""
    scale = {"ns": 1e-6, "usecond": 1e-3, "us": 1e-3, "msecond": 1.0, "ms": 1.0, "nsecond": 1e-6}.get(unit, 1e-6)
    data = []  # (row, ms)
    for r in rows[1:]:
        if len(r) != len(head):
            continue
        try:
            data.append((r, float(r[col["gpu__time_duration.sum"]].replace(",", "")) * scale))
        except ValueError:
            continue  # the units row
    data = data[skip:]
    by = {}
    byname = {}
    total = 0.0
    for r, ms in data:
        name = r[col["Kernel Name"]]
        short = re.sub(r"\(.*", "", name)[:90]
        grid = r[col["launch__grid_size"]] if "launch__grid_size" in col else "?"
        k = (short, grid)
        c, s = by.get(k, (0, 0.0))
        by[k] = (c + 1, s + ms)
        c, s = byname.get(short, (0, 0.0))
        byname[short] = (c + 1, s + ms)
        total += ms
    print(f"{len(data)} launches, {total / steps:.2f} ms of kernel time a step ({steps:g} steps)")
    print("by kernel:")
    for k, (c, s) in sorted(byname.items(), key=lambda x: -x[1][1])[:top]:
        print(f"  {s / steps:9.3f} ms {100 * s / total:5.1f}% {c / steps:7.1f} calls  {k}")
    print("by kernel and grid:")
    for (k, g), (c, s) in sorted(by.items(), key=lambda x: -x[1][1])[:top]:
        print(f"  {s / steps:9.3f} ms {100 * s / total:5.1f}% {c / steps:7.1f} calls {s / c * 1e3:9.1f} us  grid {g:>8}  {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
