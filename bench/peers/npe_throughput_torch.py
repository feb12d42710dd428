#!/usr/bin/env python3
"""NPE-NSF training throughput in PyTorch: the peer of bench/sbi/npe_throughput.cpp.

Builds the same neural spline flow as asbi's NPE (sbi's build_nsf defaults, layer for layer as
nflows): θ and x z-scored with the training data's statistics; 5 × [rational-quadratic spline
coupling (alternating masks; a ResidualNet conditioner on the identity features and x: 50 hidden,
2 blocks, relu, GLU context gates; 10 bins on [-3, 3], linear tails, widths and heights divided by
√50) → LULinear (identity init)]; a standard normal base. Trains it on two_moons and
gaussian_linear simulations with Adam (5e-4), batch 200 (full batches only), gradient norm clipped
at 5, 10 % held out and scored every epoch, for a fixed number of epochs, with the dataset on the
device (as asbi's Trainer keeps it). Prints one JSON line with the fields asbi_npe_throughput
prints: samples_per_second is an epoch's training rows over its wall time (validation included),
the median over the epochs after the first.

PyTorch is not a dependency of asbi: this script is outside the build (bench/README.md).

    python3 bench/peers/npe_throughput_torch.py --device cuda --simulations 10000 --epochs 6
"""
import argparse
import json
import math
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TRANSFORMS, HIDDEN, BLOCKS, BINS, TAIL_BOUND = 5, 50, 2, 10, 3.0
MIN_BIN_WIDTH = MIN_BIN_HEIGHT = MIN_DERIVATIVE = 1e-3


# --- simulators (sbibm's definitions) -------------------------------------------------------------

def two_moons(n, rng):
    theta = rng.uniform(-1.0, 1.0, size=(n, 2))
    a = rng.uniform(-math.pi / 2, math.pi / 2, size=n)
    r = rng.normal(0.1, 0.01, size=n)
    p = np.stack([r * np.cos(a) + 0.25, r * np.sin(a)], axis=1)
    shift = np.stack([-np.abs(theta[:, 0] + theta[:, 1]) / math.sqrt(2),
                      (-theta[:, 0] + theta[:, 1]) / math.sqrt(2)], axis=1)
    return theta, p + shift


def gaussian_linear(n, rng):
    theta = rng.normal(0.0, math.sqrt(0.1), size=(n, 10))
    return theta, theta + rng.normal(0.0, math.sqrt(0.1), size=(n, 10))


TASKS = {"two_moons": two_moons, "gaussian_linear": gaussian_linear}


# --- the flow ------------------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """t = linear1(act(linear0(act(x)))) ⊙ sigmoid(context_layer(c)); y = x + t (nflows)."""

    def __init__(self, features, context):
        super().__init__()
        self.context_layer = nn.Linear(context, features)
        self.linear0 = nn.Linear(features, features)
        self.linear1 = nn.Linear(features, features)
        nn.init.uniform_(self.linear1.weight, -1e-3, 1e-3)
        nn.init.uniform_(self.linear1.bias, -1e-3, 1e-3)

    def forward(self, x, c):
        t = self.linear1(F.relu(self.linear0(F.relu(x))))
        return x + F.glu(torch.cat((t, self.context_layer(c)), dim=1), dim=1)


class ResidualNet(nn.Module):
    def __init__(self, inputs, outputs, context):
        super().__init__()
        self.initial_layer = nn.Linear(inputs + context, HIDDEN)
        self.blocks = nn.ModuleList(ResidualBlock(HIDDEN, context) for _ in range(BLOCKS))
        self.final_layer = nn.Linear(HIDDEN, outputs)

    def forward(self, x, c):
        h = self.initial_layer(torch.cat((x, c), dim=1))
        for block in self.blocks:
            h = block(h, c)
        return self.final_layer(h)


