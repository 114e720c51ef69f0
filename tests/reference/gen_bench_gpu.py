#!/usr/bin/env python3
"""gen_bench_gpu.py — the PyTorch peer of bagel-generate's benchmark (issue 12):
text decoding and image generation as BAGEL's official inferencer runs them,
in bf16 on one GPU, one JSON line per measurement on stdout.

  gen_bench_gpu.py [--device cuda|cpu] [--config NAME[:LAYERS] ...] [--smoke]
                   [--iters N] [--only text|image] [--check]

  --config   models/configs/NAME.json, LAYERS LLM layers if given (default:
             bagel-0.5b-mot with all 24, bagel-7b-mot:4)
  --smoke    small sizes, for a test run on the CPU:
             gen_bench_gpu.py --device cpu --config tiny --smoke
  --check    (CPU, float32) the greedy ids and one image step's velocities
             against gen_ref.py on the same weights, then exit

Weights: FORMAT.md's deterministic generator (fnv1a64 of the name, splitmix64
stream, the float32 scaling rules, the sin-cos tables), computed here in
torch alone, so they equal bagelpipe's and gen_ref's; then cast to bf16 (on
the CPU the model stays float32). No checkpoint, no ViT (no input here has a
ViT image), no numpy: the GPU machine has torch only.

The inference path is the official one (bagel-reference.md §6):
  - per layer one KV cache, merged with a chunk's new keys into a fresh
    tensor at every call, as NaiveCache / forward_inference do (torch.cat
    here, the same copy);
  - the MoT layer routes by index sets as forward_inference does: "und" mode
    sends every query row through the understanding weights, "gen" mode the
    marker rows through und and the latent rows through *_moe_gen
    (gather, project, scatter into a zero tensor);
  - RMSNorm in float32 inside, cast back, times the weight; RoPE cos/sin cast
    to the activations' dtype; attention by scaled_dot_product_attention
    (flash / memory-efficient kernels; the official calls flash-attn's varlen
    kernel, not installed there), GQA by enable_gqa;
  - text: <|im_start|> at rope, one token per step appended to the cache,
    lm_head, argmax; a fixed number of steps (no stop at <|im_end|>);
    batch B = B prompts of equal length decoded together (the official
    generate_text packs sequences; equal lengths make the packing a batch);
  - image: the query (soi, N latents, eoi at rope, cache not updated),
    t = linspace(1, 0, 50) shifted by 3.0, 49 Euler steps, guidance branches
    evaluated one after another (the official does not batch them), renorm
    "global", cfg_interval [0.4, 1.0], x kept in float32.
Image measurements (1024x1024 = 4096 latent tokens), on a text prompt:
  t2i-text-cfg  cfg_text_scale 3.0, cfg_img_scale 1.0: two branches while t
                is inside the interval (41 of the 49 steps), 90 evaluations;
  t2i-defaults  interleave_inference's defaults, cfg_img_scale 1.5 too: on a
                text-only input the image-unconditional context equals the
                full one, the official code still evaluates it (v_i = v_c,
                and the result differs from text guidance alone): 131.
Image guidance proper needs an image input (ViT); not measured here.

Timing: torch.cuda.synchronize around each measured call, time.perf_counter;
a warm-up of each kind first; the median of --iters runs (default 3) for
text, of 2 runs for images. text_decode: the decode loop of NEW tokens per sequence (prefill
of the prompt timed apart), tokens/s = batch·NEW / seconds. The whole
default run takes about two minutes on an H100.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
M64 = (1 << 64) - 1
HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")


# ---------------------------------------------------------------------------
# config


class Cfg:
    def __init__(self, spec):
        name, _, layers = spec.partition(":")
        path = name if name.endswith(".json") else os.path.join(ROOT, "models", "configs", name + ".json")
        with open(path) as f:
            c = json.load(f)
        llm, bg = c["llm"], c["bagel"]
        self.name = c.get("name", name)
        self.H, self.nh, self.nkv = llm["hidden_size"], llm["num_attention_heads"], llm["num_key_value_heads"]
        self.L = int(layers) if layers else llm["num_hidden_layers"]
        self.hd = self.H // self.nh
        self.I, self.V = llm["intermediate_size"], llm["vocab_size"]
        self.theta = float(llm.get("rope_theta", 10000.0))
        self.eps = float(llm.get("rms_norm_eps", 1e-6))
        self.qk_norm = bool(bg.get("qk_norm", True))
        self.tie = bool(bg.get("tie_word_embeddings", False))
        ae = bg.get("autoencoder", {})
        ident = ae.get("type", "flux") == "identity"
        self.z = 3 if ident else ae.get("z_channels", 16)
        self.down = 1 if ident else ae.get("downsample", 8)
        self.patch = bg["latent_patch_size"]
        self.max_latent = bg["max_latent_size"]
        self.D = self.patch ** 2 * self.z
        t = bg["tokens"]
        self.bos, self.eos, self.soi, self.eoi = t["bos"], t["eos"], t["start_of_image"], t["end_of_image"]


# ---------------------------------------------------------------------------
# FORMAT.md's deterministic weights, in torch alone


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def _s64(x):
    x &= M64
    return x - (1 << 64) if x >= 1 << 63 else x


def _lsr(z, s):
    return (z >> s) & ((1 << (64 - s)) - 1)


def gen_weight(name, shape, seed, device):
    """float32, bit-identical to bagel_ref.gen_weight (int64 wraps mod 2^64)."""
    n = 1
    for s in shape:
        n *= s
    key = _s64(fnv1a64(name.encode("utf-8")) ^ (seed & M64))
    out = torch.empty(n, dtype=torch.float32, device=device)
    f32 = lambda v: torch.tensor(v, dtype=torch.float32, device=device)  # noqa: E731
    one, tenth = f32(1.0), f32(0.1)
    chunk = 1 << 24
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = torch.arange(s, s + m, dtype=torch.int64, device=device) + key
        z = z + _s64(0x9E3779B97F4A7C15)
        z = (z ^ _lsr(z, 30)) * _s64(0xBF58476D1CE4E5B9)
        z = (z ^ _lsr(z, 27)) * _s64(0x94D049BB133111EB)
        z = z ^ _lsr(z, 31)
        v = (2.0 * (_lsr(z, 40).to(torch.float64) * 2.0 ** -24) - 1.0).to(torch.float32)
        if len(shape) == 1:
            w = one + tenth * v if name.endswith(".weight") else tenth * v
        else:
            w = v * (one / torch.sqrt(f32(float(shape[1]))))
        out[s:s + m] = w
    return out.view(*shape)


def sincos_2d(G, H, device):
    Q = H // 4
    omega = 1.0 / 10000.0 ** (torch.arange(Q, dtype=torch.float64) / Q)
    r = torch.arange(G, dtype=torch.float64).repeat_interleave(G)
    c = torch.arange(G, dtype=torch.float64).repeat(G)
    out = torch.cat([torch.sin(c[:, None] * omega), torch.cos(c[:, None] * omega),
                     torch.sin(r[:, None] * omega), torch.cos(r[:, None] * omega)], dim=1)
    return out.to(torch.float32).to(device)


# ---------------------------------------------------------------------------
# the model


def rms_norm(x, w, eps):
    dt = x.dtype
    x32 = x.to(torch.float32)
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(dt)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Cache:
    """NaiveCache for B sequences of equal length: per layer K, V [B, T, nkv, hd]."""

    def __init__(self, L):
        self.k, self.v = [None] * L, [None] * L
        self.kv_len, self.rope = 0, 0

    def copy(self):
        c = Cache(len(self.k))
        c.k, c.v, c.kv_len, c.rope = list(self.k), list(self.v), self.kv_len, self.rope
        return c


class Model:
    def __init__(self, cfg, seed, device, dtype):
        self.cfg, self.device, self.dtype = cfg, device, dtype
        H, hd, kv, I = cfg.H, cfg.hd, cfg.nkv * cfg.hd, cfg.I

        def W(name, shape):
            return gen_weight(name, shape, seed, device).to(dtype)

        lm = "language_model.model."
        self.embed = W(lm + "embed_tokens.weight", (cfg.V, H))
        self.layers = []
        for i in range(cfg.L):
            pre = lm + "layers.%d." % i
            ex = {}
            for e in ("", "_moe_gen"):
                a = pre + "self_attn."
                p = {"q": W(a + "q_proj%s.weight" % e, (H, H)), "qb": W(a + "q_proj%s.bias" % e, (H,)),
                     "k": W(a + "k_proj%s.weight" % e, (kv, H)), "kb": W(a + "k_proj%s.bias" % e, (kv,)),
                     "v": W(a + "v_proj%s.weight" % e, (kv, H)), "vb": W(a + "v_proj%s.bias" % e, (kv,)),
                     "o": W(a + "o_proj%s.weight" % e, (H, H)),
                     "gate": W(pre + "mlp%s.gate_proj.weight" % e, (I, H)),
                     "up": W(pre + "mlp%s.up_proj.weight" % e, (I, H)),
                     "down": W(pre + "mlp%s.down_proj.weight" % e, (H, I)),
                     "in": W(pre + "input_layernorm%s.weight" % e, (H,)),
                     "post": W(pre + "post_attention_layernorm%s.weight" % e, (H,))}
                if cfg.qk_norm:
                    p["qn"] = W(a + "q_norm%s.weight" % e, (hd,))
                    p["kn"] = W(a + "k_norm%s.weight" % e, (hd,))
                ex["gen" if e else "und"] = p
            self.layers.append(ex)
        self.norm = {"und": W(lm + "norm.weight", (H,)), "gen": W(lm + "norm_moe_gen.weight", (H,))}
        self.head = self.embed if cfg.tie else W("language_model.lm_head.weight", (cfg.V, H))
        self.te0, self.te0b = W("time_embedder.mlp.0.weight", (H, 256)), W("time_embedder.mlp.0.bias", (H,))
        self.te2, self.te2b = W("time_embedder.mlp.2.weight", (H, H)), W("time_embedder.mlp.2.bias", (H,))
        self.v2l, self.v2lb = W("vae2llm.weight", (H, cfg.D)), W("vae2llm.bias", (H,))
        self.l2v, self.l2vb = W("llm2vae.weight", (cfg.D, H)), W("llm2vae.bias", (cfg.D,))
        self.lpos = sincos_2d(cfg.max_latent, H, device).to(dtype)
        self.inv_freq = 1.0 / (cfg.theta ** (torch.arange(0, hd, 2, dtype=torch.float32, device=device) / hd))

    # ---- one forward_inference over B sequences of n new tokens each

    def _rope(self, pos):
        """pos [n] int -> cos, sin [n, 1, hd] in the activations' dtype (float32 angles)."""
        f = pos.to(torch.float32)[:, None] * self.inv_freq[None, :]
        emb = torch.cat([f, f], dim=-1)
        return emb.cos()[:, None, :].to(self.dtype), emb.sin()[:, None, :].to(self.dtype)

    def _routed(self, x, route, fn):
        """route None: all rows und ('und' mode); else (und_idx, gen_idx) over
        the rows of x [R, ...] ('gen' mode): gather, apply, scatter into zeros."""
        if route is None:
            return fn("und", x)
        und_idx, gen_idx = route
        yu = fn("und", x[und_idx])
        yg = fn("gen", x[gen_idx])
        out = x.new_zeros((x.shape[0],) + tuple(yu.shape[1:]))
        out[und_idx] = yu
        out[gen_idx] = yg
        return out

    def forward(self, cache, x, pos, route, causal, update):
        """x [B, n, H]; pos [n] (same positions in every sequence); route over
        the n rows of one sequence, applied to each. -> (h [B, n, H], cache')."""
        cfg = self.cfg
        B, n, H = x.shape
        nh, nkv, hd = cfg.nh, cfg.nkv, cfg.hd
        cos, sin = self._rope(pos)
        if route is not None:  # the same rows in each sequence of the flat [B*n] rows
            off = (torch.arange(B, device=x.device) * n)[:, None]
            route = tuple((off + r[None, :]).reshape(-1) for r in route)
        xf = x.reshape(B * n, H)
        T = cache.kv_len
        mask = None
        if causal and n > 1 and T > 0:
            qi = torch.arange(n, device=x.device)[:, None] + T
            mask = torch.arange(T + n, device=x.device)[None, :] <= qi  # bottom-right causal
        out = cache.copy() if update else None
        for i, ex in enumerate(self.layers):
            a = self._routed(xf, route, lambda e, r: rms_norm(r, ex[e]["in"], cfg.eps))

            def qkv(e, r):
                p = ex[e]
                q = F.linear(r, p["q"], p["qb"]).view(-1, nh, hd)
                k = F.linear(r, p["k"], p["kb"]).view(-1, nkv, hd)
                v = F.linear(r, p["v"], p["vb"]).view(-1, nkv, hd)
                if cfg.qk_norm:
                    q, k = rms_norm(q, p["qn"], cfg.eps), rms_norm(k, p["kn"], cfg.eps)
                return torch.cat([q, k, v], dim=1)

            z = self._routed(a, route, qkv).view(B, n, nh + 2 * nkv, hd)
            q, k, v = z[:, :, :nh], z[:, :, nh:nh + nkv], z[:, :, nh + nkv:]
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            # NaiveCache merge: a new tensor of cached + new keys at every call
            K = k if cache.k[i] is None else torch.cat([cache.k[i], k], dim=1)
            V = v if cache.v[i] is None else torch.cat([cache.v[i], v], dim=1)
            if update:
                out.k[i], out.v[i] = K, V
            o = attend(q, K, V, causal and n > 1 and T == 0, mask).reshape(B * n, H)
            xf = xf + self._routed(o, route, lambda e, r: F.linear(r, ex[e]["o"]))
            a = self._routed(xf, route, lambda e, r: rms_norm(r, ex[e]["post"], cfg.eps))

            def mlp(e, r):
                p = ex[e]
                return F.linear(F.silu(F.linear(r, p["gate"])) * F.linear(r, p["up"]), p["down"])

            xf = xf + self._routed(a, route, mlp)
        h = self._routed(xf, route, lambda e, r: rms_norm(r, self.norm[e], cfg.eps)).view(B, n, H)
        if update:
            out.kv_len = T + n
        return h, out

    # ---- chunks

    def add_text(self, cache, ids):
        """ids [B, n] prompt tokens -> <|im_start|> ids <|im_end|>, und, causal."""
        B, n = ids.shape
        c = self.cfg
        full = torch.cat([torch.full((B, 1), c.bos, device=ids.device), ids,
                          torch.full((B, 1), c.eos, device=ids.device)], dim=1)
        pos = torch.arange(cache.rope, cache.rope + n + 2, device=ids.device)
        _, out = self.forward(cache, F.embedding(full, self.embed), pos, None, True, True)
        out.rope = cache.rope + n + 2
        return out

    def gen_text(self, cache, steps, B):
        """Greedy decoding, `steps` evaluations, no stop. -> ids [B, steps]."""
        cache = cache.copy()
        tok = torch.full((B, 1), self.cfg.bos, dtype=torch.int64, device=self.device)
        pos = torch.tensor([cache.rope], device=self.device)
        out = []
        for _ in range(steps):
            h, cache = self.forward(cache, F.embedding(tok, self.embed), pos, None, True, True)
            tok = torch.argmax(F.linear(h[:, 0], self.head), dim=-1)[:, None]
            out.append(tok)
            pos = pos + 1
        return torch.cat(out, dim=1)

    def timestep_embed(self, t, n):
        half = 128
        f = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=self.device) / half)
        a = torch.full((n, 1), float(t), dtype=torch.float32, device=self.device) * f[None]
        e = torch.cat([torch.cos(a), torch.sin(a)], dim=-1).to(self.dtype)
        hh = F.linear(e, self.te0, self.te0b)
        return F.linear(F.silu(hh), self.te2, self.te2b)

    def velocity(self, cache, x, t, gh, gw, pos_ids, route):
        """The denoising query on one context (cache not updated): v [N, D]."""
        c = self.cfg
        N = gh * gw
        lat = F.linear(x.to(self.dtype), self.v2l, self.v2lb) + self.timestep_embed(t, N) + self.lpos[pos_ids]
        seq = torch.cat([self.embed[c.soi][None], lat, self.embed[c.eoi][None]], dim=0)
        pos = torch.full((N + 2,), cache.rope, dtype=torch.int64, device=self.device)
        h, _ = self.forward(cache, seq[None], pos, route, False, False)
        v = F.linear(h[0], self.l2v, self.l2vb)
        return v[route[1]]

    def gen_image(self, full, tun, iun, x, gh, gw, p):
        """generate_image / _forward_flow with one image (batch 1)."""
        c = self.cfg
        N = gh * gw
        pos_ids = ((torch.arange(gh, device=self.device) * c.max_latent)[:, None]
                   + torch.arange(gw, device=self.device)[None, :]).reshape(-1)
        route = (torch.tensor([0, N + 1], device=self.device), torch.arange(1, N + 1, device=self.device))
        ts = torch.linspace(1, 0, p["num_timesteps"], device=self.device)
        s = p["timestep_shift"]
        ts = s * ts / (1 + (s - 1) * ts)
        dts = ts[:-1] - ts[1:]
        ts = ts[:-1].tolist()  # the official loop compares a tensor t each step; one copy here
        lo, hi = p["cfg_interval"]
        evals = 0
        for i, t in enumerate(ts):
            on = lo < t <= hi
            st = p["cfg_text_scale"] if on else 1.0
            si = p["cfg_img_scale"] if on else 1.0
            v = self.velocity(full, x, t, gh, gw, pos_ids, route)
            evals += 1
            if st > 1.0:
                vt = self.velocity(tun, x, t, gh, gw, pos_ids, route)
                evals += 1
            if si > 1.0:
                vi = self.velocity(iun, x, t, gh, gw, pos_ids, route)
                evals += 1
            if st > 1.0:
                w = vt + st * (v - vt)
                if si > 1.0:
                    w = vi + si * (w - vi)
                scale = (torch.norm(v) / (torch.norm(w) + 1e-8)).clamp(min=p["cfg_renorm_min"], max=1.0)
                v = w * scale
            x = x - v.to(x.dtype) * dts[i]
        return x, evals


