#!/usr/bin/python3
"""make_gen_golden.py — the reference cases of generation and their golden files.

Made with:   /usr/bin/python3 tests/reference/make_gen_golden.py             (all cases)
             /usr/bin/python3 tests/reference/make_gen_golden.py mini-img-edit (some)
             /usr/bin/python3 tests/reference/make_gen_golden.py --find-eos   (the search
                                     that chose the prompt of mini-text-eos)
using Debian's python3-torch 1.13.0a0 and numpy 1.24.2 on CPU, one thread,
float32 (gen_ref.py). Every input of a case (token ids, u8 images, latent
tokens, noise) comes from named splitmix64 streams (make_golden.Draw), so a
re-run writes identical bytes.

Writes, for each case of CASES (FORMAT.md, "Generation", describes both files):
  tests/reference/gen_cases/<name>.json              config, inputs, parameters
  tests/reference/golden/gen-<name>.safetensors      what gen_ref computed
and checks before writing:
  - the same case run in float64 gives the same token ids and velocities
    within 1e-4 (so no argmax is decided by float32 rounding), and every
    greedy step's top-two logit margin is at least 1e-3;
  - each image case exercises what it is there for (guidance on or off in
    the steps it should be, a renorm scale below 1, the clamp at
    cfg_renorm_min reached, ...);
  - the kv case: the cache path equals one forward of the whole sequence
    (context hidden states, the denoising velocity, the first text logits),
    and the context's hidden states equal bagel_ref.forward (the training
    model, float64) on the same packed sample.
"""
import json
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bagel_ref as R  # noqa: E402
import gen_ref as G  # noqa: E402
import make_golden as MG  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

MINI = MG.MINI
MINI_V = MG.MINI_VOCAB  # ordinary tokens 0..315, specials 316-319
TINY_V = 151643         # ordinary tokens of the real vocabulary lie below the specials


# ---------------------------------------------------------------------------
# inputs


def text_in(d, n, hi):
    return {"kind": "text", "tokens": d.ints(n, hi)}


def vit_in(d, H, W):
    return {"kind": "vit", "image": {"shape": [H, W, 3], "data": d.u8((H, W, 3)).reshape(-1).tolist()}}


def latent_tokens(d, h, w, D):
    return {"shape": [h * w, D], "data": [MG.num(v) for v in d.normal(h * w * D)]}


def vae_in(d, h, w, D):
    return {"kind": "vae", "grid": [h, w], "tokens": latent_tokens(d, h, w, D)}


def text_case(name, config, seed, d, inputs, max_tokens, logit_steps=3):
    return {"name": name, "config": config, "weights_seed": seed, "inputs": inputs, "task": "text",
            "text": {"max_tokens": max_tokens, "logit_steps": logit_steps}}


IMG_DEFAULTS = {"num_timesteps": 6, "timestep_shift": 3.0, "cfg_text_scale": 4.0, "cfg_img_scale": 1.0,
                "cfg_interval": [0.4, 1.0], "cfg_renorm_type": "global", "cfg_renorm_min": 0.0}


def image_case(name, config, seed, d, inputs, grid, expect, **params):
    cfg = R.Cfg(config)
    p = dict(IMG_DEFAULTS)
    p.update(params)
    p["grid"] = list(grid)
    p["noise"] = latent_tokens(d, grid[0], grid[1], cfg.latent_dim)
    return {"name": name, "config": config, "weights_seed": seed, "inputs": inputs, "task": "image",
            "image": p, "_expect": expect}


# ---------------------------------------------------------------------------
# the cases


def tiny_config():
    return MG.load_config("tiny")


# mini-text-eos: the first k of --find-eos whose greedy answer ends in <|im_end|>
EOS_K = 578


