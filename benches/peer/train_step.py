"""The PyTorch peer of `benches/step_vs_torch.rs`: one training step (forward, loss, backward,
AdamW update) of the model fairvlm's bench times, built with Hugging Face transformers as a
PyTorch user would write it, on the batch the Rust side wrote.

- `clip-small`: the synthetic benchmark's CLIP (`configs/benchmark-clip.toml`, preset `small`):
  CLIPModel with a 64 px ViT (16 px patches, width 128, 3 layers, 4 heads) and a causal text
  transformer (vocabulary 1,000, context 40, width 128, 2 layers, 4 heads), QuickGELU,
  projection 128, the symmetric InfoNCE loss (`return_loss=True`); AdamW lr 5e-4, betas
  (0.9, 0.98), eps 1e-6, weight decay 0.05.
- `vit-b16`: OpenAI CLIP's ViT-B/16 image tower (CLIPVisionModel, 224 px) with a linear head on
  its pooled class token, cross-entropy; AdamW lr 1e-4, weight decay 0.01.

It serves the Rust bench, which alternates with it: after building the model it reads commands
on stdin, one per line, and answers each with one JSON line on stdout:
  `steps K`  -> {"ms": [K step times]}
  `rss`      -> {"peak_rss_mib": ...} (this process's peak resident set, ru_maxrss)
  `quit`
Weights are random (the arithmetic of a step does not depend on them).

  .venv-torch/bin/python benches/peer/train_step.py --model clip-small --batch target/step-batch.safetensors --threads 2
"""

import argparse
import json
import resource
import sys
import time

import torch
from safetensors.torch import load_file
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig, CLIPVisionModel


def clip_small():
    text = CLIPTextConfig(vocab_size=1000, hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=40, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1)
    vision = CLIPVisionConfig(image_size=64, patch_size=16, hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4, hidden_act="quick_gelu")
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=128))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05)

    def loss(batch):
        # eos_token_id 2 is the legacy rule: the pooled token is the one of the largest id, as
        # fairvlm's text tower pools (OpenAI CLIP's end token has the largest id).
        return model(input_ids=batch["tokens"], pixel_values=batch["images"], return_loss=True).loss

    return model, opt, loss


class VitClassifier(torch.nn.Module):
    def __init__(self, classes):
        super().__init__()
        cfg = CLIPVisionConfig(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu")
        self.vit = CLIPVisionModel(cfg)
        self.classifier = torch.nn.Linear(768, classes)

    def forward(self, images):
        return self.classifier(self.vit(pixel_values=images).pooler_output)


def vit_b16():
    model = VitClassifier(2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    def loss(batch):
        return torch.nn.functional.cross_entropy(model(batch["images"]), batch["labels"])

    return model, opt, loss


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["clip-small", "vit-b16"], required=True)
    p.add_argument("--batch", required=True, help="safetensors file with the batch (images, and tokens or labels)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parts", action="store_true", help="time forward, backward and the optimiser separately over 5 steps (2 warm-up), then exit")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    batch = load_file(a.batch)
    model, opt, loss_of = clip_small() if a.model == "clip-small" else vit_b16()
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_of(batch)
        loss.backward()
        opt.step()
        return loss.item()

    if a.parts:
        for i in range(5):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = loss_of(batch)
            loss.item()
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            print(f"{'warm-up' if i < 2 else 'step'}: forward {(t1 - t0) * 1e3:.0f} ms, backward {(t2 - t1) * 1e3:.0f} ms, optimiser {(t3 - t2) * 1e3:.0f} ms")
        return

    print(json.dumps({"ready": f"torch {torch.__version__}, {torch.get_num_threads()} threads, {sum(t.numel() for t in model.parameters())} parameters"}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "steps":
            ms = []
            for _ in range(int(cmd[1])):
                start = time.perf_counter()
                step()
                ms.append((time.perf_counter() - start) * 1e3)
            print(json.dumps({"ms": ms}), flush=True)
        elif cmd[0] == "rss":
            print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


if __name__ == "__main__":
    main()
