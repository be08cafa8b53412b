"""Golden data of the guidance methods: tests/golden/guidance.io.safetensors.

    SIT_SRC=path/to/willisma-SiT python scripts/dump_guidance_golden.py [--out FILE]

Two parts, both float32 unless named `_f64`:

- Rules on recorded predictions. `pred.cond` / `pred.uncond` (S, B, C, H, W) are formula
  tensors; each APG case runs one `diffusers.guiders.AdaptiveProjectedGuidance` over the S steps
  in order (its momentum carries), `cfgzs.out` one `ClassifierFreeZeroStarGuidance`. CADS is a
  transcription of Algorithm 1 of Sadat et al. (ICLR 2024) in float64 on formula embeddings
  `cads.y` (B, D) and noise `cads.noise` (T, B, D) at SiT times `cads.t` (T).
- Full runs of the tiny SiT (tests/golden/sit_tiny.weights.safetensors) through upstream's
  `transport.Sampler.sample_ode`, whose model function applies the method: `run.<case>.x_init`,
  `.y_model`, `.sample`. Autoguidance's guide is the tiny SiT with every tensor scaled by 0.8. CADS
  draws its noise as sitdiv's `rng::gaussian(seed, index, bits(t), STREAM_CADS = 6, D)`.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from dump_golden import philox4x32_10, uniform  # noqa: E402

STREAM_CADS = 6
SEED = 11


def formula(seed, shape, amp):
    n = int(np.prod(shape))
    return (amp * (2 * uniform(seed, 0, 0, n) - 1)).astype(np.float32).reshape(shape)


def gaussian(seed, index, draw, stream, n):
    """sitdiv's `rng::gaussian`: Box–Muller on the lane pairs of Philox blocks (block, draw, index, stream)."""
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    z = np.zeros_like(blocks)
    x = philox4x32_10([blocks, z + np.uint64(draw), z + np.uint64(index), z + np.uint64(stream)],
                      seed & 0xFFFFFFFF, seed >> 32)
    u = [(v.astype(np.float64) + 0.5) * 2.0**-32 for v in x]
    out = np.empty((len(blocks), 4), dtype=np.float32)
    for a, b, lane in ((0, 1, 0), (2, 3, 2)):
        r = np.sqrt(-2.0 * np.log(u[a]))
        th = 2 * np.pi * u[b]
        out[:, lane] = (r * np.cos(th)).astype(np.float32)
        out[:, lane + 1] = (r * np.sin(th)).astype(np.float32)
    return out.reshape(-1)[:n]


def cads_anneal(y, noise, t, tau1, tau2, s, psi):
    """Algorithm 1 in float64: y (B, D), noise (B, D), SiT time t (paper time 1 - t)."""
    import torch
    tau = 1.0 - float(np.float32(t))
    gamma = 1.0 if tau <= tau1 else 0.0 if tau >= tau2 else (tau2 - tau) / (tau2 - tau1)
    y, n = torch.from_numpy(y).double(), torch.from_numpy(noise).double()
    yh = gamma ** 0.5 * y + s * (1 - gamma) ** 0.5 * n
    if psi > 0:
        mean_y, std_y = y.mean(1, keepdim=True), y.std(1, keepdim=True)
        mean_h, std_h = yh.mean(1, keepdim=True), yh.std(1, keepdim=True)
        yh = psi * ((yh - mean_h) / std_h * std_y + mean_y) + (1 - psi) * yh
    return yh.float().numpy()


APG_CASES = [  # (eta, norm threshold, momentum)
    (0.0, 15.0, -0.5),
    (1.0, 0.0, 0.0),
    (0.5, 8.0, 0.3),
]
CADS_CASES = [  # (tau1, tau2, s, psi)
    (0.6, 0.9, 0.25, 1.0),
    (0.3, 0.8, 0.5, 0.0),
    (0.2, 0.7, 1.0, 0.5),
]


