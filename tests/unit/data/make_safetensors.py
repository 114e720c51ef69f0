#!/usr/bin/env python3
# make_safetensors.py — writes the golden .safetensors files under
# tests/unit/data/safetensors/ that test_safetensors.c reads.
#
# How they were made: this script, run once with the real HuggingFace
# `safetensors` package (0.8.0, safetensors.torch.save_file) and PyTorch
# (2.11.0): python3 tests/unit/data/make_safetensors.py
# The files are committed; the C tests never run Python.
#
#   golden.safetensors   every dtype bagelpipe reads (F64 F32 BF16 F16 I64 I32
#                        U8), a scalar, an empty tensor, and metadata. "src" is
#                        f32 input; "bf16"/"f16" are torch's conversions of it
#                        (round to nearest even); "bf16_f32"/"f16_f32" are those
#                        widened back to f32 by torch, the bit patterns that
#                        st_read_f32 must produce.
#   model_bf16.safetensors  BAGEL-named tensors, all BF16, as a released
#                        checkpoint stores them (names sorted = data order).
#   sharded/             model-0000{1,2}-of-00002.safetensors and
#                        model.safetensors.index.json as transformers writes a
#                        sharded checkpoint (weight_map: name -> file).
import json
import os
import struct

import torch
from safetensors.torch import save_file

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "safetensors")
os.makedirs(os.path.join(here, "sharded"), exist_ok=True)

g = torch.Generator().manual_seed(1234)


def f32_from_bits(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


edge = [0.0, -0.0, 1.0, -1.0, 0.5, 3.14159265, -2.71828182, 1e-3, 1e3, 65504.0, 65519.0, 65520.0, 70000.0,
        -65520.0, 6.1e-5, 6e-8, 3e-8, 2.9e-8, 1e-7, 1e-40, 3.4e38, -3.4e38, float("inf"), float("-inf"),
        float("nan")]
# ties for bf16 (7 mantissa bits) and f16 (10 mantissa bits) around 1.0
edge += [1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-11, 1 + 3 * 2**-11, -(1 + 2**-8), 2**-133, 2**-126, 255.5]
edge += [f32_from_bits(b) for b in (0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0x7f7fffff, 0x00000001)]
src = torch.cat([torch.tensor(edge, dtype=torch.float32),
                 torch.randn(64, generator=g, dtype=torch.float32) * 10,
                 torch.randn(32, generator=g, dtype=torch.float32) * 1e-4])
golden = {
    "src": src,
    "bf16": src.to(torch.bfloat16),
    "bf16_f32": src.to(torch.bfloat16).to(torch.float32),
    "f16": src.to(torch.float16),
    "f16_f32": src.to(torch.float16).to(torch.float32),
    "f64": (torch.arange(6, dtype=torch.float64) / 3 - 0.5).reshape(2, 3),
    "f64_f32": ((torch.arange(6, dtype=torch.float64) / 3 - 0.5).reshape(2, 3)).to(torch.float32),
    "i64": torch.tensor([[-1, 0, 1], [2**40, -2**40, 7]], dtype=torch.int64),
    "i32": torch.tensor([-5, 0, 5, 2**31 - 1], dtype=torch.int32),
    "u8": torch.tensor([0, 1, 254, 255, 128], dtype=torch.uint8),
    "w.weight": torch.randn(2, 3, 4, generator=g, dtype=torch.float32),
    "scalar": torch.tensor(2.5, dtype=torch.float32),
    "empty": torch.zeros(0, 3, dtype=torch.float32),
}
save_file(golden, os.path.join(here, "golden.safetensors"), metadata={"format": "pt", "note": "golden"})

H, I, V = 8, 16, 12
model = {}
model["language_model.model.embed_tokens.weight"] = torch.randn(V, H, generator=g)
model["language_model.lm_head.weight"] = torch.randn(V, H, generator=g)
model["language_model.model.norm.weight"] = torch.ones(H)
for i in range(2):
    p = f"language_model.model.layers.{i}."
    model[p + "self_attn.q_proj.weight"] = torch.randn(H, H, generator=g)
    model[p + "self_attn.q_proj.bias"] = torch.randn(H, generator=g)
    model[p + "mlp.up_proj.weight"] = torch.randn(I, H, generator=g)
    model[p + "mlp.down_proj.weight"] = torch.randn(H, I, generator=g)
    model[p + "input_layernorm.weight"] = torch.ones(H)
model["latent_pos_embed.pos_embed"] = torch.randn(16, H, generator=g)
model = {k: v.to(torch.bfloat16) for k, v in model.items()}
save_file(model, os.path.join(here, "model_bf16.safetensors"))

# sharded: the first half of the sorted names in shard 1, the rest in shard 2
names = sorted(model)
shards = [names[: len(names) // 2], names[len(names) // 2:]]
weight_map, total = {}, 0
for si, part in enumerate(shards):
    fname = f"model-{si + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file({k: model[k] for k in part}, os.path.join(here, "sharded", fname), metadata={"format": "pt"})
    for k in part:
        weight_map[k] = fname
        total += model[k].numel() * model[k].element_size()
with open(os.path.join(here, "sharded", "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    f.write("\n")
