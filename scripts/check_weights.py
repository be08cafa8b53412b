#!/usr/bin/env python3
"""End-to-end check of the weight converter and sitdiv's loaders against the upstream packages.

For every weight family: build the network with its package's own class and seeded random
weights (scaled so activations stay O(1)), save it in the form its release ships, convert it with
scripts/convert_weights.py (a subprocess, as a user runs it), load the result with the sitdiv
binary on the same inputs, and compare with the package's forward. Prints one markdown table
(family | source form | converter | worst rel error | pass) and exits 1 if a row fails.

    cargo build --release
    python scripts/check_weights.py [--sitdiv target/release/sitdiv] [--only FAMILY,...] [--keep]

FAMILY: sit, vae, inception, dinov2, clip, mocov3, simclr, resnet50, lpips, dreamsim (default: all).
Run by hand, never in CI; CPU only, a few minutes on 2 cores. Nothing is downloaded: every network
is randomly initialised, LPIPS keeps the package's shipped linear heads (converter flag
--random-trunk), DreamSim's cache folder is written here (its torch.hub DINO comes from a local
stand-in hubconf that builds the package's own ViT-B/16). Temporary files go to /tmp
(--keep, or a failed row, leaves them there).

Compared outputs, max|a - r| / max|r| per output, the worst reported:
  sit        latents of a 2-step ODE Euler run with guidance 1.5 (SiT-S/2, upstream math: SiT's
             forward_with_cfg, torchdiffeq's euler on linspace(0, 1, 3)); the upstream module is
             rebuilt here with timm's PatchEmbed/Attention/Mlp, as SiT's models.py builds it
  vae        diffusers AutoencoderKL.decode(z / 0.18215) against `sitdiv decode`, which writes uint8
             only: the error is the smallest float error that explains the differing pixels
  inception  pool, spatial, logits of pytorch-fid's fid_inception_v3 on the ADM input path
  dinov2     HF Dinov2Model pooler_output; the release form through timm's ViT with the release's
             position-grid interpolation (scale factor (G' + 0.1)/G)
  clip       get_image_features / image_embeds
  resnets    the trunk's global pool (MoCo v3, SimCLR v2, torchvision ResNet-50)
  lpips      the feature rows, and LPIPS(a, b) of the package against |row a - row b|^2
  dreamsim   the package's model.embed (LoRA, three towers, centred and L2-normalised)
Random BN networks are chaotic enough that float32 rounding alone grows past 1e-5 (PyTorch against
float64); the ResNets get small last-BN scales per bottleneck and the Inception BN shifts near 1.5,
which keeps PyTorch's own float32 error near 2e-6.

Needs (CPU is enough): torch, torchvision, numpy, Pillow, safetensors, pytorch-fid, lpips,
transformers, diffusers, timm, dreamsim (with peft and open_clip_torch).
"""
import argparse
import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import torch
from PIL import Image
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONVERTER = os.path.join(HERE, "convert_weights.py")
BOUND = 1e-5
FAMILIES = ("sit", "vae", "inception", "dinov2", "clip", "mocov3", "simclr", "resnet50", "lpips", "dreamsim")


class ToolError(Exception):
    """A converter or sitdiv command that failed: the command line and its error text."""

    def __init__(self, side, cmd, text):
        super().__init__(f"{side}: {cmd}\n{text}")
        self.side, self.cmd, self.text = side, cmd, text


class Row:
    def __init__(self, family, form, converter, errors=None, bound=BOUND, note="", failure=None):
        self.family, self.form, self.converter = family, form, converter
        self.errors = errors or {}
        self.bound, self.note, self.failure = bound, note, failure

    @property
    def worst(self):
        return max(self.errors.values()) if self.errors else float("nan")

    @property
    def ok(self):
        return self.failure is None and bool(self.errors) and self.worst <= self.bound


def rel_err(a, r):
    a, r = np.asarray(a, np.float64), np.asarray(r, np.float64)
    if a.shape != r.shape:
        raise ValueError(f"shape {a.shape} against the reference's {r.shape}")
    return float(np.abs(a - r).max() / np.abs(r).max())


def quote(args):
    return " ".join(a if a and " " not in a else repr(a) for a in args)


class Ctx:
    def __init__(self, sitdiv, tmp):
        self.sitdiv, self.tmp = sitdiv, tmp

    def path(self, *parts):
        p = os.path.join(self.tmp, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def convert(self, kind, source, out, *flags):
        """Runs the converter; returns the command as a user types it (file names only)."""
        cmd = [sys.executable, CONVERTER, kind, source, out, *flags]
        shown = f"`{kind} {os.path.basename(source.rstrip('/'))}{'/' if os.path.isdir(source) else ''}{' ' if flags else ''}{' '.join(flags)}`"
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise ToolError("converter", quote(["python", "scripts/convert_weights.py", kind, source, out, *flags]),
                            (p.stderr or p.stdout).strip()[-3000:])
        return shown

    def run(self, *args):
        cmd = [self.sitdiv, *args]
        p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, RUST_LOG="warn"))
        if p.returncode != 0:
            raise ToolError("sitdiv", quote(cmd), (p.stderr or p.stdout).strip()[-3000:])

    def folder(self, *parts):
        p = os.path.join(self.tmp, *parts)
        os.makedirs(p, exist_ok=True)
        return p

    def features(self, backbone, weights, images, tag):
        """`sitdiv features` of uint8 images (N, H, W, 3): the output .npz as a dict."""
        src, out = self.path(f"{tag}.images.npz"), self.path(f"{tag}.features.npz")
        np.savez(src, arr_0=images)
        self.run("features", "--backbone", backbone, "--weights", weights, "--images", src, "--out", out)
        with np.load(out) as z:
            return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------------------------
# Random weights


