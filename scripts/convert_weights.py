#!/usr/bin/env python3
"""Convert released weights to safetensors for sitdiv: names unchanged, architecture in the metadata.

    python scripts/convert_weights.py sit SiT-XL-2-256x256.pt sit-xl-2-256.safetensors --model SiT-XL/2
    python scripts/convert_weights.py repa last.pt repa-sit-xl-2-256.safetensors
    python scripts/convert_weights.py vae sd-vae-ft-ema/ sd-vae-ft-ema.safetensors
    python scripts/convert_weights.py inception pt_inception-2015-12-05-6726825d.pth inception-fid.safetensors
    python scripts/convert_weights.py dinov2 dinov2-base/ dinov2-base.safetensors
    python scripts/convert_weights.py dinov2-release dinov2_vitl14_pretrain.pth dinov2-l14.safetensors
    python scripts/convert_weights.py clip clip-vit-base-patch32/ clip-b32.safetensors
    python scripts/convert_weights.py clip clip-vit-large-patch14-336/ clip-l14-336.safetensors   # CMMD
    python scripts/convert_weights.py mocov3 r-50-1000ep.pth.tar mocov3-r50.safetensors
    python scripts/convert_weights.py simclr r50_1x_sk0.pth simclr-r50.safetensors
    python scripts/convert_weights.py resnet50 resnet50-torchvision-names.pth resnet50.safetensors
    python scripts/convert_weights.py lpips alex lpips-alex.safetensors      # or vgg
    python scripts/convert_weights.py dreamsim ./models dreamsim-ensemble.safetensors

sit: a raw state_dict (the released SiT-XL-2-256x256.pt) or a train.py checkpoint ({"model", "ema",
...}; the EMA weights are taken, as upstream's find_model does). The constructor arguments go into
__metadata__["config"], so `sitdiv sample --weights` needs no --model. A file whose shapes do not fit
--model / --image-size is refused, naming the preset they fit.

repa: a REPA checkpoint (sihyun-yu/REPA: the released last.pt, or a train.py checkpoint whose
"ema" weights are taken, as its generate.py does); older checkpoints' decoder_blocks.N are renamed
blocks.(N + encoder depth), as its load_legacy_checkpoints does. Every name is kept, the projector
heads (projectors.*) included, which sitdiv ignores at sampling. The config is read from the shapes
(learn_sigma false: REPA's SiT predicts the velocity alone); heads from --num-heads, else the
preset of that depth and width. Sample it with REPA's samplers: sitdiv sample --mode repa-sde.

vae: a diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors or .bin),
one of those weight files, or an original Stable Diffusion / LDM .ckpt. Only the decoder half is
kept (post_quant_conv.* and decoder.*, with or without the first_stage_model. prefix), and with
--encoder the encoder half too (quant_conv.*, encoder.*: `sitdiv valloss` encodes images); the
diffusers config.json, when there is one, becomes __metadata__["config"].

inception: pytorch-fid's FID Inception weights (pt_inception-2015-12-05-6726825d.pth, from the
pytorch-fid GitHub release "fid_weights"; torch-fidelity's weights-inception-2015-12-05-6726825d.pth
holds the same tensors). Names are kept (Conv2d_1a_3x3.conv.weight, Mixed_6d.branch1x1.bn.*,
fc.weight, ...); BatchNorm's num_batches_tracked counters and any auxiliary head are dropped.

dinov2: a transformers folder of facebook/dinov2-* (config.json + model.safetensors or
pytorch_model.bin) or one of those files. Names are kept (hub or transformers >= 5 spelling, with or
without the dinov2. prefix); num_attention_heads goes into the metadata config.

dinov2-release: the original facebookresearch/dinov2 state_dict (dinov2_vitl14_pretrain.pth, as
torch.hub and dgm-eval load it for FD-DINOv2): names kept (cls_token, pos_embed, blocks.N.attn.qkv,
ls1.gamma, norm, ...); num_heads = embed_dim / 64 goes into the metadata config.

clip: a transformers folder of openai/clip-vit-* (CLIPModel or CLIPVisionModelWithProjection) or
one weight file. The image tower is kept (vision_model.*, visual_projection.weight); the text
tower and logit_scale are dropped; the vision config's num_attention_heads goes into the metadata.
openai/clip-vit-large-patch14-336 (CMMD's backbone, `--backbone clip-l14-336`) converts the same way:
its 336 px input size is read back from the 577-row position table.

mocov3: MoCo v3's ResNet-50 checkpoint (r-50-{100,300,1000}ep.pth.tar): state_dict keys
module.base_encoder.* with the prefix removed and the projection head (fc.*) dropped; the momentum
encoder and predictor are dropped. The result has torchvision's ResNet-50 names.

simclr: SimCLR v2 r50_1x_sk0 as ported to PyTorch by Separius/SimCLRv2-Pytorch (its convert.py
writes {"resnet": state_dict, "head": ...}): the trunk's module names (net.0 stem, net.{1..4}.blocks.N
with projection.shortcut / projection.bn.0 and the net.{0..5} conv/BN sequence) renamed to
torchvision's ResNet-50 (conv1, bn1, layerS.N.conv1..3, bn1..3, downsample.0/1), module by module;
fc and the contrastive head are dropped. Selective-kernel (sk1) and wider (2x, 3x) models are refused.

resnet50: any state_dict already in torchvision's ResNet-50 names; fc.* and num_batches_tracked are
dropped.

lpips: the source is the trunk name (alex or vgg): lpips.LPIPS(net=..., version='0.1') with its
packaged linear heads and torchvision's ImageNet trunk (downloaded by torchvision), saved under the
lpips state_dict names (net.slice*, lin*.model.1.weight, scaling_layer.*; the package's second
names of its heads, lins.N.*, are dropped). Needs the lpips package. --random-trunk (tests only,
e.g. scripts/check_weights.py) downloads nothing: the trunk keeps torchvision's random
initialisation after torch.manual_seed(--seed), so the same call in Python rebuilds the same model. sitdiv also reads a
safetensors file of the package's state_dict as it is (second names and BatchNorm counters are
ignored with a log line), as it does pytorch-fid's Inception state_dict.

dreamsim: the cache folder of `dreamsim.dreamsim(cache_dir=...)` after its first run (the ensemble:
ensemble_lora/, clip_vitb16_pretrain.pth.tar, open_clip_vitb16_pretrain.pth.tar, and the torch.hub
DINO ViT-B/16 it fetched into checkpoints/dino_vitbase16_pretrain.pth). The three towers are kept
under dino.*, clip.*, open_clip.* with the package's DINO-style names (blocks.N.attn.qkv, pos_drop =
CLIP's ln_pre, proj); the LoRA factors are merged into each target weight, W + (lora_alpha / r) B A,
in float64. Heads default to embed_dim / 64 (--num-heads to override, for every tower).

Needs: torch, safetensors (pip install torch safetensors).
"""
import argparse
import json
import os

