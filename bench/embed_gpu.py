"""GPU throughput: tokens/s and fraction of the GPU's dense bf16 peak, our engine against the
seed's path, for ESM-2 650M, ESM-C 300M/600M and the ProtT5-XL encoder (real shapes, random
weights: speed does not depend on the weights).

Useful FLOPs per sequence of n tokens (special tokens included, padding not):
n x 2 x (parameters of the linear layers) + layers x 4 x n^2 x attention width
(QK^T and attention x V). Fraction of peak = useful FLOP/s / --peak-tflops.

The seed's path is PyEED's (src/pyeed/embeddings/models/*.py at 22f6bda): one sequence per
forward pass, in the precision PyEED runs each family in (ESM-2 and ProtT5 float32; ESM-C
through the esm package, which casts to bfloat16 on a GPU). It runs on an evenly spread
subset (--seed-proteins), ours on every protein; rates are per token, so they compare.
Both paths embed the same inputs: sequences cut to the family's trained length.

    python bench/embed_gpu.py                           # on a GPU, all four models
    python bench/embed_gpu.py --models esm2_650m --peak-tflops 989
    python bench/embed_gpu.py --device cpu --tiny       # smoke test (tests/test_bench_smoke.py)
"""

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece
import torch
import transformers

from protembed.adapters import load_adapter
from protembed.embedding import embed_sequences
from protembed.errors import RejectedSequence
from protembed.testing.fasta import read_proteins
from protembed.testing.random_models import save_random_esm2, save_random_esmc, save_random_prott5

REPO = Path(__file__).resolve().parents[1]
PROTEOME = Path("/work/shared/data/proteome_UP000001425_synechocystis.fasta")
SMALL_FASTA = REPO / "tests" / "data" / "synechocystis_every7th.fasta"
H100_SXM_DENSE_BF16_TFLOPS = 989.0


@dataclass(frozen=True)
class Shape:
    family: str
    layers: int
    hidden: int
    heads: int
    d_ff: int = 0  # ProtT5 only (ESM-2 is 4 x hidden, ESM-C 8/3 x hidden rounded up)
    d_kv: int = 0  # ProtT5 only


MODELS = {
    "esm2_650m": Shape("esm2", 33, 1280, 20),
    "esmc_300m": Shape("esmc", 30, 960, 15),
    "esmc_600m": Shape("esmc", 36, 1152, 18),
    "prott5_xl": Shape("prot_t5", 24, 1024, 32, d_ff=16384, d_kv=128),
}
TINY = {
    "esm2_650m": Shape("esm2", 2, 64, 4),
    "esmc_300m": Shape("esmc", 2, 64, 4),
    "esmc_600m": Shape("esmc", 2, 64, 4),
    "prott5_xl": Shape("prot_t5", 2, 64, 4, d_ff=256, d_kv=16),
}


def build_model(shape: Shape, directory: Path) -> Path:
    if shape.family == "esm2":
        return save_random_esm2(
            directory, layers=shape.layers, hidden=shape.hidden, heads=shape.heads
        )
    if shape.family == "esmc":
        return save_random_esmc(
            directory, layers=shape.layers, hidden=shape.hidden, heads=shape.heads
        )
    # save_random_prott5 gives the vocabulary; ProtT5-XL's feed-forward and head widths are
    # not 4 x and hidden / heads, so the encoder is replaced by one of the real shape.
    save_random_prott5(directory)
    config = transformers.T5Config(
        vocab_size=128,
        d_model=shape.hidden,
        d_kv=shape.d_kv,
        d_ff=shape.d_ff,
        num_layers=shape.layers,
        num_heads=shape.heads,
        feed_forward_proj="relu",
        is_encoder_decoder=False,
        pad_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    transformers.T5EncoderModel(config).save_pretrained(directory)
    return directory


def flops_per_sequence(model: torch.nn.Module, shape: Shape, tokens: int) -> float:
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    attention_width = shape.heads * shape.d_kv if shape.d_kv else shape.hidden
    return tokens * 2.0 * linear + shape.layers * 4.0 * tokens**2 * attention_width


class SeedPath:
    """PyEED's get_batch_embeddings for this family: one sequence per forward pass, the
    family's own pooling (ESM-2's mean over ALL tokens, <cls>/<eos> included, is PyEED's
    pooling bug; ESM-C drops both specials; ProtT5 keeps </s>)."""

    def __init__(self, shape: Shape, directory: Path, device: torch.device):
        self.family, self.device = shape.family, device
        if shape.family == "esm2":
            self.tokenizer = transformers.EsmTokenizer.from_pretrained(directory)
            self.model = transformers.EsmModel.from_pretrained(directory)
        elif shape.family == "esmc":
            # The esm package casts ESM-C to bfloat16 whenever it runs on a GPU.
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
            self.tokenizer = transformers.EsmcTokenizer()
            self.model = transformers.EsmcModel.from_pretrained(directory, dtype=dtype)
        else:
            self.pieces = sentencepiece.SentencePieceProcessor(
                model_file=str(directory / "spiece.model")
            )
            self.model = transformers.T5EncoderModel.from_pretrained(directory)
        self.model.to(device).eval()

    def tokens(self, sequence: str) -> dict:
        if self.family == "prot_t5":
            ids = self.pieces.encode(" ".join(sequence)) + [self.model.config.eos_token_id]
            return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids))}
        return dict(self.tokenizer(sequence, return_tensors="pt"))

    def embed(self, sequences: list[str]) -> list[np.ndarray]:
        vectors = []
        for sequence in sequences:
            inputs = {k: v.to(self.device) for k, v in self.tokens(sequence).items()}
            with torch.no_grad():
                if self.family == "esm2":
                    hidden = self.model(**inputs, output_hidden_states=True).last_hidden_state
                    vectors.append(hidden.cpu().numpy().mean(axis=1)[0])
                elif self.family == "esmc":
                    hidden = self.model(**inputs).last_hidden_state[:, 1:-1]
                    vectors.append(hidden.float().cpu().numpy().mean(axis=1)[0])
                else:
                    hidden = self.model(**inputs).last_hidden_state
                    vectors.append(hidden.cpu().numpy()[0].mean(axis=0))
        return vectors