EMBEDDING_NAMES = ("cls_token", "pos_embed", "mask_token", "class_embedding", "position_embedding",
                   "embedding_table", "token_embedding")


def randomise(module, seed, gain=1.0):
    """Seeded random values for every float tensor, by role: matrices N(0, gain^2 / fan_in), norm
    weights 1 + 0.2 N, layer scales U(0.5, 1.5), biases 0.1 N, embeddings 0.5 N, BN statistics
    plausible. The upstream initialisations are not used: several are zero or one (SiT's adaLN
    and output layer, biases, norms) and would hide swapped or dropped tensors."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            n = torch.randn(t.shape, generator=g)
            if leaf == "running_var":
                v = 0.5 + torch.rand(t.shape, generator=g)
            elif leaf == "running_mean":
                v = 0.1 * n
            elif leaf in ("lambda1", "gamma"):
                v = 0.5 + torch.rand(t.shape, generator=g)
            elif any(e in name for e in EMBEDDING_NAMES):
                v = 0.5 * n
            elif t.dim() >= 2:
                v = gain * n / math.sqrt(t[0].numel())
            elif leaf == "weight":
                v = 1 + 0.2 * n
            else:
                v = 0.1 * n
            t.copy_(v)
    return module


def calibrate_bn(model, x):
    """Sets every BatchNorm's running statistics to those of the batch x (train-mode pass), so
    each BN output is normalised in eval mode whatever the random weights before it."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def test_images(n=3, h=60, w=94, seed=0):
    """Non-square uint8 images: a smooth colour field, pure noise, and the two mixed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    smooth = np.stack([127.5 + 120 * np.sin(xx / 9 + 2 * c + yy / (13 + c)) for c in range(3)], -1)
    noise = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    imgs = [smooth, noise, 0.6 * smooth + 0.4 * noise][:n]
    return np.stack([np.clip(np.round(i), 0, 255) for i in imgs]).astype(np.uint8)


def pil(images):
    return [Image.fromarray(i) for i in images]


# ---------------------------------------------------------------------------------------------
# SiT


def sincos_2d(dim, grid):
    """SiT's fixed position table: half the channels sin/cos of the column, half of the row."""
    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    return np.concatenate([one(dim // 2, gw), one(dim // 2, gh)], axis=1)


class SiTBlockRef(nn.Module):
    def __init__(self, d, heads, mlp_ratio):
        super().__init__()
        from timm.models.vision_transformer import Attention, Mlp
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(d, num_heads=heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(in_features=d, hidden_features=int(d * mlp_ratio), act_layer=lambda: nn.GELU(approximate="tanh"), drop=0)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d, bias=True))

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(self.norm1(x) * (1 + sc1.unsqueeze(1)) + sh1.unsqueeze(1))
        return x + g2.unsqueeze(1) * self.mlp(self.norm2(x) * (1 + sc2.unsqueeze(1)) + sh2.unsqueeze(1))


class SiTRef(nn.Module):
    """The upstream SiT module tree (willisma/SiT models.py: same submodule names and maths),
    which is not on PyPI; built from timm's layers as upstream builds it."""

    def __init__(self, input_size, patch_size, in_channels, hidden_size, depth, num_heads, mlp_ratio=4.0,
                 num_classes=1000, learn_sigma=True, class_dropout_prob=0.1):
        super().__init__()
        from timm.models.vision_transformer import PatchEmbed
        d, self.p, self.in_channels = hidden_size, patch_size, in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.learn_sigma = learn_sigma
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, d, bias=True)
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.y_embedder = nn.Module()
        self.y_embedder.embedding_table = nn.Embedding(num_classes + int(class_dropout_prob > 0), d)
        grid = input_size // patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, d), requires_grad=False)
        self.blocks = nn.ModuleList([SiTBlockRef(d, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = nn.Module()
        self.final_layer.norm_final = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_layer.linear = nn.Linear(d, patch_size * patch_size * self.out_channels)
        self.final_layer.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))

    @staticmethod
    def timestep_embedding(t, dim=256, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, x, t, y):
        n = x.shape[0]
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder.mlp(self.timestep_embedding(t)) + self.y_embedder.embedding_table(y)
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_layer.adaLN_modulation(c).chunk(2, dim=1)
        x = self.final_layer.norm_final(x) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)
        x = self.final_layer.linear(x)
        g, p, co = int(x.shape[1] ** 0.5), self.p, self.out_channels
        x = torch.einsum("nhwpqc->nchpwq", x.reshape(n, g, g, p, p, co)).reshape(n, co, g * p, g * p)
        return x.chunk(2, dim=1)[0] if self.learn_sigma else x

    def forward_with_cfg(self, x, t, y, cfg_scale):
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half], dim=0), t, y)
        eps, rest = out[:, :3], out[:, 3:]  # upstream guides the first three channels only
        cond, uncond = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([half_eps, half_eps], dim=0), rest], dim=1)


