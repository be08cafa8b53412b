#!/usr/bin/env python3
"""Reference outputs of networks too large to commit with their weights. The weights and input
images come from a counter-based formula that the Rust tests evaluate too, so only the reference
outputs are committed.

    python scripts/dump_golden.py inception [--out tests/golden/inception_fid.io.safetensors]
    python scripts/dump_golden.py preprocess [--out tests/golden/preprocess.io.safetensors]
    python scripts/dump_golden.py vit [--out-dir tests/golden]
    python scripts/dump_golden.py clip336 [--out-dir tests/golden]
    python scripts/dump_golden.py resnet [--out tests/golden/resnet50_formula.io.safetensors]
    python scripts/dump_golden.py lpips [--out tests/golden/lpips_formula.io.safetensors]
    DINOV2_SRC=path/to/facebookresearch-dinov2 python scripts/dump_golden.py dinov2-release [--out-dir tests/golden]
    python scripts/dump_golden.py dreamsim [--out-dir tests/golden]
    python scripts/dump_golden.py vae-encoder [--out tests/golden/vae_encoder.io.safetensors]
    python scripts/dump_golden.py adm-crop [--out tests/golden/adm_crop.io.safetensors]
    SIT_SRC=path/to/willisma-SiT python scripts/dump_golden.py valloss [--out tests/golden/valloss_tiny.io.safetensors]
    SIMCLR_SRC=path/to/Separius-SimCLRv2-Pytorch python scripts/dump_golden.py simclr [--out tests/golden/simclr_formula.io.safetensors]

inception: pytorch-fid's FID Inception-v3 (`fid_inception_v3()`, torchvision's Inception3 with the
FIDInceptionA/C/E blocks), fed as the ADM evaluator's TensorFlow graph is: uint8 → float →
TF1 bilinear resize to 299 (torch-fidelity's `interpolate_bilinear_2d_like_tensorflow1x`,
align_corners=False) → (x − 128)/128. Outputs: pool_3 (N, 2048); Mixed_6d.branch1x1 after ReLU,
first 7 channels, flattened (h, w, c) (N, 2023); pool_3 · fc.weightᵀ (N, 1008, no bias).

Needs torch, torchvision, pytorch-fid, torch-fidelity, numpy, safetensors. CPU, float32, 4 threads.

clip336: a tiny transformers `CLIPVisionModelWithProjection` in the ViT-L/14 @ 336 px geometry
(patch 14, image 336, 24 × 24 + 1 = 577 positions; hidden 32, 2 layers, 4 heads, MLP 128,
projection 16, quick_gelu) with formula weights (seed 2019), fed as CMMD's authors
(google-research `cmmd/io_util.py`, `embedding.py`) feed CLIP ViT-L/14-336: centre square crop
(side min(H, W), offsets ⌊(H − side)/2⌋, ⌊(W − side)/2⌋), PIL `resize((336, 336), BICUBIC)` on the
uint8 image, / 255 in float32, (x − CLIP mean) / CLIP std in float32, then `image_embeds`
L2-normalised per row. Images: u(s, 0, (y·W + x)·3 + c) noise of (H, W, seed s) = (256, 256, 9),
(300, 240, 11) and (360, 400, 12): an upsampling, a cropped upsampling and a downsampling.
Writes clip336_tiny.weights.safetensors and clip336_tiny.io.safetensors: `resized_sha256` (3, 32)
of the resized (336, 336, 3) uint8 images, `pixel_values_strided` (3, 3, 48, 48) = every 7th row
and column of the inputs, `pixel_values_sum` (3,) f64, `embedding` (3, 16). Needs torch,
transformers, Pillow.

preprocess: Pillow's `Image.resize` (8-bit fixed point, antialiased when shrinking) on formula
images, and the full preprocessing of each backbone: transformers' PIL-backend processors
(`CLIPImageProcessorPil` for openai/clip-vit-base-patch32; `BitImageProcessorPil` configured as
facebook/dinov2-base: shortest edge 256 bicubic, centre crop 224, ImageNet mean/std) and the
torchvision pipelines of MoCo v3 (Resize 256 bilinear, CenterCrop 224, ToTensor, Normalize) and
SimCLR (CenterCrop 0.875 of the short side, Resize 224 bicubic, ToTensor). Needs Pillow,
transformers, torchvision.
  formula images (H, W, 3) uint8, c the channel:
    gradient  (x + y + 64c) mod 256                       256 × 256
    checker   255 · ((⌊x/8⌋ + ⌊y/8⌋ + c) mod 2)           256 × 256
    edges     c=0: 235·[x > 100] + 20; c=1: 235·[y > 150] + 20; c=2: 235·[x + y > 256] + 20
    noise     ⌊256 · u(9, 0, (y·W + x)·3 + c)⌋            256 × 256
    wide      (2x + y + 50c) mod 256                      200 × 320
    big       ⌊256 · u(10, 0, (y·W + x)·3 + c)⌋           512 × 512

The formula (tests/models/model_inception.rs evaluates the same):
  u(seed, t, e) = (philox4x32_10(ctr=(e // 4, 0, t, 3), key=(seed, 0))[e % 4] + 0.5) · 2⁻³²
  (sitdiv's `rng::uniform(seed, t, 0, STREAM_WEIGHTS, len)`), all arithmetic in f64, then fl32:
  t = the tensor's rank among the float tensors' names sorted as byte strings (seed 2015 for the
  Inception, 2016 for the ResNet-50 trunk),
    4-D (conv) weights (Co, Ci, kh, kw)   (2u − 1) · √(6 / (Ci·kh·kw))
    2-D and 3-D weights (out, in…)        (2u − 1) · √(3 / fan_in)
    1-D weight, running_var, lambda1      0.5 + u   (a bottleneck's bn3.weight: 0.2u)
    other 1-D (biases, running_mean)      0.2u − 0.1
  image n of a case with seed s: pixel (y, x, c) = ⌊256 · u(s, n, (y·W + x)·3 + c)⌋ as uint8.
"""
import argparse
import hashlib
import json
import sys

import numpy as np