def mini_text_cases():
    D = R.Cfg(MINI).latent_dim
    out = []
    d = Draw("gen-mini-text-prompt")
    out.append(text_case("mini-text-prompt", MINI, 21, d, [text_in(d, 6, MINI_V)], 8))
    d = Draw("gen-mini-text-vit")
    out.append(text_case("mini-text-vit", MINI, 21, d, [vit_in(d, 28, 42), text_in(d, 5, MINI_V)], 8))
    d = Draw("gen-mini-text-vae-vit")
    out.append(text_case("mini-text-vae-vit", MINI, 21, d,
                         [vae_in(d, 3, 2, D), vit_in(d, 42, 28), text_in(d, 4, MINI_V)], 8))
    if EOS_K is not None:
        out.append(eos_case(EOS_K))
    return out


def eos_case(k):
    d = Draw("gen-mini-text-eos:%d" % k)
    return text_case("mini-text-eos", MINI, 21, d, [vit_in(d, 28, 28), text_in(d, 5, MINI_V)], 12)


def mini_image_cases():
    D = R.Cfg(MINI).latent_dim
    s = 31
    out = []
    d = Draw("gen-mini-img-nocfg")
    # text scale 1: no guidance at all, although cfg_img_scale is 2 (the quirk)
    out.append(image_case("mini-img-nocfg", MINI, s, d, [text_in(d, 5, MINI_V)], (4, 4),
                          {"no_cfg": True}, cfg_text_scale=1.0, cfg_img_scale=2.0))
    d = Draw("gen-mini-img-text-global")
    out.append(image_case("mini-img-text-global", MINI, s, d, [text_in(d, 5, MINI_V)], (3, 5),
                          {"all_on": True, "no_img": True, "scale_below_1": True},
                          cfg_text_scale=4.0, cfg_img_scale=1.0, cfg_renorm_type="global"))
    d = Draw("gen-mini-img-both-global")
    out.append(image_case("mini-img-both-global", MINI, s, d, [vit_in(d, 28, 42), text_in(d, 5, MINI_V)], (4, 4),
                          {"all_on": True, "img": True, "scale_below_1": True},
                          cfg_text_scale=4.0, cfg_img_scale=2.0, cfg_renorm_type="global"))
    d = Draw("gen-mini-img-both-channel")
    # text, image, text: the text-uncond context is [text, image] (copied before the
    # second text), the image-uncond one [text, text]
    out.append(image_case("mini-img-both-channel", MINI, s, d,
                          [text_in(d, 3, MINI_V), vit_in(d, 28, 28), text_in(d, 4, MINI_V)], (4, 4),
                          {"all_on": True, "img": True, "scale_below_1": True},
                          cfg_text_scale=3.0, cfg_img_scale=1.5, cfg_renorm_type="channel"))
    d = Draw("gen-mini-img-textchannel")
    # text scale 16: the renorm scale falls to 0.38-1 here, so the clamp at 0.5 bites
    inputs = [vit_in(d, 42, 28), text_in(d, 5, MINI_V)]
    noise_d = Draw("gen-mini-img-textchannel-noise")
    c0 = image_case("mini-img-textchannel-min0", MINI, s, noise_d, inputs, (3, 5),
                    {"all_on": True, "img": True, "scale_below_1": True, "min_not_reached": True},
                    cfg_text_scale=16.0, cfg_img_scale=2.0, cfg_renorm_type="text_channel", cfg_renorm_min=0.0)
    c5 = json.loads(json.dumps(c0))
    c5["name"] = "mini-img-textchannel-min05"
    c5["image"]["cfg_renorm_min"] = 0.5
    c5["_expect"] = {"all_on": True, "img": True, "min_reached": True}
    out += [c0, c5]
    d = Draw("gen-mini-img-interval")
    # t = 1, .923, .818, .667, .429: off above 0.9 and at or below 0.5
    out.append(image_case("mini-img-interval", MINI, s, d, [vit_in(d, 28, 42), text_in(d, 5, MINI_V)], (4, 4),
                          {"on": [False, False, True, True, False], "img": True},
                          cfg_text_scale=4.0, cfg_img_scale=2.0, cfg_interval=[0.5, 0.9]))
    d = Draw("gen-mini-img-edit")
    # the app's edit settings: text 4, image 2, interval [0, 1], text_channel
    out.append(image_case("mini-img-edit", MINI, s, d,
                          [vae_in(d, 3, 4, D), vit_in(d, 42, 56), text_in(d, 6, MINI_V)], (3, 4),
                          {"all_on": True, "img": True},
                          cfg_text_scale=4.0, cfg_img_scale=2.0, cfg_interval=[0.0, 1.0],
                          cfg_renorm_type="text_channel"))
    return out