def rules(tensors):
    import torch
    from diffusers.guiders import AdaptiveProjectedGuidance, ClassifierFreeZeroStarGuidance
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer

    S, shape, scale = 4, (3, 4, 8, 8), 4.0
    cond = np.stack([formula(100 + k, shape, 2.0) for k in range(S)])
    uncond = np.stack([cond[k] * 0.7 + formula(200 + k, shape, 1.0) for k in range(S)])
    tensors["pred.cond"], tensors["pred.uncond"] = cond, uncond
    for i, (eta, r, beta) in enumerate(APG_CASES):
        g = AdaptiveProjectedGuidance(guidance_scale=scale, adaptive_projected_guidance_momentum=beta,
                                      adaptive_projected_guidance_rescale=r, eta=eta)
        g.momentum_buffer = MomentumBuffer(beta)
        out = []
        for k in range(S):
            g.set_state(step=k, num_inference_steps=None, timestep=None)
            out.append(g.forward(torch.from_numpy(cond[k]), torch.from_numpy(uncond[k])).pred.numpy())
        tensors[f"apg.{i}.out"] = np.stack(out)
    g = ClassifierFreeZeroStarGuidance(guidance_scale=scale, zero_init_steps=1)
    out = []
    for k in range(S):
        g.set_state(step=k, num_inference_steps=None, timestep=None)
        out.append(g.forward(torch.from_numpy(cond[k]), torch.from_numpy(uncond[k])).pred.numpy())
    tensors["cfgzs.out"] = np.stack(out)

    B, D = 3, 64
    ts = np.array([0.0, 0.05, 0.15, 0.3, 0.45, 0.6, 0.95], dtype=np.float32)
    y = formula(300, (B, D), 1.5)
    noise = np.stack([formula(400 + k, (B, D), 1.7) for k in range(len(ts))])
    tensors["cads.y"], tensors["cads.noise"], tensors["cads.t"] = y, noise, ts
    for i, (t1, t2, s, psi) in enumerate(CADS_CASES):
        tensors[f"cads.{i}.out"] = np.stack([cads_anneal(y, noise[k], ts[k], t1, t2, s, psi) for k in range(len(ts))])
    return {"scale": scale, "apg": APG_CASES, "cfg_zero_star": {"zero_init_steps": 1}, "cads": CADS_CASES}


RUNS = {
    "apg": dict(method="euler", scale=4.0, rule=("apg", 0.0, 15.0, -0.5)),
    "apg_interval": dict(method="euler", scale=4.0, rule=("apg", 0.5, 8.0, 0.3), interval=(0.3, 0.7)),
    "cfgzs": dict(method="heun2", scale=4.0, rule=("cfgzs", 2)),
    "cads": dict(method="euler", scale=3.0, rule=("cfg",), cads=(0.3, 0.8, 0.5, 0.5)),
    "cads_unguided": dict(method="euler", scale=1.0, rule=("cfg",), cads=(0.6, 0.9, 0.25, 1.0)),
    "autoguidance": dict(method="euler", scale=2.5, rule=("cfg",), guide=0.8),
}


