#!/usr/bin/env python3
"""The PyTorch side of scripts/bench/attn-gpu.sh: on the GPU, in bf16,

  - SDPA with cuDNN's fused attention (and, for reference, the flash
    backend) on one causal sequence of S positions, forward and forward +
    backward, at the two model shapes (14/2 heads, d 64; 28/4 heads, d 128);
  - the same backends on the ViT's images of the recipe batch (729, 729 and
    1369 patches, 16 heads, d 72, no mask), one call an image;
  - a large bf16 matrix product (8192^3), the machine's matmul rate;
  - bf16 linears at the shapes bench-attn times.

FLOPs as bench-attn counts them: causal pairs S(S+1)/2, 4*pairs*d per head
forward, 3.5 times that for forward + backward. CUDA events, median of 5
batches after warm-up. Usage: attn_torch.py S [ITERS]"""
import sys

import torch
import torch.nn.functional as F


def timed(fn, iters):
    fn()
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t = []
    for _ in range(5):
        a.record()
        for _ in range(iters):
            fn()
        b.record()
        torch.cuda.synchronize()
        t.append(a.elapsed_time(b) / iters)
    return sorted(t)[2]


def attn(S, nh, nkv, d, iters, backend, name):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    be = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[backend]
    q = torch.randn(1, nh, S, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, nkv, S, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, nkv, S, d, device="cuda", dtype=torch.bfloat16)
    # GQA as the reference expands it: kv heads repeated to the query heads
    k = k.repeat_interleave(nh // nkv, dim=1).requires_grad_(True)
    v = v.repeat_interleave(nh // nkv, dim=1).requires_grad_(True)
    g = torch.randn(1, nh, S, d, device="cuda", dtype=torch.bfloat16)
    pairs = S * (S + 1) / 2
    ff = 4.0 * pairs * d * nh
    try:
        with sdpa_kernel([be]):
            def fwd():
                with torch.no_grad():
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)

            def fwd_bwd():
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                o.backward(g)
            tf = timed(fwd, iters)
            tfb = timed(fwd_bwd, iters)
        print("torch attn %s S=%d heads=%d/%d d=%d %s pairs=%.4g  fwd %.3f ms %.1f TFLOP/s  fwd+bwd %.3f ms %.1f TFLOP/s"
              % (name, S, nh, nkv, d, backend, pairs, tf, ff / tf * 1e-9, tfb, 3.5 * ff / tfb * 1e-9), flush=True)
    except Exception as e:  # a backend this torch or GPU lacks
        print("torch attn %s %s d=%d: not run: %s" % (name, backend, d, str(e).splitlines()[0][:160]), flush=True)


def vit(iters, backend):
    """The recipe's three ViT images, full attention within each, one SDPA
    call an image (as the reference's per-image attention); FLOPs on the
    visible pairs, sum of S^2."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    be = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[backend]
    nh, d, sizes = 16, 72, (729, 729, 1369)
    ts = []
    for S in sizes:
        q, k, v = (torch.randn(1, nh, S, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        ts.append((q, k, v, torch.randn(1, nh, S, d, device="cuda", dtype=torch.bfloat16)))
    pairs = sum(S * S for S in sizes)
    ff = 4.0 * pairs * d * nh
    try:
        with sdpa_kernel([be]):
            def fwd():
                with torch.no_grad():
                    for q, k, v, _ in ts:
                        F.scaled_dot_product_attention(q, k, v)

            def fwd_bwd():
                for q, k, v, g in ts:
                    F.scaled_dot_product_attention(q, k, v).backward(g)
            tf = timed(fwd, iters)
            tfb = timed(fwd_bwd, iters)
        print("torch attn vit images=729,729,1369 heads=%d d=%d %s pairs=%.4g  fwd %.3f ms %.1f TFLOP/s  fwd+bwd %.3f "
              "ms %.1f TFLOP/s" % (nh, d, backend, pairs, tf, ff / tf * 1e-9, tfb, 3.5 * ff / tfb * 1e-9), flush=True)
    except Exception as e:
        print("torch attn vit %s: not run: %s" % (backend, str(e).splitlines()[0][:160]), flush=True)


def main():
    S = int(sys.argv[1])
    iters = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    print("torch %s, cuda %s, %s, cudnn %s" % (torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0),
                                              torch.backends.cudnn.version()), flush=True)
    for nh, nkv, d in ((14, 2, 64), (28, 4, 128)):
        for be in ("cudnn", "flash"):
            attn(S, nh, nkv, d, iters, be, "causal")
    for be in ("cudnn", "flash"):
        vit(iters, be)
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    t = timed(lambda: a @ b, iters)
    print("torch matmul bf16 %d^3 %.3f ms %.1f TFLOP/s" % (n, t, 2.0 * n ** 3 / t * 1e-9), flush=True)
    for i, o in ((896, 4864), (4864, 896), (3584, 18944), (3584, 4608)):
        x = torch.randn(S, i, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(o, i, device="cuda", dtype=torch.bfloat16)
        t = timed(lambda: F.linear(x, w), iters)
        print("torch linear n=%d in=%d out=%d bf16 %.3f ms %.1f TFLOP/s" % (S, i, o, t, 2.0 * S * i * o / t * 1e-9),
              flush=True)


if __name__ == "__main__":
    main()
