"""How far rounding the inputs of each product of a SiT forward moves its output.

Upstream's SiT (a checkout of willisma/SiT in SIT_SRC) runs in float64 on the golden weights, with
the inputs of chosen products rounded as a GPU's compute types round them (TF32: cvt.rna, 10
mantissa bits, ties away; bf16: nearest even). The products are grouped as sitdiv's GPU path
treats them: the conditioning (patch embedding, timestep MLP, adaLN) and the token products (qkv,
attention's two, proj, fc1, fc2, the final linear). It prints, for the golden input and for 512
random inputs, max|a − r| / max|r| against the unrounded forward:

  - every product rounded (plain TF32 / bf16);
  - sitdiv's design: the conditioning exact (3xTF32) under tf32, in TF32 under bf16;
  - PyTorch's TF32 policy (linears in TF32, attention in fp32) and its bf16 autocast (real, on
    the CPU).

    SIT_SRC=/path/to/SiT python scripts/precision_budget.py
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "tests", "golden")
CONFIG = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4,
              mlp_ratio=4.0, num_classes=10, learn_sigma=True, class_dropout_prob=0.1)
CONDITIONING = ("embed", "temb", "adaln")
TOKENS = ("qkv", "attn_s", "attn_o", "proj", "fc1", "fc2", "final")


def tf32(x):
    bits = x.float().contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32).double()


def bf16(x):
    return x.float().to(torch.bfloat16).double()


ROUND = {"tf32": tf32, "bf16": bf16, None: lambda x: x}


def group(name):
    if name.startswith("x_embedder"):
        return "embed"
    if name.startswith("t_embedder"):
        return "temb"
    if "adaLN" in name:
        return "adaln"
    for g in ("qkv", "proj", "fc1", "fc2"):
        if name.endswith(g):
            return g
    return "final"


class Rounded:
    """The golden SiT in float64 whose products round their inputs as `policy` says."""

    def __init__(self, SiT):
        self.policy = {}
        self.model = SiT(**CONFIG).double().eval()
        weights = load_file(os.path.join(GOLDEN, "sit_tiny.weights.safetensors"))
        self.model.load_state_dict({k: v.double() for k, v in weights.items()})
        for name, mod in self.model.named_modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                mod.forward = self.product(mod, group(name))
            elif type(mod).__name__ == "Attention":
                mod.forward = self.attention(mod)

    def r(self, g):
        return ROUND[self.policy.get(g)]

    def product(self, mod, g):
        def forward(x):
            x, w = self.r(g)(x.double()), self.r(g)(mod.weight)
            if isinstance(mod, nn.Conv2d):
                return F.conv2d(x, w, mod.bias, stride=mod.stride)
            return F.linear(x, w, mod.bias)
        return forward

    def attention(self, a):
        def forward(x):
            b, n, c = x.shape
            q, k, v = a.qkv(x).reshape(b, n, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            rs, ro = self.r("attn_s"), self.r("attn_o")
            p = ((rs(q) @ rs(k).transpose(-2, -1)) * a.scale).softmax(-1)
            return a.proj((ro(p) @ ro(v)).transpose(1, 2).reshape(b, n, c))
        return forward

    def __call__(self, policy, x, t, y):
        self.policy = policy
        with torch.no_grad():
            return self.model(x, t, y)


def errors(out, ref):
    """max|a − r|/max|r| over the batch, and the median and 90th percentile per sample."""
    d, r = (out - ref).flatten(1), ref.flatten(1)
    per = d.abs().amax(1) / r.abs().amax(1)
    whole = float(d.abs().max() / r.abs().max())
    return whole, float(per.median()), float(per.quantile(0.9))


def main():
    src = os.environ.get("SIT_SRC")
    if not src:
        raise SystemExit("set SIT_SRC to a checkout of willisma/SiT")
    sys.path.insert(0, src)
    from models import SiT

    model = Rounded(SiT)
    io = load_file(os.path.join(GOLDEN, "sit_tiny.io.safetensors"))
    golden = (io["x"].double(), io["t"].double(), io["y"])
    g = torch.Generator().manual_seed(0)
    random = (torch.randn(512, 4, 8, 8, generator=g).double(), torch.rand(512, generator=g).double(),
              torch.randint(0, 10, (512,), generator=g))
    every = CONDITIONING + TOKENS
    policies = [
        ("tf32, every product", {p: "tf32" for p in every}),
        ("tf32, sitdiv (conditioning 3xTF32)", {p: "tf32" for p in TOKENS}),
        ("tf32, PyTorch's policy (attention fp32)", {p: "tf32" for p in every if not p.startswith("attn")}),
        ("bf16, every product", {p: "bf16" for p in every}),
        ("bf16, sitdiv (conditioning TF32)", {p: "tf32" if p in CONDITIONING else "bf16" for p in every}),
    ]
    print("| policy | golden forward | 512 random: median | 90th percentile |")
    print("|---|---|---|---|")
    refs = {k: model({}, *inp) for k, inp in (("golden", golden), ("random", random))}
    for name, policy in policies:
        gold = errors(model(policy, *golden), refs["golden"])[0]
        _, med, p90 = errors(model(policy, *random), refs["random"])
        print(f"| {name} | {gold:.2e} | {med:.2e} | {p90:.2e} |")
    torch_model = SiT(**CONFIG).float().eval()
    torch_model.load_state_dict(load_file(os.path.join(GOLDEN, "sit_tiny.weights.safetensors")))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = torch_model(golden[0].float(), golden[1].float(), golden[2]).double()
    print(f"| bf16, PyTorch's autocast (CPU) | {errors(out, refs['golden'])[0]:.2e} | | |")


if __name__ == "__main__":
    main()
