#!/usr/bin/env python3
"""The toy study's data, models and fixtures (run by hand, never in CI).

    python scripts/train_toy.py fixture tests/golden/toy_data.safetensors
    python scripts/train_toy.py train assets/toy [--steps 6000] [--seed 0]
    python scripts/train_toy.py train assets/toy --guide --steps 1500 --skip-classifier

`fixture` writes a few images of the procedural data set; `cargo test --test pipeline toy_data::`
checks that the Rust generator (src/toy.rs) draws the same bytes.

`train` trains, on the CPU with PyTorch,
  (a) `toy_classifier.safetensors`: a small CNN whose 64-d pooled features stand in for the FID
      Inception (FID, precision/recall, IS) and serve as a diversity embedding, and
  (b) `toy_sit.safetensors`: a pixel-space SiT (the upstream architecture with in_channels 3 on
      32×32 images, class-conditional with label dropout for guidance) trained with the SiT objective
      on the Linear path (velocity prediction),
and writes `toy_*.io.safetensors` next to them: fixed inputs and PyTorch's outputs, which
`cargo test --test models toy_models::` compares with sitdiv's forward passes.

The data (the same formula as src/toy.rs; integers only, so every platform draws the same bytes):

    hash32(x):  x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16  (mod 2^32)
    key      =  hash32(hash32(hash32(seed) ^ class) ^ index)
    d(j)     =  hash32(key ^ hash32(j))
    background  bg_c = 16 + d(c) % 48                     (c = 0, 1, 2)
    foreground  fg_c = clamp(BASE[class][c] + d(3 + c) % 81 - 40, 0, 255)
    geometry (1/16 px):  cx = 128 + d(6) % 257, cy = 128 + d(7) % 257, s = 64 + d(8) % 97,
                         period = 16·(4 + d(9) % 5), phase_x = d(10) % period,
                         phase_y = d(11) % period, orient = d(12) % 2
    coverage of pixel (x, y): how many of the 4×4 points X = 16x + 2 + 4i, Y = 16y + 2 + 4j
                         lie inside the class's shape (dx = X − cx, dy = Y − cy; see `inside`)
    pixel_c = clamp((bg_c·(16 − cov) + fg_c·cov + 8) // 16 + d(64 + 32y + x) % 25 − 12, 0, 255)
"""

import argparse
import json
import math
import sys
import time

import numpy as np

M32 = 0xFFFFFFFF
SIZE = 32
NUM_CLASSES = 10
CLASS_NAMES = [
    "disk", "square", "triangle", "ring", "plus",
    "h-stripes", "v-stripes", "checker", "cross", "two-dots",
]
BASE = [
    (220, 60, 60), (60, 200, 70), (70, 90, 230), (230, 210, 60), (210, 70, 200),
    (60, 200, 210), (240, 140, 40), (220, 220, 220), (140, 80, 230), (150, 110, 60),
]
# Seeds of the data: training, held out (classifier accuracy, the study's reference set).
TRAIN_SEED, HELD_OUT_SEED = 0, 1


