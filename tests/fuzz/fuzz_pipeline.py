#!/usr/bin/python3
"""fuzz_pipeline.py — fuzz the pipeline-file reader of scripts/bagel-supervise.

    fuzz_pipeline.py [--seconds S] [--out DIR] CORPUS_DIR...

Mutates the seed files (byte flips and inserts, lines dropped, doubled and
swapped, values swapped for others of another type, TOML fragments spliced
in) and feeds each result to the supervisor's own load() and plan(), as
--dry-run would. Every input must either be accepted or refused with
PipelineError whose message is one line; anything else (another exception,
a message over lines, a hang over 5 s) is a failure: the input is written to
OUT/fuzz_pipeline-crash-N.toml and the exit status is 1. Python has no
coverage-guided engine in its standard library; the seeds cover every key.
"""
import argparse
import importlib.machinery
import importlib.util
import os
import random
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

FRAGMENTS = [b"[[stage]]\n", b"[pipeline]\n", b"[vars]\n", b"[security]\n", b"name = \"x\"\n", b"replicas = 3\n",
             b"replicas = -1\n", b"replicas = 1e9\n", b"input = []\n", b"input = [\"a\", \"a\"]\n", b"input = \"@tcp://*:1\"\n",
             b"output = \"-\"\n", b"command = []\n", b"command = \"'\"\n", b"command = \"${x}\"\n", b"env = {}\n",
             b"restart = \"always\"\n", b"backoff = nan\n", b"backoff_max = inf\n", b"port = 65535\n", b"x = ${\n",
             b"delivery = false\n", b"ack_window = 1\n", b"insecure = true\n", b"log = \"../x\"\n", b"echo = 1\n",
             b"[vars]\nx = \"${x}\"\n", b"\"\xff\"", b"\x00", b"[[stage]]\nname=\"s\"\ncommand=\"bagel-cat\"\ninput=\"s\"\n"]
VALUES = [b"0", b"-1", b"1.5", b"true", b"\"\"", b"\"x\"", b"[]", b"{}", b"[1, \"a\"]", b"1979-05-27", b"\"${stage}\"",
          b"\"${replica}\"", b"99999999999999999999"]


def load_supervisor():
    path = os.path.join(ROOT, "scripts", "bagel-supervise")
    loader = importlib.machinery.SourceFileLoader("bagel_supervise", path)
    spec = importlib.util.spec_from_loader("bagel_supervise", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def mutate(data, rnd, corpus):
    for _ in range(rnd.randint(1, 4)):
        lines = data.split(b"\n")
        op = rnd.randrange(9)
        if op == 0 and data:
            i = rnd.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ (1 << rnd.randrange(8))]) + data[i + 1:]
        elif op == 1:
            i = rnd.randrange(len(data) + 1)
            data = data[:i] + bytes([rnd.randrange(256)]) + data[i:]
        elif op == 2 and len(lines) > 1:
            del lines[rnd.randrange(len(lines))]
            data = b"\n".join(lines)
        elif op == 3 and lines:
            i = rnd.randrange(len(lines))
            lines.insert(i, lines[i])
            data = b"\n".join(lines)
        elif op == 4 and len(lines) > 1:
            i, j = rnd.randrange(len(lines)), rnd.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            data = b"\n".join(lines)
        elif op == 5:
            i = rnd.randrange(len(lines) + 1)
            lines.insert(i, rnd.choice(FRAGMENTS).rstrip(b"\n"))
            data = b"\n".join(lines)
        elif op == 6:
            cand = [k for k, l in enumerate(lines) if b"=" in l]
            if cand:
                k = rnd.choice(cand)
                lines[k] = lines[k].split(b"=", 1)[0] + b"= " + rnd.choice(VALUES)
                data = b"\n".join(lines)
        elif op == 7:
            other = rnd.choice(corpus).split(b"\n")
            a = rnd.randrange(len(other))
            i = rnd.randrange(len(lines) + 1)
            lines[i:i] = other[a:a + rnd.randint(1, 6)]
            data = b"\n".join(lines)
        elif op == 8 and data:
            i = rnd.randrange(len(data))
            data = data[:i] + data[i + rnd.randint(1, 16):]
    return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="+")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--out", default="build-fuzz")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    sup = load_supervisor()
    corpus = []
    for d in args.corpus:
        for n in sorted(os.listdir(d)):
            with open(os.path.join(d, n), "rb") as f:
                corpus.append(f.read())
    if not corpus:
        sys.exit("fuzz_pipeline: no seeds")
    seed = args.seed if args.seed is not None else int(time.time())
    rnd = random.Random(seed)
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="fuzz-pipeline-")
    path = os.path.join(tmp, "p.toml")

    def hang(signum, frame):
        raise TimeoutError("over 5 s")
    signal.signal(signal.SIGALRM, hang)
    runs = accepted = crashes = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        data = mutate(rnd.choice(corpus), rnd, corpus) if runs >= len(corpus) else corpus[runs]
        with open(path, "wb") as f:
            f.write(data)
        runs += 1
        signal.alarm(5)
        try:
            p = sup.load(path, {})
            only = None
            if rnd.random() < 0.3:
                names = [s.name for s in p.stages]
                only = rnd.sample(names, rnd.randint(1, len(names)))
            sup.plan(p, only, "host" if only and rnd.random() < 0.5 else None, "/tmp/s")
            accepted += 1
        except sup.PipelineError as e:
            msg = str(e)
            if not msg or "\n" in msg:
                crashes += 1
                why = "a message that is not one line: %r" % msg
            else:
                why = None
        except Exception:
            crashes += 1
            why = traceback.format_exc()
        else:
            why = None
        finally:
            signal.alarm(0)
        if why:
            out = os.path.join(args.out, "fuzz_pipeline-crash-%d.toml" % crashes)
            with open(out, "wb") as f:
                f.write(data)
            print("fuzz_pipeline: FAILED on %s (seed %d):\n%s" % (out, seed, why))
            if crashes >= 5:
                break
    os.unlink(path)
    os.rmdir(tmp)
    print("Done %d runs in %.0f s: %d accepted, %d refused with one line, %d failures (seed %d)"
          % (runs, args.seconds, accepted, runs - accepted - crashes, crashes, seed))
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
