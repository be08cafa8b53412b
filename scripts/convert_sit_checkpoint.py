#!/usr/bin/env python3
"""Convert a SiT checkpoint (torch.save) to safetensors with upstream key names and its config.

Usage:
    python scripts/convert_sit_checkpoint.py SiT-XL-2-256x256.pt sit-xl-2-256.safetensors \
        --model SiT-XL/2 --image-size 256

Accepts a raw state_dict (the released SiT-XL-2-256x256.pt) or a train.py checkpoint
({"model", "ema", ...}; the EMA weights are taken, as upstream's find_model does). The
architecture is written to __metadata__["config"] so `sitdiv sample --weights` needs no --model.
Needs: torch, safetensors (pip install torch safetensors).
"""
import argparse
import json

import torch
from safetensors.torch import save_file

PRESETS = {  # name: (depth, hidden_size, num_heads)
    "XL": (28, 1152, 16),
    "L": (24, 1024, 16),
    "B": (12, 768, 12),
    "S": (12, 384, 6),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    ap.add_argument("--model", default="SiT-XL/2", help="upstream name, e.g. SiT-XL/2")
    ap.add_argument("--image-size", type=int, default=256, choices=[256, 512])
    ap.add_argument("--num-classes", type=int, default=1000)
    args = ap.parse_args()

    size, patch = args.model.replace("SiT-", "").replace("-", "/").split("/")
    depth, hidden, heads = PRESETS[size]
    sd = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    if isinstance(sd, dict) and "ema" in sd:
        sd = sd["ema"]
    tensors = {k: v.detach().contiguous() for k, v in sd.items()}
    out_features = tensors["final_layer.linear.weight"].shape[0]
    config = {
        "input_size": args.image_size // 8,
        "patch_size": int(patch),
        "in_channels": 4,
        "hidden_size": hidden,
        "depth": depth,
        "num_heads": heads,
        "mlp_ratio": 4.0,
        "num_classes": args.num_classes,
        "learn_sigma": out_features == int(patch) ** 2 * 8,
        "class_dropout_prob": 0.1 if tensors["y_embedder.embedding_table.weight"].shape[0] > args.num_classes else 0.0,
    }
    save_file(tensors, args.output, metadata={"config": json.dumps(config, sort_keys=True), "source": args.checkpoint})
    print(f"wrote {args.output}: {len(tensors)} tensors, config {config}")


if __name__ == "__main__":
    main()
