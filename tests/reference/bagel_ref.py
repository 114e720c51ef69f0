#!/usr/bin/python3
"""bagel_ref.py — an independent PyTorch model of BAGEL's training step.

Written from docs of the model (bagel-reference.md §1, §3.3-3.8, §4.3, §5.2)
for tests/reference/FORMAT.md: deterministic weights, the packer (sample
segments -> packed batch, with the forced condition-dropout draws, tau and
eps of a case), the dense per-sample attention mask, the forward pass
(text embeddings, SigLIP NaViT, connector, latents with the timestep
embedder, the Qwen2 Mixture-of-Transformers LLM) and the losses. Everything
runs in float64; the gradients come from autograd, so they check the
hand-written backward passes of the C model independently.

Runs with Debian's python3-torch (1.13) and numpy: /usr/bin/python3.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

M64 = (1 << 64) - 1
U64 = np.uint64
GOLDEN = U64(0x9E3779B97F4A7C15)
SM_A = U64(0xBF58476D1CE4E5B9)
SM_B = U64(0x94D049BB133111EB)
CHUNK = 1 << 22

MODE_CAUSAL, MODE_FULL, MODE_NOISE = 0, 1, 2


# ---------------------------------------------------------------------------
# hashes and deterministic streams


# float64 for the golden files; the benchmark (bench_ref.py) sets float32
DTYPE = torch.float64


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def splitmix64_np(x):
    """splitmix64 of every element of a uint64 array (the input is not changed)."""
    with np.errstate(over="ignore"):
        z = x + GOLDEN
        z = (z ^ (z >> U64(30))) * SM_A
        z = (z ^ (z >> U64(27))) * SM_B
        return z ^ (z >> U64(31))


def stream_u64(key, start, n):
    """splitmix64(key + i) for i = start .. start+n-1 (all mod 2^64)."""
    with np.errstate(over="ignore"):
        x = np.arange(start, start + n, dtype=U64) + U64(key & M64)
    return splitmix64_np(x)


def uniform24(key, n):
    """u_i = (splitmix64(key + i) >> 40) * 2^-24, float64, exact."""
    out = np.empty(n, dtype=np.float64)
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        out[s:s + m] = (stream_u64(key, s, m) >> U64(40)).astype(np.float64) * 2.0 ** -24
    return out


# ---------------------------------------------------------------------------
# configuration


class Cfg:
    """The numbers of a bagelpipe config (models/configs/*.json)."""

    def __init__(self, c):
        llm, vit, bg = c["llm"], c.get("vit", {}), c["bagel"]
        self.H = llm["hidden_size"]
        self.L = llm["num_hidden_layers"]
        self.nh = llm["num_attention_heads"]
        self.nkv = llm["num_key_value_heads"]
        self.hd = self.H // self.nh
        self.I = llm["intermediate_size"]
        self.V = llm["vocab_size"]
        self.theta = float(llm.get("rope_theta", 10000.0))
        self.rms_eps = float(llm.get("rms_norm_eps", 1e-6))
        self.qk_norm = bool(bg.get("qk_norm", True))
        self.tie = bool(bg.get("tie_word_embeddings", False))
        self.visual_und = bool(bg.get("visual_und", True))
        self.visual_gen = bool(bg.get("visual_gen", True))
        if self.visual_und:
            self.vH = vit["hidden_size"]
            self.vI = vit["intermediate_size"]
            self.v_layers = vit["num_hidden_layers"] + 1 + bg.get("vit_select_layer", -2)
            self.v_heads = vit["num_attention_heads"]
            self.v_patch = vit["patch_size"]
            self.v_side = vit["image_size"] // vit["patch_size"]
            self.v_positions = self.v_side ** 2
            self.v_eps = float(vit.get("layer_norm_eps", 1e-6))
            self.v_max_side = bg["vit_max_num_patch_per_side"]
            self.v_dim = self.v_patch * self.v_patch * vit.get("num_channels", 3)
        if self.visual_gen:
            ae = bg["autoencoder"]
            self.ae = ae["type"]
            self.z_channels = 3 if self.ae == "identity" else ae.get("z_channels", 16)
            self.latent_patch = bg["latent_patch_size"]
            self.max_latent = bg["max_latent_size"]
            self.latent_dim = self.latent_patch ** 2 * self.z_channels
            self.shift = float(bg.get("timestep_shift", 1.0))
        t = bg["tokens"]
        self.bos, self.eos = t["bos"], t["eos"]
        self.soi, self.eoi = t["start_of_image"], t["end_of_image"]


def param_shapes(cfg):
    """Every parameter of the state dict (§5.2 names) with its shape, in a fixed order."""
    P = []
    H, hd, kv, I = cfg.H, cfg.hd, cfg.nkv * cfg.hd, cfg.I
    lm = "language_model.model."
    P.append((lm + "embed_tokens.weight", (cfg.V, H)))
    for i in range(cfg.L):
        pre = lm + "layers.%d." % i
        for e in ("", "_moe_gen"):
            a = pre + "self_attn."
            P += [(a + "q_proj%s.weight" % e, (H, H)), (a + "q_proj%s.bias" % e, (H,)),
                  (a + "k_proj%s.weight" % e, (kv, H)), (a + "k_proj%s.bias" % e, (kv,)),
                  (a + "v_proj%s.weight" % e, (kv, H)), (a + "v_proj%s.bias" % e, (kv,)),
                  (a + "o_proj%s.weight" % e, (H, H))]
            if cfg.qk_norm:
                P += [(a + "q_norm%s.weight" % e, (hd,)), (a + "k_norm%s.weight" % e, (hd,))]
            m = pre + "mlp%s." % e
            P += [(m + "gate_proj.weight", (I, H)), (m + "up_proj.weight", (I, H)),
                  (m + "down_proj.weight", (H, I))]
            P += [(pre + "input_layernorm%s.weight" % e, (H,)),
                  (pre + "post_attention_layernorm%s.weight" % e, (H,))]
    P += [(lm + "norm.weight", (H,)), (lm + "norm_moe_gen.weight", (H,))]
    if not cfg.tie:
        P.append(("language_model.lm_head.weight", (cfg.V, H)))
    if cfg.visual_und:
        vm = "vit_model.vision_model."
        vH = cfg.vH
        P += [(vm + "embeddings.patch_embedding.weight", (vH, cfg.v_dim)),
              (vm + "embeddings.patch_embedding.bias", (vH,)),
              (vm + "embeddings.position_embedding.weight", (cfg.v_positions, vH))]
        for j in range(cfg.v_layers):
            pre = vm + "encoder.layers.%d." % j
            for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
                P += [(pre + "self_attn.%s.weight" % p, (vH, vH)), (pre + "self_attn.%s.bias" % p, (vH,))]
            P += [(pre + "layer_norm1.weight", (vH,)), (pre + "layer_norm1.bias", (vH,)),
                  (pre + "mlp.fc1.weight", (cfg.vI, vH)), (pre + "mlp.fc1.bias", (cfg.vI,)),
                  (pre + "mlp.fc2.weight", (vH, cfg.vI)), (pre + "mlp.fc2.bias", (vH,)),
                  (pre + "layer_norm2.weight", (vH,)), (pre + "layer_norm2.bias", (vH,))]
        P += [(vm + "post_layernorm.weight", (vH,)), (vm + "post_layernorm.bias", (vH,))]
        P += [("connector.fc1.weight", (H, vH)), ("connector.fc1.bias", (H,)),
              ("connector.fc2.weight", (H, H)), ("connector.fc2.bias", (H,)),
              ("vit_pos_embed.pos_embed", (cfg.v_max_side ** 2, H))]
    if cfg.visual_gen:
        D = cfg.latent_dim
        P += [("time_embedder.mlp.0.weight", (H, 256)), ("time_embedder.mlp.0.bias", (H,)),
              ("time_embedder.mlp.2.weight", (H, H)), ("time_embedder.mlp.2.bias", (H,)),
              ("vae2llm.weight", (H, D)), ("vae2llm.bias", (H,)),
              ("llm2vae.weight", (D, H)), ("llm2vae.bias", (D,)),
              ("latent_pos_embed.pos_embed", (cfg.max_latent ** 2, H))]
    return P


FIXED = ("vit_pos_embed.pos_embed", "latent_pos_embed.pos_embed")


# ---------------------------------------------------------------------------
# weights


def sincos_2d(G, H):
    """The fixed 2-D sin-cos table (§1.5): rows m = r*G + c, computed in float64, rounded to float32."""
    assert H % 4 == 0
    Q = H // 4
    omega = 1.0 / 10000.0 ** (np.arange(Q, dtype=np.float64) / Q)
    r, c = np.meshgrid(np.arange(G, dtype=np.float64), np.arange(G, dtype=np.float64), indexing="ij")
    r, c = r.reshape(-1), c.reshape(-1)
    out = np.concatenate([np.sin(np.outer(c, omega)), np.cos(np.outer(c, omega)),
                          np.sin(np.outer(r, omega)), np.cos(np.outer(r, omega))], axis=1)
    return out.astype(np.float32)


def gen_weight(name, shape, seed):
    """FORMAT.md's deterministic parameter. v = 2u - 1 is exact in float32; the
    scaling is float32 arithmetic, one rounding per operation:
    v * (1/sqrt(in)), 0.1*v, 1 + 0.1*v (the constants 0.1 and 1/sqrt(in) as float32)."""
    n = int(np.prod(shape))
    key = fnv1a64(name.encode("utf-8")) ^ (seed & M64)
    out = np.empty(n, dtype=np.float32)
    f32 = np.float32
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        u = (stream_u64(key, s, m) >> U64(40)).astype(np.float64) * 2.0 ** -24
        v = (2.0 * u - 1.0).astype(np.float32)  # exact
        if len(shape) == 1:
            if name.endswith(".weight"):
                w = f32(1.0) + f32(0.1) * v
            elif name.endswith(".bias"):
                w = f32(0.1) * v
            else:
                raise ValueError(name)
        elif len(shape) == 2:
            inv = f32(1.0) / np.sqrt(f32(shape[1]))
            w = v * inv
        else:
            raise ValueError(name)
        assert w.dtype == np.float32
        out[s:s + m] = w
    return out.reshape(shape)


def make_params(cfg, seed):
    """name -> float64 tensor (requires_grad except the two pos-embed tables)."""
    params = {}
    for name, shape in param_shapes(cfg):
        if name == "vit_pos_embed.pos_embed":
            w = sincos_2d(cfg.v_max_side, cfg.H)
        elif name == "latent_pos_embed.pos_embed":
            w = sincos_2d(cfg.max_latent, cfg.H)
        else:
            w = gen_weight(name, shape, seed)
        t = torch.from_numpy(w).to(DTYPE)
        t.requires_grad_(name not in FIXED)
        params[name] = t
    return params


# ---------------------------------------------------------------------------
# images -> tokens


def patchify_hwc(img, p):
    """[H, W, C] -> [(H/p)*(W/p), p*p*C], feature (py*p + px)*C + c, tokens row-major."""
    Hh, Ww, C = img.shape
    assert Hh % p == 0 and Ww % p == 0, (img.shape, p)
    h, w = Hh // p, Ww // p
    return img.reshape(h, p, w, p, C).transpose(0, 2, 1, 3, 4).reshape(h * w, p * p * C), h, w


def patchify_chw(z, p):
    C, Hh, Ww = z.shape
    return patchify_hwc(np.ascontiguousarray(z.transpose(1, 2, 0)), p)


def pixels(spec):
    """{"shape": [H, W, 3], "data": u8...} -> float64 [H, W, 3] in [-1, 1]."""
    a = np.asarray(spec["data"], dtype=np.float64).reshape(spec["shape"])
    return (a / 255.0 - 0.5) / 0.5


# ---------------------------------------------------------------------------
# packer (§3.3, §3.6, §3.8)


def pack(case, cfg):
    """Segments of every sample -> BAGEL's packed batch (one packed sequence)."""
    b = {k: [] for k in ("sample_lens", "split_lens", "attn_modes", "packed_text_ids",
                         "packed_text_indexes", "packed_position_ids", "packed_vit_token_indexes",
                         "packed_vit_position_ids", "vit_token_seqlens", "packed_vae_token_indexes",
                         "packed_latent_position_ids", "packed_timesteps", "mse_loss_indexes",
                         "ce_loss_indexes", "packed_label_ids", "ce_loss_weights")}
    vit_tokens, x0_tokens, sample_splits = [], [], []
    taus = list(case.get("tau", []))
    n_tau = 0
    curr = 0

    def marker(tok, pos):
        nonlocal curr
        b["packed_text_ids"].append(tok)
        b["packed_text_indexes"].append(curr)
        b["packed_position_ids"].append(pos)
        curr += 1

    for sample in case["samples"]:
        rope = 0
        start = curr
        splits = []

        def vae_image(seg, noisy):
            nonlocal curr, n_tau
            if cfg.ae == "identity":
                tok, h, w = patchify_hwc(pixels(seg["vae"]), cfg.latent_patch)
            else:
                z = np.asarray(seg["latent"]["data"], dtype=np.float64).reshape(seg["latent"]["shape"])
                assert z.shape[0] == cfg.z_channels
                tok, h, w = patchify_chw(z, cfg.latent_patch)
            assert h <= cfg.max_latent and w <= cfg.max_latent
            N = h * w
            if noisy:
                tau = float(taus[n_tau])
                n_tau += 1
            else:
                tau = float("-inf")
            marker(cfg.soi, rope)
            for i in range(N):
                b["packed_vae_token_indexes"].append(curr)
                b["packed_position_ids"].append(rope)
                b["packed_latent_position_ids"].append((i // w) * cfg.max_latent + i % w)
                b["packed_timesteps"].append(tau)
                if noisy:
                    b["mse_loss_indexes"].append(curr)
                curr += 1
            marker(cfg.eoi, rope)
            x0_tokens.append(tok)
            splits.append((N + 2, MODE_NOISE if noisy else MODE_FULL))

        def vit_image(seg):
            nonlocal curr
            tok, h, w = patchify_hwc(pixels(seg["vit"]), cfg.v_patch)
            assert h <= cfg.v_max_side and w <= cfg.v_max_side
            P = h * w
            marker(cfg.soi, rope)
            for i in range(P):
                b["packed_vit_token_indexes"].append(curr)
                b["packed_position_ids"].append(rope)
                b["packed_vit_position_ids"].append((i // w) * cfg.v_max_side + i % w)
                curr += 1
            marker(cfg.eoi, rope)
            b["vit_token_seqlens"].append(P)
            vit_tokens.append(tok)
            splits.append((P + 2, MODE_FULL))

        for seg in sample["segments"]:
            if seg["kind"] == "text":
                if seg.get("cfg") and seg.get("drop"):
                    continue  # dropped text: no tokens, rope not advanced
                ids = list(seg["tokens"])
                n = len(ids)
                if seg.get("loss"):
                    w = 1.0 / math.sqrt(n + 1)
                    for j in range(n + 1):
                        b["ce_loss_indexes"].append(curr + j)
                        b["packed_label_ids"].append((ids + [cfg.eos])[j])
                        b["ce_loss_weights"].append(w)
                for j, t in enumerate([cfg.bos] + ids + [cfg.eos]):
                    marker(t, rope + j)
                rope += n + 2
                splits.append((n + 2, MODE_CAUSAL))
            elif seg["kind"] == "image":
                if seg.get("loss"):
                    vae_image(seg, True)  # noisy target: never dropped, rope not advanced
                if seg.get("cond"):
                    if not (seg.get("cfg") and seg.get("drop_vae")):
                        vae_image(seg, False)
                    rope += 1
                if seg.get("und"):
                    if not (seg.get("cfg") and seg.get("drop_vit")):
                        vit_image(seg)
                    rope += 1
            else:
                raise ValueError(seg["kind"])
        for l, m in splits:
            b["split_lens"].append(l)
            b["attn_modes"].append(m)
        b["sample_lens"].append(curr - start)
        sample_splits.append(splits)

    assert n_tau == len(taus), "tau: %d given, %d noisy images" % (len(taus), n_tau)
    b["sequence_length"] = [curr]
    assert len(b["packed_position_ids"]) == curr
    b["vit_tokens"] = vit_tokens
    b["x0_tokens"] = x0_tokens
    b["sample_splits"] = sample_splits
    return b


def dense_mask(splits):
    """The per-sample mask as BAGEL builds it densely: causal, then full/noise
    blocks opened, then the columns of noise splits closed to every later row."""
    L = sum(l for l, _ in splits)
    m = np.tril(np.ones((L, L), dtype=np.uint8))
    s = 0
    for l, mode in splits:
        e = s + l
        if mode in (MODE_FULL, MODE_NOISE):
            m[s:e, s:e] = 1
        if mode == MODE_NOISE:
            m[e:, s:e] = 0
        s = e
    return m


# ---------------------------------------------------------------------------
# model


def lin(x, P, name, bias=True):
    y = x @ P[name + ".weight"].t()
    if bias:
        y = y + P[name + ".bias"]
    return y


def rms_norm(x, w, eps):
    return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def siglip(P, cfg, tokens, pos_ids, seqlens):
    vm = "vit_model.vision_model."
    x = lin(tokens, P, vm + "embeddings.patch_embedding")
    x = x + P[vm + "embeddings.position_embedding.weight"][pos_ids]
    Nv = x.shape[0]
    # full attention inside each image, nothing across images
    allow = torch.zeros(Nv, Nv, dtype=torch.bool)
    s = 0
    for n in seqlens:
        allow[s:s + n, s:s + n] = True
        s += n
    nh = cfg.v_heads
    hd = cfg.vH // nh
    for j in range(cfg.v_layers):
        pre = vm + "encoder.layers.%d." % j
        a = F.layer_norm(x, (cfg.vH,), P[pre + "layer_norm1.weight"], P[pre + "layer_norm1.bias"], cfg.v_eps)
        q = lin(a, P, pre + "self_attn.q_proj").view(Nv, nh, hd).transpose(0, 1)
        k = lin(a, P, pre + "self_attn.k_proj").view(Nv, nh, hd).transpose(0, 1)
        v = lin(a, P, pre + "self_attn.v_proj").view(Nv, nh, hd).transpose(0, 1)
        sc = (q @ k.transpose(1, 2)) / math.sqrt(hd)
        sc = sc.masked_fill(~allow, float("-inf"))
        o = (torch.softmax(sc, dim=-1) @ v).transpose(0, 1).reshape(Nv, cfg.vH)
        x = x + lin(o, P, pre + "self_attn.out_proj")
        a = F.layer_norm(x, (cfg.vH,), P[pre + "layer_norm2.weight"], P[pre + "layer_norm2.bias"], cfg.v_eps)
        x = x + lin(gelu_tanh(lin(a, P, pre + "mlp.fc1")), P, pre + "mlp.fc2")
    return F.layer_norm(x, (cfg.vH,), P[vm + "post_layernorm.weight"], P[vm + "post_layernorm.bias"], cfg.v_eps)


def timestep_embed(P, t):
    k = torch.arange(128, dtype=DTYPE)
    f = torch.exp(-math.log(10000.0) * k / 128.0)
    a = t[:, None] * f[None, :]
    e = torch.cat([torch.cos(a), torch.sin(a)], dim=-1)
    h = lin(e, P, "time_embedder.mlp.0")
    return lin(h * torch.sigmoid(h), P, "time_embedder.mlp.2")


def shifted_t(tau, shift):
    t = torch.sigmoid(tau)  # -inf -> 0
    return shift * t / (1.0 + (shift - 1.0) * t)


def forward(P, cfg, b, eps, loss_cfg, masks):
    """Returns (losses dict, hidden [S, H], extras dict)."""
    S = b["sequence_length"][0]
    H = cfg.H
    I64 = lambda k: torch.tensor(b[k], dtype=torch.int64)
    lm = "language_model.model."
    idx_parts, emb_parts = [], []

    text_idx = I64("packed_text_indexes")
    idx_parts.append(text_idx)
    emb_parts.append(F.embedding(I64("packed_text_ids"), P[lm + "embed_tokens.weight"]))

    if cfg.visual_und and b["packed_vit_token_indexes"]:
        vt = torch.from_numpy(np.concatenate(b["vit_tokens"], axis=0)).to(DTYPE)
        vpos = I64("packed_vit_position_ids")
        f = siglip(P, cfg, vt, vpos, b["vit_token_seqlens"])
        f = lin(gelu_tanh(lin(f, P, "connector.fc1")), P, "connector.fc2")
        f = f + P["vit_pos_embed.pos_embed"][vpos]
        idx_parts.append(I64("packed_vit_token_indexes"))
        emb_parts.append(f)

    mse_rows = None
    if cfg.visual_gen and b["packed_vae_token_indexes"]:
        x0 = torch.from_numpy(np.concatenate(b["x0_tokens"], axis=0)).to(DTYPE)
        tau = torch.tensor(b["packed_timesteps"], dtype=DTYPE)
        t = shifted_t(tau, cfg.shift)
        e = torch.from_numpy(eps).to(DTYPE)
        assert e.shape == x0.shape, (e.shape, x0.shape)
        xt = (1.0 - t[:, None]) * x0 + t[:, None] * e
        emb = lin(xt, P, "vae2llm") + timestep_embed(P, t)
        emb = emb + P["latent_pos_embed.pos_embed"][I64("packed_latent_position_ids")]
        idx_parts.append(I64("packed_vae_token_indexes"))
        emb_parts.append(emb)
        noisy = t > 0
        target = (e - x0)[noisy]
        mse_rows = target

    all_idx = torch.cat(idx_parts)
    assert torch.equal(torch.sort(all_idx).values, torch.arange(S)), "every position exactly once"
    order = torch.argsort(all_idx)
    x = torch.cat(emb_parts, dim=0)[order]  # sequence order
    x_in = x

    gen = torch.zeros(S, dtype=torch.bool)
    gen[I64("packed_vae_token_indexes")] = True
    g1 = gen[:, None]

    def both(fn):
        """Per-token expert: und weights for text/ViT tokens, *_moe_gen for VAE tokens."""
        return torch.where(g1, fn("_moe_gen"), fn(""))

    pos = torch.tensor(b["packed_position_ids"], dtype=DTYPE)
    inv_freq = 1.0 / cfg.theta ** (torch.arange(0, cfg.hd, 2, dtype=DTYPE) / cfg.hd)
    ang = pos[:, None] * inv_freq[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    mask_t = [torch.from_numpy(m.astype(bool)) for m in masks]
    rep = cfg.nh // cfg.nkv
    nh, nkv, hd = cfg.nh, cfg.nkv, cfg.hd

    for i in range(cfg.L):
        pre = lm + "layers.%d." % i
        at = pre + "self_attn."
        a = both(lambda e: rms_norm(x, P[pre + "input_layernorm%s.weight" % e], cfg.rms_eps))
        q = both(lambda e: lin(a, P, at + "q_proj" + e)).view(S, nh, hd)
        k = both(lambda e: lin(a, P, at + "k_proj" + e)).view(S, nkv, hd)
        v = both(lambda e: lin(a, P, at + "v_proj" + e)).view(S, nkv, hd)
        if cfg.qk_norm:
            g3 = gen[:, None, None]
            q = torch.where(g3, rms_norm(q, P[at + "q_norm_moe_gen.weight"], cfg.rms_eps),
                            rms_norm(q, P[at + "q_norm.weight"], cfg.rms_eps))
            k = torch.where(g3, rms_norm(k, P[at + "k_norm_moe_gen.weight"], cfg.rms_eps),
                            rms_norm(k, P[at + "k_norm.weight"], cfg.rms_eps))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(rep, dim=1)  # query head j uses kv head j // rep
        v = v.repeat_interleave(rep, dim=1)
        outs = []
        s = 0
        for n, m in zip(b["sample_lens"], mask_t):
            qs, ks, vs = (z[s:s + n].transpose(0, 1) for z in (q, k, v))
            sc = (qs @ ks.transpose(1, 2)) / math.sqrt(hd)
            sc = sc.masked_fill(~m, float("-inf"))
            outs.append((torch.softmax(sc, dim=-1) @ vs).transpose(0, 1).reshape(n, H))
            s += n
        o = torch.cat(outs, dim=0)
        x = x + both(lambda e: lin(o, P, at + "o_proj" + e, bias=False))
        a = both(lambda e: rms_norm(x, P[pre + "post_attention_layernorm%s.weight" % e], cfg.rms_eps))

        def mlp(e):
            m = pre + "mlp%s." % e
            gt = lin(a, P, m + "gate_proj", bias=False)
            return lin(F.silu(gt) * lin(a, P, m + "up_proj", bias=False), P, m + "down_proj", bias=False)

        x = x + both(mlp)

    h = both(lambda e: rms_norm(x, P[lm + "norm%s.weight" % e], cfg.rms_eps))

    # losses (§4.3, one rank)
    ce_idx = I64("ce_loss_indexes")
    zero = torch.zeros((), dtype=DTYPE)
    ce_tok = None
    if len(ce_idx):
        W = P[lm + "embed_tokens.weight"] if cfg.tie else P["language_model.lm_head.weight"]
        logits = h[ce_idx] @ W.t()
        ce_tok = F.cross_entropy(logits, I64("packed_label_ids"), reduction="none")
        if loss_cfg.get("ce_reweight"):
            w = torch.tensor(b["ce_loss_weights"], dtype=DTYPE)  # 1/sqrt(n+1), float64
            ce = (ce_tok * w).sum() / w.sum()
        else:
            ce = ce_tok.sum() / len(ce_idx)
    else:
        ce = zero
    mse_tok = None
    mse_idx = I64("mse_loss_indexes")
    if len(mse_idx):
        pred = lin(h[mse_idx], P, "llm2vae")
        assert pred.shape == mse_rows.shape
        mse_tok = ((pred - mse_rows) ** 2).mean(dim=-1)
        mse = mse_tok.sum() / len(mse_idx)
    else:
        mse = zero
    total = loss_cfg.get("ce_weight", 1.0) * ce + loss_cfg.get("mse_weight", 1.0) * mse
    extras = {"input": x_in, "ce_tok": ce_tok, "mse_tok": mse_tok}
    return {"ce": ce, "mse": mse, "total": total}, h, extras


# ---------------------------------------------------------------------------
# gradient projections


def grad_projection(name, g):
    """[‖g‖, Σ g_i r_k,i for k = 0..7], float64 (FORMAT.md)."""
    g = np.ascontiguousarray(g.reshape(-1), dtype=np.float64)
    n = g.size
    out = [math.sqrt(float(np.dot(g, g)))]
    key = fnv1a64(("proj:%s" % name).encode("utf-8"))
    acc = [0.0] * 8
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        z = stream_u64(key, s, m)
        for k in range(8):
            bit = ((z >> U64(63 - k)) & U64(1)).astype(np.float64)
            acc[k] += float(np.dot(g[s:s + m], 2.0 * bit - 1.0))
    out += acc
    return np.array(out, dtype=np.float64)


# ---------------------------------------------------------------------------
# one case end to end


def run_case(case, full_grad_max=65536):
    """-> (golden: name -> numpy array, info dict)."""
    torch.set_num_threads(1)
    cfg = Cfg(case["config"])
    b = pack(case, cfg)
    masks = []
    for splits in b["sample_splits"]:
        masks.append(dense_mask(splits))
    nvae = sum(t.shape[0] for t in b["x0_tokens"])
    D = cfg.latent_dim if cfg.visual_gen else 0
    eps = np.asarray(case.get("eps", []), dtype=np.float32).astype(np.float64).reshape(nvae, D)
    P = make_params(cfg, case["weights_seed"])
    losses, hidden, extras = forward(P, cfg, b, eps, case.get("loss", {}), masks)
    losses["total"].backward()

    out = {}
    i64 = lambda k: np.asarray(b[k], dtype=np.int64)
    for k in ("sequence_length", "sample_lens", "split_lens", "attn_modes", "packed_text_ids",
              "packed_text_indexes", "packed_position_ids", "packed_vit_token_indexes",
              "packed_vit_position_ids", "vit_token_seqlens", "packed_vae_token_indexes",
              "packed_latent_position_ids", "mse_loss_indexes", "ce_loss_indexes", "packed_label_ids"):
        out[k] = i64(k)
    out["packed_timesteps"] = np.asarray(b["packed_timesteps"], dtype=np.float32)
    out["ce_loss_weights"] = np.asarray(b["ce_loss_weights"], dtype=np.float32)
    for i, m in enumerate(masks):
        out["mask.%d" % i] = m
    for k in ("ce", "mse", "total"):
        out["loss." + k] = np.array([losses[k].item()], dtype=np.float32)
    out["hidden"] = hidden.detach().numpy().astype(np.float32)
    out["debug.input"] = extras["input"].detach().numpy().astype(np.float32)
    if extras["ce_tok"] is not None:
        out["debug.ce_tok"] = extras["ce_tok"].detach().numpy().astype(np.float32)
    if extras["mse_tok"] is not None:
        out["debug.mse_tok"] = extras["mse_tok"].detach().numpy().astype(np.float32)
    grads = {}
    for name, p in P.items():
        if not p.requires_grad:
            continue
        g = p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape))
        grads[name] = g
        if g.size <= full_grad_max:
            out["grad." + name] = g.astype(np.float32)
        else:
            out["gradproj." + name] = grad_projection(name, g)
    info = {"losses": {k: v.item() for k, v in losses.items()}, "batch": b, "masks": masks,
            "grads": grads, "cfg": cfg, "nparams": sum(p.numel() for p in P.values())}
    return out, info