def rq_spline(x, widths, heights, derivatives):
    """nflows' unconstrained_rational_quadratic_spline, forward, linear tails: y, log dy/dx."""
    inside = (x >= -TAIL_BOUND) & (x <= TAIL_BOUND)
    y, log_det = x.clone(), torch.zeros_like(x)
    constant = math.log(math.exp(1 - MIN_DERIVATIVE) - 1)
    derivatives = F.pad(derivatives, (1, 1), value=constant)
    xi, w, h, d = x[inside], widths[inside], heights[inside], derivatives[inside]
    lo, hi = -TAIL_BOUND, TAIL_BOUND

    def knots(u, minimum):
        u = minimum + (1 - minimum * BINS) * F.softmax(u, dim=-1)
        cum = F.pad(torch.cumsum(u, dim=-1), (1, 0), value=0.0)
        cum = (hi - lo) * cum + lo
        cum[..., 0], cum[..., -1] = lo, hi
        return cum, cum[..., 1:] - cum[..., :-1]

    cumw, w = knots(w, MIN_BIN_WIDTH)
    cumh, h = knots(h, MIN_BIN_HEIGHT)
    d = MIN_DERIVATIVE + F.softplus(d)
    edges = cumw.clone()
    edges[..., -1] += 1e-6
    k = (torch.sum(xi[..., None] >= edges, dim=-1) - 1)[..., None]
    x0, bw = cumw.gather(-1, k)[..., 0], w.gather(-1, k)[..., 0]
    y0, bh = cumh.gather(-1, k)[..., 0], h.gather(-1, k)[..., 0]
    d0, d1 = d.gather(-1, k)[..., 0], d[..., 1:].gather(-1, k)[..., 0]
    s = bh / bw
    t = (xi - x0) / bw
    t1 = t * (1 - t)
    numerator = bh * (s * t * t + d0 * t1)
    denominator = s + (d0 + d1 - 2 * s) * t1
    y[inside] = y0 + numerator / denominator
    dnum = s * s * (d1 * t * t + 2 * s * t1 + d0 * (1 - t) ** 2)
    log_det[inside] = torch.log(dnum) - 2 * torch.log(denominator)
    return y, log_det


class SplineCoupling(nn.Module):
    def __init__(self, features, context, even):
        super().__init__()
        mask = torch.tensor([(i % 2 == 0) == even for i in range(features)])
        self.register_buffer("transform_index", torch.nonzero(mask)[:, 0])
        self.register_buffer("identity_index", torch.nonzero(~mask)[:, 0])
        self.net = ResidualNet(len(self.identity_index), len(self.transform_index) * (3 * BINS - 1),
                               context)

    def forward(self, a, c):
        identity, x = a[:, self.identity_index], a[:, self.transform_index]
        p = self.net(identity, c).reshape(a.shape[0], x.shape[1], 3 * BINS - 1)
        scale = 1 / math.sqrt(HIDDEN)
        y, log_det = rq_spline(x, p[..., :BINS] * scale, p[..., BINS:2 * BINS] * scale,
                               p[..., 2 * BINS:])
        z = torch.empty_like(a)
        z[:, self.identity_index], z[:, self.transform_index] = identity, y
        return z, log_det.sum(dim=1)


class LULinear(nn.Module):
    def __init__(self, features, eps=1e-3):
        super().__init__()
        n = features * (features - 1) // 2
        self.eps = eps
        self.register_buffer("lower_index", torch.stack(torch.tril_indices(features, features, -1)))
        self.register_buffer("upper_index", torch.stack(torch.triu_indices(features, features, 1)))
        self.lower_entries = nn.Parameter(torch.zeros(n))
        self.upper_entries = nn.Parameter(torch.zeros(n))
        self.unconstrained_upper_diag = nn.Parameter(
            torch.full((features,), math.log(math.expm1(1 - eps))))
        self.bias = nn.Parameter(torch.zeros(features))
        self.features = features

    def forward(self, a, c):
        f = self.features
        lower = torch.eye(f, device=a.device).index_put(tuple(self.lower_index), self.lower_entries)
        diag = F.softplus(self.unconstrained_upper_diag) + self.eps
        upper = torch.diag(diag).index_put(tuple(self.upper_index), self.upper_entries)
        z = F.linear(a, lower @ upper, self.bias)
        return z, torch.log(diag).sum().expand(a.shape[0])


