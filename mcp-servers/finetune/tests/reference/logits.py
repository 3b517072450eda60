"""Reference models and logits for the built-in trainer's architectures, from Hugging Face
transformers on the CPU: one tiny model per architecture (random weights, seeded, every tensor
drawn away from its usual init so that a missing bias or norm shows), saved as a Hugging Face
directory, and its logits for a fixed token sequence.

    python logits.py OUT_DIR      # writes OUT_DIR/<arch>/{config.json, model.safetensors, logits.json}

`.ci/run` runs it with the torch and transformers it installs from PyPI; the `reference` tests
in tests/reference.rs compare our forward pass with these logits.
"""

import json
import sys
from pathlib import Path

import torch
import transformers

VOCAB = 300
IDS = [1, 17, 250, 3, 99, 42, 42, 7, 128, 64, 5, 299, 0, 77, 31, 8]

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
)

ARCHITECTURES = {
    "llama3": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            **COMMON,
            rope_theta=500000.0,
            tie_word_embeddings=False,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        )
    ),
    "qwen2": lambda: transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(
            **COMMON, rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False
        )
    ),
    "qwen3": lambda: transformers.Qwen3ForCausalLM(
        transformers.Qwen3Config(
            **COMMON, head_dim=32, rope_theta=1000000.0, tie_word_embeddings=True
        )
    ),
    "qwen3_moe": lambda: transformers.Qwen3MoeForCausalLM(
        transformers.Qwen3MoeConfig(
            **COMMON,
            head_dim=16,
            rope_theta=1000000.0,
            tie_word_embeddings=False,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            mlp_only_layers=[],
        )
    ),
}


def main() -> None:
    out = Path(sys.argv[1])
    for arch, build in ARCHITECTURES.items():
        torch.manual_seed(1234)
        model = build().float().eval()
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "norm" in name:
                    parameter.normal_(1.0, 0.1)
                else:
                    parameter.normal_(0.0, 0.15)
        directory = out / arch
        model.save_pretrained(directory, safe_serialization=True)
        with torch.no_grad():
            moe = arch.endswith("_moe")
            output = model(torch.tensor([IDS]), **({"output_router_logits": True} if moe else {}))
        reference = {
            "ids": IDS,
            "logits": output.logits[0].tolist(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
        if moe:
            # The load-balancing loss, before router_aux_loss_coef weighs it.
            reference["aux_loss"] = float(output.aux_loss)
        (directory / "logits.json").write_text(json.dumps(reference))
        print(f"{arch}: {directory}")


if __name__ == "__main__":
    main()