WEIGHT_SEED = 2015
STREAM_WEIGHTS = 3
# (name, image seed, count, side): upsampling as for 256 px samples, downsampling as for 512 px.
CASES = [("b2_256", 256, 2, 256), ("b1_512", 512, 1, 512)]
M32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(c, k0, k1):
    c = [np.asarray(v, dtype=np.uint64) for v in c]
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for r in range(10):
        if r > 0:
            k0 = (k0 + np.uint64(0x9E3779B9)) & M32
            k1 = (k1 + np.uint64(0xBB67AE85)) & M32
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & M32
        hi1, lo1 = p1 >> np.uint64(32), p1 & M32
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return c


def uniform(seed, index, stream, n):
    """`n` uniforms (f64) of (seed, index, draw 0, stream), as sitdiv's `rng::uniform`."""
    e = np.arange(n, dtype=np.uint64)
    block = e // np.uint64(4)
    z = np.zeros_like(block)
    lanes = philox4x32_10([block, z, z + np.uint64(index), z + np.uint64(stream)], seed & 0xFFFFFFFF, seed >> 32)
    x = np.choose((e % np.uint64(4)).astype(np.int64), lanes)
    return (x.astype(np.float64) + 0.5) * 2.0**-32


def formula_tensor(name, shape, t, seed=WEIGHT_SEED):
    u = uniform(seed, t, STREAM_WEIGHTS, int(np.prod(shape)))
    fan_in = int(np.prod(shape[1:]))
    if len(shape) == 4:
        v = (2 * u - 1) * np.sqrt(6.0 / fan_in)
    elif len(shape) in (2, 3):
        v = (2 * u - 1) * np.sqrt(3.0 / fan_in)
    elif len(shape) != 1:
        raise SystemExit(f"no formula for {name} {shape}")
    elif name.endswith("bn3.weight"):
        v = 0.2 * u
    elif name.endswith((".weight", ".running_var", ".lambda1")):
        v = 0.5 + u
    else:
        v = 0.2 * u - 0.1
    return v.astype(np.float32).reshape(shape)


def images(seed, count, side):
    out = np.empty((count, side, side, 3), dtype=np.uint8)
    for n in range(count):
        out[n] = np.floor(256 * uniform(seed, n, 0, side * side * 3)).astype(np.uint8).reshape(side, side, 3)
    return out


def inception(out_path):
    import torch
    import torchvision
    import pytorch_fid
    from pytorch_fid import inception as pfi
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
    from safetensors.numpy import save_file

    torch.set_num_threads(4)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    # pytorch-fid's own constructor and strict load, with the formula weights as the "download".
    holder = {}
    pfi.load_state_dict_from_url = lambda *_a, **_k: holder["sd"]
    # The same module tree, built without loading, to list its tensors.
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
    floats = sorted(k for k, v in net.state_dict().items() if v.is_floating_point())
    sd, shapes = {}, {}
    for k, v in net.state_dict().items():
        if v.is_floating_point():
            sd[k] = torch.from_numpy(formula_tensor(k, tuple(v.shape), floats.index(k)))
            shapes[k] = list(v.shape)
        else:
            sd[k] = torch.zeros_like(v)
    holder["sd"] = sd
    model = pfi.fid_inception_v3().eval()
    model.transform_input = False

    taps = {}
    model.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: taps.__setitem__("spatial", o))
    model.avgpool.register_forward_hook(lambda m, i, o: taps.__setitem__("pool", o))

    tensors = {}
    for case, seed, count, side in CASES:
        imgs = images(seed, count, side)
        with torch.no_grad():
            x = torch.from_numpy(imgs).permute(0, 3, 1, 2).to(torch.float32)
            x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
            x = (x - 128) / 128
            model(x)
            pool = taps["pool"].flatten(1)
            spatial = taps["spatial"][:, :7].permute(0, 2, 3, 1).reshape(count, -1)
            logits = pool @ model.fc.weight.T
        tensors[f"{case}.input_head"] = imgs.reshape(count, -1)[:, :16].astype(np.float32)
        tensors[f"{case}.resized"] = x[0].numpy().copy()
        tensors[f"{case}.pool"] = pool.numpy().copy()
        tensors[f"{case}.spatial"] = spatial.numpy().copy()
        tensors[f"{case}.logits"] = logits.numpy().copy()
        print(case, "pool", float(pool.abs().max()), "spatial", float(spatial.abs().max()), "logits", float(logits.abs().max()), file=sys.stderr)
    for name in ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.bn.running_var", "fc.weight"):
        tensors[f"check.{name}"] = sd[name].numpy().reshape(-1)[:8].copy()
    config = {
        "model": "pytorch_fid.inception.fid_inception_v3",
        "input": "uint8 NHWC -> float32 -> TF1 bilinear resize 299 (torch-fidelity, align_corners=False) -> (x-128)/128",
        "outputs": {"pool": "avgpool, (N, 2048)", "spatial": "Mixed_6d.branch1x1 post-ReLU [:, :7] in (h, w, c) order, (N, 2023)", "logits": "pool @ fc.weight.T, (N, 1008)"},
        "weights": "formula in scripts/dump_golden.py, seed %d" % WEIGHT_SEED,
        "cases": [{"name": c, "image_seed": s, "count": n, "side": d} for c, s, n, d in CASES],
        "tensor_shapes": shapes,
    }
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_golden.py inception, torch {torch.__version__}, torchvision {torchvision.__version__}, pytorch-fid {pytorch_fid.__version__}, numpy {np.__version__}",
        "config": json.dumps(config, sort_keys=True),
    }
    save_file(dict(sorted(tensors.items())), out_path, metadata=meta)


