#!/usr/bin/python3
"""gen_ref.py — an independent PyTorch model of BAGEL's inference (generation).

Written from bagel-reference.md §6 (with §1.2-1.8 and §3.1, §3.6) on top of
bagel_ref.py's weights and layers, for the golden files of make_gen_golden.py
(tests/reference/FORMAT.md, "Generation"). It follows the official
inferencer's structure:

  Context      one KV cache: per layer K and V [T, nkv, hd] (keys after the
               q/k-norm and RoPE), kv_len and the next RoPE position
  chunks       text prompt (<|im_start|> ids <|im_end|>, positions rope..,
               und, causal, rope += n+2); ViT image (soi, P patches, eoi, all
               at rope, und, full, rope += 1); clean VAE image given as latent
               tokens at t = 0 (soi, N latents, eoi at rope; latents through
               the generation expert, markers through understanding; full,
               rope += 1). A chunk's tokens attend to every cached token and
               to the chunk's own (causally for text).
  gen_text     greedy decoding from <|im_start|> at rope
  gen_image    flow-matching Euler steps on a query (soi, N latents, eoi at
               rope, cache not updated), CFG over the full, text-unconditional
               and image-unconditional contexts (§6.3)
  forward_full one forward over a whole sequence with a dense mask, the
               check that the cache path is consistent

Runs in float32 (the golden files) or float64, on the CPU, with Debian's
python3-torch (1.13) and numpy: /usr/bin/python3.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bagel_ref as R  # noqa: E402

RENORM_TYPES = ("global", "channel", "text_channel")


class Context:
    """One KV cache (NaiveCache): K and V per layer, kv_len, next rope.
    Tensors are never changed in place, so a copy shares them."""

    def __init__(self, L):
        self.k = [None] * L  # [T, nkv, hd] per layer
        self.v = [None] * L
        self.kv_len = 0
        self.rope = 0

    def copy(self):
        c = Context(len(self.k))
        c.k, c.v = list(self.k), list(self.v)
        c.kv_len, c.rope = self.kv_len, self.rope
        return c


class Chunk:
    """Embedded tokens of one chunk: x [n, H], RoPE positions [n], expert flags
    (True = generation expert) [n], causal (text) or full (images)."""

    def __init__(self, x, pos, gen, causal):
        self.x, self.pos, self.gen, self.causal = x, pos, gen, causal


class GenModel:
    def __init__(self, cfg, seed, dtype=torch.float32):
        self.cfg = cfg
        self.dtype = dtype
        P = R.make_params(cfg, seed)  # float64, exact copies of the float32 weights
        self.P = {k: v.detach().to(dtype) for k, v in P.items()}
        self.lm = "language_model.model."
        self.head = self.P[self.lm + "embed_tokens.weight"] if cfg.tie else self.P["language_model.lm_head.weight"]

    # ------------------------------------------------------------------
    # embeddings

    def embed_ids(self, ids):
        return self.P[self.lm + "embed_tokens.weight"][torch.as_tensor(ids, dtype=torch.int64)]

    def timestep_embed(self, t, n):
        """TimestepEmbedder (§1.6) of one t, repeated for n tokens; t in [0,1], cos first."""
        k = torch.arange(128, dtype=torch.float64)
        f = torch.exp(-math.log(10000.0) * k / 128.0).to(self.dtype)
        tt = torch.full((n,), float(t), dtype=self.dtype)
        a = tt[:, None] * f[None, :]
        e = torch.cat([torch.cos(a), torch.sin(a)], dim=-1)
        h = R.lin(e, self.P, "time_embedder.mlp.0")
        return R.lin(h * torch.sigmoid(h), self.P, "time_embedder.mlp.2")

    def latent_pos_ids(self, h, w):
        G = self.cfg.max_latent
        assert h <= G and w <= G, (h, w, G)
        return torch.tensor([r * G + c for r in range(h) for c in range(w)], dtype=torch.int64)

    def embed_latents(self, tokens, t, h, w):
        """vae2llm(x) + time_embedder(t) + latent_pos_embed[r·G + c] for N = h·w tokens [N, D]."""
        tokens = torch.as_tensor(tokens).to(self.dtype)
        assert tokens.shape == (h * w, self.cfg.latent_dim), (tokens.shape, h, w)
        return (R.lin(tokens, self.P, "vae2llm") + self.timestep_embed(t, h * w)
                + self.P["latent_pos_embed.pos_embed"][self.latent_pos_ids(h, w)])

    def embed_vit(self, img_u8):
        """u8 [H, W, 3] -> SigLIP -> connector + vit_pos_embed, [P, H]."""
        cfg = self.cfg
        a = np.asarray(img_u8, dtype=np.float64)
        tok, h, w = R.patchify_hwc((a / 255.0 - 0.5) / 0.5, cfg.v_patch)
        assert h <= cfg.v_max_side and w <= cfg.v_max_side, (h, w)
        vpos = torch.tensor([r * cfg.v_max_side + c for r in range(h) for c in range(w)], dtype=torch.int64)
        f = R.siglip(self.P, cfg, torch.from_numpy(tok).to(self.dtype), vpos, [h * w])
        f = R.lin(R.gelu_tanh(R.lin(f, self.P, "connector.fc1")), self.P, "connector.fc2")
        return f + self.P["vit_pos_embed.pos_embed"][vpos]

    def text_chunk(self, ids, rope):
        ids = [self.cfg.bos] + list(ids) + [self.cfg.eos]
        n = len(ids)
        return Chunk(self.embed_ids(ids), torch.arange(rope, rope + n), torch.zeros(n, dtype=torch.bool), True)

    def image_chunk(self, body, gen, rope):
        """soi, body rows, eoi, all at one position; body through `gen`'s expert."""
        c = self.cfg
        x = torch.cat([self.embed_ids([c.soi]), body, self.embed_ids([c.eoi])], dim=0)
        n = x.shape[0]
        g = torch.zeros(n, dtype=torch.bool)
        g[1:n - 1] = gen
        return Chunk(x, torch.full((n,), rope, dtype=torch.int64), g, False)

    def vit_chunk(self, img_u8, rope):
        return self.image_chunk(self.embed_vit(img_u8), False, rope)

    def vae_chunk(self, tokens, h, w, rope, t=0.0):
        return self.image_chunk(self.embed_latents(tokens, t, h, w), True, rope)

    # ------------------------------------------------------------------
    # the LLM (§1.2) over new tokens, with cached keys and values before them

    def _expert(self, x, gen, fn):
        """fn(suffix, rows) on the und rows ('') and the gen rows ('_moe_gen')."""
        outs = None
        for suffix, sel in (("", ~gen), ("_moe_gen", gen)):
            if not bool(sel.any()):
                continue
            y = fn(suffix, x[sel])
            if outs is None:
                outs = torch.zeros((x.shape[0],) + tuple(y.shape[1:]), dtype=y.dtype)
            outs[sel] = y
        return outs

    def _rope(self, pos):
        """cos, sin [n, 1, hd]: angles in float64, then rounded to the model's dtype."""
        hd = self.cfg.hd
        inv = 1.0 / self.cfg.theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = pos.to(torch.float64)[:, None] * inv[None, :]
        ang = torch.cat([ang, ang], dim=-1)
        return torch.cos(ang)[:, None, :].to(self.dtype), torch.sin(ang)[:, None, :].to(self.dtype)

    def stack(self, x, pos, gen, mask, past_k, past_v):
        """x [n, H] new tokens; mask [n, T+n] bool (True = visible) over the T
        cached keys then the new ones. Returns (h [n, H] after the final norms,
        K and V lists of the new tokens per layer, [n, nkv, hd])."""
        cfg, P, eps = self.cfg, self.P, self.cfg.rms_eps
        n, H = x.shape
        nh, nkv, hd = cfg.nh, cfg.nkv, cfg.hd
        rep = nh // nkv
        cos, sin = self._rope(pos)
        new_k, new_v = [], []
        for i in range(cfg.L):
            pre = self.lm + "layers.%d." % i
            at = pre + "self_attn."
            a = self._expert(x, gen, lambda e, r: R.rms_norm(r, P[pre + "input_layernorm%s.weight" % e], eps))

            def qkv(e, r):
                q = R.lin(r, P, at + "q_proj" + e).view(-1, nh, hd)
                k = R.lin(r, P, at + "k_proj" + e).view(-1, nkv, hd)
                v = R.lin(r, P, at + "v_proj" + e).view(-1, nkv, hd)
                if cfg.qk_norm:
                    q = R.rms_norm(q, P[at + "q_norm%s.weight" % e], eps)
                    k = R.rms_norm(k, P[at + "k_norm%s.weight" % e], eps)
                return torch.cat([q, k, v], dim=1)

            qkv_all = self._expert(a, gen, qkv)
            q, k, v = qkv_all[:, :nh], qkv_all[:, nh:nh + nkv], qkv_all[:, nh + nkv:]
            q = q * cos + R.rotate_half(q) * sin
            k = k * cos + R.rotate_half(k) * sin
            new_k.append(k)
            new_v.append(v)
            K = k if past_k[i] is None else torch.cat([past_k[i], k], dim=0)
            V = v if past_v[i] is None else torch.cat([past_v[i], v], dim=0)
            Kh = K.repeat_interleave(rep, dim=1).transpose(0, 1)  # query head j uses kv head j // rep
            Vh = V.repeat_interleave(rep, dim=1).transpose(0, 1)
            sc = (q.transpose(0, 1) @ Kh.transpose(1, 2)) / math.sqrt(hd)
            sc = sc.masked_fill(~mask[None], float("-inf"))
            o = (torch.softmax(sc, dim=-1) @ Vh).transpose(0, 1).reshape(n, H)
            x = x + self._expert(o, gen, lambda e, r: R.lin(r, P, at + "o_proj" + e, bias=False))
            a = self._expert(x, gen, lambda e, r: R.rms_norm(r, P[pre + "post_attention_layernorm%s.weight" % e], eps))

            def mlp(e, r):
                m = pre + "mlp%s." % e
                g = R.lin(r, P, m + "gate_proj", bias=False)
                return R.lin(F.silu(g) * R.lin(r, P, m + "up_proj", bias=False), P, m + "down_proj", bias=False)

            x = x + self._expert(a, gen, mlp)
        h = self._expert(x, gen, lambda e, r: R.rms_norm(r, P[self.lm + "norm%s.weight" % e], eps))
        return h, new_k, new_v

    def run_chunk(self, ctx, ch, update):
        """The chunk's tokens against ctx's cache. update: append them to a new
        context (returned) as the official forward_cache_update_* do; else
        ctx is unchanged (the denoising query). Returns (h [n, H], ctx')."""
        n = ch.x.shape[0]
        T = ctx.kv_len
        mask = torch.ones(n, T + n, dtype=torch.bool)
        if ch.causal:
            mask[:, T:] = torch.tril(torch.ones(n, n, dtype=torch.bool))
        h, nk, nv = self.stack(ch.x, ch.pos, ch.gen, mask, ctx.k, ctx.v)
        if not update:
            return h, ctx
        out = ctx.copy()
        for i in range(self.cfg.L):
            out.k[i] = nk[i] if ctx.k[i] is None else torch.cat([ctx.k[i], nk[i]], dim=0)
            out.v[i] = nv[i] if ctx.v[i] is None else torch.cat([ctx.v[i], nv[i]], dim=0)
        out.kv_len = T + n
        return h, out

    def logits(self, h):
        return h @ self.head.t()

    # ------------------------------------------------------------------
    # context chunks (§6.1)

    def chunk_of(self, inp, rope):
        """An input item of a case -> (Chunk, rope after)."""
        if inp["kind"] == "text":
            return self.text_chunk(inp["tokens"], rope), rope + len(inp["tokens"]) + 2
        if inp["kind"] == "vit":
            return self.vit_chunk(image_u8(inp["image"]), rope), rope + 1
        if inp["kind"] == "vae":
            h, w = inp["grid"]
            tok = inp["tokens"]
            tok = tok if isinstance(tok, torch.Tensor) else tensor_f32(tok)
            return self.vae_chunk(tok, h, w, rope), rope + 1
        raise ValueError(inp["kind"])

    def add(self, ctx, inp):
        """Appends one input to a context; returns (new context, h of its tokens)."""
        ch, rope = self.chunk_of(inp, ctx.rope)
        h, out = self.run_chunk(ctx, ch, True)
        out.rope = rope
        return out, h

    def build_contexts(self, inputs):
        """The three contexts of interleave_inference (§6.3) from an input list:
        full; text-uncond, re-copied from full right before each text input
        and right after each image input; image-uncond, text inputs only.
        Returns (full, text_uncond, img_uncond, [h of each input in full])."""
        full = Context(self.cfg.L)
        tun = full.copy()
        iun = full.copy()
        hs = []
        for inp in inputs:
            if inp["kind"] == "text":
                tun = full.copy()
                full, h = self.add(full, inp)
                iun, _ = self.add(iun, inp)
            else:
                full, h = self.add(full, inp)
                tun = full.copy()
            hs.append(h)
        return full, tun, iun, hs

    # ------------------------------------------------------------------
    # text generation (§6.2)

    def gen_text(self, ctx, max_tokens):
        """Greedy: <|im_start|> at ctx.rope, each step one und causal token
        appended to a copy of the cache, argmax, position + 1; stop after
        <|im_end|> or max_tokens evaluations. -> (ids of every evaluation,
        logits [steps, V], stopped at <|im_end|>)."""
        ctx = ctx.copy()
        tok, pos = self.cfg.bos, ctx.rope
        ids, logits = [], []
        for _ in range(max_tokens):
            ch = Chunk(self.embed_ids([tok]), torch.tensor([pos]), torch.zeros(1, dtype=torch.bool), True)
            h, ctx = self.run_chunk(ctx, ch, True)
            lg = self.logits(h[0])
            tok = int(torch.argmax(lg))
            ids.append(tok)
            logits.append(lg)
            pos += 1
            if tok == self.cfg.eos:
                return ids, torch.stack(logits), True
        return ids, torch.stack(logits), False

    # ------------------------------------------------------------------
    # image generation (§6.3)

    def velocity(self, ctx, x, t, h, w):
        """F(x, t): the query soi, latents, eoi at ctx.rope, gen mode, full
        attention, cache not updated; llm2vae at the latent tokens."""
        ch = self.vae_chunk(x, h, w, ctx.rope, t)
        hid, _ = self.run_chunk(ctx, ch, False)
        return R.lin(hid[1:-1], self.P, "llm2vae")

    def schedule(self, num_timesteps, shift):
        """t_i and dt_i as the official code computes them, in float32."""
        t = torch.linspace(1, 0, num_timesteps, dtype=torch.float32)
        t = shift * t / (1 + (shift - 1) * t)
        return t[:-1], t[:-1] - t[1:]

    def gen_image(self, full, tun, iun, x, h, w, p):
        """p: num_timesteps, timestep_shift, cfg_text_scale, cfg_img_scale,
        cfg_interval [lo, hi], cfg_renorm_type, cfg_renorm_min.
        -> (final x, list of per-step dicts)."""
        assert p["cfg_renorm_type"] in RENORM_TYPES
        ts, dts = self.schedule(p["num_timesteps"], p["timestep_shift"])
        lo, hi = p["cfg_interval"]
        x = torch.as_tensor(x).to(self.dtype)
        steps = []
        for i in range(len(ts)):
            t, dt = ts[i], dts[i]
            # the official compares a float32 tensor with Python floats: in float32
            on = bool(t > torch.tensor(lo, dtype=torch.float32)) and bool(t <= torch.tensor(hi, dtype=torch.float32))
            s_txt = float(p["cfg_text_scale"]) if on else 1.0
            s_img = float(p["cfg_img_scale"]) if on else 1.0
            tv = float(t)
            rec = {"t": tv, "dt": float(dt), "cfg_on": on, "x_in": x}
            v_c = self.velocity(full, x, tv, h, w)
            rec["v_c"] = v_c
            v_t = self.velocity(tun, x, tv, h, w) if s_txt > 1.0 else None
            v_i = self.velocity(iun, x, tv, h, w) if s_img > 1.0 else None
            rec["v_t"], rec["v_i"] = v_t, v_i
            v, scale = combine(v_c, v_t, v_i, s_txt, s_img, p["cfg_renorm_type"], float(p["cfg_renorm_min"]))
            rec["v"], rec["scale"] = v, scale
            x = x - v * dt.to(self.dtype)
            rec["x"] = x
            steps.append(rec)
        return x, steps

    # ------------------------------------------------------------------
    # one forward over a whole sequence (the cache check)

    def forward_full(self, chunks):
        """Every chunk in one forward: chunk b sees all tokens of earlier
        chunks and its own (causally if causal). -> h [S, H]."""
        x = torch.cat([c.x for c in chunks])
        pos = torch.cat([c.pos for c in chunks])
        gen = torch.cat([c.gen for c in chunks])
        splits = [(c.x.shape[0], R.MODE_CAUSAL if c.causal else R.MODE_FULL) for c in chunks]
        mask = torch.from_numpy(R.dense_mask(splits).astype(bool))
        h, _, _ = self.stack(x, pos, gen, mask, [None] * self.cfg.L, [None] * self.cfg.L)
        return h