def sit_model(seed, cfg):
    m = SiTRef(**cfg)
    randomise(m, seed)
    with torch.no_grad():
        m.pos_embed.copy_(torch.from_numpy(sincos_2d(cfg["hidden_size"], cfg["input_size"] // cfg["patch_size"])).float()[None])
        # Smaller adaLN gains keep the 12 gated residuals O(1).
        for name, p in m.named_parameters():
            if "adaLN_modulation.1.weight" in name:
                p.mul_(0.5)
    return m.eval()


def sit_reference(model, z, y, steps, cfg_scale, null_class):
    """SiT sample.py's ODE: z and labels doubled with the null class, torchdiffeq euler over
    linspace(0, 1, steps) (Linear path, velocity: t0 = 0, t1 = 1), the first half kept."""
    n = z.shape[0]
    x = torch.cat([z, z])
    yy = torch.cat([y, torch.full_like(y, null_class)])
    ts = torch.linspace(0.0, 1.0, steps)
    with torch.no_grad():
        for i in range(steps - 1):
            t0, dt = ts[i], ts[i + 1] - ts[i]
            v = model.forward_with_cfg(x, torch.ones(x.shape[0]) * t0, yy, cfg_scale)
            x = x + dt * v
    return x[:n]


def check_sit(ctx):
    cfg = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=384, depth=12, num_heads=6,
               mlp_ratio=4.0, num_classes=1000, learn_sigma=True, class_dropout_prob=0.1)  # SiT-S/2, 256 px
    ema, live = sit_model(10, cfg), sit_model(11, cfg)
    g = torch.Generator().manual_seed(12)
    z = torch.randn(2, 4, 32, 32, generator=g)
    y = torch.tensor([207, 971], dtype=torch.int64)
    steps, scale = 3, 1.5
    ref = sit_reference(ema, z, y, steps, scale, cfg["num_classes"]).numpy()
    zp, yp = ctx.path("sit", "z.npy"), ctx.path("sit", "y.npy")
    np.save(zp, z.numpy())
    np.save(yp, y.numpy())
    opt = torch.optim.AdamW(live.parameters(), lr=1e-4, weight_decay=0)
    forms = [
        ("raw state_dict `.pt` (SiT-XL-2-256x256.pt layout)", "sit-raw.pt", ema.state_dict()),
        ("train.py checkpoint `.pt` (model, ema, opt, args)", "0400000.pt",
         {"model": live.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
          "args": argparse.Namespace(model="SiT-S/2", image_size=256, num_classes=1000, path_type="Linear")}),
    ]
    rows = []
    for form, name, obj in forms:
        src = ctx.path("sit", name)
        torch.save(obj, src)
        conv = None
        try:
            out = ctx.path("sit", name + ".safetensors")
            conv = ctx.convert("sit", src, out, "--model", "SiT-S/2")
            lat = ctx.path("sit", name + ".latents.npy")
            ctx.run("sample", "--weights", out, "--init-noise", zp, "--labels", yp, "--mode", "ode", "--method", "euler",
                    "--steps", str(steps), "--cfg", str(scale), "--latents-out", lat)
            rows.append(Row("SiT", form, conv, {"latents": rel_err(np.load(lat), ref)},
                            note=f"the two steps move the latents by {rel_err(z.numpy(), ref):.2f} (rel)"))
        except ToolError as e:
            rows.append(Row("SiT", form, conv or "`sit`", failure=e))
    return rows


# ---------------------------------------------------------------------------------------------
# SD-VAE


def diffusers_to_ldm_vae(key, n_up):
    """The original LDM name of a diffusers AutoencoderKL key (the inverse of diffusers'
    convert_ldm_vae_checkpoint; checked against it below)."""
    k = key
    for coder in ("encoder", "decoder"):
        k = k.replace(f"{coder}.conv_norm_out", f"{coder}.norm_out")
        k = k.replace(f"{coder}.mid_block.resnets.0", f"{coder}.mid.block_1")
        k = k.replace(f"{coder}.mid_block.resnets.1", f"{coder}.mid.block_2")
        att = f"{coder}.mid_block.attentions.0."
        for a, b in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            k = k.replace(att + a, f"{coder}.mid.attn_1.{b}")
    k = k.replace("conv_shortcut", "nin_shortcut")
    parts = k.split(".")
    if k.startswith("encoder.down_blocks."):
        i, rest = parts[2], ".".join(parts[3:])
        rest = rest.replace("resnets.", "block.", 1).replace("downsamplers.0.", "downsample.", 1)
        k = f"encoder.down.{i}.{rest}"
    elif k.startswith("decoder.up_blocks."):
        i, rest = int(parts[2]), ".".join(parts[3:])
        rest = rest.replace("resnets.", "block.", 1).replace("upsamplers.0.", "upsample.", 1)
        k = f"decoder.up.{n_up - 1 - i}.{rest}"
    return k


def vae_reference(vae, z):
    with torch.no_grad():
        x = vae.decode(z / vae.config.scaling_factor).sample
    return x.permute(0, 2, 3, 1).numpy()  # NHWC, as the batch is written


def uint8_error(got, x_ref):
    """sitdiv writes trunc(clamp(127.5 x + 128, 0, 255)). Where its byte differs from the
    reference's, its float must lie in [q, q + 1): the smallest such distance to the reference's
    127.5 x + 128, in units of x and relative to max|x|, is the error the bytes prove."""
    v = 127.5 * x_ref.astype(np.float32) + np.float32(128)
    q_ref = np.clip(v, 0, 255).astype(np.uint8)
    diff = got.astype(np.int32) - q_ref.astype(np.int32)
    bad = diff != 0
    if not bad.any():
        return 0.0, 0, int(diff.size), int(np.abs(diff).max())
    q = got[bad].astype(np.float64)
    vr = v[bad].astype(np.float64)
    dist = np.where(vr < q, q - vr, vr - (q + 1))
    dist = np.maximum(dist, 0)
    return float(dist.max() / 127.5 / np.abs(x_ref).max()), int(bad.sum()), int(diff.size), int(np.abs(diff).max())


def check_vae(ctx):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    config = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                  up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[32, 64], layers_per_block=1,
                  latent_channels=4, norm_num_groups=32, sample_size=32, scaling_factor=0.18215)
    torch.manual_seed(20)
    vae = randomise(AutoencoderKL(**config), 20).eval()
    g = torch.Generator().manual_seed(21)
    z = 0.18215 * torch.randn(2, 4, 32, 32, generator=g)
    # Scale the output convolution so that few pixels clip at 0 or 255.
    with torch.no_grad():
        s = 0.4 / float(vae_reference(vae, z).std())
        vae.decoder.conv_out.weight.mul_(s)
        vae.decoder.conv_out.bias.mul_(s)
    ref = vae_reference(vae, z)
    zp = ctx.path("vae", "z.npy")
    np.save(zp, z.numpy())

    folder = ctx.folder("vae", "sd-vae-tiny")
    vae.save_pretrained(folder, safe_serialization=True)
    sd = vae.state_dict()
    n_up = len(config["up_block_types"])
    ldm = {}
    for k, v in sd.items():
        name = diffusers_to_ldm_vae(k, n_up)
        # LDM's attention projections are 1x1 convolutions.
        if ".attn_1." in name and name.endswith("weight") and v.dim() == 2:
            v = v[:, :, None, None]
        ldm[name] = v.clone()
    back = convert_ldm_vae_checkpoint(ldm, config)
    assert sorted(back) == sorted(sd) and all(torch.equal(back[k].reshape(sd[k].shape), sd[k]) for k in sd), \
        "the LDM names written here are not what diffusers reads back"
    # Older hub folders (sd-vae-ft-ema among them) spell the attention query/key/value/proj_attn.
    legacy_dir = ctx.folder("vae", "sd-vae-legacy")
    shutil.copy(os.path.join(folder, "config.json"), legacy_dir)
    legacy = {}
    for k, v in sd.items():
        for a, b in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
            k = k.replace(f"attentions.0.{a}.", f"attentions.0.{b}.")
        legacy[k] = v.clone()
    torch.save(legacy, os.path.join(legacy_dir, "diffusion_pytorch_model.bin"))
    back = AutoencoderKL.from_pretrained(legacy_dir, use_safetensors=False).state_dict()
    assert all(torch.equal(back[k], sd[k]) for k in sd), "diffusers does not read the legacy names back"
    full = {f"first_stage_model.{k}": v for k, v in ldm.items()}
    full["model.diffusion_model.input_blocks.0.0.weight"] = torch.randn(8, 4, 3, 3)  # the UNet beside it
    full["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = torch.ones(8)
    bare = dict(ldm)
    bare["loss.logvar"] = torch.zeros(())  # vae-ft-*.ckpt carry their training loss's tensors
    forms = [
        ("diffusers folder (config.json + diffusion_pytorch_model.safetensors)", folder),
        ("diffusers folder, legacy attention names (`query`/`proj_attn`, `.bin`)", legacy_dir),
        ("LDM `.ckpt` (Stable Diffusion, `first_stage_model.*`)", ("sd-ckpt.ckpt", {"state_dict": full, "global_step": 1})),
        ("LDM `.ckpt` (vae-ft-*.ckpt, bare names)", ("vae-ft.ckpt", {"state_dict": bare, "global_step": 1})),
    ]
    rows = []
    for form, src in forms:
        if isinstance(src, tuple):
            name, obj = src
            src = ctx.path("vae", name)
            torch.save(obj, src)
        conv = None
        try:
            out = ctx.path("vae", os.path.basename(src.rstrip("/")) + ".safetensors")
            conv = ctx.convert("vae", src + ("/" if os.path.isdir(src) else ""), out)
            batch = ctx.path("vae", os.path.basename(src) + ".decoded.npz")
            ctx.run("decode", "--vae", out, "--latents", zp, "--out", batch)
            with np.load(batch) as f:
                got = f["arr_0"]
            err, nbad, total, maxdiff = uint8_error(got, ref)
            # A byte off by more than 1 is no rounding matter.
            rows.append(Row("SD-VAE", form, conv, {"decoded": err if maxdiff <= 1 else max(err, 1.0)},
                            note=f"uint8 output, {nbad} of {total} bytes differ (by {maxdiff}): the error is "
                                 "the least float error that explains them"))
        except ToolError as e:
            rows.append(Row("SD-VAE", form, conv or "`vae`", failure=e))
    return rows


# ---------------------------------------------------------------------------------------------
# FID Inception


def tf1_resize(images, size):
    """TF1 ResizeBilinear (align_corners=False, no half-pixel offset) in float32, as the ADM
    evaluator's graph resizes, then (x - 128) / 128: (N, H, W, 3) uint8 -> (N, 3, size, size)."""
    n, h, w, _ = images.shape

    def axis(lin, lout):
        src = np.arange(lout, dtype=np.float32) * np.float32(np.float32(lin) / np.float32(lout))
        lo = np.floor(src).astype(np.int64)
        return np.minimum(lo, lin - 1), np.minimum(lo + 1, lin - 1), (src - lo.astype(np.float32)).astype(np.float32)

    y0, y1, dy = axis(h, size)
    x0, x1, dx = axis(w, size)
    x = images.astype(np.float32)
    dx, dy = dx[None, None, :, None], dy[None, :, None, None]
    top = x[:, y0][:, :, x0] + (x[:, y0][:, :, x1] - x[:, y0][:, :, x0]) * dx
    bottom = x[:, y1][:, :, x0] + (x[:, y1][:, :, x1] - x[:, y1][:, :, x0]) * dx
    out = top + (bottom - top) * dy
    return torch.from_numpy(((out - np.float32(128)) / np.float32(128)).transpose(0, 3, 1, 2).copy())


def check_inception(ctx):
    from pytorch_fid import inception as pfi

    # The FID network's module tree from pytorch-fid's own blocks (fid_inception_v3 without the
    # URL load), random weights, BN statistics of the test batch.
    torch.manual_seed(30)
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    images = test_images()
    x = tf1_resize(images, 299)
    randomise(net, 30, gain=math.sqrt(2))
    # BN shifts near 1.5 keep most ReLUs open: with centred pre-activations a random BN-ReLU stack
    # is chaotic (float32 rounding grows ~1.2x per layer; 5e-5 at the pool in PyTorch itself).
    g = torch.Generator().manual_seed(31)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.copy_(1.5 + 0.2 * torch.randn(m.bias.shape, generator=g))
    calibrate_bn(net, x)
    src = ctx.path("inception", "pt_inception-2015-12-05-6726825d.pth")
    torch.save(net.state_dict(), src)

    # The reference is pytorch-fid's fid_inception_v3() itself, its "download" being that file.
    saved = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: torch.load(src, weights_only=True)
    try:
        model = pfi.fid_inception_v3().eval()
    finally:
        pfi.load_state_dict_from_url = saved
    taps = {}
    model.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: taps.__setitem__("spatial", o))
    model.avgpool.register_forward_hook(lambda m, i, o: taps.__setitem__("pool", o))
    with torch.no_grad():
        model(x)
    pool = taps["pool"].flatten(1)
    ref = {"pool": pool.numpy(),
           "spatial": taps["spatial"][:, :7].permute(0, 2, 3, 1).reshape(len(images), -1).numpy(),
           "logits": (pool @ model.fc.weight.T).detach().numpy()}
    conv = None
    try:
        out = ctx.path("inception", "inception-fid.safetensors")
        conv = ctx.convert("inception", src, out)
        got = ctx.features("inception", out, images, "inception/run")
        errs = {k: rel_err(got[k], ref[k]) for k in ref}
        return [Row("FID Inception", "pytorch-fid `.pth` state_dict", conv, errs)]
    except ToolError as e:
        return [Row("FID Inception", "pytorch-fid `.pth` state_dict", conv or "`inception`", failure=e)]


# ---------------------------------------------------------------------------------------------
# DINOv2


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def check_dinov2(ctx):
    from transformers import Dinov2Config, Dinov2Model
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    images = test_images()
    rows = []
    # HF folder: the 518-pixel position grid (37 x 37) resized to 16 x 16 by bicubic of output size.
    config = Dinov2Config(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                          image_size=518, patch_size=14)
    torch.manual_seed(40)
    model = randomise(Dinov2Model(config), 40).eval()
    folder = ctx.folder("dinov2", "dinov2-tiny")
    model.save_pretrained(folder)
    # A state_dict saved from transformers >= 5 directly spells the attention q_proj/k_proj/v_proj/o_proj.
    folder5 = ctx.folder("dinov2", "dinov2-tiny-v5")
    shutil.copy(os.path.join(folder, "config.json"), folder5)
    from safetensors.torch import save_file
    sd5 = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert any(".attention.q_proj." in k for k in sd5), "this transformers does not spell q_proj"
    save_file(sd5, os.path.join(folder5, "model.safetensors"))
    proc = BitImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
    x = proc(images=pil(images), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = model(pixel_values=x).pooler_output.numpy()
    for form, src, tag in (("HF folder (`Dinov2Model.save_pretrained`: hub names)", folder, "hf"),
                           ("HF folder, transformers ≥ 5 state_dict names (`attention.q_proj`)", folder5, "hf5")):
        conv = None
        try:
            out = ctx.path("dinov2", f"dinov2-{tag}.safetensors")
            conv = ctx.convert("dinov2", src + "/", out)
            got = ctx.features("dinov2-b14", out, images, f"dinov2/{tag}")
            rows.append(Row("DINOv2", form, conv, {"embedding": rel_err(got["embedding"], ref)}))
        except ToolError as e:
            rows.append(Row("DINOv2", form, conv or "`dinov2`", failure=e))

    # The original release's state_dict: timm's ViT holds the same names (cls_token, pos_embed,
    # blocks.N.attn.qkv, ls1.gamma, norm); the release adds mask_token.
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(41)
    vit = VisionTransformer(img_size=518, patch_size=14, embed_dim=128, depth=2, num_heads=2, mlp_ratio=4,
                            init_values=1.0, num_classes=0)
    randomise(vit, 41).eval()
    sd = dict(vit.state_dict())
    sd["mask_token"] = torch.zeros(1, 128)
    src = ctx.path("dinov2", "dinov2_vittiny14_pretrain.pth")
    torch.save(sd, src)
    from torchvision import transforms as T
    prep = T.Compose([T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])  # dgm-eval's DINOv2 transform
    x = torch.stack([prep(i) for i in pil(images)])
    with torch.no_grad():
        tok = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        m, d = 37, 128
        g = 224 // 14
        # The release's interpolate_pos_encoding: a scale factor of (G' + 0.1) / G, no antialias.
        grid = vit.pos_embed[:, 1:].reshape(1, m, m, d).permute(0, 3, 1, 2)
        grid = nn.functional.interpolate(grid, scale_factor=((g + 0.1) / m, (g + 0.1) / m), mode="bicubic",
                                         antialias=False)
        assert grid.shape[-2:] == (g, g)
        pos = torch.cat([vit.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, d)], dim=1)
        h = torch.cat([vit.cls_token.expand(len(x), -1, -1), tok], dim=1) + pos
        for blk in vit.blocks:
            h = blk(h)
        ref = vit.norm(h)[:, 0].numpy()  # x_norm_clstoken
    conv = None
    try:
        out = ctx.path("dinov2", "dinov2-release.safetensors")
        conv = ctx.convert("dinov2-release", src, out)
        got = ctx.features("dinov2-l14", out, images, "dinov2/release")
        rows.append(Row("DINOv2", "original release `.pth` (facebookresearch/dinov2 names)", conv,
                        {"embedding": rel_err(got["embedding"], ref)}))
    except ToolError as e:
        rows.append(Row("DINOv2", "original release `.pth`", conv or "`dinov2-release`", failure=e))
    return rows


# ---------------------------------------------------------------------------------------------
# CLIP


def check_clip(ctx):
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    images = test_images()
    x = CLIPImageProcessorPil()(images=pil(images), return_tensors="pt")["pixel_values"]
    vision = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                  patch_size=32, image_size=224)
    rows = []
    torch.manual_seed(50)
    full = randomise(CLIPModel(CLIPConfig(vision_config=vision, projection_dim=64,
                                          text_config=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                                           intermediate_size=128))), 50).eval()
    torch.manual_seed(51)
    tower = randomise(CLIPVisionModelWithProjection(CLIPVisionConfig(**vision, projection_dim=64)), 51).eval()
    with torch.no_grad():
        refs = [full.get_image_features(pixel_values=x).pooler_output.numpy(),
                tower(pixel_values=x).image_embeds.numpy()]
    for (form, name), model, ref in zip([("HF folder (`CLIPModel`, text tower included)", "clip-full"),
                                         ("HF folder (`CLIPVisionModelWithProjection`)", "clip-vision")],
                                        (full, tower), refs):
        folder = ctx.folder("clip", name)
        model.save_pretrained(folder)
        conv = None
        try:
            out = ctx.path("clip", name + ".safetensors")
            conv = ctx.convert("clip", folder + "/", out)
            got = ctx.features("clip-b32", out, images, f"clip/{name}")
            rows.append(Row("CLIP", form, conv, {"embedding": rel_err(got["embedding"], ref)}))
        except ToolError as e:
            rows.append(Row("CLIP", form, conv or "`clip`", failure=e))
    return rows


