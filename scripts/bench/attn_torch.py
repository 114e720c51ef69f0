#!/usr/bin/env python3
"""The PyTorch side of scripts/bench/attn-gpu.sh: on the GPU, in bf16,

  - SDPA with cuDNN's fused attention (and, for reference, the flash
    backend) on one causal sequence of S positions, forward and forward +
    backward, at the two model shapes (14/2 heads, d 64; 28/4 heads, d 128);
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


def main():
    S = int(sys.argv[1])
    iters = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    print("torch %s, cuda %s, %s, cudnn %s" % (torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0),
                                              torch.backends.cudnn.version()), flush=True)
    for nh, nkv, d in ((14, 2, 64), (28, 4, 128)):
        for be in ("cudnn", "flash"):
            attn(S, nh, nkv, d, iters, be, "causal")
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