def tiny_cases():
    cfg = tiny_config()
    D = R.Cfg(cfg).latent_dim
    out = []
    d = Draw("gen-tiny-text-vit")
    # the real vocabulary: logits of the first step only (608 KB a step)
    out.append(text_case("tiny-text-vit", cfg, 41, d, [vit_in(d, 42, 28), text_in(d, 5, TINY_V)], 6,
                         logit_steps=1))
    d = Draw("gen-tiny-img-t2i")
    # interleave_inference's defaults on a text prompt: the image-uncond context equals
    # the full one, and its velocity is still computed and used (v_i = v_c)
    out.append(image_case("tiny-img-t2i", cfg, 41, d, [text_in(d, 6, TINY_V)], (3, 4),
                          {"img": True, "scale_below_1": True},
                          cfg_text_scale=3.0, cfg_img_scale=1.5, cfg_interval=[0.4, 1.0],
                          cfg_renorm_type="global"))
    d = Draw("gen-tiny-img-edit")
    out.append(image_case("tiny-img-edit", cfg, 41, d,
                          [vae_in(d, 2, 3, D), vit_in(d, 28, 42), text_in(d, 5, TINY_V)], (3, 4),
                          {"all_on": True, "img": True},
                          cfg_text_scale=4.0, cfg_img_scale=2.0, cfg_interval=[0.0, 1.0],
                          cfg_renorm_type="text_channel"))
    return out


def kv_case():
    D = R.Cfg(MINI).latent_dim
    d = Draw("gen-mini-kv")
    # the VAE condition comes from an image through the identity autoencoder, so
    # bagel_ref.forward (which packs images) can be run on the same context
    img = d.u8((12, 16, 3))
    tok, h, w = R.patchify_hwc((img.astype(np.float64) / 255.0 - 0.5) / 0.5, R.Cfg(MINI).latent_patch)
    vae = {"kind": "vae", "grid": [h, w], "tokens": {"shape": [h * w, D], "data": [float(v) for v in
                                                                                  tok.astype(np.float32).reshape(-1)]},
           "_u8": {"shape": [12, 16, 3], "data": img.reshape(-1).tolist()}}
    vit = vit_in(d, 28, 42)
    txt = text_in(d, 5, MINI_V)
    return {"name": "mini-kv", "config": MINI, "weights_seed": 51, "inputs": [vae, vit, txt], "task": "kv",
            "kv": {"t": 0.75, "grid": [4, 3], "noise": latent_tokens(d, 4, 3, D), "text_steps": 3}}


def all_cases():
    return mini_text_cases() + mini_image_cases() + tiny_cases() + [kv_case()]


Draw = MG.Draw


# ---------------------------------------------------------------------------
# running a case


def f32(t):
    return t.detach().to(torch.float64).numpy().astype(np.float32)


def run(case, dtype):
    cfg = R.Cfg(case["config"])
    m = G.GenModel(cfg, case["weights_seed"], dtype)
    full, tun, iun, hs = m.build_contexts(case["inputs"])
    res = {"cfg": cfg, "model": m, "ctx": (full, tun, iun), "ctx_hidden": torch.cat(hs)}
    if case["task"] == "text":
        ids, logits, stop = m.gen_text(full, case["text"]["max_tokens"])
        res.update(ids=ids, logits=logits, stop=stop)
    elif case["task"] == "image":
        p = case["image"]
        h, w = p["grid"]
        x, steps = m.gen_image(full, tun, iun, G.tensor_f32(p["noise"]), h, w, p)
        res.update(x=x, steps=steps)
    elif case["task"] == "kv":
        res.update(run_kv(case, m, full, hs))
    return res


