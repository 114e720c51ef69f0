#!/usr/bin/python3
"""bench_torch_gpu.py — the PyTorch peer of bagelpipe's training step on the
GPU (scripts/bench/model-gpu.sh; docs/model.md "Benchmark: the recipe batch").

  bench_torch_gpu.py CASE.json ITERS [--compile] [--warmup N] [--device cuda|cpu]
  bench_torch_gpu.py --rate [--device cuda|cpu]   only the matmul rate line
  bench_torch_gpu.py --check CASE.json     this forward against bagel_ref.forward
                                           in float64 on the CPU (losses, every gradient)

The model is bagel_ref.py's (tests/reference/FORMAT.md: same deterministic
weights as bench-model, so the first step's loss agrees), rewritten for speed
the way BAGEL runs it: the residual stream in expert order (understanding rows,
then generation rows), each MoT projection one matrix product per expert over
its own rows (bagel_ref applies both experts to every token and picks), and
scaled_dot_product_attention per sample: is_causal for a sample that is one
causal split (flash), the sample's dense boolean mask otherwise (BAGEL's
rule, R.dense_mask), the ViT per image without a mask.

One training step, as bagelpipe's --train step: zero the gradients, forward
under autocast bf16 with fp32 master weights (the parameters, their gradients
and AdamW's state are fp32; autocast casts the weights to bf16 for every
matrix product), backward, clip_grad_norm_ 1.0, AdamW (lr 1e-4, betas 0.9 /
0.95, eps 1e-15, no weight decay; fused where this torch has it, else
foreach), EMA 0.9999 over the trainable parameters (foreach). The batch's
index tensors are built once on the device before timing.

--compile: torch.compile (inductor, default mode) of one LLM layer and one
ViT layer (the same compiled code serves every layer: same shapes); where it
fails, the reason is printed and the run goes on eager.

Timing: CUDA events around each step after the warm-up steps, the median of
ITERS. The bf16 matmul rate is measured in the same run (8192³ torch.matmul,
median of 10), and MFU is the model FLOPs (bench_ref.model_flops) over it.
Peak memory: torch.cuda.max_memory_allocated over the whole run (weights,
gradients, optimizer state, EMA, activations).

On a machine without CUDA it runs on the CPU in float32 (no autocast), for
testing; the matmul rate is then a 1024³ float32 matmul. Works with torch
1.13 (Debian, CPU) and torch 2.x.
"""
import json
import math
import os
import statistics
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bagel_ref as R  # noqa: E402
import bench_ref as B  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")


# ---------------------------------------------------------------------------
# FORMAT.md's deterministic weights, generated on the device (bit-identical to
# R.gen_weight: int64 arithmetic wraps mod 2^64, logical shifts by masking)


def _s64(x):
    x &= R.M64
    return x - (1 << 64) if x >= 1 << 63 else x


def _lsr(z, s):
    return (z >> s) & ((1 << (64 - s)) - 1)


def gen_weight_torch(name, shape, seed, device):
    n = int(np.prod(shape))
    key = _s64(R.fnv1a64(name.encode("utf-8")) ^ (seed & R.M64))
    out = torch.empty(n, dtype=torch.float32, device=device)
    f32 = lambda v: torch.tensor(v, dtype=torch.float32, device=device)  # noqa: E731
    one, tenth = f32(1.0), f32(np.float32(0.1))
    chunk = 1 << 24
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = torch.arange(s, s + m, dtype=torch.int64, device=device) + key
        z = z + _s64(0x9E3779B97F4A7C15)
        z = (z ^ _lsr(z, 30)) * _s64(0xBF58476D1CE4E5B9)
        z = (z ^ _lsr(z, 27)) * _s64(0x94D049BB133111EB)
        z = z ^ _lsr(z, 31)
        u = _lsr(z, 40).to(torch.float64) * 2.0 ** -24
        v = (2.0 * u - 1.0).to(torch.float32)
        if len(shape) == 1:
            w = one + tenth * v if name.endswith(".weight") else tenth * v
        else:
            w = v * (one / torch.sqrt(f32(shape[1])))
        out[s:s + m] = w
    return out.view(*shape)


