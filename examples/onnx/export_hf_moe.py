#!/usr/bin/env python3
"""Export tiny random-weight Hugging Face MoE language models to ONNX.

Builds each model from a transformers config (no hub access, no
from_pretrained), exports it with torch.onnx.export using the TorchScript
exporter (dynamo=False) and the dynamo exporter (dynamo=True), and writes

  test/ONNX/models/hf/<model>-<experts_impl>-<exporter>.onnx
  test/ONNX/models/hf/<same stem>.input_ids.npy     test input, int64 [3, 11]
  test/ONNX/models/hf/<same stem>.torch_logits.npy  PyTorch eager logits
  test/ONNX/models/hf/<same stem>.ort_logits.npy    onnxruntime logits
  test/ONNX/models/hf/manifest.json                 what was tried, what failed, diffs

<experts_impl> is transformers' `experts_implementation` (transformers >= 5
stores the routed experts of every model as 3D tensors and dispatches the
expert computation to one of several implementations):

  eager       the per-expert Python loop (one_hot -> nonzero -> for each hit
              expert: where, gather tokens, FFN, index_add_)
  batched_mm  gathers each token's expert weights (W[expert_ids]) and bmm's
  grouped_mm  transformers' default: sort by expert + torch grouped_mm

Switch Transformers is not ported to that interface; its only
implementation is the loop, and is called "eager" here.

Run it with the torch venv (see docs/design/hf-moe-export-patterns.md; the
files were made with torch 2.15.0, transformers 5.24.0, onnx 1.23.2,
onnxscript 0.7.2, onnxruntime 1.32.0, and other versions give other bytes):

  python3 -m venv .venv-torch
  .venv-torch/bin/pip install torch==2.15.0 transformers==5.24.0 onnx==1.23.2 \
      onnxscript==0.7.2 onnxruntime==1.32.0

  .venv-torch/bin/python examples/onnx/export_hf_moe.py            # everything
  .venv-torch/bin/python examples/onnx/export_hf_moe.py --only mixtral-eager

onnxruntime runs in the project's main venv (.venv) when that exists, else
in this interpreter. Seeds are fixed: re-running reproduces the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import transformers

REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "test" / "ONNX" / "models" / "hf"
MAIN_VENV_PY = REPO / ".venv" / "bin" / "python"

SEED = 1234
OPSET = 18
VOCAB = 128
MAX_POS = 64
# Trace (export) input: 2 x 16 tokens so that every expert of every layer is
# hit while tracing (checked below).  Test input: a different shape, to
# exercise the dynamic axes.
TRACE_SHAPE = (2, 16)
TEST_SHAPE = (3, 11)
SIZE_LIMIT = 1 << 20

EXPERT_IMPLS = ("eager", "batched_mm", "grouped_mm")
EXPORTERS = ("torchscript", "dynamo")


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------
def _common(**kw):
    base = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_POS,
        initializer_range=0.1,
        tie_word_embeddings=False,
        use_cache=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    base.update(kw)
    return base


def build_mixtral(impl):
    cfg = transformers.MixtralConfig(
        **_common(intermediate_size=32, num_local_experts=8, num_experts_per_tok=2, sliding_window=None),
        experts_implementation=impl,
    )
    return transformers.MixtralForCausalLM(cfg)


def build_qwen2_moe(impl):
    cfg = transformers.Qwen2MoeConfig(
        **_common(
            intermediate_size=64,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=64,
            num_experts=8,
            num_experts_per_tok=2,
            norm_topk_prob=False,
            decoder_sparse_step=1,
            mlp_only_layers=[],
        ),
        experts_implementation=impl,
    )
    return transformers.Qwen2MoeForCausalLM(cfg)


def build_olmoe(impl, top_k=2):
    cfg = transformers.OlmoeConfig(
        **_common(intermediate_size=32, num_experts=8, num_experts_per_tok=top_k, norm_topk_prob=False),
        experts_implementation=impl,
    )
    return transformers.OlmoeForCausalLM(cfg)


def build_olmoe_top1(impl):
    # Switch-style routing (softmax, top-1, weight = un-renormalised
    # probability) in a decoder-only model.
    return build_olmoe(impl, top_k=1)


def build_deepseek_v3(impl):
    cfg = transformers.DeepseekV3Config(
        **_common(
            intermediate_size=64,  # the dense MLP of layer 0
            moe_intermediate_size=32,
            n_routed_experts=8,
            num_experts_per_tok=2,
            n_shared_experts=1,
            n_group=4,
            topk_group=2,
            routed_scaling_factor=2.5,
            norm_topk_prob=True,
            first_k_dense_replace=1,  # layer 0 dense MLP, layer 1 MoE (as in the real model)
            q_lora_rank=16,
            kv_lora_rank=16,
            qk_rope_head_dim=8,
            qk_nope_head_dim=8,
            v_head_dim=8,
            num_key_value_heads=4,
        ),
        experts_implementation=impl,
    )
    model = transformers.DeepseekV3ForCausalLM(cfg)
    # The correction bias is a zero buffer after init; give it values so the
    # "scores + bias for choice, unbiased scores for weights" split matters.
    g = torch.Generator().manual_seed(SEED + 1)
    for m in model.modules():
        if hasattr(m, "e_score_correction_bias"):
            m.e_score_correction_bias.copy_(torch.randn(m.e_score_correction_bias.shape, generator=g) * 0.05)
    return model


class _SwitchLM(torch.nn.Module):
    """Switch Transformers is encoder-decoder; feed input_ids to both sides so
    that the exported model has the same one-input/one-output contract.  The
    all-ones attention_mask is needed by the dynamo exporter: with None, the
    encoder stack indexes the missing mask while torch.export traces it."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, input_ids):
        mask = torch.ones_like(input_ids)
        return self.model(
            input_ids=input_ids, attention_mask=mask, decoder_input_ids=input_ids, use_cache=False
        ).logits


