#!/usr/bin/env python3
"""The anchor of the GPU check (scripts/gpu-check.sh): gan-dist's training step in PyTorch.

The same DCGAN as protocol/model/architecture.ts and the same step as worker/trainer.ts (one
forward pass of G, of D on real and on generated images; lossD into D's parameters, lossG back
through D into G's; no optimizer: Adam runs on the coordinator), in fp32, with TF32 off and then
on. A step ends, as a worker's does, with its gradients in host memory. Prints one JSON object.
Needs only torch; no numpy.
"""

import argparse
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPSILON = 1e-5
BN_DECAY = 0.1  # MATLAB's MeanDecay, PyTorch's momentum
LEAKY_ALPHA = 0.2
DROPOUT_RATE = 0.5


class Generator(nn.Module):
    """project 100 -> 4x4x8nf; tconv (s1, no crop) to 8x8x4nf; stride-2 tconvs to the image."""

    def __init__(self, latent: int, nf: int, image_size: int):
        super().__init__()
        self.nf = nf
        self.proj = nn.Linear(latent, 4 * 4 * 8 * nf)  # fully connected with bias, reshaped
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(8 * nf, 4 * nf, 5, stride=1, padding=0),
            # state size. (4nf) x 8 x 8
            nn.BatchNorm2d(4 * nf, eps=BN_EPSILON, momentum=BN_DECAY),
            nn.ReLU(),
        ]
        c = 4 * nf
        doublings = {32: 2, 64: 3}[image_size]
        for i in range(doublings):
            last = i == doublings - 1
            out = 3 if last else c // 2
            # 'same' with stride 2: the size doubles (tfjs pads asymmetrically; the arithmetic is the same)
            layers.append(nn.ConvTranspose2d(c, out, 5, stride=2, padding=2, output_padding=1))
            if not last:
                layers += [nn.BatchNorm2d(out, eps=BN_EPSILON, momentum=BN_DECAY), nn.ReLU()]
            c = out
        # state size. 3 x image x image, in [-1, 1]
        layers.append(nn.Tanh())
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.proj(z).view(-1, 4, 4, 8 * self.nf).permute(0, 3, 1, 2)  # HWC as tfjs reshapes it
        # state size. (8nf) x 4 x 4
        return self.body(x)


class Discriminator(nn.Module):
    """dropout on the input; stride-2 convs nf, 2nf, ... down to 4x4; 4x4 conv to one logit."""

    def __init__(self, nf: int, image_size: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        halvings = {32: 3, 64: 4}[image_size]
        for i in range(halvings):
            out = nf * 2**i
            layers.append(nn.Conv2d(c, out, 5, stride=2, padding=2))
            if i > 0:
                layers.append(nn.BatchNorm2d(out, eps=BN_EPSILON, momentum=BN_DECAY))
            layers.append(nn.LeakyReLU(LEAKY_ALPHA))
            c = out
        # state size. c x 4 x 4
        layers.append(nn.Conv2d(c, 1, 4, stride=1, padding=0))  # the logit; sigmoid is in the loss
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.body(x * mask).view(-1)


def set_tf32(on: bool) -> dict:
    """TF32 for matrix products and cuDNN convolutions, through the API this torch has."""
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):
        # torch 2.9+: the new settings (mixing them with allow_tf32 is an error there)
        precision = "tf32" if on else "ieee"
        torch.backends.cuda.matmul.fp32_precision = precision
        cudnn_conv.fp32_precision = precision
        return {"matmul": torch.backends.cuda.matmul.fp32_precision, "cudnn_conv": cudnn_conv.fp32_precision}
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on  # True by default in torch: "off" must say so
    return {"matmul_allow_tf32": on, "cudnn_allow_tf32": on}


def loss_d(logits_real, logits_gen, flip):
    sign = 1 - 2 * flip  # flipped real labels: softplus(l) instead of softplus(-l)
    return F.softplus(-sign * logits_real).mean() + F.softplus(logits_gen).mean()


def loss_g(logits_gen):
    return F.softplus(-logits_gen).mean()