def combine(v_c, v_t, v_i, s_txt, s_img, renorm, renorm_min):
    """_forward_flow's guidance (§6.3). -> (v, the renorm scale or None).
    cfg_text_scale <= 1 disables image guidance too."""
    if not s_txt > 1.0:
        return v_c, None
    if renorm == "text_channel":
        u = v_t + s_txt * (v_c - v_t)
        scale = (torch.norm(v_c, dim=-1, keepdim=True) / (torch.norm(u, dim=-1, keepdim=True) + 1e-8)).clamp(
            min=renorm_min, max=1.0)
        u = u * scale
        v = v_i + s_img * (u - v_i) if s_img > 1.0 else u
        return v, scale
    u = v_t + s_txt * (v_c - v_t)
    w = v_i + s_img * (u - v_i) if s_img > 1.0 else u
    if renorm == "global":
        nc, nw = torch.norm(v_c), torch.norm(w)
    elif renorm == "channel":
        nc, nw = torch.norm(v_c, dim=-1, keepdim=True), torch.norm(w, dim=-1, keepdim=True)
    else:
        raise ValueError(renorm)
    scale = (nc / (nw + 1e-8)).clamp(min=renorm_min, max=1.0)
    return w * scale, scale


def image_u8(spec):
    return np.asarray(spec["data"], dtype=np.uint8).reshape(spec["shape"])


def tensor_f32(spec):
    return torch.from_numpy(np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"]))
