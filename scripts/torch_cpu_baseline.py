#!/usr/bin/env python3
"""PyTorch CPU figures for the same networks `sitdiv bench` times, on the same machine.

Usage: python scripts/torch_cpu_baseline.py [--sit SiT-S/2] [--batch 8] [--vae-batch 2]
       [--inception-batch 4] [--diversity 2000] [--backbones 16]
Needs torch (diffusers for the VAE, pytorch-fid for the Inception). Random weights, fp32, eval mode, no grad. Prints images/s
(median of the timed runs) for a SiT-shaped network (same shapes and op sequence as upstream SiT:
patch embed, adaLN-Zero blocks, SDPA attention, tanh-GELU MLP, final layer) and for the SD-VAE
decoder (diffusers AutoencoderKL, sd-vae-ft-ema architecture). --inception-batch times pytorch-fid's
FID Inception on 256 px images (bilinear resize to 299 inside the timing); --diversity N times the
all-pairs cosine-distance stage (f64 Gram matrix, mixed / intra / inter means and stds) on N × 768
random embeddings in 100 classes, as `sitdiv bench diversity` does; --backbones N times the
diversity backbones at full size with random weights (transformers Dinov2Model base,
CLIPVisionModelWithProjection base/32, torchvision resnet50, and the dreamsim package's ensemble when
it is installed) on N preprocessed 224 px inputs, as a
batch of N and one image at a time (preprocessing not included; sitdiv's figures include it).
"""
import argparse
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sit", default="SiT-S/2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--vae-batch", type=int, default=2)
    ap.add_argument("--vae-iters", type=int, default=3)
    ap.add_argument("--skip-vae", action="store_true")
    ap.add_argument("--inception-batch", type=int, default=0)
    ap.add_argument("--diversity", type=int, default=0, metavar="N")
    ap.add_argument("--backbones", type=int, default=0, metavar="N")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    size, patch = a.sit.replace("SiT-", "").split("/")
    depth, d, h = SIZES[size]
    m = SiTShaped(depth, d, h, int(patch)).eval()
    x, t, y = torch.randn(a.batch, 4, 32, 32), torch.rand(a.batch), torch.randint(0, 1000, (a.batch,))
    med, best = timed(lambda: m(x, t, y), 2, a.iters)
    print(f"| {a.sit} | 256 | {a.batch} | torch cpu | fp32 | {med:.4f} | {a.batch / med:.2f} | {a.batch / best:.2f} |")
    if not a.skip_vae:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL(
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            block_out_channels=[128, 256, 512, 512],
            layers_per_block=2,
            latent_channels=4,
            sample_size=256,
        ).eval()
        z = torch.randn(a.vae_batch, 4, 32, 32)
        med, best = timed(lambda: vae.decode(z / 0.18215).sample, 1, a.vae_iters)
        print(f"| SD-VAE decoder | 256 | {a.vae_batch} | diffusers cpu | {med:.3f} | {a.vae_batch / med:.3f} | {a.vae_batch / best:.3f} |")
    if a.inception_batch:
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
        imgs = torch.randint(0, 256, (a.inception_batch, 3, 256, 256)).float()
        run = lambda: net((F.interpolate(imgs, size=(299, 299), mode="bilinear") - 128) / 128)
        med, best = timed(run, 1, 3)
        print(f"| FID Inception | 256 | {a.inception_batch} | torch cpu | {med:.3f} | {a.inception_batch / med:.3f} | {a.inception_batch / best:.3f} |")
    if a.diversity:
        n, classes = a.diversity, 100
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
            return mixed.mean(), mixed.std(unbiased=False), inter.mean(), inter.std(unbiased=False), intra.mean(), intra.std(unbiased=False)

        med, best = timed(pairs, 1, 3)
        print(f"| cosine diversity (f64) | {n} | 768 | {classes} | torch cpu | {med:.3f} | {n * (n - 1) / 2 / med:.3e} pairs/s |")
    if a.backbones:
        backbones(a.backbones)


def backbones(n):
    import torchvision
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model

    x = torch.randn(n, 3, 224, 224)
    nets = [
        ("dinov2-b14 (ViT-B/14)", Dinov2Model(Dinov2Config()).eval()),
        ("clip-b32 (ViT-B/32)", CLIPVisionModelWithProjection(CLIPVisionConfig()).eval()),
        ("mocov3-r50 (ResNet-50)", torchvision.models.resnet50(weights=None).eval()),
    ]
    print("| backbone | images | torch batch img/s | torch one-at-a-time img/s |")
    print("|---|---|---|---|")
    for name, net in nets:
        med, _ = timed(lambda: net(x), 1, 3)
        one, _ = timed(lambda: [net(x[i : i + 1]) for i in range(n)], 1, 1)
        print(f"| {name} | {n} | {n / med:.2f} | {n / one:.2f} |")
    try:
        ens = dreamsim_ensemble()
        med, _ = timed(lambda: ens(x), 1, 3)
        one, _ = timed(lambda: [ens(x[i : i + 1]) for i in range(n)], 1, 1)
        print(f"| dreamsim (3 × ViT-B/16) | {n} | {n / med:.2f} | {n / one:.2f} |")
    except ImportError:
        pass
    try:
        import lpips

        m = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
        y = torch.rand(n, 3, 256, 256) * 2 - 1
        pairs = n * (n - 1) // 2
        t = time.perf_counter()
        for i in range(n):
            for j in range(i + 1, n):
                m(y[i : i + 1], y[j : j + 1])
        secs = time.perf_counter() - t
        print(f"| lpips-alex, one call per pair (the study's way) | {n} images, {pairs} pairs | {pairs / secs:.2f} pairs/s | {secs:.2f} s |")
    except ImportError:
        pass


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


if __name__ == "__main__":
    main()
