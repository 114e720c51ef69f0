#!/usr/bin/env python3
"""ncu_sass.py — summarizes Nsight Compute's source page of one kernel, as
`ncu --section SourceCounters --page source --print-source sass --csv`
writes it: where the warps' stall samples fall, by opcode and by
instruction, and how many instructions each kind executed, also per
tensor-core product (HGMMA) when the kernel has any.

Usage: ncu_sass.py FILE.csv [TOP]   (TOP instructions listed, default 20)

The counts read the way docs/results/attention-notes.md (version 13) reads
them: a kernel whose samples sit on WARPGROUP.DEPBAR waits on its products;
one whose executed instructions are mostly uniform-datapath (U*) or integer
work around few products spends its issue slots on addressing.
"""
import collections
import csv
import re
import signal
import sys


def load(path):
    """the header row and the instruction rows of the source table"""
    with open(path, newline="") as f:
        lines = f.readlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"Address"')), None)
    if start is None:
        sys.exit(f"ncu_sass: {path}: no source table (a line starting \"Address\")")
    rows = list(csv.reader(lines[start:]))
    return rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]


def number(cell):
    try:
        return int(cell.replace(",", ""))
    except ValueError:
        return 0


def opcode(sass):
    """the opcode of a SASS line, its predicate and modifiers dropped"""
    m = re.match(r"\s*(?:@!?U?P\w+\s+)?([A-Z0-9_]+)", sass)
    return m.group(1) if m else "?"


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quietly, into head
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    hdr, rows = load(sys.argv[1])
    col = {h: i for i, h in enumerate(hdr)}
    for need in ("Source", "Warp Stall Sampling (All Samples)", "Instructions Executed"):
        if need not in col:
            sys.exit(f"ncu_sass: {sys.argv[1]}: no column {need!r}")
    samples = lambda r: number(r[col["Warp Stall Sampling (All Samples)"]])
    executed = lambda r: number(r[col["Instructions Executed"]])
    reasons = [h for h in hdr if h.startswith("stall_") and "Not Issued" not in h]

    total_s = sum(samples(r) for r in rows) or 1
    total_e = sum(executed(r) for r in rows)
    by_s, by_e = collections.Counter(), collections.Counter()
    for r in rows:
        o = opcode(r[col["Source"]])
        by_s[o] += samples(r)
        by_e[o] += executed(r)
    hg = by_e.get("HGMMA", 0)
    uniform = sum(v for o, v in by_e.items() if o.startswith("U"))
    print(f"instructions executed (warp-level): {total_e}, stall samples: {total_s}")
    if hg:
        print(f"HGMMA: {hg}, instructions per HGMMA: {total_e / hg:.1f}, uniform-datapath ones: {uniform / hg:.1f}")
    print("\nby opcode: share of stall samples, executed" + (", executed per HGMMA" if hg else ""))
    for o, v in by_s.most_common(top):
        extra = f" {by_e[o] / hg:8.2f}" if hg else ""
        print(f"  {o:22s} {100 * v / total_s:5.1f}% {by_e[o]:12d}{extra}")
    print(f"\nthe {top} instructions with the most stall samples (offset, share, executed, its top reasons)")
    base = int(rows[0][0], 16) if rows and rows[0][0].startswith("0x") else 0
    for r in sorted(rows, key=samples, reverse=True)[:top]:
        why = sorted(((number(r[col[h]]), h[6:]) for h in reasons), reverse=True)[:2]
        why = ", ".join(f"{n} {h}" for n, h in why if n)
        off = int(r[0], 16) - base if r[0].startswith("0x") else 0
        print(f"  {off:6x} {100 * samples(r) / total_s:5.1f}% {executed(r):10d}  {r[col['Source']].strip()[:56]:56s} {why}")


if __name__ == "__main__":
    main()