# ---------------------------------------------------------------------------------------------
# ResNet-50 trunks: MoCo v3, SimCLR v2, torchvision


def imagenet_eval_input(images):
    """MoCo v3's evaluation transform on PIL images."""
    from torchvision import transforms as T
    t = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return torch.stack([t(i) for i in pil(images)])


def simclr_input(images):
    from torchvision import transforms as T
    out = []
    for i in pil(images):
        t = T.Compose([T.CenterCrop(round(0.875 * min(i.size))),
                       T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor()])
        out.append(t(i))
    return torch.stack(out)


def quiet_residuals(model, suffix):
    """Small last-BN scales in every bottleneck: a random ResNet at full residual gain is
    chaotic (float32 rounding grows ~1.3x per block, 5e-5 at the pool even in PyTorch against
    float64), which would hide the comparison; trained ResNets are not like that."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(suffix):
                p.mul_(0.2)


def torchvision_trunk(seed, x):
    import torchvision
    torch.manual_seed(seed)
    m = torchvision.models.resnet50(weights=None)
    randomise(m, seed, gain=math.sqrt(2))
    quiet_residuals(m, "bn3.weight")
    fc = m.fc
    m.fc = nn.Identity()
    calibrate_bn(m, x)
    return m, fc


def mlp_head(dims, last_bn=True, seed=0):
    """MoCo v3's _build_mlp layout: Linear (no bias), BN1d, ReLU, ..., last BN without affine."""
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=False))
        if i < len(dims) - 2:
            layers += [nn.BatchNorm1d(dims[i + 1]), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(dims[i + 1], affine=False))
    return randomise(nn.Sequential(*layers), seed)