def make_step(G, D, latent, image_size, batch, device):
    g_params = list(G.parameters())
    d_params = list(D.parameters())
    numel = sum(p.numel() for p in g_params + d_params)
    pin = device.type == "cuda"
    host_grads = torch.empty(numel, dtype=torch.float32, pin_memory=pin)
    gen = torch.Generator().manual_seed(batch)
    images = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, generator=gen)
    images = images.pin_memory() if pin else images

    def step(to_host: bool = True):
        z = torch.randn(batch, latent, device=device)
        flip = (torch.rand(batch, device=device) < 0.35).float()
        keep = 1 / (1 - DROPOUT_RATE)
        shape = (batch, 3, image_size, image_size)
        mask_real = (torch.rand(shape, device=device) >= DROPOUT_RATE).float() * keep
        mask_gen = (torch.rand(shape, device=device) >= DROPOUT_RATE).float() * keep
        real = images.to(device, non_blocking=True).float() / 127.5 - 1

        generated = G(z)
        logits_real = D(real, mask_real)
        logits_gen = D(generated, mask_gen)
        # (1) lossD into D: both passes, with the generated images held fixed
        d_grads = torch.autograd.grad(loss_d(logits_real, logits_gen, flip), d_params, retain_graph=True)
        # (2) lossG back through the same pass of D, into G
        g_grads = torch.autograd.grad(loss_g(logits_gen), g_params)
        flat = torch.cat([g.reshape(-1) for g in (*g_grads, *d_grads)])
        if to_host:
            host_grads.copy_(flat)  # a worker sends its gradients from host memory
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step, numel


def median(xs):
    s = sorted(xs)
    n = len(s)
    return (s[(n - 1) // 2] + s[n // 2]) / 2


def bench(step, batch, steps, warmup, max_seconds):
    t0 = time.perf_counter()
    step()
    first = (time.perf_counter() - t0) * 1000
    for _ in range(warmup - 1):
        step()
    times = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) >= 2 and time.perf_counter() > deadline:
            break
    compute = []
    for _ in range(min(5, len(times))):
        t0 = time.perf_counter()
        step(to_host=False)
        compute.append((time.perf_counter() - t0) * 1000)
    med = median(times)
    return {
        "batch": batch,
        "firstStepMs": first,
        "stepMsMedian": med,
        "stepMsMin": min(times),
        "steps": len(times),
        "imagesPerSec": batch * 1000 / med,
        "computeMsMedian": median(compute),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="16,64,128")
    ap.add_argument("--image-size", type=int, default=64, choices=[32, 64])
    ap.add_argument("--filters", type=int, default=64)
    ap.add_argument("--latent", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=20)
    ap.add_argument("--device", default="cuda", help="cuda, or cpu to check the script itself")
    args = ap.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": f"torch {torch.__version__} sees no CUDA device"}))
        return 2
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True  # as pytorch/examples' DCGAN: the first step autotunes
    torch.manual_seed(1)
    G = Generator(args.latent, args.filters, args.image_size).to(device).train()
    D = Discriminator(args.filters, args.image_size).to(device).train()
    report = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "model": {"imageSize": args.image_size, "filters": args.filters, "latent": args.latent},
        "runs": [],
    }
    for tf32 in (False, True):
        settings = set_tf32(tf32)
        for batch in (int(b) for b in args.batches.split(",")):
            step, numel = make_step(G, D, args.latent, args.image_size, batch, device)
            row = bench(step, batch, args.steps, args.warmup, args.max_seconds)
            row.update({"tf32": tf32, "settings": settings, "parameters": numel})
            report["runs"].append(row)
            print(
                f"torch tf32 {'on ' if tf32 else 'off'} batch {batch}: first {row['firstStepMs']:.0f} ms, "
                f"{row['stepMsMedian']:.2f} ms/step ({row['computeMsMedian']:.2f} without the gradients' copy), "
                f"{row['imagesPerSec']:.0f} img/s",
                file=sys.stderr,
            )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
