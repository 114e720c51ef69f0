#!/usr/bin/python3
# make_optim_golden.py — writes the golden JSON files under
# tests/unit/data/optim/ that test_optim.c reads.
#
# How they were made: this script, run once with Debian's python3-torch
# (torch 1.13, CPU) under /usr/bin/python3:
#   /usr/bin/python3 tests/unit/data/optim/make_optim_golden.py
# The files are committed; the C tests never run Python. Every float is
# written with Python's repr (shortest round trip), so a double reads back
# exactly and an fp32 value (widened to double by torch's .tolist()) reads
# back as that fp32 value. NaN and infinity are written as the strings "nan",
# "inf" and "-inf" (JSON has no such numbers).
#
#   schedules.json  torch.optim.lr_scheduler.LambdaLR with the lambdas of
#                   transformers 4.49 (optimization.py, copied below):
#                   constant (no warmup), constant with warmup, linear with
#                   warmup, cosine with min_lr (BAGEL's "cosine") and
#                   transformers' plain cosine (min_lr 0); lr after k
#                   scheduler steps for k = 0..N, edge cases included
#                   (warmup 0, total == warmup, k past total).
#   adamw.json      torch.optim.AdamW(betas=(0.9, 0.95), eps=1e-15) on three
#                   trainable tensors (a fourth, frozen tensor sits between
#                   them in the C parameter block) for 5 steps under a
#                   constant-with-warmup LambdaLR: weight_decay 0 without
#                   clipping, and weight_decay 0.1 with
#                   clip_grad_norm_(max_norm=1.0) before each step (the
#                   order of BAGEL's loop: clip, optimizer.step,
#                   scheduler.step). After each step: lr used, pre-clip norm,
#                   params, exp_avg, exp_avg_sq.
#   clip.json       torch.nn.utils.clip_grad_norm_ on sets of tensors: norm
#                   above max, below max, all-zero, a NaN, an infinity, and
#                   max_norm 0.5; the returned norm and the gradients after.
import json
import math
import os

import torch

here = os.path.dirname(os.path.abspath(__file__))


def num(x):
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    return x


def flat(t):
    return [num(float(x)) for x in t.detach().reshape(-1).tolist()]


def dump(name, obj, header):
    path = os.path.join(here, name)
    with open(path, "w") as f:
        json.dump({"about": header, **obj}, f, indent=None, separators=(",", ":"))
        f.write("\n")


# ---- transformers 4.49 optimization.py, the lambdas (current_step = k)


def constant_lambda(k):
    return 1


def constant_warmup_lambda(k, *, num_warmup_steps):
    if k < num_warmup_steps:
        return float(k) / float(max(1.0, num_warmup_steps))
    return 1.0


def linear_lambda(k, *, num_warmup_steps, num_training_steps):
    if k < num_warmup_steps:
        return float(k) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - k) / float(max(1, num_training_steps - num_warmup_steps)))