import torch
from safetensors.torch import load_file, save_file

PRESETS = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6)}


def load_any(path):
    if path.endswith(".safetensors"):
        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(sd, dict) and "state_dict" in sd:  # LDM .ckpt
        sd = sd["state_dict"]
    return sd


def convert_sit(args):
    size, patch = args.model.replace("SiT-", "").replace("-", "/").split("/")
    depth, hidden, heads = PRESETS[size]
    sd = load_any(args.source)
    if isinstance(sd, dict) and "ema" in sd:
        sd = sd["ema"]
    tensors = {k: v.detach().float().contiguous() for k, v in sd.items()}
    if "x_embedder.proj.weight" not in tensors or "pos_embed" not in tensors:
        raise SystemExit(f"{args.source}: no x_embedder.proj.weight / pos_embed; not a SiT state_dict")
    # The config comes from --model and --image-size: refuse a file they do not describe, naming
    # what the tensors are, rather than write a config that sitdiv refuses tensor by tensor.
    width, _, p, _ = tensors["x_embedder.proj.weight"].shape
    found_depth = sum(1 for k in tensors if k.startswith("blocks.") and k.endswith(".adaLN_modulation.1.weight"))
    found_input = round(tensors["pos_embed"].shape[1] ** 0.5) * p
    if (found_depth, width, p, found_input) != (depth, hidden, int(patch), args.image_size // 8):
        guess = [f"SiT-{n}/{p}" for n, (dd, hh, _) in PRESETS.items() if (dd, hh) == (found_depth, width)]
        raise SystemExit(f"{args.source}: a SiT of depth {found_depth}, width {width}, patch {p} on {found_input}x{found_input} latents "
                         f"({guess[0] if guess else 'no preset'}, --image-size {found_input * 8}); --model {args.model} "
                         f"--image-size {args.image_size} describes depth {depth}, width {hidden}, patch {patch} on "
                         f"{args.image_size // 8}x{args.image_size // 8}")
    out_features = tensors["final_layer.linear.weight"].shape[0]
    rows = tensors["y_embedder.embedding_table.weight"].shape[0]
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
        "class_dropout_prob": 0.1 if rows > args.num_classes else 0.0,
    }
    return tensors, config