def run_ours(adapter, sequences: list[str], budget: int | None) -> None:
    embed_sequences(adapter, sequences, long_sequences="truncate", tokens_per_batch=budget)


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(name: str, shape: Shape, proteins: list[str], args, scratch: Path) -> dict:
    device = torch.device(args.device)
    directory = build_model(shape, scratch / name)
    adapter = load_adapter(str(directory), shape.family, args.device, "auto")
    sequences = []
    for protein in proteins:
        try:
            sequences.append(adapter.prepare(protein)[: adapter.max_residues])
        except RejectedSequence:
            continue
    seed_sequences = sequences[:: max(1, len(sequences) // args.seed_proteins)][
        : args.seed_proteins
    ]
    specials = adapter.special_tokens
    tokens = sum(len(s) + specials for s in sequences)
    seed_tokens = sum(len(s) + specials for s in seed_sequences)

    run_ours(adapter, sequences[:64], args.budget)  # warm-up: kernels, allocator
    ours_seconds = timed(run_ours, adapter, sequences, args.budget)
    flops = sum(flops_per_sequence(adapter.model, shape, len(s) + specials) for s in sequences)
    seed_flops = sum(
        flops_per_sequence(adapter.model, shape, len(s) + specials) for s in seed_sequences
    )
    precision = getattr(adapter, "precision", str(next(adapter.model.parameters()).dtype))
    attention = getattr(adapter.model.config, "_attn_implementation", "?")
    del adapter
    if device.type == "cuda":
        torch.cuda.empty_cache()

    seed = SeedPath(shape, directory, device)
    seed.embed(seed_sequences[:4])
    seed_seconds = timed(seed.embed, seed_sequences)
    del seed
    if device.type == "cuda":
        torch.cuda.empty_cache()

    peak = args.peak_tflops * 1e12
    return {
        "model": name,
        "precision": precision,
        "attention": attention,
        "proteins": len(sequences),
        "tokens_per_s": tokens / ours_seconds,
        "peak_fraction": flops / ours_seconds / peak,
        "seed_proteins": len(seed_sequences),
        "seed_tokens_per_s": seed_tokens / seed_seconds,
        "seed_peak_fraction": seed_flops / seed_seconds / peak,
        "speedup": (tokens / ours_seconds) / (seed_tokens / seed_seconds),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument(
        "--fasta", type=Path, default=PROTEOME if PROTEOME.is_file() else SMALL_FASTA
    )
    parser.add_argument("--limit", type=int, help="only the first N proteins")
    parser.add_argument("--seed-proteins", type=int, default=300)
    parser.add_argument("--budget", type=int, help="our tokens per batch (default: the engine's)")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=H100_SXM_DENSE_BF16_TFLOPS,
        help="the device's dense bf16 peak (default: H100 SXM)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny shapes, few proteins (smoke test)"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.limit = args.limit or 12
        args.seed_proteins = min(args.seed_proteins, 4)
    shapes = TINY if args.tiny else MODELS
    proteins = [p["sequence"] for p in read_proteins(args.fasta)[: args.limit]]
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(
        f"{where}; torch {torch.__version__}, transformers {transformers.__version__}; "
        f"{len(proteins)} proteins from {args.fasta.name}; peak {args.peak_tflops} TFLOP/s",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="protembed-gpu-bench-") as scratch:
        for name in args.models.split(","):
            result = measure(name, shapes[name], proteins, args, Path(scratch))
            results.append(result)
            print(
                f"{name:<10} ours {result['tokens_per_s']:10.0f} tokens/s "
                f"({100 * result['peak_fraction']:5.1f}% of peak, {result['precision']}, "
                f"{result['attention']}) | seed {result['seed_tokens_per_s']:9.0f} tokens/s "
                f"({100 * result['seed_peak_fraction']:5.1f}%) | {result['speedup']:5.1f}x seed",
                flush=True,
            )
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
