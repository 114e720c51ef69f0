#!/usr/bin/python3
"""make_ae_golden.py — golden files of the FLUX autoencoder (models/ae.c).

Made with:   /usr/bin/python3 tests/reference/make_ae_golden.py
using Debian's python3-torch 1.13.0a0 and numpy 1.24.2 on CPU, float64
throughout (ae_ref.py). The image and eps come from splitmix64 streams keyed
by the case name and the weights from FORMAT.md's hash, so a re-run writes
identical bytes.

Writes tests/reference/golden/ae-<case>.safetensors for each case of CASES
(FORMAT.md, "Autoencoder", lists the tensors) and checks before writing that
every output is finite and that the decoded pixels are spread over the u8
range rather than clamped.
"""
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ae_ref as A  # noqa: E402
import make_golden as G  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# Reduced configs: every level's channel count a multiple of GroupNorm's 32
# groups. "ch32" is FLUX's shape at a quarter of the width; "ch32-3lvl" has
# three levels (×4), one res block per encoder level and a 4-channel latent.
CASES = [
    {"name": "ae-ch32", "seed": 1, "H": 32, "W": 48,
     "cfg": dict(A.FLUX, ch=32, ch_mult=[1, 2, 4, 4], num_res_blocks=2, z_channels=16)},
    {"name": "ae-ch32-3lvl", "seed": 2, "H": 24, "W": 40,
     "cfg": dict(A.FLUX, ch=32, ch_mult=[1, 2, 2], num_res_blocks=1, z_channels=4)},
]


def run_case(case):
    cfg, H, W = case["cfg"], case["H"], case["W"]
    d = G.Draw(case["name"])
    P = A.make_params(cfg, case["seed"])
    img = d.u8([H, W, cfg["in_channels"]]).astype(np.uint8)
    down = 2 ** (len(cfg["ch_mult"]) - 1)
    h, w, zc = H // down, W // down, cfg["z_channels"]

    with torch.no_grad():
        moments = A.encode_moments(img, P, cfg).numpy().astype(np.float32)
        eps = d.normal(zc * h * w).reshape(zc, h, w).astype(np.float32)
        # each stage starts from the float32 values the C test is given
        z = A.sample_scaled(torch.from_numpy(moments).double(), torch.from_numpy(eps).double(), cfg)
        z = z.numpy().astype(np.float32)
        x = A.decode_float(torch.from_numpy(z).double(), P, cfg)
        u8 = A.to_u8(x)
        x = x.numpy().astype(np.float32)

    for k, a in (("moments", moments), ("z", z), ("decoded", x)):
        if not np.all(np.isfinite(a)):
            raise SystemExit("%s: %s is not finite" % (case["name"], k))
    if len(np.unique(u8)) < 64:
        raise SystemExit("%s: decoded u8 has only %d distinct values" % (case["name"], len(np.unique(u8))))

    ints = [cfg["in_channels"], cfg["out_channels"], cfg["ch"], cfg["num_res_blocks"], cfg["z_channels"]]
    return {
        "cfg.ints": np.array(ints, dtype=np.int64),
        "cfg.ch_mult": np.array(cfg["ch_mult"], dtype=np.int64),
        "cfg.scale_shift": np.array([cfg["scale"], cfg["shift"]], dtype=np.float32),
        "cfg.seed": np.array([case["seed"]], dtype=np.int64),
        "image": img,
        "moments": moments,
        "eps": eps,
        "z": z,
        "decoded": x,
        "decoded_u8": u8,
    }


def main():
    torch.set_num_threads(1)
    for case in CASES:
        t = run_case(case)
        path = os.path.join(HERE, "golden", case["name"] + ".safetensors")
        G.write_safetensors(path, t)
        x = t["decoded"]
        print("%s: moments %s |m| %.3f, z |z| %.3f, decoded %s in [%.3f, %.3f], %d bytes" % (
            case["name"], list(t["moments"].shape), float(np.abs(t["moments"]).mean()),
            float(np.abs(t["z"]).mean()), list(x.shape), float(x.min()), float(x.max()), os.path.getsize(path)))


if __name__ == "__main__":
    main()