def convert_repa(args):
    sd = load_any(args.source)
    if isinstance(sd, dict) and "ema" in sd:
        sd = sd["ema"]
    tensors = {k: v.detach().float().contiguous() for k, v in sd.items()}
    if "x_embedder.proj.weight" not in tensors or "pos_embed" not in tensors:
        raise SystemExit(f"{args.source}: no x_embedder.proj.weight / pos_embed; not a REPA SiT state_dict")
    encoder_depth = len({k.split(".")[1] for k in tensors if k.startswith("blocks.")})
    for k in [k for k in tensors if k.startswith("decoder_blocks.")]:
        parts = k.split(".")
        tensors[".".join(["blocks", str(int(parts[1]) + encoder_depth)] + parts[2:])] = tensors.pop(k)
    width, channels, p, _ = tensors["x_embedder.proj.weight"].shape
    depth = sum(1 for k in tensors if k.startswith("blocks.") and k.endswith(".adaLN_modulation.1.weight"))
    heads = args.num_heads or next((h for d, w, h in PRESETS.values() if (d, w) == (depth, width)), None)
    if heads is None:
        raise SystemExit(f"{args.source}: depth {depth}, width {width} is no SiT preset; give --num-heads")
    rows = tensors["y_embedder.embedding_table.weight"].shape[0]
    out_features = tensors["final_layer.linear.weight"].shape[0]
    if out_features != p * p * channels:
        raise SystemExit(f"{args.source}: final_layer.linear gives {out_features} features, not {p}·{p}·{channels}; not a REPA SiT")
    config = {
        "input_size": round(tensors["pos_embed"].shape[1] ** 0.5) * p,
        "patch_size": p,
        "in_channels": channels,
        "hidden_size": width,
        "depth": depth,
        "num_heads": heads,
        "mlp_ratio": tensors["blocks.0.mlp.fc1.weight"].shape[0] / width,
        "num_classes": args.num_classes,
        "learn_sigma": False,
        "class_dropout_prob": 0.1 if rows > args.num_classes else 0.0,
    }
    return tensors, config


def convert_vae(args):
    src, config = args.source, None
    if os.path.isdir(src):
        cfg_path = os.path.join(src, "config.json")
        if os.path.exists(cfg_path):
            with open(cfg_path) as f:
                config = json.load(f)
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
            if os.path.exists(os.path.join(src, name)):
                src = os.path.join(src, name)
                break
        else:
            raise SystemExit(f"{args.source}: no diffusion_pytorch_model.safetensors or .bin")
    sd = load_any(src)
    keep = ["post_quant_conv.", "decoder."] + (["quant_conv.", "encoder."] if args.encoder else [])
    keep = tuple(keep + ["first_stage_model." + k for k in keep])
    tensors = {k: v.detach().float().contiguous() for k, v in sd.items() if k.startswith(keep)}
    if not any(".decoder." in k or k.startswith("decoder.") for k in tensors):
        raise SystemExit(f"{src}: no decoder tensors (post_quant_conv.*, decoder.*) found")
    if args.encoder and not any("encoder." in k for k in tensors):
        raise SystemExit(f"{src}: --encoder, but the file has no encoder tensors (quant_conv.*, encoder.*)")
    return tensors, config