def compare_trunk(ctx, family, form, kind, src, backbone, model, x, images, tag):
    with torch.no_grad():
        ref = model(x).numpy()
    conv = None
    try:
        out = ctx.path(tag + ".safetensors")
        conv = ctx.convert(kind, src, out)
        got = ctx.features(backbone, out, images, tag)
        return Row(family, form, conv, {"embedding": rel_err(got["embedding"], ref)},
                   note="" if kind != "resnet50" else f"as `--backbone {backbone}`")
    except ToolError as e:
        return Row(family, form, conv or f"`{kind}`", failure=e)


def check_mocov3(ctx):
    images = test_images()
    x = imagenet_eval_input(images)
    base, _ = torchvision_trunk(60, x)
    momentum, _ = torchvision_trunk(61, x)
    sd = {}
    for prefix, trunk, seed in (("module.base_encoder.", base, 62), ("module.momentum_encoder.", momentum, 63)):
        sd.update({prefix + k: v for k, v in trunk.state_dict().items()})
        sd.update({prefix + "fc." + k: v for k, v in mlp_head([2048, 4096, 256], seed=seed).state_dict().items()})
    sd.update({"module.predictor." + k: v for k, v in mlp_head([256, 4096, 256], last_bn=False, seed=64).state_dict().items()})
    src = ctx.path("mocov3", "r-50-1000ep.pth.tar")
    torch.save({"epoch": 1000, "arch": "resnet50", "state_dict": sd, "optimizer": {}, "scaler": {}}, src)
    return [compare_trunk(ctx, "MoCo v3", "`.pth.tar` (`module.base_encoder.*`, momentum encoder, predictor)",
                          "mocov3", src, "mocov3-r50", base, x, images, "mocov3/run")]