def formula_image(name):
    if name in ("noise", "big"):
        side, seed = (256, 9) if name == "noise" else (512, 10)
        return np.floor(256 * uniform(seed, 0, 0, side * side * 3)).astype(np.uint8).reshape(side, side, 3)
    h, w = (200, 320) if name == "wide" else (256, 256)
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    if name == "gradient":
        v = (x + y + 64 * c) % 256
    elif name == "checker":
        v = 255 * ((x // 8 + y // 8 + c) % 2)
    elif name == "edges":
        v = np.where(c == 0, 235 * (x > 100), np.where(c == 1, 235 * (y > 150), 235 * (x + y > 256))) + 20
    else:
        v = (2 * x + y + 50 * c) % 256
    return v.astype(np.uint8)


IMAGES = ["gradient", "checker", "edges", "noise", "wide", "big"]
# (name, filter, output (H, W)) of the plain resizes; every image goes through each.
RESIZES = [("bicubic_224", "BICUBIC", 224, 224), ("bilinear_256", "BILINEAR", 256, 256), ("bicubic_299x180", "BICUBIC", 299, 180)]


def preprocess(out_path):
    import PIL
    import torchvision
    import transformers
    from PIL import Image
    from safetensors.numpy import save_file
    from torchvision import transforms as T
    from transformers import BitImageProcessorPil, CLIPImageProcessorPil

    tensors = {}
    clip = CLIPImageProcessorPil()
    dino = BitImageProcessorPil(
        size={"shortest_edge": 256}, resample=3, crop_size={"height": 224, "width": 224},
        do_center_crop=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )
    moco = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(224), T.ToTensor(),
                      T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])

    def simclr(img):
        side = min(img.size)
        return T.Compose([T.CenterCrop(round(0.875 * side)), T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor()])(img)

    for name in IMAGES:
        arr = formula_image(name)
        pil = Image.fromarray(arr)
        tensors[f"{name}.head"] = arr.reshape(-1)[:64].copy()
        for op, flt, h, w in RESIZES:
            out = np.ascontiguousarray(np.asarray(pil.resize((w, h), getattr(Image, flt))))
            # Every output as its SHA-256; the noise image's in full too, for diagnosis.
            tensors[f"{name}.{op}.sha256"] = np.frombuffer(hashlib.sha256(out.tobytes()).digest(), dtype=np.uint8).copy()
            if name == "noise":
                tensors[f"{name}.{op}"] = out
        outs = {
            "clip": clip(pil, return_tensors="np")["pixel_values"][0],
            "dinov2": dino(pil, return_tensors="np")["pixel_values"][0],
            "mocov3": moco(pil).numpy(),
            "simclr": simclr(pil).numpy(),
        }
        for proc, v in outs.items():
            assert v.shape == (3, 224, 224) and v.dtype == np.float32, (proc, v.shape, v.dtype)
            tensors[f"{name}.{proc}"] = v[:, :8, :].copy()  # the first 8 rows of each channel
            tensors[f"{name}.{proc}_sum"] = np.array([v.astype(np.float64).sum()])
    config = {
        "images": IMAGES,
        "resizes": [{"name": n, "filter": f, "height": h, "width": w} for n, f, h, w in RESIZES],
        "processors": {
            "clip": "transformers CLIPImageProcessorPil() (openai/clip-vit-base-patch32 defaults)",
            "dinov2": "transformers BitImageProcessorPil(shortest_edge 256, bicubic, crop 224, ImageNet mean/std)",
            "mocov3": "torchvision Resize(256, bilinear), CenterCrop(224), ToTensor, Normalize(ImageNet)",
            "simclr": "torchvision CenterCrop(round(0.875 * short side)), Resize((224, 224), bicubic), ToTensor",
        },
        "stored": "<image>.<resize>.sha256: SHA-256 of the uint8 (H, W, 3) output (noise.<resize>: the output itself); <image>.<processor>: float32 rows 0..8 of (3, 224, 224); <processor>_sum: f64 sum of all",
    }
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_golden.py preprocess, Pillow {PIL.__version__}, transformers {transformers.__version__}, torchvision {torchvision.__version__}, numpy {np.__version__}",
        "config": json.dumps(config, sort_keys=True),
    }
    save_file(dict(sorted(tensors.items())), out_path, metadata=meta)


def vit(out_dir):
    """Tiny DINOv2 and CLIP image towers (transformers' own classes, random weights) on formula
    images through their PIL processors: dinov2_tiny.{weights,io}.safetensors and
    clip_tiny.{weights,io}.safetensors. DINOv2 keeps the 518-pixel release's 37 × 37 position
    grid, so a 224 input exercises the bicubic position resize; its weights are saved under the
    hub checkpoint's names (attention.attention.query, attention.output.dense, ...)."""
    import torch
    import transformers
    from PIL import Image
    from safetensors.numpy import save_file
    from transformers import (BitImageProcessorPil, CLIPImageProcessorPil, CLIPVisionConfig,
                              CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model)

    torch.set_num_threads(4)
    torch.manual_seed(2024)
    producer = f"scripts/dump_golden.py vit, torch {torch.__version__}, transformers {transformers.__version__}"

    def randomise(model):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("lambda1"):
                    p.copy_(torch.rand_like(p) + 0.5)
                elif "norm" in name and name.endswith("weight"):
                    p.copy_(1 + 0.2 * torch.randn_like(p))
                elif p.dim() >= 2 and "position" not in name:
                    p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
                else:
                    p.copy_(0.3 * torch.randn_like(p))
        return model.eval()

    names = ["gradient", "noise", "wide"]
    cases = [
        ("dinov2_tiny", Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                 image_size=518, patch_size=14)),
         BitImageProcessorPil(size={"shortest_edge": 256}, resample=3, crop_size={"height": 224, "width": 224},
                              do_center_crop=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]),
         lambda m, x: m(pixel_values=x).pooler_output,
         {"num_attention_heads": 4}),
        ("clip_tiny", CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                                     intermediate_size=80, image_size=224, patch_size=32,
                                                                     projection_dim=16)),
         CLIPImageProcessorPil(),
         lambda m, x: m(pixel_values=x).image_embeds,
         {"num_attention_heads": 4}),
    ]
    hub = {"attention.q_proj": "attention.attention.query", "attention.k_proj": "attention.attention.key",
           "attention.v_proj": "attention.attention.value", "attention.o_proj": "attention.output.dense"}
    for tag, model, proc, embed, cfg in cases:
        randomise(model)
        sd = {}
        for k, v in model.state_dict().items():
            for a, b in hub.items():
                k = k.replace(a, b) if tag.startswith("dinov2") else k
            sd[k] = v.detach().numpy().copy()
        x = torch.from_numpy(np.stack([proc(Image.fromarray(formula_image(n)), return_tensors="np")["pixel_values"][0] for n in names]))
        with torch.no_grad():
            e = embed(model, x)
        meta = {"format": "sitdiv-golden", "version": "1", "producer": producer, "config": json.dumps(cfg, sort_keys=True)}
        save_file(dict(sorted(sd.items())), f"{out_dir}/{tag}.weights.safetensors", metadata=meta)
        io_meta = dict(meta, config=json.dumps({"images": names, "model": cfg}, sort_keys=True))
        save_file({"embedding": e.numpy().copy()}, f"{out_dir}/{tag}.io.safetensors", metadata=io_meta)
        print(tag, e.shape, float(e.abs().max()), file=sys.stderr)


