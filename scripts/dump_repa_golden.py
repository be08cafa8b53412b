"""Golden data of REPA's samplers: tests/golden/repa_tiny.{weights,io}.safetensors.

    REPA_SRC=path/to/sihyun-yu-REPA python scripts/dump_repa_golden.py [--out-dir tests/golden]

A tiny SiT of REPA's own class (models/sit.py: depth 2, width 32, 2 heads, 8×8×4 latents, 10
classes, one projector head after block 1) with formula weights, saved as REPA saves its
checkpoints ({"ema": state_dict}) and converted by `scripts/convert_weights.py repa`: the weights
file keeps the projector tensors. Then REPA's `euler_sampler` and `euler_maruyama_sampler`
(samplers.py, run as they are, their null class 1000 mapped to the tiny model's 10) sample it
from recorded latents, with `torch.randn_like` replaced
by a function that returns recorded draws in call order. Per case `<case>.x_init` (n, C, H, W),
`.y`, `.noise` (steps − 1, n, C, H, W; SDE only), `.sample` and `.nfe`; the settings are in the
metadata config.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from dump_golden import uniform  # noqa: E402

CONFIG = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, decoder_hidden_size=32, encoder_depth=1,
              depth=2, num_heads=2, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10, use_cfg=True,
              z_dims=[24], projector_dim=40, qk_norm=False, fused_attn=False)
CASES = {
    "ode_euler_n8": dict(mode="ode", num_steps=8, heun=False, cfg_scale=1.0),
    "ode_heun_n8_cfg1.8_high0.7": dict(mode="ode", num_steps=8, heun=True, cfg_scale=1.8, guidance_high=0.7),
    "sde_n10": dict(mode="sde", num_steps=10, cfg_scale=1.0),
    "sde_n10_cfg1.8_high0.7": dict(mode="sde", num_steps=10, cfg_scale=1.8, guidance_high=0.7),
    "sde_n10_cfg1.5_low0.2_cosine": dict(mode="sde", num_steps=10, cfg_scale=1.5, guidance_low=0.2, path_type="cosine"),
}


def formula(seed, shape, amp):
    n = int(np.prod(shape))
    return (amp * (2 * uniform(seed, 0, 0, n) - 1)).astype(np.float32).reshape(shape)


def main():
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default="tests/golden")
    args = ap.parse_args()
    src = os.environ.get("REPA_SRC")
    if not src:
        raise SystemExit("set REPA_SRC to a checkout of sihyun-yu/REPA")
    sys.path.insert(0, src)
    import samplers
    from models.sit import SiT

    torch.set_num_threads(4)
    torch.use_deterministic_algorithms(True)
    model = SiT(path_type="linear", **CONFIG).eval()
    with torch.no_grad():
        for k, (name, p) in enumerate(model.named_parameters()):
            if name == "pos_embed":
                continue
            fan_in = int(np.prod(p.shape[1:])) if p.dim() > 1 else 1
            amp = 1.0 if "embedding_table" in name else np.sqrt(3.0 / fan_in) if p.dim() > 1 else 0.1
            p.copy_(torch.from_numpy(formula(900 + k, tuple(p.shape), amp)))
    state = model.state_dict()
    weights = os.path.join(args.out_dir, "repa_tiny.weights.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "repa_tiny.pt")
        torch.save({"ema": state, "model": state, "args": CONFIG}, ckpt)
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "convert_weights.py"), "repa", ckpt,
                        weights, "--num-heads", "2", "--num-classes", "10"], check=True)

    n = 3
    tensors = {}
    for name, c in CASES.items():
        shape = (n, 4, 8, 8)
        z = torch.from_numpy(formula(1000 + len(tensors), shape, 1.8))
        y = torch.tensor([2, 5, 9])
        steps = c["num_steps"]
        draws = [formula(2000 + 100 * len(tensors) + k, shape, 1.7) for k in range(steps - 1)]
        calls, used = [0], [0]

        def model_fn(x, t, y):
            calls[0] += 1
            # REPA's samplers write ImageNet's null class 1000; the tiny model's is 10.
            return model(x, t, torch.where(y == 1000, 10, y))

        def randn_like(x):
            d = torch.from_numpy(draws[used[0]]).to(x.dtype)
            used[0] += 1
            return d

        samplers.torch.randn_like = randn_like
        kwargs = {k: v for k, v in c.items() if k not in ("mode", "num_steps")}
        fn = samplers.euler_sampler if c["mode"] == "ode" else samplers.euler_maruyama_sampler
        with torch.no_grad():
            out = fn(model_fn, z, y, num_steps=steps, **kwargs).to(torch.float32)
        tensors[f"{name}.x_init"] = z.numpy()
        tensors[f"{name}.y"] = y.numpy()
        if c["mode"] == "sde":
            assert used[0] == steps - 1, (name, used[0])
            tensors[f"{name}.noise"] = np.stack(draws)
        tensors[f"{name}.sample"] = out.numpy()
        tensors[f"{name}.nfe"] = np.array([calls[0]], dtype=np.int64)
        print(name, calls[0], float(out.abs().mean()), file=sys.stderr)

    from safetensors.numpy import save_file
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_repa_golden.py, sihyun-yu/REPA samplers.py and models/sit.py, torch {torch.__version__}, CPU",
        "config": json.dumps({"model": CONFIG, "cases": CASES, "weights": "repa_tiny.weights.safetensors"}),
    }
    save_file(tensors, os.path.join(args.out_dir, "repa_tiny.io.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
