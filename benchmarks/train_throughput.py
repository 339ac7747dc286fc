"""Training throughput (pixels/s) of intra model sizes on this machine: the compute side of choosing N and M.

    python benchmarks/train_throughput.py --device cpu --threads 2
    python benchmarks/train_throughput.py --device cuda --batch 16 --crop 256

Times full training steps (forward, rate-distortion loss, backward, Adam) on random crops after warm-up steps,
channels-last on the CPU as the trainer does, and prints pixels/s and steps/s per configuration.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vcodec.networks.intra import IntraConfig, IntraModel  # noqa: E402
from vcodec.train.loop import lambdas_of  # noqa: E402
from vcodec.train.losses import rd_loss  # noqa: E402

CONFIGS = ((64, 96), (64, 128), (96, 128), (128, 192))


def measure(n: int, m: int, batch: int, crop: int, device: torch.device, steps: int, warmup: int = 3) -> float:
    model = IntraModel(IntraConfig(n, m)).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.rand(batch, 3, crop, crop, device=device)
    if device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        q = torch.rand(batch, device=device) * 7
        loss = rd_loss(x, model(x, q), lambdas_of(q))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crops", default="128,256")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}, torch {torch.__version__}, batch {args.batch}, {time.strftime('%Y-%m-%d')}")
    print(f"{'N':>4} {'M':>4} {'crop':>5} {'s/step':>8} {'steps/s':>8} {'kpx/s':>9}")
    for crop in map(int, args.crops.split(",")):
        for n, m in CONFIGS:
            dt = measure(n, m, args.batch, crop, device, args.steps)
            print(f"{n:>4} {m:>4} {crop:>5} {dt:8.3f} {1 / dt:8.2f} {args.batch * crop * crop / dt / 1e3:9.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