CLIP336_IMAGES = [(256, 256, 9), (300, 240, 11), (360, 400, 12)]
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def cmmd_preprocess(img, size=336):
    """CMMD's input: centre square crop, PIL bicubic to size × size on uint8, / 255, CLIP mean/std
    (float32), as (3, size, size); and the resized uint8 image."""
    from PIL import Image

    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    im = Image.fromarray(img).crop((left, top, left + side, top + side))
    im = im.resize((size, size), resample=Image.BICUBIC)
    r = np.asarray(im)
    x = (r.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    return x.transpose(2, 0, 1).copy(), r


def clip336(out_dir):
    """Tiny CLIP image tower in the L/14-336 geometry with formula weights, through CMMD's
    preprocessing: clip336_tiny.{weights,io}.safetensors."""
    import torch
    import transformers
    from safetensors.numpy import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.set_num_threads(4)
    producer = f"scripts/dump_golden.py clip336, torch {torch.__version__}, transformers {transformers.__version__}"
    cfg = CLIPVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                           image_size=336, patch_size=14, projection_dim=16, hidden_act="quick_gelu")
    model = CLIPVisionModelWithProjection(cfg).eval()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for t, name in enumerate(sorted(params, key=lambda n: n.encode())):
            p = params[name]
            p.copy_(torch.from_numpy(formula_tensor(name, tuple(p.shape), t, seed=2019)))
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if v.is_floating_point()}
    imgs = [np.floor(256 * uniform(s, 0, 0, h * w * 3)).astype(np.uint8).reshape(h, w, 3) for h, w, s in CLIP336_IMAGES]
    prep = [cmmd_preprocess(im) for im in imgs]
    x = np.stack([p[0] for p in prep])  # (N, 3, 336, 336)
    sha = np.stack([np.frombuffer(hashlib.sha256(p[1].tobytes()).digest(), dtype=np.uint8) for p in prep])
    with torch.no_grad():
        e = model(pixel_values=torch.from_numpy(x)).image_embeds
    e = e / torch.linalg.norm(e, dim=-1, keepdim=True)
    model_cfg = {"num_attention_heads": 4}
    meta = {"format": "sitdiv-golden", "version": "1", "producer": producer, "config": json.dumps(model_cfg, sort_keys=True)}
    save_file(dict(sorted(sd.items())), f"{out_dir}/clip336_tiny.weights.safetensors", metadata=meta)
    io_cfg = {"images": [{"height": h, "width": w, "seed": s} for h, w, s in CLIP336_IMAGES], "model": model_cfg,
              "weights_seed": 2019, "preprocess": "cmmd: centre square crop, PIL bicubic 336, /255, CLIP mean/std",
              "embedding": "image_embeds / ||image_embeds||"}
    io_meta = dict(meta, config=json.dumps(io_cfg, sort_keys=True))
    # The full inputs would take 4 MB: the resized images' SHA-256, every 7th row and column of
    # the normalised inputs, and each input's sum (f64).
    io = {"resized_sha256": sha, "pixel_values_strided": x[:, :, ::7, ::7].copy(),
          "pixel_values_sum": x.astype(np.float64).sum(axis=(1, 2, 3)), "embedding": e.numpy().copy()}
    save_file(io, f"{out_dir}/clip336_tiny.io.safetensors", metadata=io_meta)
    print("clip336_tiny", x.shape, e.shape, float(e.abs().max()), file=sys.stderr)


def resnet(out_path):
    """torchvision's resnet50 on formula weights (seed 2016, trunk only) and the formula images
    through the MoCo v3 preprocessing: the global-average-pooled features (N, 2048)."""
    import torch
    import torchvision
    from PIL import Image
    from safetensors.numpy import save_file
    from torchvision import transforms as T

    torch.set_num_threads(4)
    net = torchvision.models.resnet50(weights=None).eval()
    sd = net.state_dict()
    floats = sorted(k for k, v in sd.items() if v.is_floating_point() and not k.startswith("fc."))
    for k in floats:
        sd[k] = torch.from_numpy(formula_tensor(k, tuple(sd[k].shape), floats.index(k), seed=2016))
    net.load_state_dict(sd)
    taps = {}
    net.avgpool.register_forward_hook(lambda m, i, o: taps.__setitem__("pool", o.flatten(1)))
    prep = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(224), T.ToTensor(),
                      T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    names = ["gradient", "noise"]
    x = torch.stack([prep(Image.fromarray(formula_image(n))) for n in names])
    with torch.no_grad():
        net(x)
    pool = taps["pool"].numpy().copy()
    print("resnet50 pool max", float(np.abs(pool).max()), file=sys.stderr)
    tensors = {"pool": pool}
    for k in ("conv1.weight", "layer4.2.bn3.weight", "layer1.0.downsample.1.running_var"):
        tensors[f"check.{k}"] = sd[k].numpy().reshape(-1)[:8].copy()
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_golden.py resnet, torch {torch.__version__}, torchvision {torchvision.__version__}",
        "config": json.dumps({"model": "torchvision.models.resnet50 (trunk, formula weights seed 2016)", "images": names,
                              "preprocess": "MoCo v3: Resize(256, bilinear), CenterCrop(224), ToTensor, Normalize(ImageNet)"}),
    }
    save_file(tensors, out_path, metadata=meta)


