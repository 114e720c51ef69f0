#!/usr/bin/env python3
"""Compare training curves (bagel-train's metrics.jsonl) step by step.

  curve_compare.py REF.jsonl OTHER.jsonl [OTHER.jsonl ...]

For each OTHER: the relative difference of the loss to REF's at each step
(first, worst, and over each 20-step window the mean of both curves and their
relative difference), the final losses, and whether the windowed means stay
within 5% of REF's (exit 1 if not). Standard library only."""
import json
import sys


def load(path):
    with open(path) as f:
        return {r["step"]: r for r in (json.loads(line) for line in f if line.strip())}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    ref = load(sys.argv[1])
    bad = 0
    for path in sys.argv[2:]:
        other = load(path)
        steps = sorted(set(ref) & set(other))
        rel = [abs(other[s]["loss"] - ref[s]["loss"]) / abs(ref[s]["loss"]) for s in steps]
        worst = max(range(len(steps)), key=lambda i: rel[i])
        print("%s vs %s: %d common steps; first common step %d rel diff %.2e; worst step %d rel diff %.3g"
              % (path, sys.argv[1], len(steps), steps[0], rel[0], steps[worst], rel[worst]))
        for w in range(0, len(steps), 20):
            ss = steps[w:w + 20]
            a = sum(ref[s]["loss"] for s in ss) / len(ss)
            b = sum(other[s]["loss"] for s in ss) / len(ss)
            d = abs(b - a) / abs(a)
            bad += d > 0.05
            print("  steps %3d-%3d  mean loss %.4f vs %.4f  rel diff %.2e%s"
                  % (ss[0], ss[-1], a, b, d, "  (over 5%)" if d > 0.05 else ""))
        print("  final loss %.4f vs %.4f (ce %.4f vs %.4f, mse %.4f vs %.4f)"
              % (ref[steps[-1]]["loss"], other[steps[-1]]["loss"], ref[steps[-1]]["ce"], other[steps[-1]]["ce"],
                 ref[steps[-1]]["mse"], other[steps[-1]]["mse"]))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