def attend(q, K, V, is_causal, mask):
    """q [B, n, nh, hd], K/V [B, T, nkv, hd] -> [B, n, nh, hd]."""
    nh, nkv, hd = q.shape[2], K.shape[2], q.shape[3]
    qt, kt, vt = q.transpose(1, 2), K.transpose(1, 2), V.transpose(1, 2)
    if HAVE_SDPA:
        try:
            o = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, is_causal=is_causal, enable_gqa=True)
            return o.transpose(1, 2)
        except TypeError:  # torch < 2.5: no enable_gqa
            rep = nh // nkv
            o = F.scaled_dot_product_attention(qt, kt.repeat_interleave(rep, dim=1), vt.repeat_interleave(rep, dim=1),
                                               attn_mask=mask, is_causal=is_causal)
            return o.transpose(1, 2)
    rep = nh // nkv
    kt, vt = kt.repeat_interleave(rep, dim=1), vt.repeat_interleave(rep, dim=1)
    sc = (qt @ kt.transpose(-1, -2)) / math.sqrt(hd)
    n, T = q.shape[1], K.shape[1]
    if is_causal:
        mask = torch.ones(n, T, dtype=torch.bool, device=q.device).tril(T - n)
    if mask is not None:
        sc = sc.masked_fill(~mask, float("-inf"))
    return (torch.softmax(sc.float(), dim=-1).to(vt.dtype) @ vt).transpose(1, 2)