def convert_inception(args):
    sd = load_any(args.source)
    drop = ("num_batches_tracked", "AuxLogits.")
    tensors = {k: v.detach().float().contiguous() for k, v in sd.items() if not any(d in k for d in drop)}
    for need in ("Conv2d_1a_3x3.conv.weight", "Mixed_6d.branch1x1.conv.weight", "fc.weight"):
        if need not in tensors:
            raise SystemExit(f"{args.source}: no {need}; not the FID Inception state_dict")
    if tuple(tensors["fc.weight"].shape) != (1008, 2048):
        raise SystemExit(f"{args.source}: fc.weight is {tuple(tensors['fc.weight'].shape)}, expected (1008, 2048) (the FID weights, not torchvision's ImageNet Inception)")
    return tensors, {"model": "fid_inception_v3", "bn_eps": 0.001}


def hf_folder(src):
    """(weights file, config dict or None) of a transformers folder or file."""
    config = None
    if os.path.isdir(src):
        cfg_path = os.path.join(src, "config.json")
        if os.path.exists(cfg_path):
            with open(cfg_path) as f:
                config = json.load(f)
        for name in ("model.safetensors", "pytorch_model.bin"):
            if os.path.exists(os.path.join(src, name)):
                return os.path.join(src, name), config
        raise SystemExit(f"{src}: no model.safetensors or pytorch_model.bin")
    return src, config


def convert_dinov2(args):
    src, config = hf_folder(args.source)
    sd = load_any(src)
    tensors = {k: v.detach().float().contiguous() for k, v in sd.items()}
    if not any(k.endswith("embeddings.cls_token") for k in tensors):
        raise SystemExit(f"{src}: no embeddings.cls_token; not a transformers DINOv2 state_dict")
    heads = (config or {}).get("num_attention_heads")
    return tensors, ({"num_attention_heads": heads} if heads else None)


def convert_clip(args):
    src, config = hf_folder(args.source)
    sd = load_any(src)
    tensors = {k: v.detach().float().contiguous() for k, v in sd.items()
               if k.startswith("vision_model.") or k == "visual_projection.weight"}
    tensors.pop("vision_model.embeddings.position_ids", None)
    if "visual_projection.weight" not in tensors:
        raise SystemExit(f"{src}: no visual_projection.weight; not a transformers CLIP checkpoint")
    vision = (config or {}).get("vision_config", config or {})
    heads = vision.get("num_attention_heads")
    return tensors, ({"num_attention_heads": heads} if heads else None)