def lpips_case(out_path):
    """lpips.LPIPS(net='alex'|'vgg') with its packaged v0.1 linear heads and a formula trunk
    (seed 2017 alex, 2018 vgg; the trunk's net.* tensors ranked alone), on four formula images:
    every pair's distance as `lpips` computes it (one forward pair per call)."""
    import lpips
    import torch
    from safetensors.numpy import save_file

    torch.set_num_threads(4)
    side = 64
    imgs = [formula_image("gradient")[:side, :side], formula_image("checker")[:side, :side],
            np.floor(256 * uniform(11, 0, 0, side * side * 3)).astype(np.uint8).reshape(side, side, 3),
            np.floor(256 * uniform(11, 1, 0, side * side * 3)).astype(np.uint8).reshape(side, side, 3)]
    x = [lpips.im2tensor(i) for i in imgs]
    tensors = {}
    for net, seed in (("alex", 2017), ("vgg", 2018)):
        m = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        sd = m.state_dict()
        trunk = sorted(k for k in sd if k.startswith("net."))
        for k in trunk:
            sd[k] = torch.from_numpy(formula_tensor(k, tuple(sd[k].shape), trunk.index(k), seed=seed))
        m.load_state_dict(sd)
        d = []
        with torch.no_grad():
            for i in range(len(x)):
                for j in range(i + 1, len(x)):
                    d.append(float(m(x[i], x[j])))
        tensors[f"{net}.pairs"] = np.array(d, dtype=np.float64)
        for k, v in sd.items():
            if not k.startswith("net."):
                tensors[f"{net}.{k}"] = v.numpy().copy()
        print(net, d, file=sys.stderr)
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_golden.py lpips, torch {torch.__version__}, lpips (v0.1 heads)",
        "config": json.dumps({"images": "gradient and checker cropped to 64, noise u(11, 0) and u(11, 1) 64 x 64",
                              "pairs": "(0,1),(0,2),(0,3),(1,2),(1,3),(2,3)", "trunk_seeds": {"alex": 2017, "vgg": 2018}}),
    }
    save_file(tensors, out_path, metadata=meta)


def dinov2_release(out_dir):
    """A tiny facebookresearch/dinov2 `DinoVisionTransformer` (the release's own code, from the
    checkout in $DINOV2_SRC; hidden 32, 2 blocks, 4 heads, 518 px / patch 14, layer scale,
    interpolate_offset 0.1, no antialias, as the hub's dinov2_vitl14) with random weights, on three
    formula images through dgm-eval's DINOv2 transform (PIL Resize((224, 224), BICUBIC), ToTensor,
    ImageNet Normalize): the class token after the final norm (x_norm_clstoken).
    Writes dinov2_release_tiny.{weights,io}.safetensors."""
    import os
    os.environ.setdefault("XFORMERS_DISABLED", "1")
    sys.path.insert(0, os.environ["DINOV2_SRC"])
    import torch
    from PIL import Image
    from safetensors.numpy import save_file
    from torchvision import transforms as T
    from dinov2.models.vision_transformer import DinoVisionTransformer

    torch.set_num_threads(4)
    torch.manual_seed(2025)
    m = DinoVisionTransformer(img_size=518, patch_size=14, embed_dim=32, depth=2, num_heads=4, mlp_ratio=4,
                              init_values=1.0, block_chunks=0, interpolate_offset=0.1, interpolate_antialias=False).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("gamma"):
                p.copy_(torch.rand_like(p) + 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.dim() >= 2 and name not in ("pos_embed", "cls_token", "mask_token"):
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
            else:
                p.copy_(0.3 * torch.randn_like(p))
    prep = T.Compose([T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                      T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])
    names = ["gradient", "noise", "wide"]
    x = torch.stack([prep(Image.fromarray(formula_image(n))) for n in names])
    with torch.no_grad():
        e = m.forward_features(x)["x_norm_clstoken"]
    meta = {"format": "sitdiv-golden", "version": "1",
            "producer": f"scripts/dump_golden.py dinov2-release, torch {torch.__version__}, facebookresearch/dinov2 models/vision_transformer.py",
            "config": json.dumps({"embed_dim": 32, "depth": 2, "num_heads": 4, "patch_size": 14, "img_size": 518,
                                  "interpolate_offset": 0.1, "images": names}, sort_keys=True)}
    save_file({k: v.numpy().copy() for k, v in sorted(m.state_dict().items())}, f"{out_dir}/dinov2_release_tiny.weights.safetensors", metadata=meta)
    save_file({"embedding": e.numpy().copy()}, f"{out_dir}/dinov2_release_tiny.io.safetensors", metadata=meta)
    print("dinov2 release", tuple(e.shape), float(e.abs().max()), file=sys.stderr)


def dreamsim_case(out_dir):
    """The `dreamsim` package's own ensemble (`dreamsim.dreamsim()`: DINO ViT-B/16 class token of
    block 11, CLIP and OpenCLIP ViT-B/16 projected embeddings, LoRA on every attn.qkv, the embedding
    centred and L2-normalised) at a tiny width, on four formula images through its own preprocessing
    (Resize((224, 224), bicubic), ToTensor). The towers keep the released shapes but the width:
    DINO 12 blocks (the package reads block 11), 32 wide, 2 heads; CLIP and OpenCLIP 2 blocks, 32
    wide, 2 heads, projection to 16. Only the model constructors are replaced (the package builds
    ViT-B/16 from torch.hub): each tower is the package's `VisionTransformer`, the CLIP towers go
    through its `load_clip_as_dino` / `load_open_clip_as_dino`. Random weights (seed 2026) and LoRA
    factors (r 16, alpha 8; the release uses alpha 0.5, scaled up here so the LoRA term is well
    above the test tolerance) are saved in the release's file layout, converted with
    `convert_weights.py dreamsim` (LoRA merged), and the converted file is committed.
    Writes dreamsim_tiny.{weights,io}.safetensors. Needs dreamsim 0.2.1, peft, open_clip_torch."""
    import os
    import shutil
    import subprocess
    import tempfile

    import dreamsim
    import peft
    import torch
    from PIL import Image
    from safetensors.numpy import save_file
    from dreamsim.feature_extraction import extractor
    from dreamsim.feature_extraction.load_clip_as_dino import load_clip_as_dino
    from dreamsim.feature_extraction.load_open_clip_as_dino import load_open_clip_as_dino
    from dreamsim.feature_extraction.vision_transformer import VisionTransformer

    torch.set_num_threads(4)
    torch.manual_seed(2026)
    tower = {"patch_size": 16, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 4, "qkv_bias": True}
    dino_kwargs = dict(tower, depth=12)
    clip_kwargs = dict(tower, depth=2)

    def randomise(model):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name and name.endswith("weight"):
                    p.copy_(1 + 0.2 * torch.randn_like(p))
                elif p.dim() >= 2 and name not in ("pos_embed", "cls_token"):
                    p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
                else:
                    p.copy_(0.3 * torch.randn_like(p))
        return model

    def dino_model():
        from functools import partial
        return VisionTransformer(**dino_kwargs, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))

    src = tempfile.mkdtemp(prefix="dreamsim-golden-")
    os.makedirs(f"{src}/checkpoints")
    torch.save(randomise(dino_model()).state_dict(), f"{src}/checkpoints/dino_vitbase16_pretrain.pth")
    torch.save({"student": {}}, f"{src}/dino_vitb16_pretrain.pth")  # the DINO head: unused by the cls feature
    for name in ("clip", "open_clip"):
        vit = VisionTransformer(**clip_kwargs)
        vit.pos_drop = torch.nn.LayerNorm(vit.embed_dim)  # ln_pre, as the converted CLIP files hold it
        sd = randomise(vit).state_dict()
        sd["proj"] = torch.randn(32, 16) / 32 ** 0.5
        torch.save({"state_dict": sd}, f"{src}/{name}_vitb16_pretrain.pth.tar")
        # The package's ViT-L path takes constructor arguments from the file: the tiny tower goes
        # through the same loader.
        torch.save({"kwargs": clip_kwargs, "state_dict": dict(sd)}, f"{src}/{name}l14_as_dino_vitl.pth.tar")

    def create_model(model_type, load_dir):
        if model_type == "dino_vitb16":  # torch.hub's dino_vitb16 at the tiny width
            m = dino_model()
            m.load_state_dict(torch.load(f"{load_dir}/checkpoints/dino_vitbase16_pretrain.pth", weights_only=True))
            return m
        if model_type == "clip_vitb16":
            return load_clip_as_dino(16, load_dir, l14=True)
        if model_type == "open_clip_vitb16":
            return load_open_clip_as_dino(16, load_dir, l14=True)
        raise SystemExit(f"unexpected tower {model_type}")

    extractor.ViTExtractor.create_model = staticmethod(create_model)
    # The LoRA adapter in the release's layout (adapter_config.json + weights), random factors.
    cfg = dreamsim.model.dreamsim_args["model_config"]["ensemble"]
    base = dreamsim.model.PerceptualModel(**cfg, device="cpu", load_dir=src, normalize_embeds=True)
    lora = peft.LoraConfig(r=16, lora_alpha=8, lora_dropout=0.3, bias="none", target_modules=["qkv"])
    with_lora = peft.get_peft_model(base, lora)
    with torch.no_grad():
        for name, p in with_lora.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) / p.shape[1] ** 0.5)
    with_lora.save_pretrained(f"{src}/ensemble_lora")

    model, preprocess = dreamsim.dreamsim(pretrained=True, device="cpu", cache_dir=src)
    names = ["gradient", "checker", "noise", "wide"]
    x = torch.cat([preprocess(Image.fromarray(formula_image(n))) for n in names])
    with torch.no_grad():
        e = model.embed(x)
        d01 = float(model(x[:1], x[1:2]))
        plain, _ = dreamsim.dreamsim(pretrained=False, device="cpu", cache_dir=src)
        e0 = plain.embed(x)
    lora_effect = float((e - e0).abs().max() / e.abs().max())
    print("dreamsim", tuple(e.shape), "LoRA changes the embedding by", lora_effect, file=sys.stderr)
    assert lora_effect > 1e-2, lora_effect

    weights = f"{out_dir}/dreamsim_tiny.weights.safetensors"
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "convert_weights.py"), "dreamsim", src,
                    weights, "--num-heads", "2"], check=True)
    config = {"towers": {"dino": dino_kwargs, "clip": clip_kwargs, "open_clip": clip_kwargs}, "images": names,
              "lora": {"r": 16, "lora_alpha": 8, "target_modules": ["qkv"]}, "seed": 2026}
    meta = {"format": "sitdiv-golden", "version": "1",
            "producer": f"scripts/dump_golden.py dreamsim, torch {torch.__version__}, dreamsim 0.2.1, peft {peft.__version__}",
            "config": json.dumps(config, sort_keys=True)}
    save_file({"embedding": e.numpy().copy(), "distance_0_1": np.array([d01], dtype=np.float64)},
              f"{out_dir}/dreamsim_tiny.io.safetensors", metadata=meta)
    shutil.rmtree(src)