def run_kv(case, m, full, hs):
    """The cache path against forward_full over the same tokens."""
    k = case["kv"]
    h, w = k["grid"]
    noise = G.tensor_f32(k["noise"]).to(m.dtype)
    chunks, rope = [], 0
    for inp in case["inputs"]:
        ch, rope = m.chunk_of(inp, rope)
        chunks.append(ch)
    assert rope == full.rope
    S = sum(c.x.shape[0] for c in chunks)
    inc_v = m.velocity(full, noise, k["t"], h, w)
    q = m.vae_chunk(noise, h, w, full.rope, k["t"])
    hq = m.forward_full(chunks + [q])
    full_v = R.lin(hq[S + 1:-1], m.P, "llm2vae")
    ids, inc_logits, _ = m.gen_text(full, k["text_steps"])
    gen_ids = [m.cfg.bos] + ids[:-1]
    tc = G.Chunk(m.embed_ids(gen_ids), torch.arange(full.rope, full.rope + len(gen_ids)),
                 torch.zeros(len(gen_ids), dtype=torch.bool), True)
    ht = m.forward_full(chunks + [tc])
    return {"inc_hidden": torch.cat(hs), "full_hidden": hq[:S], "inc_v": inc_v, "full_v": full_v,
            "kv_ids": ids, "inc_logits": inc_logits, "full_logits": m.logits(ht[S:]), "noise": noise}


def margins(logits):
    top = torch.topk(logits.to(torch.float64), 2, dim=-1).values
    return top[:, 0] - top[:, 1]


def golden_of(case, r):
    full, tun, iun = r["ctx"]
    out = {"ctx.kv_len": np.array([full.kv_len, tun.kv_len, iun.kv_len], dtype=np.int64),
           "ctx.rope": np.array([full.rope, tun.rope, iun.rope], dtype=np.int64),
           "ctx.hidden": f32(r["ctx_hidden"])}
    if case["task"] == "text":
        k = min(case["text"]["logit_steps"], len(r["ids"]))
        out["text.ids"] = np.array(r["ids"], dtype=np.int64)
        out["text.stop"] = np.array([1 if r["stop"] else 0], dtype=np.int64)
        out["text.logits"] = f32(r["logits"][:k])
        out["text.margin"] = f32(margins(r["logits"]))
    elif case["task"] == "image":
        p = case["image"]
        h, w = p["grid"]
        st = r["steps"]
        out["img.t"] = np.array([s["t"] for s in st], dtype=np.float32)
        out["img.dt"] = np.array([s["dt"] for s in st], dtype=np.float32)
        out["img.cfg_on"] = np.array([1 if s["cfg_on"] else 0 for s in st], dtype=np.int64)
        out["img.noise"] = G.tensor_f32(p["noise"]).numpy()
        out["img.x"] = f32(r["x"])
        out["img.latent_pos_ids"] = r["model"].latent_pos_ids(h, w).numpy()
        for i, s in enumerate(st):
            for key in ("v_c", "v_t", "v_i", "v", "x"):
                if s[key] is not None:
                    out["step.%d.%s" % (i, key)] = f32(s[key])
            if s["scale"] is not None:
                out["step.%d.scale" % i] = f32(s["scale"]).reshape(-1)
    elif case["task"] == "kv":
        out["kv.t"] = np.array([case["kv"]["t"]], dtype=np.float32)
        out["kv.noise"] = f32(r["noise"])
        out["kv.inc.hidden"] = f32(r["inc_hidden"])
        out["kv.full.hidden"] = f32(r["full_hidden"])
        out["kv.inc.v"] = f32(r["inc_v"])
        out["kv.full.v"] = f32(r["full_v"])
        out["kv.text.ids"] = np.array(r["kv_ids"], dtype=np.int64)
        out["kv.inc.logits"] = f32(r["inc_logits"])
        out["kv.full.logits"] = f32(r["full_logits"])
    return out


# ---------------------------------------------------------------------------
# checks