# ---------------------------------------------------------------------------
# measurements


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device, fn):
    sync(device)
    t0 = time.perf_counter()
    r = fn()
    sync(device)
    return time.perf_counter() - t0, r


def prompt_ids(B, n, V, device, salt):
    """Deterministic ordinary tokens (below the special ids)."""
    g = torch.Generator().manual_seed(1000 + salt)
    return torch.randint(0, min(V, 151643), (B, n), generator=g).to(device)


def bench_text(m, dev, B, n_prompt, n_new, iters):
    ids = prompt_ids(B, n_prompt, m.cfg.V, dev, B)
    m.gen_text(m.add_text(Cache(m.cfg.L), ids), 4, B)  # warm-up
    pre, dec = [], []
    for _ in range(iters):
        tp, ctx = timed(dev, lambda: m.add_text(Cache(m.cfg.L), ids))
        td, out = timed(dev, lambda: m.gen_text(ctx, n_new, B))
        assert out.shape == (B, n_new)
        pre.append(tp)
        dec.append(td)
    s = statistics.median(dec)
    return {"measure": "text_decode", "batch": B, "prompt_tokens": n_prompt, "new_tokens": n_new,
            "seconds": round(s, 5), "tokens_per_s": round(B * n_new / s, 2),
            "ms_per_step": round(1000 * s / n_new, 4), "prefill_ms": round(1000 * statistics.median(pre), 3),
            "runs": iters}