def simclr(out_path):
    """SimCLR v2 r50_1x_sk0 as Separius/SimCLRv2-Pytorch builds it (its resnet.py, from the checkout
    in $SIMCLR_SRC), holding the ResNet-50 formula weights (seed 2016, torchvision names) moved to
    its module names by the inverse of `convert_weights.py simclr`'s renaming; a wrong renaming
    puts tensors in the wrong modules (in a first block, downsample.0 and conv3 have one shape).
    The converter is run on the saved checkpoint and must give the formula tensors back. Output:
    the pooled trunk features `net(x).mean([2, 3])` (N, 2048) of the formula images through
    SimCLR's preprocessing (centre crop 0.875, Resize((224, 224)) bicubic, ToTensor)."""
    import os
    import shutil
    import subprocess
    import tempfile

    import torch
    import torchvision
    from PIL import Image
    from safetensors.numpy import save_file
    from safetensors.torch import load_file
    from torchvision import transforms as T

    sys.path.insert(0, os.environ["SIMCLR_SRC"])
    sys.path.insert(0, os.path.dirname(__file__))
    from convert_weights import simclr_to_torchvision
    from resnet import get_resnet

    torch.set_num_threads(4)
    tv = torchvision.models.resnet50(weights=None).state_dict()
    floats = sorted(k for k, v in tv.items() if v.is_floating_point() and not k.startswith("fc."))
    formula = {k: torch.from_numpy(formula_tensor(k, tuple(tv[k].shape), floats.index(k), seed=2016)) for k in floats}
    model, _ = get_resnet(50, 1, 0)
    sd = model.state_dict()
    for k in sd:
        name = simclr_to_torchvision(k)
        if name is not None and name in formula:
            assert sd[k].shape == formula[name].shape, (k, name)
            sd[k] = formula[name]
    model.load_state_dict(sd)
    model.eval()
    tmp = tempfile.mkdtemp(prefix="simclr-golden-")
    torch.save({"resnet": model.state_dict(), "head": {}}, f"{tmp}/r50_1x_sk0.pth")
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "convert_weights.py"), "simclr",
                    f"{tmp}/r50_1x_sk0.pth", f"{tmp}/simclr.safetensors"], check=True)
    back = load_file(f"{tmp}/simclr.safetensors")
    assert sorted(back) == floats and all(torch.equal(back[k], formula[k]) for k in floats), "converter round trip"
    shutil.rmtree(tmp)

    def prep(img):
        side = min(img.size)
        return T.Compose([T.CenterCrop(round(0.875 * side)), T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor()])(img)

    names = ["gradient", "noise"]
    x = torch.stack([prep(Image.fromarray(formula_image(n))) for n in names])
    with torch.no_grad():
        pool = model(x).numpy().copy()
    print("simclr pool max", float(np.abs(pool).max()), file=sys.stderr)
    meta = {"format": "sitdiv-golden", "version": "1",
            "producer": f"scripts/dump_golden.py simclr, torch {torch.__version__}, Separius/SimCLRv2-Pytorch resnet.py",
            "config": json.dumps({"model": "get_resnet(50, 1, 0) with the ResNet-50 formula weights (seed 2016)", "images": names,
                                  "preprocess": "CenterCrop(round(0.875 * short side)), Resize((224, 224), bicubic), ToTensor"})}
    save_file({"pool": pool}, out_path, metadata=meta)


