#!/usr/bin/python3
"""ae_bench_gpu.py — the PyTorch peer of bagel-encode's benchmark
(scripts/bench/encode-gpu.sh, docs/encode.md "Benchmark"): the FLUX
autoencoder's encoder, u8 pixels to posterior moments, written with
torch.nn layers (Conv2d, GroupNorm, SiLU, scaled-dot-product attention where
torch has it) and loaded from the same ae.safetensors bagel-encode reads.

    ae_bench_gpu.py check AE.safetensors CONFIG.json [SIDE]
        this model against ae_ref.py (float64) on the CPU, on two random
        images: float64 must agree to 1e-9, float32 to 1e-4 (relative to the
        largest moment); exit 1 otherwise
    ae_bench_gpu.py bench AE.safetensors CONFIG.json [--sizes 512,1024]
        [--batches 1,8] [--iters 10] [--warmup 3] [--dtype bf16|fp32]
        [--device cuda] [--no-channels-last]
        one line per (size, batch): "ae-bench size=S batch=B dtype=D
        ms=MEDIAN images_per_s=X" (CUDA events around each forward, the
        median of --iters after --warmup), or "... error=WHY"
    ae_bench_gpu.py records SIDE COUNT OUT.msgpack [SEED]
        COUNT sample records, each one generation image with a random u8
        "vae" [SIDE, SIDE, 3], and their end record (plain Python: no torch,
        no numpy)

Each forward includes what bagel-encode does on the GPU: the u8 pixels to
(x/255 - 0.5)/0.5, the encoder, the moments in float32; not the copies
between host and device. Runs with torch 1.13 (Debian's /usr/bin/python3, no
scaled_dot_product_attention: an explicit softmax) and recent torch.
"""
import json
import os
import random
import struct
import sys
import time

GROUPS = 32
EPS = 1e-6


# ---------------------------------------------------------------------------
# records: a minimal msgpack writer (docs/ipc.md: one map a record)