class _BNReLU(nn.Sequential):
    """The port's BatchNormRelu: a Sequential whose 0 is the BN."""

    def __init__(self, c, relu=True):
        super().__init__(nn.BatchNorm2d(c, eps=1e-5), nn.ReLU() if relu else nn.Identity())


def _conv(ci, co, k=3, stride=1):
    return nn.Conv2d(ci, co, k, stride=stride, padding=(k - 1) // 2, bias=False)


class _Projection(nn.Module):
    def __init__(self, ci, co, stride):
        super().__init__()
        self.shortcut = _conv(ci, co, 1, stride)
        self.bn = _BNReLU(co, relu=False)

    def forward(self, x):
        return self.bn(self.shortcut(x))


class _Bottleneck(nn.Module):
    def __init__(self, ci, width, stride, project):
        super().__init__()
        self.projection = _Projection(ci, 4 * width, stride) if project else nn.Identity()
        self.net = nn.Sequential(_conv(ci, width, 1), _BNReLU(width), _conv(width, width, 3, stride), _BNReLU(width),
                                 _conv(width, 4 * width, 1), _BNReLU(4 * width, relu=False))

    def forward(self, x):
        return torch.relu(self.projection(x) + self.net(x))


class _Blocks(nn.Module):
    def __init__(self, n, ci, width, stride):
        super().__init__()
        self.blocks = nn.ModuleList([_Bottleneck(ci, width, stride, True)] +
                                    [_Bottleneck(4 * width, width, 1, False) for _ in range(n - 1)])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


class SimclrR50Port(nn.Module):
    """r50_1x_sk0 in the module layout of Separius/SimCLRv2-Pytorch (not on PyPI): net.0 the stem
    (conv, BatchNormRelu, max pool), net.1-4 the stages, fc; forward = mean-pooled net."""

    def __init__(self):
        super().__init__()
        stem = nn.Sequential()
        stem.add_module("0", _conv(3, 64, 7, 2))
        stem.add_module("1", _BNReLU(64))
        stem.add_module("2", nn.MaxPool2d(3, 2, 1))
        self.net = nn.Sequential(stem, _Blocks(3, 64, 64, 1), _Blocks(4, 256, 128, 2), _Blocks(6, 512, 256, 2),
                                 _Blocks(3, 1024, 512, 2))
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        return self.net(x).mean(dim=[2, 3])


def check_simclr(ctx):
    images = test_images()
    x = simclr_input(images)
    torch.manual_seed(70)
    model = randomise(SimclrR50Port(), 70, gain=math.sqrt(2))
    quiet_residuals(model, "net.5.0.weight")
    calibrate_bn(model, x)
    head = mlp_head([2048, 2048, 2048, 128], seed=71)
    src = ctx.path("simclr", "r50_1x_sk0.pth")
    torch.save({"resnet": model.state_dict(), "head": head.state_dict()}, src)
    return [compare_trunk(ctx, "SimCLR v2", "Separius port `.pth` (`{resnet, head}`)", "simclr", src, "simclr-r50",
                          model, x, images, "simclr/run")]


def check_resnet50(ctx):
    images = test_images()
    x = imagenet_eval_input(images)
    trunk, fc = torchvision_trunk(80, x)
    sd = dict(trunk.state_dict())
    sd.update({"fc." + k: v for k, v in fc.state_dict().items()})
    src = ctx.path("resnet50", "resnet50.pth")
    torch.save(sd, src)
    return [compare_trunk(ctx, "ResNet-50", "torchvision `resnet50(weights=None)` state_dict `.pth`", "resnet50", src,
                          "mocov3-r50", trunk, x, images, "resnet50/run")]


# ---------------------------------------------------------------------------------------------
# LPIPS


LPIPS_SEED = 90


def check_lpips(ctx):
    import lpips

    images = test_images()
    x = torch.cat([lpips.im2tensor(i) for i in images])  # x / 127.5 - 1
    rows = []
    for net in ("alex", "vgg"):
        # The converter builds the same package model from the same seed (--random-trunk).
        torch.manual_seed(LPIPS_SEED)
        m = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False).eval()
        with torch.no_grad():
            taps = m.net(m.scaling_layer(x))
            parts = []
            for k, f in enumerate(taps):
                w = getattr(m, f"lin{k}").model[1].weight.reshape(1, -1, 1, 1)
                f = lpips.normalize_tensor(f) * torch.sqrt(w / (f.shape[2] * f.shape[3]))
                parts.append(f.flatten(1))
            rows_ref = torch.cat(parts, 1).numpy()
            pairs = [(0, 1), (0, 2), (1, 2)]
            dist_ref = np.array([float(m(x[i:i + 1], x[j:j + 1])) for i, j in pairs])
        conv = None
        try:
            out = ctx.path("lpips", f"lpips-{net}.safetensors")
            conv = ctx.convert("lpips", net, out, "--random-trunk", "--seed", str(LPIPS_SEED))
            got = ctx.features(f"lpips-{net}", out, images, f"lpips/{net}")["lpips"]
            g = got.astype(np.float64)
            dist = np.array([((g[i] - g[j]) ** 2).sum() for i, j in pairs])
            rows.append(Row(f"LPIPS {net}", "the `lpips` package (v0.1 heads shipped, trunk seeded random)", conv,
                            {"rows": rel_err(got, rows_ref), "distances": rel_err(dist, dist_ref)}))
        except ToolError as e:
            rows.append(Row(f"LPIPS {net}", "the `lpips` package", conv or "`lpips`", failure=e))
    return rows