def runs(tensors):
    import torch
    from diffusers.guiders import AdaptiveProjectedGuidance, ClassifierFreeZeroStarGuidance
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer
    from safetensors.torch import load_file

    src = os.environ.get("SIT_SRC")
    if not src:
        raise SystemExit("set SIT_SRC to a checkout of willisma/SiT")
    sys.path.insert(0, src)
    from models import SiT
    from transport import Sampler, create_transport

    cfg = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4, mlp_ratio=4.0,
               num_classes=10, learn_sigma=True, class_dropout_prob=0.1)
    state = load_file("tests/golden/sit_tiny.weights.safetensors")
    model = SiT(**cfg).eval()
    model.load_state_dict(state)

    def forward_embedded(m, x, t, y_emb):
        """SiT.forward with the class embedding given (upstream's modules, upstream's order)."""
        h = m.x_embedder(x) + m.pos_embed
        c = m.t_embedder(t) + y_emb
        for block in m.blocks:
            h = block(h, c)
        h = m.unpatchify(m.final_layer(h, c))
        return h.chunk(2, dim=1)[0]

    n, steps, shape = 4, 10, (4, 4, 8, 8)
    y = torch.tensor([1, 3, 5, 7])
    z = torch.from_numpy(formula(500, shape, 1.0) * 1.7)
    meta = {}
    for name, r in RUNS.items():
        scale, guided = r["scale"], r["scale"] > 1.0
        guide = None
        if "guide" in r:
            guide = SiT(**cfg).eval()
            guide.load_state_dict({k: v * r["guide"] for k, v in state.items()})
        rule = r["rule"]
        if rule[0] == "apg":
            g = AdaptiveProjectedGuidance(guidance_scale=scale, adaptive_projected_guidance_momentum=rule[3],
                                          adaptive_projected_guidance_rescale=rule[2], eta=rule[1])
            g.momentum_buffer = MomentumBuffer(rule[3])
        elif rule[0] == "cfgzs":
            g = ClassifierFreeZeroStarGuidance(guidance_scale=scale, zero_init_steps=rule[1])
        else:
            g = None
        evals_per_step = 2 if r["method"] == "heun2" else 1
        calls = [0]
        x_init = torch.cat([z, z]) if guided else z
        y_model = torch.cat([y, torch.full((n,), 10)]) if guided else y

        def model_fn(x, t, y=None):
            step = calls[0] // evals_per_step
            calls[0] += 1
            tt = float(t[0])
            half = x[:n]
            if "cads" in r:
                t1, t2, s, psi = r["cads"]
                emb = model.y_embedder.embedding_table.weight
                noise = np.stack([gaussian(SEED, i, int(np.float32(tt).view(np.uint32)), STREAM_CADS, 64)
                                  for i in range(n)])
                yc = torch.from_numpy(cads_anneal(emb[y[:n]].numpy(), noise, tt, t1, t2, s, psi))
                if not guided:
                    return forward_embedded(model, half, t[:n], yc)
                out = forward_embedded(model, torch.cat([half, half]), t, torch.cat([yc, emb[y[n:]]]))
            elif guide is not None:
                out = torch.cat([model(half, t[:n], y[:n]), guide(half, t[:n], y[:n])])
            else:
                out = model(torch.cat([half, half]), t, y)
            cond, other = out[:n], out[n:]
            lo, hi = r.get("interval", (-1.0, 2.0))
            if not (lo <= tt <= hi and tt <= 1.0):
                pred = cond
            elif g is None:
                pred = other + scale * (cond - other)
            else:
                g.set_state(step=step, num_inference_steps=None, timestep=None)
                pred = g.forward(cond, other).pred
            return torch.cat([pred, pred])

        sampler = Sampler(create_transport("Linear", "Velocity", None, None, None))
        fn = sampler.sample_ode(sampling_method=r["method"], num_steps=steps)
        with torch.no_grad():
            traj = fn(x_init, model_fn, y=y_model)
        tensors[f"run.{name}.x_init"] = x_init.numpy()
        tensors[f"run.{name}.y_model"] = y_model.numpy()
        tensors[f"run.{name}.sample"] = traj[-1].numpy()
        tensors[f"run.{name}.nfe"] = np.array([calls[0]], dtype=np.int64)
        meta[name] = {**r, "steps": steps, "seed": SEED}
        print(name, calls[0], float(traj[-1][:n].abs().mean()), file=sys.stderr)
    return meta


def main():
    import diffusers
    import torch
    from safetensors.numpy import save_file

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/golden/guidance.io.safetensors")
    args = ap.parse_args()
    torch.set_num_threads(4)
    torch.use_deterministic_algorithms(True)
    tensors = {}
    config = {"rules": rules(tensors), "runs": runs(tensors), "model": "sit_tiny.weights.safetensors"}
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_guidance_golden.py, diffusers {diffusers.__version__} guiders, willisma/SiT "
                    f"transport.Sampler.sample_ode, torch {torch.__version__}, CPU float32",
        "config": json.dumps(config),
    }
    save_file(tensors, args.out, metadata=meta)


if __name__ == "__main__":
    main()