def build_switch(impl):
    assert impl == "eager"
    cfg = transformers.SwitchTransformersConfig(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_heads=4,
        num_layers=2,
        num_decoder_layers=2,
        num_sparse_encoder_layers=1,  # layer 1 of 2 is sparse
        num_sparse_decoder_layers=1,
        num_experts=8,
        expert_capacity=4,  # per sequence; small enough that overflow can drop tokens
        router_jitter_noise=0.0,
        dropout_rate=0.0,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=MAX_POS,
        decoder_start_token_id=0,
        use_cache=False,
    )
    return _SwitchLM(transformers.SwitchTransformersForConditionalGeneration(cfg))


MODELS = {
    # name: (builder, experts implementations)
    "mixtral": (build_mixtral, EXPERT_IMPLS),
    "qwen2_moe": (build_qwen2_moe, EXPERT_IMPLS),
    "olmoe": (build_olmoe, EXPERT_IMPLS),
    "olmoe_top1": (build_olmoe_top1, EXPERT_IMPLS),
    "deepseek_v3": (build_deepseek_v3, EXPERT_IMPLS),
    "switch": (build_switch, ("eager",)),
}


class _LogitsOnly(torch.nn.Module):
    """input_ids -> logits.  An all-ones attention_mask is passed explicitly:
    with attention_mask=None and no cache, transformers looks for packed
    sequences in position_ids with torch.diff, which the TorchScript exporter
    cannot export (aten::diff)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        mask = torch.ones_like(input_ids)
        return self.model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits


def make_model(name, impl):
    torch.manual_seed(SEED)
    builder, _ = MODELS[name]
    model = builder(impl)
    model.eval()
    return model if isinstance(model, _SwitchLM) else _LogitsOnly(model)


# --------------------------------------------------------------------------
# Expert coverage during tracing
# --------------------------------------------------------------------------
def _routers(model):
    out = []
    for mod_name, m in model.named_modules():
        cls = type(m).__name__
        if cls.endswith("TopKRouter") or cls.endswith("TopkRouter") or cls.endswith("Top1Router"):
            out.append((mod_name, m))
    return out


def expert_coverage(model, input_ids):
    """Return {router module name: sorted list of experts hit} for one forward."""
    hits = {}
    hooks = []
    for mod_name, m in _routers(model):

        def hook(mod, args, output, mod_name=mod_name):
            if type(mod).__name__.endswith("Top1Router"):
                one_hot = output[0]  # [B, S, E], capacity-masked
                idx = one_hot.reshape(-1, one_hot.shape[-1]).sum(0).nonzero().flatten()
            else:
                idx = output[2].flatten().unique()
            hits[mod_name] = sorted(set(hits.get(mod_name, [])) | set(int(i) for i in idx))

        hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(input_ids)
    for h in hooks:
        h.remove()
    return hits


def num_experts_of(model):
    cfg = model.model.config
    for attr in ("num_local_experts", "n_routed_experts", "num_experts"):
        if getattr(cfg, attr, None):
            return getattr(cfg, attr)
    raise ValueError("no expert count")


def _search_input(model, shape, seed0):
    """Deterministically search for an input of `shape` that hits every
    expert of every MoE layer; returns (ids, coverage, attempt or None)."""
    n = num_experts_of(model)
    # Try the given shape first, then larger batches.
    for attempt in range(128):
        batch = shape[0] + attempt // 32
        g = torch.Generator().manual_seed(seed0 + attempt)
        ids = torch.randint(3, VOCAB, (batch, shape[1]), generator=g)
        cov = expert_coverage(model, ids)
        if all(len(v) == n for v in cov.values()):
            return ids, cov, attempt
    return ids, cov, None


def pick_trace_input(model):
    return _search_input(model, TRACE_SHAPE, SEED + 100)


def pick_test_input(model):
    # All experts hit here too: a TorchScript trace of the eager loop only
    # runs when the input hits as many experts as the trace input did.
    return _search_input(model, TEST_SHAPE, SEED + 200)


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------
def export_torchscript(model, ids, path):
    torch.onnx.export(
        model,
        (ids,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
        do_constant_folding=True,
    )


def export_dynamo(model, ids, path):
    batch = torch.export.Dim("batch", min=1, max=64)
    seq = torch.export.Dim("seq", min=1, max=MAX_POS)
    prog = torch.onnx.export(
        model,
        (ids,),
        dynamo=True,
        opset_version=OPSET,
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_shapes={"input_ids": {0: batch, 1: seq}},
        optimize=True,
        verify=False,
        report=False,
    )
    prog.save(str(path), external_data=False)
    # The dynamo exporter annotates every node with its Python stack trace and
    # FX node text (absolute paths of this machine, ~2/3 of the file).  Keep
    # the module scope annotations ("namespace", "pkg.torch.onnx.name_scopes",
    # "pkg.torch.onnx.class_hierarchy"), drop the rest.
    model = onnx.load(str(path))
    drop = {"pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node"}
    graphs = [model.graph] + [f for f in model.functions]
    for g in graphs:
        for n in g.node:
            keep = [p for p in n.metadata_props if p.key not in drop]
            del n.metadata_props[:]
            n.metadata_props.extend(keep)
    onnx.save(model, str(path))


def run_ort(model_path, input_path, out_path):
    """Run the model with onnxruntime, preferably from the main venv."""
    code = (
        "import sys, numpy as np, onnxruntime as ort\n"
        "so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1\n"
        "s = ort.InferenceSession(sys.argv[1], so, providers=['CPUExecutionProvider'])\n"
        "(y,) = s.run(['logits'], {'input_ids': np.load(sys.argv[2])})\n"
        "np.save(sys.argv[3], y)\n"
        "print(ort.__version__)\n"
    )
    py = str(MAIN_VENV_PY) if MAIN_VENV_PY.exists() else sys.executable
    r = subprocess.run([py, "-c", code, str(model_path), str(input_path), str(out_path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "onnxruntime failed")
    return py, r.stdout.strip()


def short_error(e):
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    lines = [line for line in text.strip().splitlines() if line.strip()]
    msg = f"{type(e).__name__}: {lines[0] if lines else ''}"
    for i, line in enumerate(lines):
        if line.startswith("## Exception summary") and i + 1 < len(lines):
            return (msg + " | " + lines[i + 1].strip())[:600]
    for line in lines[1:]:
        # keep the most informative line of long exporter errors
        if any(k in line for k in ("GuardOnDataDependent", "Unsupported", "not supported", "Could not guard", "No decomposition", "aten::", "aten.")):
            msg += " | " + line.strip()
            break
    return msg[:600]


def do_one(name, impl, exporter, manifest):
    stem = f"{name}-{impl}-{exporter}"
    path = OUT_DIR / f"{stem}.onnx"
    entry = {"model": name, "experts_implementation": impl, "exporter": exporter, "opset": OPSET}
    print(f"== {stem}", flush=True)
    for old in OUT_DIR.glob(f"{stem}.*"):
        old.unlink()
    model = make_model(name, impl)
    ids, cov, attempt = pick_trace_input(model)
    entry["trace_input_shape"] = list(ids.shape)
    entry["trace_expert_coverage"] = cov
    entry["trace_all_experts_hit"] = attempt is not None
    x, cov, attempt = pick_test_input(model)
    with torch.no_grad():
        ref = model(x).float().numpy()
    entry["test_input_shape"] = list(x.shape)
    entry["test_expert_coverage"] = cov
    entry["test_all_experts_hit"] = attempt is not None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                (export_torchscript if exporter == "torchscript" else export_dynamo)(model, ids, path)
    except Exception as e:  # noqa: BLE001 - record every exporter failure
        entry["status"] = "export_failed"
        entry["error"] = short_error(e)
        if os.environ.get("EXPORT_TRACEBACK"):
            traceback.print_exc()
        print("   export failed:", entry["error"], flush=True)
        for old in OUT_DIR.glob(f"{stem}.*"):
            old.unlink()
        manifest[stem] = entry
        return
    size = path.stat().st_size
    entry["bytes"] = size
    entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    if size > SIZE_LIMIT:
        entry["warning"] = f"larger than {SIZE_LIMIT} bytes"
    np.save(OUT_DIR / f"{stem}.input_ids.npy", x.numpy())
    np.save(OUT_DIR / f"{stem}.torch_logits.npy", ref)
    try:
        py, ver = run_ort(path, OUT_DIR / f"{stem}.input_ids.npy", OUT_DIR / f"{stem}.ort_logits.npy")
        out = np.load(OUT_DIR / f"{stem}.ort_logits.npy")
        diff = float(np.abs(out - ref).max()) if out.shape == ref.shape else None
        entry.update(ort_python=os.path.relpath(py, REPO) if py.startswith(str(REPO)) else py, ort_version=ver,
                     ort_shape=list(out.shape), max_abs_diff_vs_torch=diff)
        entry["status"] = "ok" if diff is not None and diff < 1e-4 else "ort_mismatch"
    except Exception as e:  # noqa: BLE001
        entry["status"] = "ort_failed"
        entry["error"] = short_error(e)
    # Few tokens: most experts get no token.  Shows what a traced per-expert
    # loop does with an input that does not hit every expert.
    few = torch.tensor([[5, 9]])
    entry["few_tokens_expert_coverage"] = expert_coverage(model, few)
    with torch.no_grad():
        few_ref = model(few).float().numpy()
    fin = OUT_DIR / f"{stem}.few.tmp.npy"
    fout = OUT_DIR / f"{stem}.few_out.tmp.npy"
    try:
        np.save(fin, few.numpy())
        run_ort(path, fin, fout)
        out = np.load(fout)
        entry["few_tokens_check"] = (
            f"ran, max_abs_diff={float(np.abs(out - few_ref).max()):.3g}" if out.shape == few_ref.shape
            else f"ran, wrong shape {list(out.shape)}"
        )
    except Exception as e:  # noqa: BLE001
        entry["few_tokens_check"] = "failed: " + short_error(e)
    finally:
        for f in (fin, fout):
            if f.exists():
                f.unlink()
    print(f"   {entry['status']}  {size} bytes  diff={entry.get('max_abs_diff_vs_torch')}  few tokens: {entry['few_tokens_check'][:100]}", flush=True)
    manifest[stem] = entry


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[], help="substring of <model>-<impl>-<exporter> to run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    mpath = OUT_DIR / "manifest.json"
    manifest = json.loads(mpath.read_text())["exports"] if mpath.exists() else {}
    for name, (_, impls) in MODELS.items():
        for impl in impls:
            for exporter in EXPORTERS:
                stem = f"{name}-{impl}-{exporter}"
                if args.only and not any(s in stem for s in args.only):
                    continue
                do_one(name, impl, exporter, manifest)
    info = {
        "generator": "examples/onnx/export_hf_moe.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "seed": SEED,
        "exports": dict(sorted(manifest.items())),
    }
    try:
        import onnxscript

        info["onnxscript"] = onnxscript.__version__
    except ImportError:
        pass
    text = json.dumps(info, indent=1)
    # one line per list of expert ids
    text = re.sub(r"\[\s*([0-9,\s]*?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)
    mpath.write_text(text + "\n")


if __name__ == "__main__":
    main()