def convert_dinov2_release(args):
    sd = load_any(args.source)
    tensors = {k: v.detach().float().contiguous() for k, v in sd.items()}
    if "blocks.0.attn.qkv.weight" not in tensors or "pos_embed" not in tensors:
        raise SystemExit(f"{args.source}: no blocks.0.attn.qkv.weight / pos_embed; not an original DINOv2 release file")
    return tensors, {"num_heads": tensors["cls_token"].shape[-1] // 64}


def resnet_trunk(sd, src):
    tensors = {k: v.detach().float().contiguous() for k, v in sd.items()
               if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    if "layer4.2.conv3.weight" not in tensors or tensors["conv1.weight"].shape[0] != 64:
        raise SystemExit(f"{src}: not a ResNet-50 trunk in torchvision names (no layer4.2.conv3.weight)")
    return tensors


def convert_mocov3(args):
    ckpt = torch.load(args.source, map_location="cpu", weights_only=False)
    sd = ckpt.get("state_dict", ckpt)
    prefix = "module.base_encoder."
    trunk = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not trunk:
        raise SystemExit(f"{args.source}: no {prefix}* keys; not a MoCo v3 checkpoint")
    return resnet_trunk(trunk, args.source), {"model": "mocov3 resnet50 base_encoder"}


# Separius/SimCLRv2-Pytorch module → torchvision module. A bottleneck's `net` is the sequence
# conv1x1, BN+ReLU, conv3x3, BN+ReLU, conv1x1, BN; BatchNormRelu is a Sequential whose 0 is the BN.
SIMCLR_BLOCK = {"net.0": "conv1", "net.1.0": "bn1", "net.2": "conv2", "net.3.0": "bn2", "net.4": "conv3",
                "net.5.0": "bn3", "projection.shortcut": "downsample.0", "projection.bn.0": "downsample.1"}


def simclr_to_torchvision(key):
    """The torchvision name of a Separius r50_1x_sk0 trunk tensor, or None for fc.*."""
    if key.startswith("fc."):
        return None
    module, param = key.rsplit(".", 1)
    if module == "net.0.0":
        return f"conv1.{param}"
    if module == "net.0.1.0":
        return f"bn1.{param}"
    parts = module.split(".")
    if len(parts) > 4 and parts[0] == "net" and parts[2] == "blocks" and parts[1] in "1234":
        inner = ".".join(parts[4:])
        if inner in SIMCLR_BLOCK:
            return f"layer{parts[1]}.{parts[3]}.{SIMCLR_BLOCK[inner]}.{param}"
    raise SystemExit(f"SimCLR checkpoint: unexpected tensor {key} (only r50_1x_sk0 is supported)")


def convert_simclr(args):
    ckpt = torch.load(args.source, map_location="cpu", weights_only=False)
    sd = ckpt.get("resnet", ckpt)
    if any("mixing_conv" in k or "main_conv" in k for k in sd):
        raise SystemExit(f"{args.source}: a selective-kernel (sk1) model; only r50_1x_sk0 is supported")
    if "net.0.0.weight" not in sd:
        raise SystemExit(f"{args.source}: no net.0.0.weight; not a Separius/SimCLRv2-Pytorch ResNet")
    trunk = {}
    for k, v in sd.items():
        name = simclr_to_torchvision(k)
        if name is not None:
            trunk[name] = v
    return resnet_trunk(trunk, args.source), {"model": "simclr v2 r50_1x_sk0 (Separius port) trunk"}


def convert_resnet50(args):
    return resnet_trunk(load_any(args.source), args.source), {"model": "torchvision resnet50 trunk"}


def convert_lpips(args):
    import lpips

    if args.source not in ("alex", "vgg"):
        raise SystemExit(f"lpips: the source is the trunk name, alex or vgg, not {args.source!r}")
    if args.random_trunk:
        torch.manual_seed(args.seed)  # torchvision's own initialisation of the trunk, reproducibly
    m = lpips.LPIPS(net=args.source, version="0.1", pretrained=True, pnet_rand=args.random_trunk, verbose=False)
    # The package registers each head twice (lin0 and lins.0, one tensor): save_file refuses
    # tensors that share memory, and sitdiv reads the linN names.
    tensors = {k: v.detach().float().contiguous().clone() for k, v in m.state_dict().items()
               if not k.startswith("lins.")}
    config = {"model": f"lpips v0.1 {args.source}"}
    if args.random_trunk:
        config["trunk"] = f"random (torchvision init, seed {args.seed})"
    return tensors, config


DREAMSIM_TOWERS = ("dino", "clip", "open_clip")  # extractor_list order of the ensemble


def convert_dreamsim(args):
    src = args.source
    paths = {"dino": os.path.join(src, "checkpoints", "dino_vitbase16_pretrain.pth"),
             "clip": os.path.join(src, "clip_vitb16_pretrain.pth.tar"),
             "open_clip": os.path.join(src, "open_clip_vitb16_pretrain.pth.tar")}
    lora_dir = os.path.join(src, "ensemble_lora")
    for p in list(paths.values()) + [os.path.join(lora_dir, "adapter_config.json")]:
        if not os.path.exists(p):
            raise SystemExit(f"{src}: no {os.path.relpath(p, src)}; run dreamsim.dreamsim(cache_dir=...) once to fetch the ensemble")
    tensors = {}
    for tower, p in paths.items():
        sd = torch.load(p, map_location="cpu", weights_only=True)
        sd = sd.get("state_dict", sd)
        for k, v in sd.items():
            tensors[f"{tower}.{k}"] = v.detach().double()
    with open(os.path.join(lora_dir, "adapter_config.json")) as f:
        lcfg = json.load(f)
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if os.path.exists(os.path.join(lora_dir, name)):
            lsd = load_any(os.path.join(lora_dir, name))
            break
    else:
        raise SystemExit(f"{lora_dir}: no adapter_model.safetensors or adapter_model.bin")
    if lcfg.get("use_rslora") or lcfg.get("use_dora"):
        raise SystemExit(f"{lora_dir}: rsLoRA/DoRA adapters are not supported")
    scale = lcfg["lora_alpha"] / lcfg["r"]
    merged = 0
    for k, a in lsd.items():
        if ".lora_A." not in k:
            continue
        b = lsd[k.replace(".lora_A.", ".lora_B.")]
        # base_model.model.extractor_list.{i}.model.{module}.lora_A[.default].weight
        head, module = k.split(".lora_A.")[0].split("extractor_list.", 1)[1].split(".model.", 1)
        target = f"{DREAMSIM_TOWERS[int(head)]}.{module}.weight"
        if target not in tensors:
            raise SystemExit(f"{lora_dir}: LoRA for {target}, which the towers do not have")
        w = tensors[target]
        delta = b.double().flatten(1) @ a.double().flatten(1)
        tensors[target] = w + scale * delta.reshape(w.shape)
        merged += 1
    if merged == 0:
        raise SystemExit(f"{lora_dir}: no lora_A weights found")
    tensors = {k: v.float().contiguous() for k, v in tensors.items()}
    heads = {t: args.num_heads or tensors[f"{t}.cls_token"].shape[-1] // 64 for t in DREAMSIM_TOWERS}
    return tensors, {"model": "dreamsim ensemble", "num_heads": heads,
                     "lora": {"r": lcfg["r"], "lora_alpha": lcfg["lora_alpha"], "merged": merged}}


CONVERTERS = {"lpips": convert_lpips, "sit": convert_sit, "repa": convert_repa, "vae": convert_vae, "inception": convert_inception, "dinov2": convert_dinov2, "dinov2-release": convert_dinov2_release,
              "clip": convert_clip, "mocov3": convert_mocov3, "resnet50": convert_resnet50, "simclr": convert_simclr,
              "dreamsim": convert_dreamsim}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=sorted(CONVERTERS))
    ap.add_argument("source")
    ap.add_argument("output")
    ap.add_argument("--model", default="SiT-XL/2", help="sit: upstream name, e.g. SiT-XL/2")
    ap.add_argument("--image-size", type=int, default=256, choices=[256, 512])
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--num-heads", type=int, default=None, help="dreamsim: attention heads of every tower (default embed_dim / 64); repa: heads (default: the preset's)")
    ap.add_argument("--encoder", action="store_true", help="vae: keep the encoder half too (for the validation loss)")
    ap.add_argument("--random-trunk", action="store_true", help="lpips: seeded random trunk instead of the ImageNet download (tests only)")
    ap.add_argument("--seed", type=int, default=0, help="lpips --random-trunk: torch.manual_seed before building the model")
    args = ap.parse_args()
    tensors, config = CONVERTERS[args.kind](args)
    meta = {"source": os.path.basename(args.source.rstrip("/"))}
    if config is not None:
        meta["config"] = json.dumps(config, sort_keys=True)
    save_file(tensors, args.output, metadata=meta)
    print(f"wrote {args.output}: {len(tensors)} tensors, config {config}")


if __name__ == "__main__":
    main()
