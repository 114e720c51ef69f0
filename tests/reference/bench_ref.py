#!/usr/bin/python3
"""The PyTorch side of scripts/bench/model.sh.

  bench_ref.py case CONFIG TOKENS OUT.json   writes a benchmark case (FORMAT.md)
                                             for a shipped config: t2i, VLM and
                                             edit samples until about TOKENS tokens
  bench_ref.py time CASE.json ITERS THREADS  forward + backward of the reference
                                             in float32, prints tokens/s

Run with /usr/bin/python3 (Debian's python3-torch)."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden as G  # noqa: E402
import bagel_ref as R  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def make_case(config, tokens, out):
    cfg_json = G.load_config(config)
    cfg = R.Cfg(cfg_json)
    d = G.Draw("bench-" + config)
    V = min(cfg_json["llm"]["vocab_size"], 151643)
    vae_max, _ = cfg_json["bagel"]["vae_transform"]
    vit_max, _ = cfg_json["bagel"]["vit_transform"]
    samples, total, k = [], 0, 0
    while total < tokens:
        kind = k % 3
        if kind == 0:  # t2i: caption, noisy target
            s = {"segments": [G.text(d, 24, V, cfg=True), G.image(d, loss=True, vae=(vae_max, vae_max))]}
        elif kind == 1:  # VLM: image, question, answer
            s = {"segments": [G.image(d, und=True, vit=(vit_max, vit_max)), G.text(d, 16, V),
                              G.text(d, 40, V, loss=True)]}
        else:  # edit: source (VAE + ViT), instruction, target
            s = {"segments": [G.image(d, und=True, cond=True, cfg=True, vit=(vit_max, vit_max),
                                      vae=(vae_max, vae_max)),
                              G.text(d, 12, V, cfg=True), G.image(d, loss=True, vae=(vae_max, vae_max))]}
        samples.append(s)
        case = G.finish("bench-" + config, cfg_json, samples, d,
                        {"ce_weight": 1.0, "mse_weight": 1.0, "ce_reweight": False}, seed=1)
        total = R.pack(case, cfg)["sequence_length"][0]
        k += 1
    with open(out, "w") as f:
        json.dump(case, f, separators=(",", ":"))
    print("bench_ref: wrote %s: %d samples, %d tokens" % (out, len(samples), total))


def time_case(path, iters, threads):
    R.DTYPE = torch.float32
    torch.set_num_threads(threads)
    with open(path) as f:
        case = json.load(f)
    cfg = R.Cfg(case["config"])
    b = R.pack(case, cfg)
    masks = [R.dense_mask(s) for s in b["sample_splits"]]
    nvae = sum(t.shape[0] for t in b["x0_tokens"])
    eps = np.asarray(case["eps"], dtype=np.float32).reshape(nvae, cfg.latent_dim)
    P = R.make_params(cfg, case["weights_seed"])
    S = b["sequence_length"][0]
    best, total = 1e30, 0.0
    for it in range(-1, iters):
        t0 = time.perf_counter()
        for p in P.values():
            p.grad = None
        losses, _, _ = R.forward(P, cfg, b, eps, case["loss"], masks)
        losses["total"].backward()
        dt = time.perf_counter() - t0
        if it >= 0:
            total += dt
            best = min(best, dt)
    print("bench-ref case=%s tokens=%d threads=%d iters=%d loss=%.6f best_ms=%.1f mean_ms=%.1f tokens_per_s=%.0f"
          % (case["name"], S, threads, iters, losses["total"].item(), best * 1e3, total / iters * 1e3, S / best))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "case":
        make_case(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 5 and sys.argv[1] == "time":
        time_case(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