def rel(a, b):
    a, b = a.detach().to(torch.float64), b.detach().to(torch.float64)
    return float(torch.norm(a - b) / max(float(torch.norm(b)), 1e-300))


def check(case, r32, r64):
    name = case["name"]
    assert torch.isfinite(r32["ctx_hidden"]).all(), name
    assert rel(r32["ctx_hidden"], r64["ctx_hidden"]) < 1e-5, name
    if case["task"] == "text":
        assert r32["ids"] == r64["ids"], (name, r32["ids"], r64["ids"])
        mg = float(margins(r32["logits"]).min())
        assert mg >= 1e-3, (name, "greedy margin", mg)
        assert rel(r32["logits"], r64["logits"]) < 1e-5, name
    elif case["task"] == "image":
        e = case["_expect"]
        st, st64 = r32["steps"], r64["steps"]
        for a, b in zip(st, st64):
            for key in ("v_c", "v_t", "v_i", "v"):
                assert (a[key] is None) == (b[key] is None), (name, key)
                if a[key] is not None:
                    assert torch.isfinite(a[key]).all(), (name, key)
                    assert rel(a[key], b[key]) < 1e-4, (name, key, rel(a[key], b[key]))
        assert rel(r32["x"], r64["x"]) < 1e-4, name
        on = [s["cfg_on"] for s in st]
        p = case["image"]
        if e.get("all_on"):
            assert all(on), (name, on)
        if "on" in e:
            assert on == e["on"], (name, on)
        if e.get("no_cfg"):
            assert all(s["v_t"] is None and s["scale"] is None for s in st), name
            assert all(torch.equal(s["v"], s["v_c"]) for s in st), name
            assert all(s["v_i"] is not None for s in st), name  # computed, then unused
        for s in st:
            if s["cfg_on"] and p["cfg_text_scale"] > 1:
                assert s["v_t"] is not None, name
                assert (s["v_i"] is not None) == (p["cfg_img_scale"] > 1), name
            if not s["cfg_on"]:
                assert s["v_t"] is None and s["v_i"] is None and torch.equal(s["v"], s["v_c"]), name
        if e.get("img"):
            assert any(s["v_i"] is not None for s in st), name
        if e.get("no_img"):
            assert all(s["v_i"] is None for s in st), name
        scales = torch.cat([s["scale"].reshape(-1) for s in st if s["scale"] is not None]) \
            if any(s["scale"] is not None for s in st) else None
        if e.get("scale_below_1"):
            assert float(scales.min()) < 0.999, (name, scales)
        if e.get("min_reached"):
            assert bool((scales == p["cfg_renorm_min"]).any()), (name, scales)
        if e.get("min_not_reached"):
            assert float(scales.min()) < 0.5, (name, scales)
        if not (e.get("no_cfg") or "on" in e):
            # the contexts of the guidance differ from the full one
            s0 = st[0]
            assert rel(s0["v_t"], s0["v_c"]) > 1e-3, name
            if s0["v_i"] is not None and case["name"] != "tiny-img-t2i":
                assert rel(s0["v_i"], s0["v_c"]) > 1e-3, name
        if case["name"] == "tiny-img-t2i":
            assert all(torch.equal(s["v_i"], s["v_c"]) for s in st if s["v_i"] is not None), name
    elif case["task"] == "kv":
        for rr, tol in ((r32, 1e-5), (r64, 1e-12)):
            assert rel(rr["inc_hidden"], rr["full_hidden"]) < tol, (name, rel(rr["inc_hidden"], rr["full_hidden"]))
            assert rel(rr["inc_v"], rr["full_v"]) < tol, (name, rel(rr["inc_v"], rr["full_v"]))
            assert rel(rr["inc_logits"], rr["full_logits"]) < tol, name
        assert r32["kv_ids"] == r64["kv_ids"], name
        check_against_training_model(case, r64)