def hash32(x):
    """Works on Python ints and on uint64 numpy arrays holding 32-bit values."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def inside(cls, dx, dy, s, period, phase_x, phase_y, orient, X, Y):
    """Whether subsample points are inside the class's shape (numpy int64 arrays)."""
    a, b = np.abs(dx), np.abs(dy)
    half = period // 2
    box = (2 * a <= 3 * s) & (2 * b <= 3 * s)
    if cls == 0:  # disk
        return dx * dx + dy * dy <= s * s
    if cls == 1:  # square
        return (8 * a <= 7 * s) & (8 * b <= 7 * s)
    if cls == 2:  # triangle, apex up
        return (dy >= -s) & (dy <= s) & (2 * a <= dy + s)
    if cls == 3:  # ring
        q = dx * dx + dy * dy
        return (q <= s * s) & (64 * q >= 25 * s * s)
    if cls == 4:  # plus
        t = s // 3
        return ((a <= t) & (b <= s)) | ((b <= t) & (a <= s))
    if cls == 5:  # horizontal stripes in a box
        return box & (((Y + phase_y) // half) % 2 == 0)
    if cls == 6:  # vertical stripes in a box
        return box & (((X + phase_x) // half) % 2 == 0)
    if cls == 7:  # checkerboard in a box
        return box & ((((X + phase_x) // half) + ((Y + phase_y) // half)) % 2 == 0)
    if cls == 8:  # diagonal cross
        return (a <= s) & (b <= s) & (4 * np.abs(a - b) <= s)
    if cls == 9:  # two dots, side by side or one above the other
        o, r = (3 * s) // 4, s // 2
        ox, oy = (o, 0) if orient == 0 else (0, o)
        d1 = (dx - ox) ** 2 + (dy - oy) ** 2
        d2 = (dx + ox) ** 2 + (dy + oy) ** 2
        return (d1 <= r * r) | (d2 <= r * r)
    raise ValueError(f"class {cls} is outside 0..{NUM_CLASSES}")


# Subsample coordinates of every pixel: (32, 32, 16) arrays of X and Y in 1/16 px.
_y, _x, _j, _i = np.meshgrid(np.arange(SIZE), np.arange(SIZE), np.arange(4), np.arange(4), indexing="ij")
SUB_X = (16 * _x + 2 + 4 * _i).reshape(SIZE, SIZE, 16).astype(np.int64)
SUB_Y = (16 * _y + 2 + 4 * _j).reshape(SIZE, SIZE, 16).astype(np.int64)
PIX = np.arange(SIZE * SIZE, dtype=np.uint64).reshape(SIZE, SIZE)


def image(seed, cls, index):
    """One (32, 32, 3) uint8 image of class `cls`."""
    key = hash32(hash32(hash32(seed & M32) ^ cls) ^ (index & M32))
    d = lambda j: hash32(key ^ hash32(j))
    bg = [16 + d(c) % 48 for c in range(3)]
    fg = [min(max(BASE[cls][c] + d(3 + c) % 81 - 40, 0), 255) for c in range(3)]
    cx, cy, s = 128 + d(6) % 257, 128 + d(7) % 257, 64 + d(8) % 97
    period = 16 * (4 + d(9) % 5)
    phase_x, phase_y, orient = d(10) % period, d(11) % period, d(12) % 2
    hit = inside(cls, SUB_X - cx, SUB_Y - cy, s, period, phase_x, phase_y, orient, SUB_X, SUB_Y)
    cov = hit.sum(axis=2).astype(np.int64)  # (32, 32)
    noise = (hash32(np.uint64(key) ^ hash32(np.uint64(64) + PIX)) % np.uint64(25)).astype(np.int64) - 12
    out = np.empty((SIZE, SIZE, 3), dtype=np.uint8)
    for c in range(3):
        v = (bg[c] * (16 - cov) + fg[c] * cov + 8) // 16 + noise
        out[:, :, c] = np.clip(v, 0, 255)
    return out


def dataset(seed, per_class):
    """(10·per_class, 32, 32, 3) uint8 images in class-major order, and their labels."""
    x = np.stack([image(seed, c, i) for c in range(NUM_CLASSES) for i in range(per_class)])
    y = np.repeat(np.arange(NUM_CLASSES), per_class)
    return x, y


FIXTURE_CASES = [(0, c, i) for c in range(NUM_CLASSES) for i in (0, 1)] + [(7, 9, 123456), (4294967295, 3, 4000000000)]


def cmd_fixture(args):
    from safetensors.numpy import save_file

    imgs = np.stack([image(s, c, i) for s, c, i in FIXTURE_CASES])
    cases = np.array(FIXTURE_CASES, dtype=np.int64)
    save_file(
        {"images": imgs, "cases": cases},
        args.out,
        metadata={
            "format": "sitdiv-golden",
            "version": "1",
            "producer": "scripts/train_toy.py fixture (numpy " + np.__version__ + ")",
            "config": json.dumps({"columns of cases": ["seed", "class", "index"]}),
        },
    )
    print(f"wrote {args.out}: {len(cases)} images")


# ---- models --------------------------------------------------------------------------------


def torch_modules():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def sincos_pos_embed(dim, grid):
        """MAE's fixed 2-D sin-cos table, (grid², dim)."""
        def one(d, pos):
            omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
            omega = 1.0 / 10000**omega
            out = np.einsum("m,d->md", pos.reshape(-1), omega)
            return np.concatenate([np.sin(out), np.cos(out)], axis=1)

        g = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
        g = np.stack(g, axis=0).reshape(2, 1, grid, grid)
        return np.concatenate([one(dim // 2, g[0]), one(dim // 2, g[1])], axis=1)

    def modulate(x, shift, scale):
        return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)

    class PatchEmbed(nn.Module):
        def __init__(self, p, c, d):
            super().__init__()
            self.proj = nn.Conv2d(c, d, p, stride=p)

        def forward(self, x):
            return self.proj(x).flatten(2).transpose(1, 2)

    class TimestepEmbedder(nn.Module):
        def __init__(self, d, freq=256):
            super().__init__()
            self.freq = freq
            self.mlp = nn.Sequential(nn.Linear(freq, d), nn.SiLU(), nn.Linear(d, d))

        def forward(self, t):
            half = self.freq // 2
            f = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
            a = t[:, None].float() * f[None]
            return self.mlp(torch.cat([torch.cos(a), torch.sin(a)], dim=-1))

    class LabelEmbedder(nn.Module):
        def __init__(self, n, d, p):
            super().__init__()
            self.n, self.p = n, p
            self.embedding_table = nn.Embedding(n + 1, d)

        def forward(self, y):
            if self.training and self.p > 0:
                drop = torch.rand(y.shape[0]) < self.p
                y = torch.where(drop, torch.full_like(y, self.n), y)
            return self.embedding_table(y)

    class Attention(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)

        def forward(self, x):
            n, t, d = x.shape
            q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v)
            return self.proj(o.transpose(1, 2).reshape(n, t, d))

    class Mlp(nn.Module):
        def __init__(self, d, h):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, d)

        def forward(self, x):
            return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))

    class SiTBlock(nn.Module):
        def __init__(self, d, heads, ratio):
            super().__init__()
            self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
            self.attn = Attention(d, heads)
            self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
            self.mlp = Mlp(d, int(d * ratio))
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

        def forward(self, x, c):
            s1, c1, g1, s2, c2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
            x = x + g1.unsqueeze(1) * self.attn(modulate(self.norm1(x), s1, c1))
            return x + g2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), s2, c2))

    class FinalLayer(nn.Module):
        def __init__(self, d, p, c):
            super().__init__()
            self.norm_final = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
            self.linear = nn.Linear(d, p * p * c)
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))

        def forward(self, x, c):
            shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
            return self.linear(modulate(self.norm_final(x), shift, scale))

    class SiT(nn.Module):
        """Upstream SiT's modules and state_dict names, learn_sigma off."""

        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg
            d, p, c = cfg["hidden_size"], cfg["patch_size"], cfg["in_channels"]
            grid = cfg["input_size"] // p
            self.x_embedder = PatchEmbed(p, c, d)
            self.t_embedder = TimestepEmbedder(d)
            self.y_embedder = LabelEmbedder(cfg["num_classes"], d, cfg["class_dropout_prob"])
            self.pos_embed = nn.Parameter(
                torch.from_numpy(sincos_pos_embed(d, grid)).float().unsqueeze(0), requires_grad=False
            )
            self.blocks = nn.ModuleList(
                SiTBlock(d, cfg["num_heads"], cfg["mlp_ratio"]) for _ in range(cfg["depth"])
            )
            self.final_layer = FinalLayer(d, p, c)
            self.initialize()

        def initialize(self):
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
            w = self.x_embedder.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
            nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
            nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
            for b in list(self.blocks) + [self.final_layer]:
                nn.init.zeros_(b.adaLN_modulation[-1].weight)
                nn.init.zeros_(b.adaLN_modulation[-1].bias)
            nn.init.zeros_(self.final_layer.linear.weight)
            nn.init.zeros_(self.final_layer.linear.bias)

        def forward(self, x, t, y):
            p, c = self.cfg["patch_size"], self.cfg["in_channels"]
            h = self.x_embedder(x) + self.pos_embed
            cond = self.t_embedder(t) + self.y_embedder(y)
            for b in self.blocks:
                h = b(h, cond)
            h = self.final_layer(h, cond)  # (N, T, p·p·C)
            n, g = h.shape[0], self.cfg["input_size"] // p
            h = h.reshape(n, g, g, p, p, c)
            return torch.einsum("nhwpqc->nchpwq", h).reshape(n, c, g * p, g * p)

    class ToyClassifier(nn.Module):
        """conv-ReLU-maxpool ×2, conv-ReLU, global average pool (64-d features), linear."""

        def __init__(self, width=32, feat=64):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 3, padding=1)
            self.conv2 = nn.Conv2d(width, feat, 3, padding=1)
            self.conv3 = nn.Conv2d(feat, feat, 3, padding=1)
            self.fc = nn.Linear(feat, NUM_CLASSES)

        def features(self, u8):
            x = u8.permute(0, 3, 1, 2).float() / 127.5 - 1.0
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            return F.relu(self.conv3(x)).mean(dim=(2, 3))

        def forward(self, u8):
            f = self.features(u8)
            return f, self.fc(f)

    return SiT, ToyClassifier


