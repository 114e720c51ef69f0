#!/usr/bin/python3
"""The PyTorch side of scripts/bench/model.sh.

  bench_ref.py case CONFIG TOKENS OUT.json   writes a benchmark case (FORMAT.md)
                                             for a shipped config: t2i, VLM and
                                             edit samples until about TOKENS tokens
  bench_ref.py time CASE.json ITERS THREADS  forward + backward of the reference
                                             in float32, prints tokens/s
  bench_ref.py recipe CONFIG LAYERS OUT.json [SCALE]
                                             writes the recipe batch of issue 8:
                                             one packed sequence of ~10.8k tokens
                                             (2 t2i, 2 VLM, 1 edit, 1 long text);
                                             LAYERS > 0 overrides the LLM depth;
                                             SCALE > 1 shrinks every length and
                                             image side by that factor (CPU tests)
  bench_ref.py flops CASE.json               the model FLOPs of one training step
                                             on the case (the count both
                                             benchmark sides print)

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


# ---------------------------------------------------------------------------
# the recipe batch (issue 8, docs/model.md "Benchmark: the recipe batch")

# lengths in tokens: text without its <|im_start|> <|im_end|>, images as
# token grids (a 512² image is 32×32 latent tokens after the FLUX
# autoencoder's /8 and the 2×2 latent patches; 378² and 518² ViT images are
# 27² and 37² patches of 14 pixels)
RECIPE = {"caption": (60, 100), "lat_side": 32, "vlm_side": 27, "question": 50, "answer": (250, 400),
          "edit_side": 37, "instruction": 30, "text": 2900}


def recipe_case(config, layers, out, scale=1):
    cfg_json = G.load_config(config) if not config.endswith(".json") else json.load(open(config))
    name = "recipe-%s" % cfg_json["name"]
    if layers > 0:
        cfg_json["llm"]["num_hidden_layers"] = layers
        name += "-%dl" % layers
    if scale > 1:
        name += "-s%d" % scale
    cfg = R.Cfg(cfg_json)
    d = G.Draw(name)
    V = min(cfg.V, 151643)  # ordinary tokens, below the specials

    def n(x):
        return max(1, int(round(x / scale)))

    def lat_image(**kw):
        """A VAE image of the recipe's 512² (scaled), with its ViT copy when und."""
        side = min(n(RECIPE["lat_side"]), cfg.max_latent)
        if cfg.ae == "identity":
            px = side * cfg.latent_patch
            return G.image(d, vae=(px, px), **kw)
        zs = side * cfg.latent_patch
        return G.image(d, latent=(cfg.z_channels, zs, zs), **kw)

    def vit_side(side):
        return min(n(side), cfg.v_max_side) * cfg.v_patch

    def vae_and_vit(side):
        """The edit source: a clean VAE copy and a ViT copy of one image."""
        v = vit_side(side)
        ls = min(n(RECIPE["lat_side"]), cfg.max_latent)
        kw = {"und": True, "cond": True, "cfg": True, "vit": (v, v)}
        if cfg.ae == "identity":
            kw["vae"] = (ls * cfg.latent_patch,) * 2
        else:
            kw["latent"] = (cfg.z_channels, ls * cfg.latent_patch, ls * cfg.latent_patch)
        return G.image(d, **kw)

    samples = []
    for c in RECIPE["caption"]:  # text-to-image: caption, noisy 512² target
        samples.append({"segments": [G.text(d, n(c), V, cfg=True), lat_image(loss=True)]})
    for a in RECIPE["answer"]:  # VLM: 378² image, question, answer with CE
        v = vit_side(RECIPE["vlm_side"])
        samples.append({"segments": [G.image(d, und=True, vit=(v, v)), G.text(d, n(RECIPE["question"]), V),
                                     G.text(d, n(a), V, loss=True)]})
    # edit: clean 512² VAE condition + 518² ViT copy, instruction, noisy 512² target
    samples.append({"segments": [vae_and_vit(RECIPE["edit_side"]), G.text(d, n(RECIPE["instruction"]), V, cfg=True),
                                 lat_image(loss=True)]})
    samples.append({"segments": [G.text(d, n(RECIPE["text"]), V, loss=True)]})  # long text with CE
    case = G.finish(name, cfg_json, samples, d, {"ce_weight": 1.0, "mse_weight": 1.0, "ce_reweight": False}, seed=1)
    b = R.pack(case, cfg)
    S = b["sequence_length"][0]
    assert len(b["sample_lens"]) == len(samples) and sum(b["sample_lens"]) == S  # one packed sequence
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(case, f, separators=(",", ":"))
    os.replace(tmp, out)
    n_vit, n_lat = len(b["packed_vit_token_indexes"]), len(b["packed_vae_token_indexes"])
    print("bench_ref: wrote %s: %d samples in one packed sequence of %d tokens: text %d (incl. image markers), "
          "ViT %d, latent %d (noisy %d, clean %d); CE %d; sample lengths %s; llm layers %d"
          % (out, len(samples), S, len(b["packed_text_indexes"]), n_vit, n_lat, len(b["mse_loss_indexes"]),
             n_lat - len(b["mse_loss_indexes"]), len(b["ce_loss_indexes"]), b["sample_lens"], cfg.L))