# ---------------------------------------------------------------------------------------------
# DreamSim


HUBCONF = '''"""Offline stand-in for facebookresearch/dino's hubconf, written by scripts/check_weights.py:
the dreamsim package's own ViT-B/16 with the weights torch.hub would have cached."""
import os

import torch
from dreamsim.feature_extraction.vision_transformer import vit_base


def dino_vitb16(pretrained=True, **kwargs):
    model = vit_base(patch_size=16, num_classes=0, **kwargs)
    if pretrained:
        path = os.path.join(torch.hub.get_dir(), "checkpoints", "dino_vitbase16_pretrain.pth")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model
'''


def check_dreamsim(ctx):
    import dreamsim
    import peft
    from dreamsim.feature_extraction.vision_transformer import DINOHead, vit_base

    cache = ctx.folder("dreamsim", "models")
    os.makedirs(os.path.join(cache, "checkpoints"), exist_ok=True)
    os.makedirs(os.path.join(cache, "facebookresearch_dino_main"), exist_ok=True)
    with open(os.path.join(cache, "facebookresearch_dino_main", "hubconf.py"), "w") as f:
        f.write(HUBCONF)
    # The towers at their released shapes (the package builds ViT-B/16 itself), random weights.
    torch.manual_seed(100)
    dino = randomise(vit_base(patch_size=16, num_classes=0), 100)
    torch.save(dino.state_dict(), os.path.join(cache, "checkpoints", "dino_vitbase16_pretrain.pth"))
    head = DINOHead(768, 2048)  # DINO's projection head: loaded by the package, unused by the ensemble
    student = {f"module.head.{k}": v for k, v in head.state_dict().items()}
    student["module.head.last_layer.weight"] = head.last_layer.weight.detach().clone()
    torch.save({"student": student, "teacher": {}}, os.path.join(cache, "dino_vitb16_pretrain.pth"))
    for i, name in enumerate(("clip", "open_clip")):
        vit = vit_base(patch_size=16)
        vit.pos_drop = nn.LayerNorm(768)  # CLIP's ln_pre, as the package's files hold it
        sd = dict(randomise(vit, 101 + i).state_dict())
        sd["proj"] = torch.randn(768, 512, generator=torch.Generator().manual_seed(111 + i)) / math.sqrt(768)
        torch.save({"state_dict": sd}, os.path.join(cache, f"{name}_vitb16_pretrain.pth.tar"))
    # The ensemble's LoRA adapter in peft's layout, with random factors on several module kinds
    # (the merge must handle each); lora_alpha / r large enough to move the embedding.
    cfg = dreamsim.model.dreamsim_args["model_config"]["ensemble"]
    base = dreamsim.model.PerceptualModel(**cfg, device="cpu", load_dir=cache, normalize_embeds=True)
    lora = peft.LoraConfig(r=16, lora_alpha=8, lora_dropout=0.3, bias="none",
                           target_modules=["qkv", "attn.proj", "fc1", "fc2"])
    with_lora = peft.get_peft_model(base, lora)
    g = torch.Generator().manual_seed(120)
    with torch.no_grad():
        for name, p in with_lora.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
    with_lora.save_pretrained(os.path.join(cache, "ensemble_lora"))
    del base, with_lora

    # The reference: the package's own entry point on that cache folder.
    model, preprocess = dreamsim.dreamsim(pretrained=True, device="cpu", cache_dir=cache)
    images = test_images()
    x = torch.cat([preprocess(i) for i in pil(images)])
    with torch.no_grad():
        ref = model.embed(x).numpy()
        plain, _ = dreamsim.dreamsim(pretrained=False, device="cpu", cache_dir=cache)
        lora_effect = rel_err(plain.embed(x).numpy(), ref)
    del model, plain
    conv = None
    form = "the package's cache folder (3 towers, ensemble_lora/, hub DINO)"
    try:
        out = ctx.path("dreamsim", "dreamsim.safetensors")
        conv = ctx.convert("dreamsim", cache + "/", out)
        got = ctx.features("dreamsim", out, images, "dreamsim/run")
        return [Row("DreamSim", form, conv, {"embedding": rel_err(got["embedding"], ref)},
                    note=f"the LoRA moves the embedding by {lora_effect:.2f} (rel)")]
    except ToolError as e:
        return [Row("DreamSim", form, conv or "`dreamsim`", failure=e)]