def cosine_lambda(k, *, num_warmup_steps, num_training_steps, num_cycles=0.5, min_lr_rate=0.0):
    if k < num_warmup_steps:
        return float(k) / float(max(1, num_warmup_steps))
    progress = float(k - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
    factor = factor * (1 - min_lr_rate) + min_lr_rate
    return max(0, factor)


def make_lambda(kind, lr, min_lr, warmup, total):
    if kind == "fixed":
        return constant_lambda
    if kind == "constant":
        return lambda k: constant_warmup_lambda(k, num_warmup_steps=warmup)
    if kind == "linear":
        return lambda k: linear_lambda(k, num_warmup_steps=warmup, num_training_steps=total)
    if kind == "cosine":
        # get_cosine_with_min_lr_schedule_with_warmup(min_lr=...):
        # min_lr_rate = min_lr / optimizer.defaults["lr"]
        rate = min_lr / lr
        return lambda k: cosine_lambda(k, num_warmup_steps=warmup, num_training_steps=total, min_lr_rate=rate)
    raise ValueError(kind)


def schedule_values(kind, lr, min_lr, warmup, total, n):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, make_lambda(kind, lr, min_lr, warmup, total))
    out = []
    for _ in range(n + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


SCHED_CASES = [
    # name, lr, min_lr, warmup, total, N
    ("fixed", 1e-4, 0.0, 5, 20, 10),
    ("constant", 1e-4, 0.0, 7, 0, 12),
    ("constant", 3e-4, 0.0, 0, 0, 4),
    ("constant", 2e-5, 0.0, 1, 0, 4),
    ("linear", 1e-4, 0.0, 4, 16, 20),
    ("linear", 5e-4, 0.0, 0, 9, 12),
    ("linear", 1e-4, 0.0, 6, 6, 9),
    ("cosine", 1e-4, 1e-7, 5, 30, 34),
    ("cosine", 1e-4, 0.0, 3, 13, 16),
    ("cosine", 2e-5, 1e-7, 0, 10, 12),
    ("cosine", 1e-4, 1e-7, 4, 4, 7),
    ("cosine", 1e-4, 1e-7, 2000, 500000, 0),
]


def make_schedules():
    cases = []
    for kind, lr, min_lr, warmup, total, n in SCHED_CASES:
        vals = schedule_values(kind, lr, min_lr, warmup, total, n)
        cases.append({"kind": kind, "lr": lr, "min_lr": min_lr, "warmup": warmup, "total": total, "lr_k": vals})
    # BAGEL's default run at a few far steps (LambdaLR.last_epoch set by stepping
    # would take 500k steps; call the lambda as LambdaLR.get_lr does: base_lr * λ)
    far = []
    lam = make_lambda("cosine", 1e-4, 1e-7, 2000, 500000)
    for k in [1999, 2000, 2001, 123457, 250000, 499999, 500000]:
        far.append({"k": k, "lr": 1e-4 * lam(k)})
    dump(
        "schedules.json",
        {"cases": cases, "bagel_cosine_far": far},
        "LambdaLR (torch %s) with transformers 4.49 lambdas; see make_optim_golden.py" % torch.__version__,
    )


# ---- AdamW

SHAPES = [(7,), (4, 4), (5,)]  # trainable; the C block is [t0 | frozen(10) | t1 | t2]
FROZEN = 10


def make_adamw():
    g = torch.Generator().manual_seed(4396)
    init = [torch.randn(s, generator=g) for s in SHAPES]
    frozen = torch.randn(FROZEN, generator=g)
    grads = [[torch.randn(s, generator=g) * (0.3 + i) for s in SHAPES] for i in range(5)]
    # step 2's grad of tensor 2 is zero: v may be tiny, m decays
    grads[2][2].zero_()
    cases = []
    for wd, clip in [(0.0, 0.0), (0.1, 1.0)]:
        params = [torch.nn.Parameter(t.clone()) for t in init]
        lr, warmup = 1e-2, 2
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-15, weight_decay=wd)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: constant_warmup_lambda(k, num_warmup_steps=warmup))
        steps = []
        for i in range(5):
            for p, gr in zip(params, grads[i]):
                p.grad = gr.clone()
            norm = None
            if clip > 0:
                norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            used = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            st = [opt.state[p] for p in params]
            steps.append(
                {
                    "lr": used,
                    "norm": num(norm) if norm is not None else None,
                    "params": sum((flat(p) for p in params), []),
                    "exp_avg": sum((flat(s["exp_avg"]) for s in st), []),
                    "exp_avg_sq": sum((flat(s["exp_avg_sq"]) for s in st), []),
                }
            )
        cases.append(
            {"weight_decay": wd, "max_grad_norm": clip, "lr": lr, "warmup": warmup, "steps": steps}
        )
    dump(
        "adamw.json",
        {
            "sizes": [int(torch.tensor(s).prod()) for s in SHAPES],
            "frozen": FROZEN,
            "betas": [0.9, 0.95],
            "eps": 1e-15,
            "init": sum((flat(t) for t in init), []),
            "frozen_init": flat(frozen),
            "grads": [sum((flat(t) for t in gs), []) for gs in grads],
            "cases": cases,
        },
        "torch.optim.AdamW (torch %s, single-tensor CPU path); see make_optim_golden.py" % torch.__version__,
    )


# ---- clipping


def make_clip():
    g = torch.Generator().manual_seed(7)
    sets = []

    def case(name, tensors, max_norm):
        ps = [torch.nn.Parameter(torch.zeros_like(t)) for t in tensors]
        for p, t in zip(ps, tensors):
            p.grad = t.clone()
        norm = float(torch.nn.utils.clip_grad_norm_(ps, max_norm))
        sets.append(
            {
                "name": name,
                "max_norm": max_norm,
                "sizes": [t.numel() for t in tensors],
                "grads": sum((flat(t) for t in tensors), []),
                "norm": num(norm),
                "after": sum((flat(p.grad) for p in ps), []),
            }
        )

    big = [torch.randn(n, generator=g) for n in (13, 64, 3)]
    case("above", big, 1.0)
    case("below", [t * 0.02 for t in big], 1.0)
    case("zero", [torch.zeros(5), torch.zeros(9)], 1.0)
    nan = [t.clone() for t in big]
    nan[1][17] = float("nan")
    case("nan", nan, 1.0)
    inf = [t.clone() for t in big]
    inf[2][0] = float("inf")
    case("inf", inf, 1.0)
    case("half", [torch.randn(n, generator=g) * 0.1 for n in (31, 1, 40)], 0.5)
    dump(
        "clip.json",
        {"cases": sets},
        "torch.nn.utils.clip_grad_norm_ (torch %s); see make_optim_golden.py" % torch.__version__,
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    make_schedules()
    make_adamw()
    make_clip()
