#!/usr/bin/python3
"""make_golden.py — the reference cases of the model and their golden files.

Made with:   /usr/bin/python3 tests/reference/make_golden.py            (all cases)
             /usr/bin/python3 tests/reference/make_golden.py mini-mixed  (some)
using Debian's python3-torch 1.13.0a0 and numpy 1.24.2 on CPU, one thread,
float64 throughout (bagel_ref.py). Everything a case holds (token ids,
images, latents, tau, eps) comes from splitmix64 streams keyed by names, so a
re-run writes identical bytes.

Writes, for each case of CASES (FORMAT.md describes both files):
  tests/reference/cases/<name>.json           config, samples, forced draws
  tests/reference/golden/<name>.safetensors   packed batch, masks, losses,
                                              hidden states, gradients
and checks before writing: every per-sample mask equals the §3.5 predicate
evaluated token pair by token pair (a second construction of the rule), the
losses are finite, every trainable parameter gets a non-zero gradient.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bagel_ref as R  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


# ---------------------------------------------------------------------------
# safetensors


DTYPES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64",
          np.dtype("int64"): "I64", np.dtype("uint8"): "U8"}


def write_safetensors(path, tensors):
    """8-byte LE header length, JSON header (sorted keys, space padded to a
    multiple of 8), then the raw little-endian data in key order."""
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        dt = DTYPES[a.dtype]
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for d in blobs:
            f.write(d)


# ---------------------------------------------------------------------------
# deterministic contents


class Draw:
    """Named splitmix64 streams: every draw has its own key, so cases do not
    shift when another one changes."""

    def __init__(self, tag):
        self.tag = tag
        self.n = 0

    def _u53(self, n):
        self.n += 1
        key = R.fnv1a64(("%s:%d" % (self.tag, self.n)).encode("utf-8"))
        return (R.stream_u64(key, 0, n) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53

    def ints(self, n, hi):
        return [int(v) for v in np.floor(self._u53(n) * hi).astype(np.int64)]

    def u8(self, shape):
        return np.floor(self._u53(int(np.prod(shape))) * 256).astype(np.int64).reshape(shape)

    def normal(self, n):
        """Box-Muller normals rounded to multiples of 2^-12 (exact in f32 and in decimal)."""
        u1 = np.maximum(self._u53(n), 2.0 ** -60)
        u2 = self._u53(n)
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
        return np.round(z * 4096.0) / 4096.0


def num(v):
    """A float for the JSON: exact (multiples of 2^-12 print exactly)."""
    return float(v)


def text(d, n, hi, loss=False, cfg=False, drop=False):
    return {"kind": "text", "tokens": d.ints(n, hi), "loss": loss, "cfg": cfg, "drop": drop}


def image(d, und=False, loss=False, cond=False, cfg=False, drop_vae=False, drop_vit=False,
          vit=None, vae=None, latent=None):
    seg = {"kind": "image", "und": und, "loss": loss, "cond": cond, "cfg": cfg,
           "drop_vae": drop_vae, "drop_vit": drop_vit}
    if und:
        seg["vit"] = {"shape": [vit[0], vit[1], 3], "data": d.u8((vit[0], vit[1], 3)).reshape(-1).tolist()}
    if loss or cond:
        if vae is not None:
            seg["vae"] = {"shape": [vae[0], vae[1], 3], "data": d.u8((vae[0], vae[1], 3)).reshape(-1).tolist()}
        else:
            C, h, w = latent
            seg["latent"] = {"shape": [C, h, w], "data": [num(v) for v in d.normal(C * h * w)]}
    return seg


def finish(name, config, samples, d, loss, seed=1, full_grad_max=65536):
    """Adds the forced draws: tau per noisy image, eps per packed VAE token."""
    n_noisy = sum(1 for s in samples for g in s["segments"] if g["kind"] == "image" and g["loss"])
    case = {"name": name, "config": config, "weights_seed": seed, "loss": loss,
            "full_grad_max": full_grad_max, "samples": samples,
            "tau": [num(v) for v in d.normal(n_noisy)]}
    cfg = R.Cfg(config)
    b = R.pack(case, cfg)
    nvae = sum(t.shape[0] for t in b["x0_tokens"])
    case["eps"] = [num(v) for v in d.normal(nvae * cfg.latent_dim)]
    return case


# ---------------------------------------------------------------------------
# the cases


MINI = {
    "name": "mini",
    "llm": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "intermediate_size": 96, "vocab_size": 320, "rope_theta": 10000.0, "rms_norm_eps": 1e-06},
    "vit": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 2,
            "patch_size": 14, "image_size": 56, "layer_norm_eps": 1e-06, "num_channels": 3},
    "bagel": {"visual_und": True, "visual_gen": True, "vit_select_layer": -2,
              "vit_max_num_patch_per_side": 4, "latent_patch_size": 4, "max_latent_size": 8,
              "timestep_shift": 3.0, "qk_norm": True, "tie_word_embeddings": False,
              "autoencoder": {"type": "identity"}, "vae_transform": [32, 8], "vit_transform": [56, 28],
              "tokens": {"bos": 316, "eos": 317, "start_of_image": 318, "end_of_image": 319}},
}
MINI_VOCAB = 316


def load_config(name):
    with open(os.path.join(ROOT, "models", "configs", name + ".json")) as f:
        return json.load(f)


def case_mini_mixed():
    d = Draw("mini-mixed")
    V = MINI_VOCAB
    samples = [
        # t2i: caption (cfg, kept) + noisy target
        {"segments": [text(d, 5, V, cfg=True),
                      image(d, loss=True, vae=(16, 12))]},
        # t2i with the caption dropped: the target alone at position 0
        {"segments": [text(d, 6, V, cfg=True, drop=True),
                      image(d, loss=True, vae=(8, 12))]},
        # VLM chat: ViT image, question, answer with loss, a second ViT image (cfg, not dropped), answer
        {"segments": [image(d, und=True, vit=(28, 42)),
                      text(d, 4, V),
                      text(d, 5, V, loss=True),
                      image(d, und=True, cfg=True, vit=(28, 28)),
                      text(d, 3, V, loss=True)]},
        # edit: source image with its clean VAE copy dropped (ViT kept), instruction, noisy target
        {"segments": [image(d, und=True, cond=True, cfg=True, drop_vae=True, vit=(28, 42), vae=(8, 12)),
                      text(d, 5, V, cfg=True),
                      image(d, loss=True, vae=(16, 12))]},
        # interleaved: text with loss, an intermediate image (target + clean VAE + ViT), text with loss
        {"segments": [text(d, 5, V, loss=True),
                      image(d, und=True, loss=True, cond=True, cfg=True, vit=(42, 28), vae=(12, 8)),
                      text(d, 6, V, loss=True)]},
    ]
    return finish("mini-mixed", MINI, samples, d, {"ce_weight": 1.0, "mse_weight": 1.0, "ce_reweight": False})


def case_mini_reweight():
    d = Draw("mini-reweight")
    V = MINI_VOCAB
    samples = [
        # edit with the ViT copy dropped (clean VAE kept), instruction dropped
        {"segments": [image(d, und=True, cond=True, cfg=True, drop_vit=True, vit=(28, 28), vae=(12, 12)),
                      text(d, 4, V, cfg=True, drop=True),
                      image(d, loss=True, vae=(12, 16))]},
        # VLM with a short and a long answer (different len2weight weights)
        {"segments": [image(d, und=True, vit=(42, 42)),
                      text(d, 3, V),
                      text(d, 2, V, loss=True),
                      text(d, 9, V, loss=True)]},
    ]
    return finish("mini-reweight", MINI, samples, d, {"ce_weight": 0.7, "mse_weight": 1.3, "ce_reweight": True},
                  seed=7)


def case_tiny():
    d = Draw("tiny")
    cfg = load_config("tiny")
    V = 151643  # ordinary tokens lie below the special ones
    samples = [
        # interleaved: text, intermediate image (target + clean VAE + ViT), text
        {"segments": [text(d, 6, V, loss=True),
                      image(d, und=True, loss=True, cond=True, cfg=True, vit=(28, 42), vae=(32, 24)),
                      text(d, 5, V, loss=True)]},
        # edit: source with its ViT copy dropped, instruction, target
        {"segments": [image(d, und=True, cond=True, cfg=True, drop_vit=True, vit=(42, 28), vae=(24, 32)),
                      text(d, 5, V, cfg=True),
                      image(d, loss=True, vae=(24, 24))]},
        # VLM: image, question, answer
        {"segments": [image(d, und=True, vit=(28, 28)),
                      text(d, 4, V),
                      text(d, 7, V, loss=True)]},
    ]
    return finish("tiny", cfg, samples, d, {"ce_weight": 1.0, "mse_weight": 1.0, "ce_reweight": False},
                  seed=3, full_grad_max=16384)


def case_05b_1layer():
    d = Draw("0.5b-1layer")
    cfg = load_config("bagel-0.5b-mot")
    cfg["name"] = "bagel-0.5b-mot-1layer"
    cfg["llm"]["num_hidden_layers"] = 1
    cfg["vit"]["num_hidden_layers"] = 2  # -> 1 used
    V = 151643
    samples = [
        # edit: source (clean latent + ViT), instruction, target latent
        {"segments": [image(d, und=True, cond=True, cfg=True, vit=(28, 42), latent=(16, 4, 6)),
                      text(d, 4, V, cfg=True),
                      image(d, loss=True, latent=(16, 4, 4))]},
        # VLM: image, question, answer
        {"segments": [image(d, und=True, vit=(28, 28)),
                      text(d, 3, V),
                      text(d, 5, V, loss=True)]},
    ]
    return finish("0.5b-1layer", cfg, samples, d, {"ce_weight": 1.0, "mse_weight": 1.0, "ce_reweight": False},
                  seed=5)


CASES = [("mini-mixed", case_mini_mixed), ("mini-reweight", case_mini_reweight),
         ("tiny", case_tiny), ("0.5b-1layer", case_05b_1layer)]


# ---------------------------------------------------------------------------
# checks


def predicate_mask(splits):
    """§3.5 as a predicate over token pairs (the second construction)."""
    sid, mode = [], []
    for j, (l, m) in enumerate(splits):
        sid += [j] * l
        mode.append(m)
    L = len(sid)
    out = np.zeros((L, L), dtype=np.uint8)
    for q in range(L):
        for k in range(L):
            sq, sk = sid[q], sid[k]
            ok = k <= q or (sq == sk and mode[sq] in (R.MODE_FULL, R.MODE_NOISE))
            if mode[sk] == R.MODE_NOISE and sk != sq:
                ok = False
            out[q, k] = ok
    return out


def self_test_mask():
    # the example of bagel-reference.md §3.5: splits [3 causal, 3 noise, 2 full]
    want = ["x.......", "xx......", "xxx.....", "xxxxxx..", "xxxxxx..", "xxxxxx..", "xxx...xx", "xxx...xx"]
    splits = [(3, R.MODE_CAUSAL), (3, R.MODE_NOISE), (2, R.MODE_FULL)]
    for m in (R.dense_mask(splits), predicate_mask(splits)):
        got = ["".join("x" if v else "." for v in row) for row in m]
        assert got == want, got
    # random split configurations
    d = Draw("mask-selftest")
    for _ in range(300):
        n = d.ints(1, 6)[0] + 1
        splits = list(zip([v + 1 for v in d.ints(n, 5)], d.ints(n, 3)))
        assert np.array_equal(R.dense_mask(splits), predicate_mask(splits)), splits


def check(name, golden, info):
    for i, splits in enumerate(info["batch"]["sample_splits"]):
        assert np.array_equal(golden["mask.%d" % i], predicate_mask(splits)), (name, i)
    for k, v in info["losses"].items():
        assert math.isfinite(v), (name, k, v)
    for pname, g in info["grads"].items():
        assert np.all(np.isfinite(g)), (name, pname)
        assert np.any(g != 0), (name, pname, "zero gradient")
    b = info["batch"]
    assert sum(b["sample_lens"]) == b["sequence_length"][0] == sum(b["split_lens"])
    assert len(b["mse_loss_indexes"]) > 0 and len(b["ce_loss_indexes"]) > 0


# ---------------------------------------------------------------------------


def main(argv):
    want = argv[1:] or [n for n, _ in CASES]
    os.makedirs(os.path.join(HERE, "cases"), exist_ok=True)
    os.makedirs(os.path.join(HERE, "golden"), exist_ok=True)
    self_test_mask()
    for name, fn in CASES:
        if name not in want:
            continue
        case = fn()
        golden, info = R.run_case(case, case["full_grad_max"])
        check(name, golden, info)
        cpath = os.path.join(HERE, "cases", name + ".json")
        gpath = os.path.join(HERE, "golden", name + ".safetensors")
        with open(cpath, "w") as f:
            f.write(json.dumps(case, separators=(",", ":")) + "\n")
        write_safetensors(gpath, golden)
        L = info["losses"]
        print("%-14s S=%-4d params=%-10d ce=%.9g mse=%.9g total=%.9g  json=%d golden=%d" % (
            name, info["batch"]["sequence_length"][0], info["nparams"], L["ce"], L["mse"], L["total"],
            os.path.getsize(cpath), os.path.getsize(gpath)))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv)
