#!/usr/bin/env python3
"""Convert released weights to safetensors for sitdiv: names unchanged, architecture in the metadata.

    python scripts/convert_weights.py sit SiT-XL-2-256x256.pt sit-xl-2-256.safetensors --model SiT-XL/2
    python scripts/convert_weights.py vae sd-vae-ft-ema/ sd-vae-ft-ema.safetensors
    python scripts/convert_weights.py inception pt_inception-2015-12-05-6726825d.pth inception-fid.safetensors
    python scripts/convert_weights.py dinov2 dinov2-base/ dinov2-base.safetensors
    python scripts/convert_weights.py dinov2-release dinov2_vitl14_pretrain.pth dinov2-l14.safetensors
    python scripts/convert_weights.py clip clip-vit-base-patch32/ clip-b32.safetensors
    python scripts/convert_weights.py mocov3 r-50-1000ep.pth.tar mocov3-r50.safetensors
    python scripts/convert_weights.py resnet50 simclr-r50-torchvision-names.pth simclr-r50.safetensors
    python scripts/convert_weights.py lpips alex lpips-alex.safetensors      # or vgg

sit: a raw state_dict (the released SiT-XL-2-256x256.pt) or a train.py checkpoint ({"model", "ema",
...}; the EMA weights are taken, as upstream's find_model does). The constructor arguments go into
__metadata__["config"], so `sitdiv sample --weights` needs no --model.

vae: a diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors or .bin),
one of those weight files, or an original Stable Diffusion / LDM .ckpt. Only the decoder half is
kept (post_quant_conv.* and decoder.*, with or without the first_stage_model. prefix); the
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

mocov3: MoCo v3's ResNet-50 checkpoint (r-50-{100,300,1000}ep.pth.tar): state_dict keys
module.base_encoder.* with the prefix removed and the projection head (fc.*) dropped; the momentum
encoder and predictor are dropped. The result has torchvision's ResNet-50 names.

resnet50: any state_dict already in torchvision's ResNet-50 names (for SimCLR v2, convert the TF
checkpoint to torchvision names first); fc.* and num_batches_tracked are dropped.

lpips: the source is the trunk name (alex or vgg): lpips.LPIPS(net=..., version='0.1') with its
packaged linear heads and torchvision's ImageNet trunk (downloaded by torchvision), saved under the
lpips state_dict names (net.slice*, lin*.model.1.weight, scaling_layer.*). Needs the lpips package.

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
    keep = ("post_quant_conv.", "decoder.", "first_stage_model.post_quant_conv.", "first_stage_model.decoder.")
    tensors = {k: v.detach().float().contiguous() for k, v in sd.items() if k.startswith(keep)}
    if not tensors:
        raise SystemExit(f"{src}: no decoder tensors (post_quant_conv.*, decoder.*) found")
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


def convert_resnet50(args):
    return resnet_trunk(load_any(args.source), args.source), {"model": "torchvision resnet50 trunk"}


def convert_lpips(args):
    import lpips

    if args.source not in ("alex", "vgg"):
        raise SystemExit(f"lpips: the source is the trunk name, alex or vgg, not {args.source!r}")
    m = lpips.LPIPS(net=args.source, version="0.1", pretrained=True, pnet_rand=False, verbose=False)
    tensors = {k: v.detach().float().contiguous() for k, v in m.state_dict().items()}
    return tensors, {"model": f"lpips v0.1 {args.source}"}


CONVERTERS = {"lpips": convert_lpips, "sit": convert_sit, "vae": convert_vae, "inception": convert_inception, "dinov2": convert_dinov2, "dinov2-release": convert_dinov2_release,
              "clip": convert_clip, "mocov3": convert_mocov3, "resnet50": convert_resnet50}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=sorted(CONVERTERS))
    ap.add_argument("source")
    ap.add_argument("output")
    ap.add_argument("--model", default="SiT-XL/2", help="sit: upstream name, e.g. SiT-XL/2")
    ap.add_argument("--image-size", type=int, default=256, choices=[256, 512])
    ap.add_argument("--num-classes", type=int, default=1000)
    args = ap.parse_args()
    tensors, config = CONVERTERS[args.kind](args)
    meta = {"source": os.path.basename(args.source.rstrip("/"))}
    if config is not None:
        meta["config"] = json.dumps(config, sort_keys=True)
    save_file(tensors, args.output, metadata=meta)
    print(f"wrote {args.output}: {len(tensors)} tensors, config {config}")


if __name__ == "__main__":
    main()