# ---------------------------------------------------------------------------------------------


CHECKS = {"sit": check_sit, "vae": check_vae, "inception": check_inception, "dinov2": check_dinov2,
          "clip": check_clip, "mocov3": check_mocov3, "simclr": check_simclr, "resnet50": check_resnet50,
          "lpips": check_lpips, "dreamsim": check_dreamsim}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sitdiv", default=os.path.join(ROOT, "target", "release", "sitdiv"), help="the sitdiv binary")
    ap.add_argument("--only", action="append", default=[], help=f"families to check (comma-separated): {', '.join(FAMILIES)}")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder under /tmp")
    args = ap.parse_args()
    only = [f for a in args.only for f in a.split(",") if f] or list(FAMILIES)
    unknown = [f for f in only if f not in CHECKS]
    if unknown:
        ap.error(f"unknown family {unknown}; choose from {', '.join(FAMILIES)}")
    if not os.access(args.sitdiv, os.X_OK):
        ap.error(f"{args.sitdiv}: no sitdiv binary (cargo build --release)")
    torch.set_num_threads(os.cpu_count() or 1)
    torch.set_grad_enabled(False)
    tmp = tempfile.mkdtemp(prefix="check_weights-", dir="/tmp")
    ctx = Ctx(os.path.abspath(args.sitdiv), tmp)
    rows = []
    for fam in only:
        t = time.time()
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the packages print; stdout is the table
                new = CHECKS[fam](ctx)
        except Exception as e:  # a check's own Python failing is a failed row too
            new = [Row(fam, "—", "—", failure=ToolError("check_weights.py", fam, traceback.format_exc()[-3000:]))]
        for r in new:
            state = "ok" if r.ok else "FAIL"
            print(f"[{fam} {time.time() - t:.0f}s] {r.family}: {r.form}: {state} {r.errors}", file=sys.stderr)
        rows += new

    print("| family | source form | converter | worst rel error | pass |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r.failure is not None:
            err, verdict = "—", f"**FAIL**: {r.failure.side} failed (below)"
        else:
            which = max(r.errors, key=r.errors.get)
            err = f"{r.worst:.1e} ({which})" if len(r.errors) > 1 else f"{r.worst:.1e}"
            verdict = ("yes" if r.ok else "**FAIL**") + f" (≤ {r.bound:.0e})" + (f"; {r.note}" if r.note else "")
        print(f"| {r.family} | {r.form} | {r.converter} | {err} | {verdict} |")
    failed = [r for r in rows if r.failure is not None]
    for r in failed:
        print(f"\n{r.family}, {r.form}: {r.failure.side} failed:\n    {r.failure.cmd}\n" +
              "\n".join("    " + line for line in r.failure.text.splitlines()))
    ok = all(r.ok for r in rows)
    if args.keep or not ok:
        print(f"\nfiles kept in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
