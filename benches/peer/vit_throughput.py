"""Forward images per second of OpenAI CLIP's ViT-B/16 image tower in PyTorch (transformers'
CLIPVisionModel, random weights: the same arithmetic as the pretrained one), without gradients,
at a batch size: the peer of `fairvlm throughput`.

  .venv-torch/bin/python benches/peer/vit_throughput.py [--device cpu|cuda] [--batch 64] [--iters 10]

Prints the median time per pass and images per second, after 2 untimed passes; CUDA passes are
timed to completion (torch.cuda.synchronize).
"""

import argparse
import statistics
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=10)
    a = p.parse_args()
    cfg = CLIPVisionConfig(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu")
    model = CLIPVisionModel(cfg).eval().to(a.device)
    images = torch.randn(a.batch, 3, 224, 224, device=a.device)
    times = []
    with torch.no_grad():
        for i in range(2 + a.iters):
            start = time.perf_counter()
            model(pixel_values=images).pooler_output.cpu()
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"torch {torch.__version__} on {a.device} ({torch.get_num_threads()} threads): batch {a.batch}: median {median * 1e3:.1f} ms per pass, {a.batch / median:.1f} images/s ({len(times)} passes, fastest {min(times) * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
