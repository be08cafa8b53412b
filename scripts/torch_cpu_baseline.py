#!/usr/bin/env python3
"""PyTorch CPU figures for the networks `sitdiv bench` times, on the same machine.

Usage: python scripts/torch_cpu_baseline.py --net NET [--batch N] [--iters N] [--json]
       python scripts/torch_cpu_baseline.py --all
NET is one of: sit-s2, vae, inception, dinov2-b14, clip-b32, dreamsim, mocov3-r50, dinov2-l14,
lpips-alex, lpips-vgg, diversity. `sitdiv bench all` calls it once per network and round, between
its own timings, and reads the --json line (items per call, median and best seconds per call).

Random weights, fp32, eval mode, no grad, PyTorch batched. sit-s2: a SiT-shaped network (same
shapes and op sequence as upstream SiT-S/2: patch embed, adaLN-Zero blocks, SDPA attention,
tanh-GELU MLP, final layer) on 256 px latents; vae: the SD-VAE decoder (diffusers AutoencoderKL,
sd-vae-ft-ema architecture) at 256 px; inception: pytorch-fid's FID Inception on 256 px images
(bilinear resize to 299 inside the timing); the backbones (transformers Dinov2Model base/large,
CLIPVisionModelWithProjection base/32, torchvision resnet50, the dreamsim package's three ViT-B/16
towers) on preprocessed 224 px inputs; lpips-*: the lpips package's trunk features of 256 px
images; diversity: the all-pairs cosine-distance stage (f64 Gram matrix, mixed / intra / inter
means and stds) on N × 768 random embeddings in 100 classes (items are pairs).
Needs torch, torchvision, diffusers, pytorch-fid, transformers, lpips and dreamsim.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SIZES = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6)}


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2, self.ada = nn.Linear(d, 4 * d), nn.Linear(4 * d, d), nn.Linear(d, 6 * d)

    def forward(self, x, c):
        b, n, d = x.shape
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(c)).chunk(6, dim=1)
        y = F.layer_norm(x, (d,), eps=1e-6) * (1 + sc1[:, None]) + sh1[:, None]
        q, k, v = self.qkv(y).view(b, n, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + g1[:, None] * self.proj(y)
        y = F.layer_norm(x, (d,), eps=1e-6) * (1 + sc2[:, None]) + sh2[:, None]
        return x + g2[:, None] * self.fc2(F.gelu(self.fc1(y), approximate="tanh"))


class SiTShaped(nn.Module):
    def __init__(self, depth, d, h, p, size=32, cin=4, classes=1000):
        super().__init__()
        self.p, self.g, self.cin = p, size // p, cin
        self.embed = nn.Conv2d(cin, d, p, p)
        self.pos = nn.Parameter(torch.randn(1, self.g * self.g, d) * 0.02)
        self.t1, self.t2 = nn.Linear(256, d), nn.Linear(d, d)
        self.y = nn.Embedding(classes + 1, d)
        self.blocks = nn.ModuleList(Block(d, h) for _ in range(depth))
        self.fada, self.fout = nn.Linear(d, 2 * d), nn.Linear(d, p * p * 2 * cin)

    def forward(self, x, t, y):
        b = x.shape[0]
        x = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        freqs = torch.exp(-9.210340371976184 * torch.arange(128, dtype=torch.float32) / 128)
        a = t[:, None] * freqs[None]
        c = self.t2(F.silu(self.t1(torch.cat([torch.cos(a), torch.sin(a)], -1)))) + self.y(y)
        for blk in self.blocks:
            x = blk(x, c)
        sh, sc = self.fada(F.silu(c)).chunk(2, dim=1)
        x = self.fout(F.layer_norm(x, (x.shape[-1],), eps=1e-6) * (1 + sc[:, None]) + sh[:, None])
        x = x.reshape(b, self.g, self.g, self.p, self.p, 2 * self.cin).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, 2 * self.cin, self.g * self.p, self.g * self.p)[:, : self.cin]


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        s = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - s)
    return statistics.median(ts), min(ts)


def sit(n):
    depth, d, h = SIZES["S"]
    m = SiTShaped(depth, d, h, 2).eval()
    x, t, y = torch.randn(n, 4, 32, 32), torch.rand(n), torch.randint(0, 1000, (n,))
    return lambda: m(x, t, y)


def vae(n):
    from diffusers import AutoencoderKL

    m = AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[128, 256, 512, 512],
        layers_per_block=2,
        latent_channels=4,
        sample_size=256,
    ).eval()
    z = torch.randn(n, 4, 32, 32)
    return lambda: m.decode(z / 0.18215).sample


def inception(n):
    from pytorch_fid import inception as pfi

    pfi.load_state_dict_from_url = lambda *_a, **_k: None
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for name, blk in [("Mixed_5b", pfi.FIDInceptionA(192, 32)), ("Mixed_5c", pfi.FIDInceptionA(256, 64)),
                      ("Mixed_5d", pfi.FIDInceptionA(288, 64)), ("Mixed_6b", pfi.FIDInceptionC(768, 128)),
                      ("Mixed_6c", pfi.FIDInceptionC(768, 160)), ("Mixed_6d", pfi.FIDInceptionC(768, 160)),
                      ("Mixed_6e", pfi.FIDInceptionC(768, 192)), ("Mixed_7b", pfi.FIDInceptionE_1(1280)),
                      ("Mixed_7c", pfi.FIDInceptionE_2(2048))]:
        setattr(net, name, blk)
    net = net.eval()
    imgs = torch.randint(0, 256, (n, 3, 256, 256)).float()
    return lambda: net((F.interpolate(imgs, size=(299, 299), mode="bilinear") - 128) / 128)


def backbone(name, n):
    import torchvision
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model

    x = torch.randn(n, 3, 224, 224)
    if name == "dreamsim":
        ens = dreamsim_ensemble()
        return lambda: ens(x)
    net = {
        "dinov2-b14": lambda: Dinov2Model(Dinov2Config()),
        "dinov2-l14": lambda: Dinov2Model(Dinov2Config(hidden_size=1024, num_hidden_layers=24,
                                                       num_attention_heads=16)),
        "clip-b32": lambda: CLIPVisionModelWithProjection(CLIPVisionConfig()),
        "mocov3-r50": lambda: torchvision.models.resnet50(weights=None),
    }[name]().eval()
    return lambda: net(x)


def lpips_trunk(kind, n):
    import lpips

    m = lpips.LPIPS(net=kind, pnet_rand=True, verbose=False).eval()
    y = torch.rand(n, 3, 256, 256) * 2 - 1
    return lambda: m.net(m.scaling_layer(y))


def diversity(n):
    classes = 100
    x = torch.randn(n, 768)
    labels = torch.arange(n) % classes

    def pairs():
        u = F.normalize(x.double(), dim=1)
        dist = 1 - u @ u.T
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        same = (labels[:, None] == labels[None, :]) & upper
        mixed = dist[upper]
        inter = dist[upper & ~same]
        intra = torch.stack([dist[same & (labels[:, None] == c)].mean() for c in range(classes)])
        return (mixed.mean(), mixed.std(unbiased=False), inter.mean(), inter.std(unbiased=False),
                intra.mean(), intra.std(unbiased=False))

    return pairs


# name → (default batch, build(batch) → one call, items per call(batch)).
NETS = {
    "sit-s2": (8, sit, lambda n: n),
    "vae": (2, vae, lambda n: n),
    "inception": (4, inception, lambda n: n),
    "dinov2-b14": (8, lambda n: backbone("dinov2-b14", n), lambda n: n),
    "clip-b32": (8, lambda n: backbone("clip-b32", n), lambda n: n),
    "dreamsim": (8, lambda n: backbone("dreamsim", n), lambda n: n),
    "mocov3-r50": (8, lambda n: backbone("mocov3-r50", n), lambda n: n),
    "dinov2-l14": (8, lambda n: backbone("dinov2-l14", n), lambda n: n),
    "lpips-alex": (8, lambda n: lpips_trunk("alex", n), lambda n: n),
    "lpips-vgg": (8, lambda n: lpips_trunk("vgg", n), lambda n: n),
    "diversity": (2000, diversity, lambda n: n * (n - 1) // 2),
}


def dreamsim_ensemble():
    """The dreamsim package's three ViT-B/16 towers (its own VisionTransformer, CLIP towers as its
    loaders set them up) with random weights, embedding as PerceptualModel.embed does (LoRA merged:
    no extra cost). Raises ImportError without the dreamsim package."""
    from dreamsim.feature_extraction.load_clip_as_dino import QuickGELU
    from dreamsim.feature_extraction.vision_transformer import vit_base

    towers = []
    for kind in ("dino", "clip", "open_clip"):
        m = vit_base(patch_size=16).eval()
        if kind != "dino":
            m.pos_drop = torch.nn.LayerNorm(768)
            if kind == "clip":
                for blk in m.blocks:
                    blk.mlp.act = QuickGELU()
        towers.append((kind, m, torch.randn(768, 512) / 768 ** 0.5))

    def embed(x):
        feats = []
        for kind, m, proj in towers:
            if kind == "dino":  # block 11's class token, as the package's hook reads it
                t = m.prepare_tokens(x)
                for blk in m.blocks:
                    t = blk(t)
                feats.append(t[:, 0])
            else:
                feats.append(m(x) @ proj)
        e = torch.cat(feats, dim=-1)
        e = e - e.mean(dim=1, keepdim=True)
        return e / e.norm(dim=1, keepdim=True)

    return embed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", choices=sorted(NETS))
    ap.add_argument("--all", action="store_true", help="every network, one table")
    ap.add_argument("--batch", type=int, help="items per call (default: the network's)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="one JSON line instead of a table row")
    a = ap.parse_args()
    if not a.all and not a.net:
        ap.error("give --net NET or --all")
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    if not a.json:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        print("| network | batch | median s/call | items/s (median) | items/s (best) |")
        print("|---|---|---|---|---|")
    for name in sorted(NETS) if a.all else [a.net]:
        default, build, items = NETS[name]
        n = a.batch or default
        med, best = timed(build(n), a.warmup, a.iters)
        if a.json:
            print(json.dumps({"net": name, "batch": n, "items": items(n), "median_s": med,
                              "best_s": best, "threads": torch.get_num_threads(),
                              "torch": torch.__version__}))
        else:
            print(f"| {name} | {n} | {med:.4f} | {items(n) / med:.2f} | {items(n) / best:.2f} |")


if __name__ == "__main__":
    main()