# ---------------------------------------------------------------------------
# model FLOPs of one training step (forward + backward), the count of issue 8.
# scripts/bench/bench_model.c counts the same terms from its packed batch.


def model_flops(cfg, b, masks=None):
    """-> dict of the terms and "total". Linears: 6 x parameters used per
    token (weights only; biases, norms, activations, the embedding lookup and
    the optimizer are not counted), by token kind: every token through one
    MoT expert (text and ViT tokens the understanding expert, latent tokens
    the generation expert), ViT patches through SigLIP and the connector,
    latent tokens through vae2llm and the timestep embedder, noisy latent
    tokens through llm2vae, CE tokens through lm_head. Attention: 12 x head_dim
    x query heads per visible query-key pair per layer (QKᵀ and PV, 2 flops a
    multiply-add each, backward twice the forward), the LLM's pairs counted
    from the dense masks, the ViT's n² per image."""
    S = b["sequence_length"][0]
    H, L, hd, nh, nkv, I = cfg.H, cfg.L, cfg.hd, cfg.nh, cfg.nkv, cfg.I
    n_lat = len(b["packed_vae_token_indexes"])
    n_vit = len(b["packed_vit_token_indexes"])
    n_und, n_gen = S - n_lat, n_lat
    n_ce, n_mse = len(b["ce_loss_indexes"]), len(b["mse_loss_indexes"])
    per_tok = L * (H * nh * hd + 2 * H * nkv * hd + nh * hd * H + 3 * H * I)
    if masks is None:
        masks = [R.dense_mask(s) for s in b["sample_splits"]]
    pairs = sum(int(m.sum(dtype=np.int64)) for m in masks)
    f = {"linear_und": 6 * n_und * per_tok, "linear_gen": 6 * n_gen * per_tok}
    vit_pairs = 0
    if cfg.visual_und:
        vH, vI, Lv = cfg.vH, cfg.vI, cfg.v_layers
        f["vit"] = 6 * n_vit * (vH * cfg.v_dim + Lv * (4 * vH * vH + 2 * vH * vI))
        f["connector"] = 6 * n_vit * (vH * H + H * H)
        vit_pairs = sum(n * n for n in b["vit_token_seqlens"])
        f["attn_vit"] = 12 * vit_pairs * vH * Lv
    if cfg.visual_gen:
        D = cfg.latent_dim
        f["latent_in"] = 6 * n_lat * (D * H + 256 * H + H * H)  # vae2llm, time embedder
        f["llm2vae"] = 6 * n_mse * H * D
    f["lm_head"] = 6 * n_ce * H * cfg.V
    f["attn_llm"] = 12 * pairs * hd * nh * L
    f["total"] = sum(f.values())
    f["pairs_llm"], f["pairs_vit"] = pairs, vit_pairs
    f["S"], f["n_und"], f["n_gen"], f["n_vit"], f["n_ce"], f["n_mse"] = S, n_und, n_gen, n_vit, n_ce, n_mse
    return f


FLOP_KEYS = ("linear_und", "linear_gen", "vit", "connector", "latent_in", "llm2vae", "lm_head", "attn_llm", "attn_vit")


def flops_line(name, f):
    """One line, the format bench-model --count prints too (compare them)."""
    parts = ["flops case=%s S=%d und=%d gen=%d vit=%d ce=%d mse=%d pairs_llm=%d pairs_vit=%d"
             % (name, f["S"], f["n_und"], f["n_gen"], f["n_vit"], f["n_ce"], f["n_mse"], f["pairs_llm"],
                f["pairs_vit"])]
    for k in FLOP_KEYS:
        parts.append("%s=%.6g" % (k, f.get(k, 0)))
    parts.append("total=%.6g" % f["total"])
    return " ".join(parts)


def flops_case(path):
    with open(path) as f:
        case = json.load(f)
    cfg = R.Cfg(case["config"])
    b = R.pack(case, cfg)
    print(flops_line(case["name"], model_flops(cfg, b)))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "case":
        make_case(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) in (5, 6) and sys.argv[1] == "recipe":
        recipe_case(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]) if len(sys.argv) == 6 else 1)
    elif len(sys.argv) == 3 and sys.argv[1] == "flops":
        flops_case(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "time":
        time_case(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
