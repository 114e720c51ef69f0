#!/usr/bin/python3
"""ae_ref.py — an independent PyTorch model of the FLUX autoencoder BAGEL uses
for generation (forward only: the autoencoder is frozen).

Written from bagel-reference.md §1.9 (architecture, encode with sampling,
scale and shift, decode), §5.3 (the BFL parameter names of ae.safetensors)
and §6.4 (float pixels to u8), for tests/reference/FORMAT.md ("Autoencoder"):
deterministic weights from the same hash as the model's, every tensor in
float64. Runs with Debian's python3-torch (1.13) and numpy: /usr/bin/python3.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import bagel_ref as R

DTYPE = torch.float64
GROUPS = 32
EPS = 1e-6

FLUX = {"in_channels": 3, "out_channels": 3, "ch": 128, "ch_mult": [1, 2, 4, 4],
        "num_res_blocks": 2, "z_channels": 16, "scale": 0.3611, "shift": 0.1159}


# ---------------------------------------------------------------------------
# parameter names and shapes (BFL naming, bagel-reference.md §5.3)


def _resblock(prefix, cin, cout):
    out = [(prefix + ".norm1.weight", [cin]), (prefix + ".norm1.bias", [cin]),
           (prefix + ".conv1.weight", [cout, cin, 3, 3]), (prefix + ".conv1.bias", [cout]),
           (prefix + ".norm2.weight", [cout]), (prefix + ".norm2.bias", [cout]),
           (prefix + ".conv2.weight", [cout, cout, 3, 3]), (prefix + ".conv2.bias", [cout])]
    if cin != cout:
        out += [(prefix + ".nin_shortcut.weight", [cout, cin, 1, 1]), (prefix + ".nin_shortcut.bias", [cout])]
    return out


def _attn(prefix, c):
    out = [(prefix + ".norm.weight", [c]), (prefix + ".norm.bias", [c])]
    for n in ("q", "k", "v", "proj_out"):
        out += [("%s.%s.weight" % (prefix, n), [c, c, 1, 1]), ("%s.%s.bias" % (prefix, n), [c])]
    return out


def _conv(name, cout, cin, k):
    return [(name + ".weight", [cout, cin, k, k]), (name + ".bias", [cout])]


def param_shapes(cfg):
    """[(name, shape)] of every tensor, encoder then decoder."""
    ch, mult, nrb, z = cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"], cfg["z_channels"]
    n = len(mult)
    out = _conv("encoder.conv_in", ch, cfg["in_channels"], 3)
    cin = ch
    for i in range(n):
        cout = ch * mult[i]
        for j in range(nrb):
            out += _resblock("encoder.down.%d.block.%d" % (i, j), cin, cout)
            cin = cout
        if i != n - 1:
            out += _conv("encoder.down.%d.downsample.conv" % i, cin, cin, 3)
    out += _resblock("encoder.mid.block_1", cin, cin) + _attn("encoder.mid.attn_1", cin)
    out += _resblock("encoder.mid.block_2", cin, cin)
    out += [("encoder.norm_out.weight", [cin]), ("encoder.norm_out.bias", [cin])]
    out += _conv("encoder.conv_out", 2 * z, cin, 3)

    cin = ch * mult[-1]
    out += _conv("decoder.conv_in", cin, z, 3)
    out += _resblock("decoder.mid.block_1", cin, cin) + _attn("decoder.mid.attn_1", cin)
    out += _resblock("decoder.mid.block_2", cin, cin)
    for i in reversed(range(n)):
        cout = ch * mult[i]
        for j in range(nrb + 1):
            out += _resblock("decoder.up.%d.block.%d" % (i, j), cin, cout)
            cin = cout
        if i != 0:
            out += _conv("decoder.up.%d.upsample.conv" % i, cin, cin, 3)
    out += [("decoder.norm_out.weight", [cin]), ("decoder.norm_out.bias", [cin])]
    out += _conv("decoder.conv_out", cfg["out_channels"], cin, 3)
    return out


def gen_weight(name, shape, seed):
    """FORMAT.md's deterministic tensor for the autoencoder: 1-D *.weight
    1 + 0.1v, *.bias 0.1v, a conv weight [out, in, kh, kw] v·(1/sqrt(in·kh·kw)),
    float32 arithmetic with one rounding per operation."""
    n = int(np.prod(shape))
    key = R.fnv1a64(name.encode("utf-8")) ^ (seed & R.M64)
    u = (R.stream_u64(key, 0, n) >> R.U64(40)).astype(np.float64) * 2.0 ** -24
    v = (2.0 * u - 1.0).astype(np.float32)  # exact
    f32 = np.float32
    if len(shape) == 1 and name.endswith(".weight"):
        w = f32(1.0) + f32(0.1) * v
    elif len(shape) == 1 and name.endswith(".bias"):
        w = f32(0.1) * v
    elif len(shape) == 4:
        w = v * (f32(1.0) / np.sqrt(f32(shape[1] * shape[2] * shape[3])))
    else:
        raise ValueError(name)
    assert w.dtype == np.float32
    return w.reshape(shape)


def make_params(cfg, seed):
    """name -> float64 tensor"""
    return {name: torch.from_numpy(gen_weight(name, shape, seed)).to(DTYPE) for name, shape in param_shapes(cfg)}


# ---------------------------------------------------------------------------
# building blocks (§1.9)


def group_norm(x, P, name):
    return F.group_norm(x, GROUPS, P[name + ".weight"], P[name + ".bias"], EPS)


def swish(x):
    return x * torch.sigmoid(x)


def conv(x, P, name, stride=1, padding=1):
    return F.conv2d(x, P[name + ".weight"], P[name + ".bias"], stride=stride, padding=padding)


def resblock(x, P, name):
    h = conv(swish(group_norm(x, P, name + ".norm1")), P, name + ".conv1")
    h = conv(swish(group_norm(h, P, name + ".norm2")), P, name + ".conv2")
    if name + ".nin_shortcut.weight" in P:
        x = conv(x, P, name + ".nin_shortcut", padding=0)
    return x + h


def attnblock(x, P, name):
    """single head over the h·w positions, feature dim C, scale 1/sqrt(C)"""
    b, c, hh, ww = x.shape
    h = group_norm(x, P, name + ".norm")
    q = conv(h, P, name + ".q", padding=0).reshape(b, c, hh * ww).transpose(1, 2)  # [b, S, C]
    k = conv(h, P, name + ".k", padding=0).reshape(b, c, hh * ww).transpose(1, 2)
    v = conv(h, P, name + ".v", padding=0).reshape(b, c, hh * ww).transpose(1, 2)
    a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1)
    o = (a @ v).transpose(1, 2).reshape(b, c, hh, ww)
    return x + conv(o, P, name + ".proj_out", padding=0)


def downsample(x, P, name):
    """zero pad right and bottom by one, then 3×3 stride 2 without padding"""
    return conv(F.pad(x, (0, 1, 0, 1)), P, name, stride=2, padding=0)


def upsample(x, P, name):
    return conv(F.interpolate(x, scale_factor=2.0, mode="nearest"), P, name)


# ---------------------------------------------------------------------------
# encoder, decoder, the latent


def encoder(x, P, cfg):
    """x [1, in, H, W] in [-1, 1] -> moments [1, 2z, H/2^(n-1), W/2^(n-1)]"""
    n, nrb = len(cfg["ch_mult"]), cfg["num_res_blocks"]
    h = conv(x, P, "encoder.conv_in")
    for i in range(n):
        for j in range(nrb):
            h = resblock(h, P, "encoder.down.%d.block.%d" % (i, j))
        if i != n - 1:
            h = downsample(h, P, "encoder.down.%d.downsample.conv" % i)
    h = resblock(h, P, "encoder.mid.block_1")
    h = attnblock(h, P, "encoder.mid.attn_1")
    h = resblock(h, P, "encoder.mid.block_2")
    return conv(swish(group_norm(h, P, "encoder.norm_out")), P, "encoder.conv_out")


def decoder(z, P, cfg):
    """z [1, z, h, w] (unscaled) -> x [1, out, h·2^(n-1), w·2^(n-1)], about [-1, 1]"""
    n, nrb = len(cfg["ch_mult"]), cfg["num_res_blocks"]
    h = conv(z, P, "decoder.conv_in")
    h = resblock(h, P, "decoder.mid.block_1")
    h = attnblock(h, P, "decoder.mid.attn_1")
    h = resblock(h, P, "decoder.mid.block_2")
    for i in reversed(range(n)):
        for j in range(nrb + 1):
            h = resblock(h, P, "decoder.up.%d.block.%d" % (i, j))
        if i != 0:
            h = upsample(h, P, "decoder.up.%d.upsample.conv" % i)
    return conv(swish(group_norm(h, P, "decoder.norm_out")), P, "decoder.conv_out")


def normalize_u8(img):
    """u8 [H, W, C] -> [1, C, H, W] float64 (x/255 − 0.5)/0.5"""
    x = torch.from_numpy(np.asarray(img, dtype=np.float64)) / 255.0
    return ((x - 0.5) / 0.5).permute(2, 0, 1).unsqueeze(0).contiguous()


def encode_moments(img, P, cfg):
    """u8 [H, W, C] -> moments [2z, h, w]: mean (first z channels), logvar"""
    return encoder(normalize_u8(img), P, cfg)[0]


def sample_scaled(moments, eps, cfg):
    """z = mean + exp(0.5·logvar)·eps, then scale·(z − shift)"""
    zc = cfg["z_channels"]
    mean, logvar = moments[:zc], moments[zc:]
    z = mean + torch.exp(0.5 * logvar) * eps
    return cfg["scale"] * (z - cfg["shift"])


def decode_float(z_scaled, P, cfg):
    """scaled latent [z, h, w] -> pixels [out, H, W] in about [-1, 1]"""
    return decoder((z_scaled / cfg["scale"] + cfg["shift"]).unsqueeze(0), P, cfg)[0]


def to_u8(x):
    """[C, H, W] -> u8 [H, W, C]: ((x·0.5 + 0.5).clamp(0, 1)·255) truncated (§6.4)"""
    v = ((x * 0.5 + 0.5).clamp(0, 1) * 255).permute(1, 2, 0)
    return v.to(torch.uint8).numpy()