SIT_CONFIG = dict(
    input_size=32, patch_size=4, in_channels=3, hidden_size=96, depth=4, num_heads=4,
    mlp_ratio=4.0, num_classes=NUM_CLASSES, learn_sigma=False, class_dropout_prob=0.1,
)
# `--guide`: autoguidance's weaker model of the same family, smaller and trained for fewer steps
# (Karras et al. 2024 guide with both), written as toy_sit_guide.safetensors.
GUIDE_CONFIG = dict(SIT_CONFIG, hidden_size=48, depth=2)


def save(path, model, metadata):
    from safetensors.torch import save_file

    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    save_file(sd, path, metadata=metadata)


def train_classifier(args, torch, ToyClassifier, data, held):
    torch.manual_seed(args.seed)
    net = ToyClassifier()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    x, y = (torch.from_numpy(a) for a in data)
    g = torch.Generator().manual_seed(args.seed)
    curve = []
    for step in range(args.classifier_steps):
        idx = torch.randint(0, len(x), (256,), generator=g)
        _, logits = net(x[idx])
        loss = torch.nn.functional.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            curve.append([step, round(loss.item(), 5)])
            print(f"classifier step {step} loss {loss.item():.4f}", flush=True)
    net.eval()
    with torch.no_grad():
        hx, hy = (torch.from_numpy(a) for a in held)
        acc = (net(hx)[1].argmax(1) == hy).float().mean().item()
    print(f"classifier held-out accuracy {acc:.4f}")
    return net, curve, acc