def ldm_vae_name(key):
    """The original LDM checkpoint's name of a diffusers AutoencoderKL encoder key."""
    k = key.replace("encoder.conv_norm_out", "encoder.norm_out")
    k = k.replace("mid_block.resnets.0", "mid.block_1").replace("mid_block.resnets.1", "mid.block_2")
    k = k.replace("mid_block.attentions.0.group_norm", "mid.attn_1.norm")
    for a, b in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
        k = k.replace(f"mid_block.attentions.0.{a}.", f"mid.attn_1.{b}.")
    k = k.replace("conv_shortcut", "nin_shortcut").replace("down_blocks.", "down.")
    k = k.replace(".resnets.", ".block.").replace(".downsamplers.0.", ".downsample.")
    return k


def vae_encoder(out_path):
    """diffusers' AutoencoderKL encode path (Encoder, quant_conv, DiagonalGaussianDistribution) of
    a small config on formula weights (seed 2018; the ranks t over the encoder.* and quant_conv.*
    names only), on formula images scaled to [-1, 1] (x / 127.5 - 1): the moments, the posterior
    mean, logvar (clamped to [-30, 20]) and std, and the sample mean + std * noise for a given noise.
    The metadata's ldm_key_map names every tensor as the original LDM checkpoint does (checked here
    against diffusers' own convert_ldm_vae_checkpoint)."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors.numpy import save_file

    torch.set_num_threads(4)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True)
    cfg = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
               up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[32, 64], layers_per_block=1,
               latent_channels=4, norm_num_groups=8, sample_size=32)
    vae = AutoencoderKL(**cfg).eval()
    sd = vae.state_dict()
    names = sorted(k for k in sd if k.startswith(("encoder.", "quant_conv.")))
    for t, k in enumerate(names):
        sd[k] = torch.from_numpy(formula_tensor(k, tuple(sd[k].shape), t, seed=2018))
    vae.load_state_dict(sd)
    ldm = {k: ldm_vae_name(k) for k in names}
    attn = (".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight")
    ldm_sd = {ldm[k]: sd[k][:, :, None, None] if k.endswith(attn) else sd[k] for k in names}
    back = convert_ldm_vae_checkpoint(ldm_sd, cfg)
    assert sorted(back) == names and all(torch.equal(back[k], sd[k]) for k in names), "LDM map"
    taps = {}
    for i, blk in enumerate(vae.encoder.down_blocks):
        blk.register_forward_hook(lambda m, a, o, i=i: taps.__setitem__(f"tap.encoder.down_blocks.{i}.out", o))
    vae.encoder.mid_block.register_forward_hook(lambda m, a, o: taps.__setitem__("tap.encoder.mid_block.out", o))
    tensors = {}
    for case, (seed, count, h, w) in {"b2_32": (40, 2, 32, 32), "b1_24x40": (41, 1, 24, 40)}.items():
        imgs = np.stack([np.floor(256 * uniform(seed, n, 0, h * w * 3)).astype(np.uint8).reshape(h, w, 3)
                         for n in range(count)])
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            moments = vae.quant_conv(vae.encoder(x))
            dist = vae.encode(x).latent_dist
        noise = torch.from_numpy((2 * uniform(seed + 100, 0, 0, dist.mean.numel()) - 1)
                                 .astype(np.float32).reshape(dist.mean.shape))
        sample = dist.mean + dist.std * noise  # DiagonalGaussianDistribution.sample with this noise
        out = {"images": imgs, "x": x, "moments": moments, "mean": dist.mean, "logvar": dist.logvar,
               "std": dist.std, "noise": noise, "sample": sample, **taps}
        for k, v in out.items():
            tensors[f"{case}.{k}"] = np.ascontiguousarray(v.numpy() if torch.is_tensor(v) else v)
        print(case, "mean max", float(dist.mean.abs().max()), "std range",
              float(dist.std.min()), float(dist.std.max()), file=sys.stderr)
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_golden.py vae-encoder, diffusers {diffusers.__version__}, torch {torch.__version__}, "
                    "CPU float32, TF32 off, deterministic algorithms",
        "config": json.dumps(cfg),
        "ldm_key_map": json.dumps(ldm),
        "note": "formula weights seed 2018 over the sorted encoder.* and quant_conv.* names; x = images / 127.5 - 1",
    }
    save_file(tensors, out_path, metadata=meta)


def crop_image(h, w):
    """A formula image (H, W, 3) uint8 with edges and gradients: (3x + 5y + 64c + 17((x//7 + y//5) mod 3)) mod 256."""
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((3 * x + 5 * y + 64 * c + 17 * ((x // 7 + y // 5) % 3)) % 256).astype(np.uint8)


def center_crop_arr(pil_image, image_size):
    """ADM's center_crop_arr (guided-diffusion, image_datasets.py), as SiT's training uses it."""
    from PIL import Image
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y: crop_y + image_size, crop_x: crop_x + image_size]


def adm_crop(out_path):
    """ADM's center crop to 256 of formula images of several sizes and aspect ratios (BOX halvings
    while the short side is >= 512, then bicubic, then the crop): the SHA-256 of each output. And
    JPEG files of formula images (Pillow's encoder: quality 90 with 4:2:0 chroma, quality 95 with
    4:4:4) with Pillow's decode of each (libjpeg-turbo)."""
    import io
    import PIL
    from PIL import Image
    from safetensors.numpy import save_file

    sizes = [(256, 256), (300, 400), (512, 512), (513, 700), (1024, 768), (260, 1000), (600, 333), (64, 96),
             (1100, 2050)]
    tensors, shapes = {}, []
    for h, w in sizes:
        out = center_crop_arr(Image.fromarray(crop_image(h, w)), 256)
        assert out.shape == (256, 256, 3), (h, w, out.shape)
        tensors[f"crop_{h}x{w}.sha256"] = np.frombuffer(hashlib.sha256(out.tobytes()).digest(), dtype=np.uint8).copy()
        shapes.append([h, w])
    tensors["crop_300x400.image"] = center_crop_arr(Image.fromarray(crop_image(300, 400)), 256)
    for name, (h, w, q, sub) in {"q90_420": (120, 168, 90, 2), "q95_444": (96, 80, 95, 0), "q75_420_odd": (77, 131, 75, 2)}.items():
        buf = io.BytesIO()
        Image.fromarray(crop_image(h, w)).save(buf, format="JPEG", quality=q, subsampling=sub)
        data = buf.getvalue()
        tensors[f"jpeg_{name}.bytes"] = np.frombuffer(data, dtype=np.uint8).copy()
        tensors[f"jpeg_{name}.decoded"] = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_golden.py adm-crop, Pillow {PIL.__version__} (JPEG: libjpeg-turbo)",
        "config": json.dumps({"image_size": 256, "sizes": shapes}),
    }
    save_file(tensors, out_path, metadata=meta)


def valloss(out_path):
    """Upstream SiT's `Transport.training_losses` (willisma/SiT, path SIT_SRC) of the tiny SiT
    (tests/golden/sit_tiny.weights.safetensors) on 8 formula latents with labels 0..7, at the
    centre of each of 4 time segments, t = (i + 0.5)/4, with given noise: `Transport.sample` is
    replaced by one returning these (t, x0, x1), so the rest is upstream's own code. Paths linear,
    GVP and VP with the velocity prediction, and linear with the noise and score predictions
    (loss weight none). Latents x1 = 1.7(2u - 1) (seed 60), noise x0[i] = 2(2u - 1) (seed 70 + i)."""
    import os
    import torch
    from safetensors.numpy import save_file
    from safetensors.torch import load_file

    src = os.environ.get("SIT_SRC")
    if not src:
        raise SystemExit("set SIT_SRC to a checkout of willisma/SiT")
    sys.path.insert(0, src)
    from models import SiT
    from transport import create_transport

    torch.set_num_threads(4)
    torch.use_deterministic_algorithms(True)
    cfg = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4, mlp_ratio=4.0,
               num_classes=10, learn_sigma=True, class_dropout_prob=0.1)
    model = SiT(**cfg).eval()
    model.load_state_dict(load_file("tests/golden/sit_tiny.weights.safetensors"))
    n, shape, segments = 8, (8, 4, 8, 8), 4
    numel = int(np.prod(shape))
    x1 = torch.from_numpy((1.7 * (2 * uniform(60, 0, 0, numel) - 1)).astype(np.float32).reshape(shape))
    y = torch.arange(n, dtype=torch.int64)
    x0 = torch.stack([torch.from_numpy((2 * (2 * uniform(70 + i, 0, 0, numel) - 1)).astype(np.float32).reshape(shape))
                      for i in range(segments)])
    t = torch.tensor([(i + 0.5) / segments for i in range(segments)], dtype=torch.float32)
    tensors = {"x1": x1.numpy(), "y": y.numpy(), "x0": x0.numpy(), "t": t.numpy()}
    cases = [("Linear", "velocity"), ("GVP", "velocity"), ("VP", "velocity"), ("Linear", "noise"), ("Linear", "score")]
    for path, pred in cases:
        tr = create_transport(path, pred, None, None, None)
        losses = []
        for i in range(segments):
            tr.sample = lambda x, i=i: (t[i].repeat(n), x0[i], x)
            with torch.no_grad():
                losses.append(tr.training_losses(model, x1, dict(y=y))["loss"])
        tensors[f"loss.{path.lower()}.{pred}"] = torch.stack(losses).numpy()
        print(path, pred, [float(v) for v in torch.stack(losses).mean(1)], file=sys.stderr)
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_golden.py valloss, willisma/SiT transport.training_losses, torch {torch.__version__}, CPU float32",
        "config": json.dumps({"model": cfg, "segments": segments, "cases": cases}),
    }
    save_file(tensors, out_path, metadata=meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("inception")
    p.add_argument("--out", default="tests/golden/inception_fid.io.safetensors")
    p = sub.add_parser("preprocess")
    p.add_argument("--out", default="tests/golden/preprocess.io.safetensors")
    p = sub.add_parser("resnet")
    p.add_argument("--out", default="tests/golden/resnet50_formula.io.safetensors")
    p = sub.add_parser("lpips")
    p.add_argument("--out", default="tests/golden/lpips_formula.io.safetensors")
    p = sub.add_parser("dinov2-release")
    p.add_argument("--out-dir", dest="out", default="tests/golden")
    p = sub.add_parser("simclr")
    p.add_argument("--out", default="tests/golden/simclr_formula.io.safetensors")
    p = sub.add_parser("dreamsim")
    p.add_argument("--out-dir", dest="out", default="tests/golden")
    p = sub.add_parser("adm-crop")
    p.add_argument("--out", default="tests/golden/adm_crop.io.safetensors")
    p = sub.add_parser("valloss")
    p.add_argument("--out", default="tests/golden/valloss_tiny.io.safetensors")
    p = sub.add_parser("vae-encoder")
    p.add_argument("--out", default="tests/golden/vae_encoder.io.safetensors")
    p = sub.add_parser("vit")
    p.add_argument("--out-dir", dest="out", default="tests/golden")
    p = sub.add_parser("clip336")
    p.add_argument("--out-dir", dest="out", default="tests/golden")
    args = ap.parse_args()
    {"inception": inception, "preprocess": preprocess, "resnet": resnet, "vit": vit, "clip336": clip336, "lpips": lpips_case, "dinov2-release": dinov2_release,
     "dreamsim": dreamsim_case, "simclr": simclr, "vae-encoder": vae_encoder, "adm-crop": adm_crop, "valloss": valloss}[args.what](args.out)


if __name__ == "__main__":
    main()