def _mp(o):
    if isinstance(o, bool):
        return b"\xc3" if o else b"\xc2"
    if isinstance(o, int):
        if 0 <= o < 128:
            return bytes([o])
        return b"\xd3" + struct.pack(">q", o)
    if isinstance(o, str):
        b = o.encode("utf-8")
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        if len(b) < 256:
            return b"\xd9" + bytes([len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(o, (bytes, bytearray)):
        return b"\xc6" + struct.pack(">I", len(o)) + bytes(o)
    if isinstance(o, list):
        head = bytes([0x90 | len(o)]) if len(o) < 16 else b"\xdc" + struct.pack(">H", len(o))
        return head + b"".join(_mp(x) for x in o)
    if isinstance(o, dict):
        head = bytes([0x80 | len(o)]) if len(o) < 16 else b"\xde" + struct.pack(">H", len(o))
        return head + b"".join(_mp(k) + _mp(v) for k, v in o.items())
    raise TypeError(type(o))


def write_records(side, count, path, seed=1):
    rnd = random.Random(seed)
    src = "synthetic-%d" % side
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for i in range(count):
            # random pixels: what the encoder costs does not depend on them
            px = rnd.getrandbits(8 * side * side * 3).to_bytes(side * side * 3, "little")
            rec = {"v": 1, "type": "sample", "id": "%s#%d" % (src, i), "source": src, "seq": i, "epoch": 0,
                   "task": "t2i",
                   "segments": [{"kind": "text", "text": "picture %d" % i, "loss": False},
                                {"kind": "image", "path": "p.png", "gen": True,
                                 "vae": {"dtype": "u8", "shape": [side, side, 3], "data": px}}]}
            f.write(_mp(rec))
        f.write(_mp({"v": 1, "type": "end", "source": src, "epoch": 0, "count": count}))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# ae.safetensors and the config


def read_safetensors(path):
    """name -> float32 numpy array (F32, BF16 or F16 in the file)"""
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = data[a:b]
        if t["dtype"] == "F32":
            v = np.frombuffer(raw, dtype="<f4")
        elif t["dtype"] == "F16":
            v = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif t["dtype"] == "BF16":
            v = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError("%s: %s: dtype %s" % (path, name, t["dtype"]))
        out[name] = v.reshape(t["shape"]).copy()
    return out


def ae_config(path):
    """the autoencoder of a model config, as bagel-encode builds it
    (stages/common/latent.c: FLUX's, with z, ch and res blocks from the config)"""
    c = json.load(open(path))
    a = c.get("bagel", {}).get("autoencoder", {})
    return {"in_channels": 3, "ch": a.get("ch", 128), "ch_mult": [1, 2, 4, 4],
            "num_res_blocks": a.get("num_res_blocks", 2), "z_channels": a.get("z_channels", 16)}


# ---------------------------------------------------------------------------
# the encoder with torch.nn layers; module names are the BFL names


def build_encoder(cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def norm(c):
        return nn.GroupNorm(GROUPS, c, eps=EPS, affine=True)

    class ResBlock(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

        def forward(self, x):
            h = self.conv1(F.silu(self.norm1(x)))
            h = self.conv2(F.silu(self.norm2(h)))
            return (self.nin_shortcut(x) if self.nin_shortcut is not None else x) + h

    class Attn(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.norm = norm(c)
            self.q, self.k, self.v = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
            self.proj_out = nn.Conv2d(c, c, 1)

        def forward(self, x):
            b, c, hh, ww = x.shape
            h = self.norm(x)
            q, k, v = (m(h).reshape(b, 1, c, hh * ww).transpose(2, 3) for m in (self.q, self.k, self.v))
            if hasattr(F, "scaled_dot_product_attention"):
                o = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
            else:  # torch 1.13
                a = torch.softmax(q @ k.transpose(2, 3) / (c ** 0.5), dim=-1)
                o = a @ v
            o = o.transpose(2, 3).reshape(b, c, hh, ww)
            return x + self.proj_out(o)

    class Down(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

        def forward(self, x):
            return self.conv(F.pad(x, (0, 1, 0, 1)))

    class Mid(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.block_1, self.attn_1, self.block_2 = ResBlock(c, c), Attn(c), ResBlock(c, c)

        def forward(self, x):
            return self.block_2(self.attn_1(self.block_1(x)))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            ch, mult, nrb, z = cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"], cfg["z_channels"]
            self.conv_in = nn.Conv2d(cfg["in_channels"], ch, 3, padding=1)
            self.down = nn.ModuleList()
            cin = ch
            for i, m in enumerate(mult):
                lvl = nn.Module()
                lvl.block = nn.ModuleList()
                for _ in range(nrb):
                    lvl.block.append(ResBlock(cin, ch * m))
                    cin = ch * m
                if i != len(mult) - 1:
                    lvl.downsample = Down(cin)
                self.down.append(lvl)
            self.mid = Mid(cin)
            self.norm_out = norm(cin)
            self.conv_out = nn.Conv2d(cin, 2 * z, 3, padding=1)

        def forward(self, u8):
            """u8 [b, H, W, 3] -> moments [b, 2z, H/8, W/8], float32 (float64 in float64)"""
            p = next(self.parameters())
            x = u8.permute(0, 3, 1, 2).to(p.dtype)
            x = (x / 255.0 - 0.5) / 0.5
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            h = self.conv_in(x)
            for lvl in self.down:
                for blk in lvl.block:
                    h = blk(h)
                if hasattr(lvl, "downsample"):
                    h = lvl.downsample(h)
            h = self.mid(h)
            out = self.conv_out(F.silu(self.norm_out(h)))
            return out if out.dtype == torch.float64 else out.float()

    class AE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()

        def forward(self, u8):
            return self.encoder(u8)

    m = AE()
    m.encoder.channels_last = False
    return m


def load_encoder(path, cfg):
    import torch
    m = build_encoder(cfg)
    w = read_safetensors(path)
    sd = {k: torch.from_numpy(v) for k, v in w.items() if k.startswith("encoder.")}
    m.load_state_dict(sd, strict=True)
    return m.eval()


# ---------------------------------------------------------------------------
# check: against ae_ref.py on the CPU


def check(path, config, side=32):
    import numpy as np
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ae_ref

    cfg = ae_config(config)
    w = read_safetensors(path)
    P = {k: torch.from_numpy(v).to(torch.float64) for k, v in w.items()}
    m = load_encoder(path, cfg)
    rng = np.random.RandomState(7)
    imgs = rng.randint(0, 256, size=(2, side, side + 16, 3)).astype(np.uint8)
    ok = True
    with torch.no_grad():
        want = torch.stack([ae_ref.encode_moments(im, P, cfg) for im in imgs])
        for dt, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
            got = m.to(dt)(torch.from_numpy(imgs)).to(torch.float64)
            err = ((got - want).abs().max() / want.abs().max()).item()
            good = err < tol and got.shape == want.shape
            ok &= good
            print("ae-bench check %s: shape %s, max |diff| / max |ref| = %.3g (tolerance %g) %s"
                  % (str(dt).replace("torch.", ""), list(got.shape), err, tol, "ok" if good else "FAILED"))
    return 0 if ok else 1


# ---------------------------------------------------------------------------
# bench


def bench(path, config, sizes, batches, iters, warmup, dtype, device, channels_last):
    import torch
    torch.backends.cudnn.benchmark = True
    cfg = ae_config(config)
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    if dtype == "fp32" and device == "cuda":  # plain fp32, as bagel-encode --precision fp32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    m = load_encoder(path, cfg).to(device=device, dtype=dt)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    m.encoder.channels_last = channels_last
    print("ae-bench torch %s device=%s dtype=%s channels_last=%d cudnn_benchmark=1 %s" % (
        torch.__version__, device, dtype, int(channels_last),
        torch.cuda.get_device_name() if device == "cuda" else ""), flush=True)
    rc = 0
    for s in sizes:
        for b in batches:
            try:
                g = torch.Generator(device="cpu").manual_seed(s * 100 + b)
                u8 = torch.randint(0, 256, (b, s, s, 3), generator=g, dtype=torch.uint8).to(device)
                times = []
                with torch.inference_mode():
                    for i in range(warmup + iters):
                        if device == "cuda":
                            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                            e0.record()
                            out = m(u8)
                            e1.record()
                            torch.cuda.synchronize()
                            ms = e0.elapsed_time(e1)
                        else:
                            t0 = time.perf_counter()
                            out = m(u8)
                            ms = 1e3 * (time.perf_counter() - t0)
                        if i >= warmup:
                            times.append(ms)
                assert out.shape == (b, 2 * cfg["z_channels"], s // 8, s // 8) and bool(torch.isfinite(out).all())
                times.sort()
                med = times[len(times) // 2]
                print("ae-bench size=%d batch=%d dtype=%s ms=%.3f images_per_s=%.2f" % (s, b, dtype, med, b * 1e3 / med),
                      flush=True)
                del out, u8
            except Exception as e:  # one case failing (out of memory) leaves the others
                msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
                print("ae-bench size=%d batch=%d dtype=%s error=%s" % (s, b, dtype, msg.replace(" ", "_")), flush=True)
                rc = 1
                if device == "cuda":
                    torch.cuda.empty_cache()
    return rc


def main(argv):
    if len(argv) >= 4 and argv[0] == "records":
        write_records(int(argv[1]), int(argv[2]), argv[3], int(argv[4]) if len(argv) > 4 else 1)
        return 0
    if len(argv) >= 3 and argv[0] == "check":
        return check(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 32)
    if len(argv) >= 3 and argv[0] == "bench":
        import argparse
        ap = argparse.ArgumentParser(prog="ae_bench_gpu.py bench")
        ap.add_argument("vae")
        ap.add_argument("config")
        ap.add_argument("--sizes", default="512,1024")
        ap.add_argument("--batches", default="1,8")
        ap.add_argument("--iters", type=int, default=10)
        ap.add_argument("--warmup", type=int, default=3)
        ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
        ap.add_argument("--device", default="cuda")
        ap.add_argument("--no-channels-last", action="store_true")
        a = ap.parse_args(argv[1:])
        return bench(a.vae, a.config, [int(x) for x in a.sizes.split(",")], [int(x) for x in a.batches.split(",")],
                     a.iters, a.warmup, a.dtype, a.device, not a.no_channels_last)
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