def bench_image(m, dev, side, p, n_prompt, iters, label, note):
    c = m.cfg
    per = c.patch * c.down
    gh = gw = side // per
    ids = prompt_ids(1, n_prompt, c.V, dev, 99)
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(gh * gw, c.D, generator=g).to(dev)

    def run(steps):
        q = dict(p)
        q["num_timesteps"] = steps
        # interleave_inference on [prompt]: text-uncond is the empty context, image-uncond gets the prompt
        empty = Cache(c.L)
        full = m.add_text(empty, ids)
        iun = m.add_text(empty, ids)
        return m.gen_image(full, empty, iun, x0.clone(), gh, gw, q)

    run(3)  # warm-up
    times = []
    evals = 0
    for _ in range(iters):
        t, (x, evals) = timed(dev, lambda: run(p["num_timesteps"]))
        assert torch.isfinite(x).all()
        times.append(t)
    s = statistics.median(times)
    return {"measure": "image", "variant": label, "height": side, "width": side, "latent_tokens": gh * gw,
            "num_timesteps": p["num_timesteps"], "evaluations": evals, "timestep_shift": p["timestep_shift"],
            "cfg_text_scale": p["cfg_text_scale"], "cfg_img_scale": p["cfg_img_scale"],
            "cfg_interval": p["cfg_interval"], "cfg_renorm_type": "global", "prompt_tokens": n_prompt,
            "s_per_image": round(s, 4), "ms_per_evaluation": round(1000 * s / evals, 3), "runs": iters,
            "note": note}