def check_against_training_model(case, r64):
    """bagel_ref.forward (the packed training forward, float64) over one sample
    [clean VAE image + ViT image, text] equals the context's hidden states."""
    vae, vit, txt = case["inputs"]
    seg_img = {"kind": "image", "und": True, "loss": False, "cond": True, "cfg": False,
               "drop_vae": False, "drop_vit": False, "vit": vit["image"], "vae": vae["_u8"]}
    seg_txt = {"kind": "text", "tokens": txt["tokens"], "loss": False, "cfg": False, "drop": False}
    tcase = {"samples": [{"segments": [seg_img, seg_txt]}], "tau": []}
    cfg = R.Cfg(case["config"])
    b = R.pack(tcase, cfg)
    masks = [R.dense_mask(s) for s in b["sample_splits"]]
    nvae = sum(t.shape[0] for t in b["x0_tokens"])
    P = R.make_params(cfg, case["weights_seed"])
    _, hidden, _ = R.forward(P, cfg, b, np.zeros((nvae, cfg.latent_dim)), {}, masks)
    # gen_ref in float64 with the exact (unrounded) latent tokens
    m = G.GenModel(cfg, case["weights_seed"], torch.float64)
    inputs = [dict(vae), vit, txt]
    tok, h, w = R.patchify_hwc((np.asarray(vae["_u8"]["data"], dtype=np.float64).reshape(vae["_u8"]["shape"])
                                / 255.0 - 0.5) / 0.5, cfg.latent_patch)
    inputs[0] = {"kind": "vae", "grid": [h, w], "tokens": torch.from_numpy(tok)}
    _, _, _, hs = m.build_contexts(inputs)
    d = rel(torch.cat(hs), hidden)
    assert d < 1e-12, ("training model", d)


# ---------------------------------------------------------------------------


def public(case):
    """The case as written: without the generator's own keys (leading _)."""
    c = {k: v for k, v in case.items() if not k.startswith("_")}
    c["inputs"] = [{k: v for k, v in inp.items() if not k.startswith("_")} for inp in case["inputs"]]
    return c


def find_eos(n=1500):
    """Prompts of eos_case(k) for k = 0.. until the greedy answer ends in <|im_end|>."""
    for k in range(n):
        case = eos_case(k)
        r = run(case, torch.float32)
        if r["stop"] and 3 <= len(r["ids"]) < case["text"]["max_tokens"]:
            print("k=%d ids=%s" % (k, r["ids"]))
            return k
    print("none of %d prompts stops" % n)
    return None


def main(argv):
    torch.set_num_threads(1)
    if argv[1:] == ["--find-eos"]:
        find_eos()
        return
    want = argv[1:]
    os.makedirs(os.path.join(HERE, "gen_cases"), exist_ok=True)
    os.makedirs(os.path.join(HERE, "golden"), exist_ok=True)
    total = 0
    for case in all_cases():
        if want and case["name"] not in want:
            continue
        r32 = run(case, torch.float32)
        r64 = run(case, torch.float64)
        check(case, r32, r64)
        golden = golden_of(case, r32)
        cpath = os.path.join(HERE, "gen_cases", case["name"] + ".json")
        gpath = os.path.join(HERE, "golden", "gen-" + case["name"] + ".safetensors")
        with open(cpath, "w") as f:
            f.write(json.dumps(public(case), separators=(",", ":")) + "\n")
        MG.write_safetensors(gpath, golden)
        total += os.path.getsize(gpath)
        what = ""
        if case["task"] == "text":
            what = "ids=%s stop=%d margin=%.3g" % (r32["ids"], r32["stop"], float(margins(r32["logits"]).min()))
        elif case["task"] == "image":
            what = "on=%s |x|=%.4g" % ("".join("1" if s["cfg_on"] else "0" for s in r32["steps"]),
                                      float(torch.norm(r32["x"])))
        print("%-26s kv_len=%s rope=%s %s json=%d golden=%d" % (
            case["name"], list(golden["ctx.kv_len"]), list(golden["ctx.rope"]), what,
            os.path.getsize(cpath), os.path.getsize(gpath)))
        sys.stdout.flush()
    print("golden total %d bytes" % total)


if __name__ == "__main__":
    main(sys.argv)