def train_sit(args, torch, SiT, data, checkpoint):
    torch.manual_seed(args.seed)
    config = GUIDE_CONFIG if args.guide else SIT_CONFIG
    model = SiT(config)
    start = 0
    if args.init:
        # Continue from written weights (the EMA): model and EMA both start there.
        from safetensors import safe_open
        from safetensors.torch import load_file

        model.load_state_dict(load_file(args.init))
        with safe_open(args.init, "pt") as f:
            meta = f.metadata()
        start = int(meta["steps"])
        curve = json.loads(meta["loss_curve"])
    ema = SiT(config)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0)
    x = torch.from_numpy(data[0]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    y = torch.from_numpy(data[1])
    g = torch.Generator().manual_seed(args.seed + 1 + start)
    if not args.init:
        curve = []
    running, t0 = 0.0, time.time()
    for step in range(start, args.steps):
        idx = torch.randint(0, len(x), (args.batch,), generator=g)
        x1 = x[idx]
        x0 = torch.randn(x1.shape, generator=g)
        t = torch.rand(x1.shape[0], generator=g)
        tt = t[:, None, None, None]
        xt = tt * x1 + (1 - tt) * x0  # Linear path: t = 0 noise, t = 1 data
        loss = ((model(xt, t, y[idx]) - (x1 - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        lr = args.lr * min(1.0, (step + 1 - start) / 200)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        decay = min(args.ema, (1 + step - start) / (10 + step - start)) if not args.init else args.ema
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        running += loss.item()
        if (step + 1) % 100 == 0:
            curve.append([step + 1, round(running / 100, 5)])
            print(f"sit step {step + 1} loss {running / 100:.4f} ({time.time() - t0:.0f} s)", flush=True)
            running = 0.0
        if (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            ema.eval()
            checkpoint(ema, curve, step + 1)
    ema.eval()
    return ema, curve


def cmd_train(args):
    import os

    import torch

    torch.set_num_threads(args.threads)
    SiT, ToyClassifier = torch_modules()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    data = dataset(TRAIN_SEED, args.per_class)
    held = dataset(HELD_OUT_SEED, 200)
    print(f"data: {len(data[0])} training and {len(held[0])} held-out images ({time.time() - t0:.0f} s)")
    common = {
        "format": "sitdiv-toy",
        "version": "1",
        "producer": f"scripts/train_toy.py (torch {torch.__version__}, numpy {np.__version__})",
        "data": {"train_seed": TRAIN_SEED, "train_images": len(data[0]), "held_out_seed": HELD_OUT_SEED,
                 "held_out_images": len(held[0]), "classes": CLASS_NAMES},
        "training_seed": args.seed,
    }

    if not args.skip_classifier:
        net, curve, acc = train_classifier(args, torch, ToyClassifier, data, held)
        save(f"{args.out}/toy_classifier.safetensors", net, {
            **common, "config": {"width": 32, "features": 64, "num_classes": NUM_CLASSES},
            "steps": args.classifier_steps, "batch": 256, "loss_curve": curve, "held_out_accuracy": acc,
        })
        u8 = torch.from_numpy(np.stack([held[0][0], held[0][250], held[0][999], held[0][1999]]))
        with torch.no_grad():
            f, l = net(u8)
        from safetensors.torch import save_file
        save_file({"images": u8.contiguous(), "features": f.contiguous(), "logits": l.contiguous()},
                  f"{args.out}/toy_classifier.io.safetensors", metadata={"format": "sitdiv-golden", "version": "1"})

    name = "toy_sit_guide" if args.guide else "toy_sit"

    def checkpoint(model, curve, steps):
        """The EMA weights after `steps` steps, and PyTorch's output on fixed inputs."""
        save(f"{args.out}/{name}.safetensors", model, {
            **common, "config": GUIDE_CONFIG if args.guide else SIT_CONFIG, "steps": steps, "batch": args.batch, "lr": args.lr,
            "ema": args.ema, "objective": "SiT Linear path, velocity prediction, t ~ U(0, 1)",
            "loss_curve": curve, "train_seconds": round(time.time() - t0),
            # A continued run starts a fresh AdamW (with warm-up) and EMA from those weights.
            "continued_from": args.init or "",
        })
        g = torch.Generator().manual_seed(5)
        x = torch.randn(3, 3, 32, 32, generator=g)
        t = torch.tensor([0.1, 0.5, 0.93])
        y = torch.tensor([0, 7, NUM_CLASSES])
        with torch.no_grad():
            out = model(x, t, y)
        from safetensors.torch import save_file
        save_file({"x": x, "t": t, "y": y, "out": out}, f"{args.out}/{name}.io.safetensors",
                  metadata={"format": "sitdiv-golden", "version": "1"})
        print(f"wrote {args.out}/{name}.* after {steps} steps ({time.time() - t0:.0f} s)", flush=True)

    model, curve = train_sit(args, torch, SiT, data, checkpoint)
    checkpoint(model, curve, args.steps)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixture")
    f.add_argument("out")
    t = sub.add_parser("train")
    t.add_argument("out")
    t.add_argument("--steps", type=int, default=6000)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--ema", type=float, default=0.999)
    t.add_argument("--classifier-steps", type=int, default=1500)
    t.add_argument("--per-class", type=int, default=2000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--skip-classifier", action="store_true")
    t.add_argument("--guide", action="store_true", help="train autoguidance's weaker SiT (GUIDE_CONFIG) instead")
    t.add_argument("--init", help="continue from these SiT weights (their metadata's steps count on)")
    t.add_argument("--save-every", type=int, default=250, help="write the EMA weights every N steps")
    args = ap.parse_args()
    {"fixture": cmd_fixture, "train": cmd_train}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