class Nsf(nn.Module):
    def __init__(self, theta, x):
        super().__init__()
        d, c = theta.shape[1], x.shape[1]
        self.register_buffer("theta_mean", theta.mean(0))
        self.register_buffer("theta_std", theta.std(0).clamp_min(1e-14))
        self.register_buffer("x_mean", x.mean(0))
        self.register_buffer("x_std", x.std(0).clamp_min(1e-14))
        layers = []
        for i in range(TRANSFORMS):
            layers += [SplineCoupling(d, c, i % 2 == 0), LULinear(d)]
        self.layers = nn.ModuleList(layers)

    def log_prob(self, theta, x):
        z = (theta - self.theta_mean) / self.theta_std
        c = (x - self.x_mean) / self.x_std
        log_det = -torch.log(self.theta_std).sum().expand(theta.shape[0])
        for layer in self.layers:
            z, ld = layer(z, c)
            log_det = log_det + ld
        base = -0.5 * (z * z).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
        return base + log_det


# --- training ------------------------------------------------------------------------------------

def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(task, device, simulations, epochs, batch_size, seed):
    rng = np.random.default_rng(seed)
    theta, x = TASKS[task](simulations, rng)
    theta = torch.tensor(theta, dtype=torch.float32, device=device)
    x = torch.tensor(x, dtype=torch.float32, device=device)
    permutation = torch.tensor(rng.permutation(simulations), device=device)
    n_val = int(0.1 * simulations)
    train_idx, val_idx = permutation[:-n_val], permutation[-n_val:]
    torch.manual_seed(seed)
    flow = Nsf(theta[train_idx], x[train_idx]).to(device)
    optimizer = torch.optim.Adam(flow.parameters(), lr=5e-4)
    batch = min(batch_size, len(train_idx))
    batches = len(train_idx) // batch
    rates, val_loss = [], None
    start = time.perf_counter()
    for _ in range(epochs):
        synchronize(device)
        epoch_start = time.perf_counter()
        order = train_idx[torch.randperm(len(train_idx), device=device)]
        for b in range(batches):
            rows = order[b * batch:(b + 1) * batch]
            loss = -flow.log_prob(theta[rows], x[rows]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
            optimizer.step()
        with torch.no_grad():
            total = torch.zeros((), dtype=torch.float64, device=device)
            for begin in range(0, len(val_idx), batch):
                rows = val_idx[begin:begin + batch]
                total += -flow.log_prob(theta[rows], x[rows]).sum().double()
            val_loss = total.item() / len(val_idx)  # one copy back per epoch, as asbi
        synchronize(device)
        rates.append(batch * batches / (time.perf_counter() - epoch_start))
    seconds = time.perf_counter() - start
    steady = rates[1:] if len(rates) > 1 else rates
    return {"task": task, "theta_dim": theta.shape[1], "x_dim": x.shape[1],
            "simulations": simulations, "epochs": epochs, "batch_size": batch_size,
            "samples_per_second": statistics.median(steady),
            "first_epoch_samples_per_second": rates[0], "train_seconds": seconds,
            "final_validation_loss": val_loss}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--simulations", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tasks", default="two_moons,gaussian_linear")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA device")
    device = torch.device(args.device)
    description = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"CPU, {torch.get_num_threads()} threads")
    results = [measure(task, device, args.simulations, args.epochs, args.batch_size, args.seed)
               for task in args.tasks.split(",")]
    print(json.dumps({"bench": "npe_throughput", "implementation": f"pytorch {torch.__version__}",
                      "device": args.device, "device_description": description, "flow": "nsf",
                      "transforms": TRANSFORMS, "hidden": HIDDEN, "blocks": BLOCKS, "bins": BINS,
                      "results": results}))


if __name__ == "__main__":
    main()
