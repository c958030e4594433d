#!/usr/bin/env python3
"""Exports a benchmark-sized Mixtral-style decoder with torch.onnx.export.

    .venv-torch/bin/python bench/export_hf_bench_model.py OUT.onnx

Random weights from a transformers MixtralConfig (no hub download): 4
layers, hidden 256, 8 experts, top-2, expert inter 512, 8 heads (4 kv),
vocab 2048, transformers' batched_mm experts, dynamo exporter, weights as
external data. Needs torch and transformers (a separate venv: the CUDA
wheels of torch are large), so it is a benchmark helper, not a test step.
"""

import sys

import torch
import transformers


class LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        mask = torch.ones_like(input_ids)
        return self.model(input_ids=input_ids, attention_mask=mask).logits


def main():
    out = sys.argv[1]
    torch.manual_seed(2026)
    config = transformers.MixtralConfig(
        vocab_size=2048, hidden_size=256, intermediate_size=512,
        num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
        num_local_experts=8, num_experts_per_tok=2,
        max_position_embeddings=1024, sliding_window=None, use_cache=False,
        tie_word_embeddings=False, experts_implementation="batched_mm")
    model = LogitsOnly(transformers.MixtralForCausalLM(config)).eval()
    example = torch.randint(0, 2048, (1, 16))
    torch.onnx.export(model, (example,), out, dynamo=True,
                      input_names=["input_ids"], output_names=["logits"],
                      dynamic_shapes={"input_ids": {0: "batch", 1: "seq"}},
                      external_data=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