IMG = {"num_timesteps": 50, "timestep_shift": 3.0, "cfg_text_scale": 3.0, "cfg_img_scale": 1.5,
       "cfg_interval": [0.4, 1.0], "cfg_renorm_min": 0.0}


def check_cpu(spec):
    """float32 on the CPU: greedy ids and the guided velocity of one step
    against gen_ref.py (FORMAT.md weights, seed 41)."""
    sys.dont_write_bytecode = True
    sys.path.insert(0, HERE)
    import bagel_ref as R
    import gen_ref as G
    dev = torch.device("cpu")
    cfg = Cfg(spec)
    m = Model(cfg, 41, dev, torch.float32)
    for name, shape in (("language_model.model.layers.0.self_attn.k_proj_moe_gen.weight", (cfg.nkv * cfg.hd, cfg.H)),
                        ("time_embedder.mlp.0.bias", (cfg.H,))):
        assert torch.equal(gen_weight(name, shape, 41, dev), torch.from_numpy(R.gen_weight(name, shape, 41))), name
    with open(os.path.join(ROOT, "models", "configs", spec.partition(":")[0] + ".json")) as f:
        rc = json.load(f)
    if ":" in spec:
        rc["llm"]["num_hidden_layers"] = cfg.L
    g = G.GenModel(R.Cfg(rc), 41, torch.float32)
    # two prompts: the second is a causal chunk over a non-empty cache
    ids, ids2 = prompt_ids(1, 7, cfg.V, dev, 5), prompt_ids(1, 4, cfg.V, dev, 6)
    first = m.add_text(Cache(cfg.L), ids)
    ctx = m.add_text(first, ids2)
    mine = m.gen_text(ctx, 5, 1)[0].tolist()
    full, tun, iun, _ = g.build_contexts([{"kind": "text", "tokens": ids[0].tolist()},
                                          {"kind": "text", "tokens": ids2[0].tolist()}])
    ref, _, _ = g.gen_text(full, 5)
    assert mine == ref, (mine, ref)
    gh, gw = 2, 3
    x = torch.randn(gh * gw, cfg.D, generator=torch.Generator().manual_seed(3))
    p = dict(IMG, num_timesteps=2)
    xm, ev = m.gen_image(ctx, first, ctx, x.clone(), gh, gw, p)
    xr, steps = g.gen_image(full, tun, iun, x.clone(), gh, gw, dict(p, cfg_renorm_type="global"))
    err = float(torch.norm(xm - xr) / torch.norm(xr))
    assert ev == 3 and err < 1e-5, (ev, err)
    print(json.dumps({"check": "ok", "config": spec, "ids": mine, "image_step_rel_err": err}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--config", action="append")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--only", choices=("text", "image"))
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    specs = a.config or ["bagel-0.5b-mot", "bagel-7b-mot:4"]
    if a.check:
        for s in specs:
            check_cpu(s)
        return
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gen_bench_gpu: no CUDA device; use --device cpu (with --smoke) for a test run")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.manual_seed(0)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        dname = torch.cuda.get_device_name(dev)
    else:
        dname = "cpu"
    if a.smoke:
        text_sizes = [(1, 8, 6), (3, 8, 6)]
        side = 4 * 8  # 4x4 latent tokens for tiny (identity autoencoder, latent patch 8)
        img = dict(IMG, num_timesteps=5)
        iters = 1
    else:
        text_sizes = [(1, 32, 128), (16, 32, 128)]
        side = 1024
        img = IMG
        iters = a.iters
    for spec in specs:
        cfg = Cfg(spec)
        t, m = timed(dev, lambda: Model(cfg, 1, dev, dtype))
        base = {"peer": "pytorch", "config": cfg.name, "layers": cfg.L, "device": dname,
                "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__}
        if a.smoke:
            side = 4 * cfg.patch * cfg.down
        rows = []
        if a.only in (None, "text"):
            for B, n_prompt, n_new in text_sizes:
                rows.append(bench_text(m, dev, B, n_prompt, n_new, iters))
                print(json.dumps(dict(base, **rows[-1])), flush=True)
        if a.only in (None, "image"):
            for label, p, note in (
                    ("t2i-text-cfg", dict(img, cfg_img_scale=1.0),
                     "text guidance only: a text prompt has no image to guide on"),
                    ("t2i-defaults", img,
                     "interleave_inference defaults on a text prompt: the image-unconditional context equals "
                     "the full one and is evaluated anyway")):
                rows.append(bench_image(m, dev, side, p, 8 if a.smoke else 32, 1 if a.smoke else 2, label, note))
                print(json.dumps(dict(base, **rows[-1])), flush=True)
        if dev.type == "cuda":
            print(json.dumps(dict(base, measure="memory", weights_s=round(t, 2),
                                  peak_gib=round(torch.cuda.max_memory_allocated(dev) / 2 ** 30, 2))), flush=True)
        del m
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)


if __name__ == "__main__":
    with torch.no_grad():
        main()
