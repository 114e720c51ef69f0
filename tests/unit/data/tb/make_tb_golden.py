#!/usr/bin/env python3
"""make_tb_golden.py — the golden TensorBoard event file for tests/unit/test_tb.c.

Writes, with torch.utils.tensorboard's SummaryWriter (the writer whose files
bagelpipe's stages/train/tb.c reproduces), the scalars and texts listed below
with fixed steps and wall times, then copies the one event file it made to
OUT/golden.tfevents and the versions used to OUT/golden.txt.

    python3 make_tb_golden.py OUT      # needs torch and tensorboard

test_tb.c holds the same list (EVENTS there); change both together. The
cases cover what the encoding depends on: step 0 and wall_time 0 (proto3
leaves zero fields out), a negative step (a 10-byte varint), a step past
2^32, a tag longer than 127 bytes (a 2-byte length), UTF-8 tags, float32
rounding of values given as doubles, 0.0, -0.0, inf, nan, a denormal, and
add_text (a string tensor with plugin "text"; SummaryWriter appends
"/text_summary" to its tag).
"""
import glob
import os
import shutil
import sys
import tempfile

LONG_TAG = "long/" + "x" * 195
# (tag, step, wall_time, value)
SCALARS = [
    ("train/loss", 0, 1700000000.0, 2.5),
    ("train/loss", 1, 1700000001.25, 2.25),
    ("train/lr", 1, 1700000001.25, 3e-4),
    ("train/loss", 1000000, 1700000002.5, 0.0),
    ("train/grad_norm", 2**40, 1700000003.0, -1.5),
    ("eval/ppl", -3, 1700000004.0, float("inf")),
    ("eval/nan", 5, 1700000005.0, float("nan")),
    ("tiny", 6, 1700000006.0, 1e-40),
    ("ünïcode/損失", 7, 1700000007.0, 123456.789),
    (LONG_TAG, 8, 0.0, 1.0),
    ("neg_zero", 9, 1700000009.123456, -0.0),
]
# (tag given to add_text, step, wall_time, text)
TEXTS = [
    ("notes", 3, 1700000010.5, "**hello** — ünï\nsecond line"),
    ("empty", 4, 1700000011.0, ""),
]


def main():
    out = sys.argv[1]
    import tensorboard
    import torch
    from torch.utils.tensorboard import SummaryWriter

    import google.protobuf

    logdir = tempfile.mkdtemp()
    w = SummaryWriter(log_dir=logdir)
    for tag, step, wall, value in SCALARS:
        w.add_scalar(tag, value, step, walltime=wall)
    for tag, step, wall, text in TEXTS:
        w.add_text(tag, text, step, walltime=wall)
    w.close()
    files = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    assert len(files) == 1, files
    os.makedirs(out, exist_ok=True)
    shutil.copyfile(files[0], os.path.join(out, "golden.tfevents"))
    with open(os.path.join(out, "golden.txt"), "w") as f:
        f.write("golden.tfevents: made by tests/unit/data/tb/make_tb_golden.py with\n")
        f.write(f"torch {torch.__version__}, tensorboard {tensorboard.__version__}, "
                f"protobuf {google.protobuf.__version__}, python {sys.version.split()[0]}\n")
        f.write(f"original name: {os.path.basename(files[0])}\n")
        f.write("Its first record's wall_time is the time it was made (time.time()).\n")


if __name__ == "__main__":
    main()