def make_params(cfg, seed, device, dtype=torch.float32):
    P = {}
    for name, shape in R.param_shapes(cfg):
        if name == "vit_pos_embed.pos_embed":
            w = torch.from_numpy(R.sincos_2d(cfg.v_max_side, cfg.H)).to(device)
        elif name == "latent_pos_embed.pos_embed":
            w = torch.from_numpy(R.sincos_2d(cfg.max_latent, cfg.H)).to(device)
        else:
            w = gen_weight_torch(name, shape, seed, device)
        w = w.to(dtype)
        w.requires_grad_(name not in R.FIXED)
        P[name] = w
    return P


# ---------------------------------------------------------------------------
# the batch on the device, in expert order


def prepare(case, cfg, device, dtype):
    b = R.pack(case, cfg)
    S = b["sequence_length"][0]
    T = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)  # noqa: E731
    gen_pos = np.sort(np.asarray(b["packed_vae_token_indexes"], dtype=np.int64))
    is_gen = np.zeros(S, dtype=bool)
    is_gen[gen_pos] = True
    und_pos = np.nonzero(~is_gen)[0]
    pos_of_row = np.concatenate([und_pos, gen_pos])
    row_of_pos = np.argsort(pos_of_row)
    parts = [np.asarray(b["packed_text_indexes"], dtype=np.int64)]
    if cfg.visual_und and b["packed_vit_token_indexes"]:
        parts.append(np.asarray(b["packed_vit_token_indexes"], dtype=np.int64))
    if cfg.visual_gen and b["packed_vae_token_indexes"]:
        parts.append(np.asarray(b["packed_vae_token_indexes"], dtype=np.int64))
    all_idx = np.concatenate(parts)
    assert np.array_equal(np.sort(all_idx), np.arange(S))
    perm = np.argsort(all_idx)[pos_of_row]  # row -> index into the concatenated parts
    d = {"S": S, "n_und": len(und_pos), "b": b, "perm": T(perm), "row_of_pos": T(row_of_pos),
         "pos_of_row": T(pos_of_row), "text_ids": T(b["packed_text_ids"])}
    pos = torch.as_tensor(np.asarray(b["packed_position_ids"], dtype=np.float64)[pos_of_row], device=device)
    inv = 1.0 / cfg.theta ** (torch.arange(0, cfg.hd, 2, dtype=torch.float64, device=device) / cfg.hd)
    ang = pos[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    d["cos"] = torch.cos(ang)[:, None, :].to(dtype)
    d["sin"] = torch.sin(ang)[:, None, :].to(dtype)
    # attention per sample: (start, length, mask or None for one causal split)
    samples, s = [], 0
    for n, splits in zip(b["sample_lens"], b["sample_splits"]):
        if len(splits) == 1 and splits[0][1] == R.MODE_CAUSAL:
            samples.append((s, n, None))
        else:
            samples.append((s, n, torch.from_numpy(R.dense_mask(splits).astype(bool)).to(device)))
        s += n
    d["samples"] = samples
    if cfg.visual_und and b["packed_vit_token_indexes"]:
        d["vit_tokens"] = torch.from_numpy(np.concatenate(b["vit_tokens"], axis=0)).to(device, dtype)
        d["vit_posid"] = T(b["packed_vit_position_ids"])
        d["vit_lens"] = list(b["vit_token_seqlens"])
    if cfg.visual_gen and b["packed_vae_token_indexes"]:
        x0 = torch.from_numpy(np.concatenate(b["x0_tokens"], axis=0)).to(device, torch.float64)
        nvae = x0.shape[0]
        eps = torch.from_numpy(np.asarray(case["eps"], dtype=np.float32).reshape(nvae, cfg.latent_dim)).to(
            device, torch.float64)
        tau = torch.tensor(b["packed_timesteps"], dtype=torch.float64, device=device)
        t = R.shifted_t(tau, cfg.shift)
        d["xt"] = ((1.0 - t[:, None]) * x0 + t[:, None] * eps).to(dtype)
        d["t"] = t.to(dtype)
        d["lat_posid"] = T(b["packed_latent_position_ids"])
        d["target"] = (eps - x0)[t > 0].to(dtype)
        d["mse_rows"] = T(row_of_pos[np.asarray(b["mse_loss_indexes"], dtype=np.int64)])
    d["ce_rows"] = T(row_of_pos[np.asarray(b["ce_loss_indexes"], dtype=np.int64)])
    d["labels"] = T(b["packed_label_ids"])
    return d


# ---------------------------------------------------------------------------
# the model


def attend(q, k, v, mask, causal):
    """q [1, h, n, d], k, v the same heads; mask [n, n] bool (True = visible) or None."""
    if HAVE_SDPA:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    sc = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    n = q.shape[-2]
    if causal:
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        sc = sc.masked_fill(~mask, float("-inf"))
    return torch.softmax(sc, dim=-1) @ v


def up(x):
    """at least float32 (bf16 activations are normalized in float32; the float64 check stays float64)"""
    return x if x.dtype == torch.float64 else x.float()


def rms(x, w, eps):
    xf = up(x)
    return (up(w) * (xf * torch.rsqrt((xf * xf).mean(-1, keepdim=True) + eps))).to(x.dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


LLM_NAMES = ("input_layernorm{e}.weight", "self_attn.q_proj{e}.weight", "self_attn.q_proj{e}.bias",
             "self_attn.k_proj{e}.weight", "self_attn.k_proj{e}.bias", "self_attn.v_proj{e}.weight",
             "self_attn.v_proj{e}.bias", "self_attn.o_proj{e}.weight", "self_attn.q_norm{e}.weight",
             "self_attn.k_norm{e}.weight", "post_attention_layernorm{e}.weight", "mlp{e}.gate_proj.weight",
             "mlp{e}.up_proj.weight", "mlp{e}.down_proj.weight")


def make_llm_layer(cfg, n_und, samples):
    nh, nkv, hd, H, eps = cfg.nh, cfg.nkv, cfg.hd, cfg.H, cfg.rms_eps
    rep = nh // nkv
    spans = [(s, n) for s, n, _ in samples]  # Python ints only: the compiled layer specializes on them

    def layer(x, cos, sin, row_of_pos, pos_of_row, masks, wu, wg):
        S = x.shape[0]
        ex = ((0, n_und, wu), (n_und, S, wg))  # (first row, end row, weights) per expert
        a = [rms(x[s:e], w[0], eps) for s, e, w in ex]
        q = torch.cat([F.linear(ai, w[1], w[2]) for ai, (_, _, w) in zip(a, ex)]).view(S, nh, hd)
        k = torch.cat([F.linear(ai, w[3], w[4]) for ai, (_, _, w) in zip(a, ex)]).view(S, nkv, hd)
        v = torch.cat([F.linear(ai, w[5], w[6]) for ai, (_, _, w) in zip(a, ex)]).view(S, nkv, hd)
        if cfg.qk_norm:
            q = torch.cat([rms(q[s:e], w[8], eps) for s, e, w in ex])
            k = torch.cat([rms(k[s:e], w[9], eps) for s, e, w in ex])
        q = (q * cos + rotate_half(q) * sin).to(v.dtype)
        k = (k * cos + rotate_half(k) * sin).to(v.dtype)
        # sequence order for attention; query head j uses kv head j // rep
        q, k, v = q[row_of_pos], k[row_of_pos], v[row_of_pos]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        outs = []
        for (s, n), m in zip(spans, masks):
            qs, ks, vs = (z[s:s + n].transpose(0, 1).unsqueeze(0) for z in (q, k, v))
            o = attend(qs, ks, vs, m, m is None)
            outs.append(o[0].transpose(0, 1).reshape(n, H))
        o = torch.cat(outs)[pos_of_row]
        x = x + torch.cat([F.linear(o[s:e], w[7]) for s, e, w in ex])
        a = [rms(x[s:e], w[10], eps) for s, e, w in ex]
        y = torch.cat([F.linear(F.silu(F.linear(ai, w[11])) * F.linear(ai, w[12]), w[13])
                       for ai, (_, _, w) in zip(a, ex)])
        return x + y

    return layer


VIT_NAMES = ("layer_norm1.weight", "layer_norm1.bias", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
             "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias",
             "self_attn.out_proj.weight", "self_attn.out_proj.bias", "layer_norm2.weight", "layer_norm2.bias",
             "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")


def make_vit_layer(cfg, lens):
    vH, nh, eps = cfg.vH, cfg.v_heads, cfg.v_eps
    hd = vH // nh

    def layer(x, w):
        N = x.shape[0]
        a = F.layer_norm(x, (vH,), w[0], w[1], eps)
        q = F.linear(a, w[2], w[3]).view(N, nh, hd)
        k = F.linear(a, w[4], w[5]).view(N, nh, hd)
        v = F.linear(a, w[6], w[7]).view(N, nh, hd)
        outs, s = [], 0
        for n in lens:  # full attention inside each image
            qs, ks, vs = (z[s:s + n].transpose(0, 1).unsqueeze(0) for z in (q, k, v))
            outs.append(attend(qs, ks, vs, None, False)[0].transpose(0, 1).reshape(n, vH))
            s += n
        x = x + F.linear(torch.cat(outs), w[8], w[9])
        a = F.layer_norm(x, (vH,), w[10], w[11], eps)
        return x + F.linear(F.gelu(F.linear(a, w[12], w[13]), approximate="tanh"), w[14], w[15])

    return layer


def timestep_embed(P, t):
    k = torch.arange(128, dtype=torch.float64, device=t.device)
    f = torch.exp(-math.log(10000.0) * k / 128.0).to(t.dtype)
    a = t[:, None] * f[None, :]
    e = torch.cat([torch.cos(a), torch.sin(a)], dim=-1)
    h = F.linear(e, P["time_embedder.mlp.0.weight"], P["time_embedder.mlp.0.bias"])
    return F.linear(F.silu(h), P["time_embedder.mlp.2.weight"], P["time_embedder.mlp.2.bias"])


class Model:
    def __init__(self, cfg, P, d):
        self.cfg, self.P, self.d = cfg, P, d
        self.llm_layer = make_llm_layer(cfg, d["n_und"], d["samples"])
        self.vit_layer = make_vit_layer(cfg, d.get("vit_lens", []))
        lm = "language_model.model.layers.%d."
        self.wl = [tuple(tuple(P[(lm % i) + n.format(e=e)] for n in LLM_NAMES) for e in ("", "_moe_gen"))
                   for i in range(cfg.L)]
        vm = "vit_model.vision_model.encoder.layers.%d."
        self.wv = [tuple(P[(vm % j) + n] for n in VIT_NAMES) for j in range(cfg.v_layers)] if cfg.visual_und else []
        self.masks = tuple(m for _, _, m in d["samples"])

    def compile(self):
        self.llm_layer = torch.compile(self.llm_layer, dynamic=False)
        self.vit_layer = torch.compile(self.vit_layer, dynamic=False)

    def forward(self):
        cfg, P, d = self.cfg, self.P, self.d
        lm = "language_model.model."
        parts = [F.embedding(d["text_ids"], P[lm + "embed_tokens.weight"])]
        if "vit_tokens" in d:
            vm = "vit_model.vision_model."
            x = F.linear(d["vit_tokens"], P[vm + "embeddings.patch_embedding.weight"],
                         P[vm + "embeddings.patch_embedding.bias"])
            x = x + P[vm + "embeddings.position_embedding.weight"][d["vit_posid"]]
            for w in self.wv:
                x = self.vit_layer(x, w)
            x = F.layer_norm(x, (cfg.vH,), P[vm + "post_layernorm.weight"], P[vm + "post_layernorm.bias"], cfg.v_eps)
            x = F.linear(F.gelu(F.linear(x, P["connector.fc1.weight"], P["connector.fc1.bias"]), approximate="tanh"),
                         P["connector.fc2.weight"], P["connector.fc2.bias"])
            parts.append(x + P["vit_pos_embed.pos_embed"][d["vit_posid"]])
        if "xt" in d:
            e = F.linear(d["xt"], P["vae2llm.weight"], P["vae2llm.bias"]) + timestep_embed(P, d["t"])
            parts.append(e + P["latent_pos_embed.pos_embed"][d["lat_posid"]])
        dt = parts[0].dtype  # the residual stream keeps the master weights' precision
        x = torch.cat([p.to(dt) for p in parts])[d["perm"]]  # expert order
        for wu, wg in self.wl:
            x = self.llm_layer(x, d["cos"], d["sin"], d["row_of_pos"], d["pos_of_row"], self.masks, wu, wg)
        nu = d["n_und"]
        h = torch.cat([rms(x[:nu], P[lm + "norm.weight"], cfg.rms_eps),
                       rms(x[nu:], P[lm + "norm_moe_gen.weight"], cfg.rms_eps)])
        zero = up(h.new_zeros(()))
        ce = mse = zero
        if len(d["ce_rows"]):
            W = P[lm + "embed_tokens.weight"] if cfg.tie else P["language_model.lm_head.weight"]
            logits = F.linear(h[d["ce_rows"]], W)
            ce = F.cross_entropy(up(logits), d["labels"])
        if "mse_rows" in d and len(d["mse_rows"]):
            pred = F.linear(h[d["mse_rows"]], P["llm2vae.weight"], P["llm2vae.bias"])
            mse = ((up(pred) - up(d["target"])) ** 2).mean(-1).mean()
        total = self.loss_cfg.get("ce_weight", 1.0) * ce + self.loss_cfg.get("mse_weight", 1.0) * mse
        return {"ce": ce, "mse": mse, "total": total}


# ---------------------------------------------------------------------------
# the check against bagel_ref (float64, CPU)


def check(path):
    torch.set_num_threads(os.cpu_count() or 1)
    with open(path) as f:
        case = json.load(f)
    assert not case["loss"].get("ce_reweight"), "the peer has no len2weight reweighting"
    cfg = R.Cfg(case["config"])
    # the weights: the device generator against bagel_ref's numpy one, bit for bit
    for name, shape in R.param_shapes(cfg)[:12]:
        if name in R.FIXED:
            continue
        a = gen_weight_torch(name, shape, case["weights_seed"], "cpu").numpy()
        assert np.array_equal(a, R.gen_weight(name, shape, case["weights_seed"])), name
    R.DTYPE = torch.float64
    P0 = R.make_params(cfg, case["weights_seed"])
    b = R.pack(case, cfg)
    masks = [R.dense_mask(s) for s in b["sample_splits"]]
    nvae = sum(t.shape[0] for t in b["x0_tokens"])
    eps = np.asarray(case["eps"], dtype=np.float32).astype(np.float64).reshape(nvae, cfg.latent_dim)
    ref, _, _ = R.forward(P0, cfg, b, eps, case["loss"], masks)
    ref["total"].backward()
    P1 = make_params(cfg, case["weights_seed"], "cpu", torch.float64)
    m = Model(cfg, P1, prepare(case, cfg, "cpu", torch.float64))
    m.loss_cfg = case["loss"]
    got = m.forward()
    got["total"].backward()
    worst = 0.0
    # the ViT's key biases have a zero gradient in exact arithmetic (softmax
    # ignores a per-query constant): errors are relative to at least 1e-6 of
    # the whole gradient's norm
    gnorm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in P0.values() if p.requires_grad))
    for k in ("ce", "mse", "total"):
        r, g = ref[k].item(), got[k].item()
        assert abs(r - g) <= 1e-10 * max(1.0, abs(r)), (k, r, g)
    for name, p in P0.items():
        if not p.requires_grad:
            continue
        gr, gg = p.grad, P1[name].grad
        e = (gg - gr).norm().item() / max(gr.norm().item(), 1e-6 * gnorm)
        worst = max(worst, e)
        assert e < 1e-9, (name, e)
    print("bench_torch_gpu: check %s: losses %.12f (ce %.6f, mse %.6f) equal to bagel_ref; %d gradients, worst "
          "relative error %.2e; weights generated on the device equal bagel_ref's"
          % (case["name"], got["total"].item(), got["ce"].item(), got["mse"].item(),
             sum(p.requires_grad for p in P0.values()), worst))


# ---------------------------------------------------------------------------
# timing


class Timer:
    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def time(self, fn):
        if self.cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = fn()
            b.record()
            b.synchronize()
            return a.elapsed_time(b) / 1e3, out
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out


def matmul_rate(device, timer):
    """Measured dense matmul rate, TFLOP/s (bf16 8192³ on the GPU)."""
    if device.type == "cuda":
        n, dt = 8192, torch.bfloat16
    else:
        n, dt = 1024, torch.float32
    a = torch.randn(n, n, device=device, dtype=dt)
    b = torch.randn(n, n, device=device, dtype=dt)
    for _ in range(3):
        torch.matmul(a, b)
    ts = [timer.time(lambda: torch.matmul(a, b))[0] for _ in range(10)]
    del a, b
    return 2.0 * n ** 3 / statistics.median(ts) / 1e12, n, str(dt).replace("torch.", "")


def bench(path, iters, use_compile, warmup, device):
    device = torch.device(device if device != "cuda" or torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    timer = Timer(device)
    with open(path) as f:
        case = json.load(f)
    cfg = R.Cfg(case["config"])
    rate, mm_n, mm_dt = matmul_rate(device, timer)
    print("bench_torch_gpu: torch %s, device %s%s, matmul %d³ %s: %.4g TFLOP/s (median of 10)"
          % (torch.__version__, device, " (" + torch.cuda.get_device_name(device) + ")" if device.type == "cuda" else "",
             mm_n, mm_dt, rate), flush=True)
    t0 = time.perf_counter()
    P = make_params(cfg, case["weights_seed"], device)
    d = prepare(case, cfg, device, torch.float32)
    fl = B.model_flops(cfg, d["b"], [R.dense_mask(s) for s in d["b"]["sample_splits"]])
    print(B.flops_line(case["name"], fl))
    model = Model(cfg, P, d)
    model.loss_cfg = case["loss"]
    params = [p for p in P.values() if p.requires_grad]
    kw = {}
    if device.type == "cuda" and int(torch.__version__.split(".")[0]) >= 2:
        kw = {"fused": True}
    try:
        opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), eps=1e-15, weight_decay=0.0, **kw)
        opt_kind = "fused" if kw else "default"
    except (TypeError, RuntimeError) as e:
        print("bench_torch_gpu: AdamW fused unavailable (%s): foreach" % e)
        opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), eps=1e-15, weight_decay=0.0, foreach=True)
        opt_kind = "foreach"
    with torch.no_grad():
        ema = [p.detach().clone() for p in params]
    print("bench_torch_gpu: set-up %.1f s: %d parameters (%d trainable), %d tokens, optimizer AdamW %s"
          % (time.perf_counter() - t0, sum(p.numel() for p in P.values()), sum(p.numel() for p in params),
             d["S"], opt_kind), flush=True)
    compiled = "eager"
    if use_compile:
        if not hasattr(torch, "compile"):
            compiled = "eager(no-torch.compile)"
            print("bench_torch_gpu: torch %s has no torch.compile: running eager" % torch.__version__)
        else:
            model.compile()
            compiled = "compile"
    amp = device.type == "cuda"

    def step():
        opt.zero_grad(set_to_none=True)
        if amp:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                L = model.forward()
        else:
            L = model.forward()
        L["total"].backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, 0.9999)
            torch._foreach_add_(ema, params, alpha=1.0 - 0.9999)
        return L["total"].detach(), norm

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first_loss, times = None, []
    for it in range(-warmup, iters):
        t1 = time.perf_counter()
        try:
            dt, (loss, norm) = timer.time(step)
        except Exception as e:  # a compile failure: say why, go on eager
            if compiled != "compile" or first_loss is not None:
                raise
            reason = ("%s: %s" % (type(e).__name__, e)).splitlines()[0][:300]
            print("bench_torch_gpu: torch.compile failed, running eager: %s" % reason, flush=True)
            model.llm_layer = make_llm_layer(cfg, d["n_und"], d["samples"])
            model.vit_layer = make_vit_layer(cfg, d.get("vit_lens", []))
            compiled = "eager(compile-failed)"
            dt, (loss, norm) = timer.time(step)
        if first_loss is None:
            first_loss = loss.item()
            print("bench_torch_gpu: first step %.1f s (wall, %s), loss %.6f" % (time.perf_counter() - t1, compiled,
                                                                               first_loss), flush=True)
        if it >= 0:
            times.append(dt)
    med, best = statistics.median(times), min(times)
    mem = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else 0.0
    tf = fl["total"] / med / 1e12
    print("bench-torch mode=%s device=%s case=%s tokens=%d warmup=%d iters=%d first_loss=%.6f loss=%.6f "
          "grad_norm=%.4g step_ms=%.1f best_ms=%.1f tokens_per_s=%.0f model_tflop=%.4f tflops=%.4g "
          "peak_tflops=%.4g mfu=%.2f mem_gib=%.2f"
          % (compiled, device.type, case["name"], d["S"], warmup, iters, first_loss, loss.item(), norm.item(),
             med * 1e3, best * 1e3, d["S"] / med, fl["total"] / 1e12, tf, rate, 100 * tf / rate, mem), flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[:1] == ["--rate"]:
        dev = torch.device(a[2] if len(a) == 3 and a[1] == "--device" else "cuda")
        dev = dev if dev.type != "cuda" or torch.cuda.is_available() else torch.device("cpu")
        r, n, dt = matmul_rate(dev, Timer(dev))
        print("bench_torch_gpu: matmul %d³ %s on %s: %.4g TFLOP/s (median of 10)" % (n, dt, dev, r))
        sys.exit(0)
    if len(a) == 2 and a[0] == "--check":
        check(a[1])
        sys.exit(0)
    opts = {"--warmup": None, "--device": "cuda"}
    flags, pos = set(), []
    i = 0
    while i < len(a):
        if a[i] in opts and i + 1 < len(a):
            opts[a[i]] = a[i + 1]
            i += 2
        elif a[i] == "--compile":
            flags.add(a[i])
            i += 1
        elif a[i].startswith("--"):
            sys.exit(__doc__)
        else:
            pos.append(a[i])
            i += 1
    if len(pos) != 2:
        sys.exit(__doc__)
    comp = "--compile" in flags
    warm = int(opts["--warmup"]) if opts["--warmup"] is not None else (3 if comp else 2)
    bench(pos[0], int(pos[1]), comp, warm, opts["--device"])
