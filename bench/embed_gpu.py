"""GPU throughput: our engine against its peers in one run, for ESM-2 650M, ESM-C 300M/600M
and the ProtT5-XL encoder (real shapes, random weights: speed does not depend on the weights).

Per model: ours (the engine's automatic budget, or --budget); the plain transformers loop a
user would write (half precision, sdpa, length-sorted padded batches, masked mean on the
device) at its best of --plain-budgets; the seed's path; and the device's own bf16 matrix
rate (an 8192^3 product), with our fraction of it and of the datasheet peak.

Useful FLOPs per sequence of n tokens (special tokens included, padding not):
n x 2 x (parameters of the linear layers) + layers x 4 x n^2 x attention width
(QK^T and attention x V). Fraction of peak = useful FLOP/s / --peak-tflops.

The seed's path is PyEED's (src/pyeed/embeddings/models/*.py at 22f6bda): one sequence per
forward pass, in the precision PyEED runs each family in (ESM-2 and ProtT5 float32; ESM-C
through the esm package, which casts to bfloat16 on a GPU). It runs on an evenly spread
subset (--seed-proteins), ours on every protein; rates are per token, so they compare.
Both paths embed the same inputs: sequences cut to the family's trained length.

Its random models come from tests/support (bench/gpu_check.sh puts tests/ on PYTHONPATH):

    PYTHONPATH=tests python bench/embed_gpu.py          # on a GPU, all four models
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
from support.random_models import save_random_esm2, save_random_esmc, save_random_prott5

from protembed.adapters import load_adapter
from protembed.demo.proteins import read_proteins
from protembed.engine import default_tokens_per_batch, embed_sequences
from protembed.errors import RejectedSequence

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


class PlainLoop:
    """The 20-line loop a user writes with transformers: the family's half precision on a
    GPU, sdpa, length-sorted padded batches under a token budget, the masked mean of the last
    layer over residues on the device, results gathered at the end."""

    def __init__(self, shape: Shape, directory: Path, device: torch.device):
        self.family, self.device = shape.family, device
        half = torch.bfloat16 if device.type == "cuda" else torch.float32
        if shape.family == "esm2":
            self.tokenizer = transformers.EsmTokenizer.from_pretrained(directory)
            model = transformers.EsmModel.from_pretrained(
                directory, dtype=half, add_pooling_layer=False, attn_implementation="sdpa"
            )
        elif shape.family == "esmc":
            self.tokenizer = transformers.EsmcTokenizer()
            model = transformers.EsmcModel.from_pretrained(
                directory, dtype=half, attn_implementation="sdpa"
            )
        else:
            self.pieces = sentencepiece.SentencePieceProcessor(
                model_file=str(directory / "spiece.model")
            )
            model = transformers.T5EncoderModel.from_pretrained(
                directory, dtype=half, attn_implementation="sdpa"
            )
        self.model = model.to(device).eval()

    def tokens(self, batch: list[str]) -> dict:
        if self.family == "prot_t5":
            eos = self.model.config.eos_token_id
            ids = [self.pieces.encode(" ".join(s)) + [eos] for s in batch]
            width = max(map(len, ids))
            mask = [[1] * len(i) + [0] * (width - len(i)) for i in ids]
            padded = [i + [0] * (width - len(i)) for i in ids]
            return {"input_ids": torch.tensor(padded), "attention_mask": torch.tensor(mask)}
        return dict(self.tokenizer(batch, padding=True, return_tensors="pt"))

    @torch.inference_mode()
    def embed(self, sequences: list[str], budget: int) -> np.ndarray:
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        means, batch = [], []
        for index in order + [None]:
            width = len(sequences[batch[0]]) + 2 if batch else 0
            if batch and (index is None or width * (len(batch) + 1) > budget):
                inputs = self.tokens([sequences[i] for i in batch])
                inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
                hidden = self.model(**inputs).last_hidden_state
                mask = inputs["attention_mask"].clone()
                if self.family != "prot_t5":  # <cls> and <eos> are not residues
                    mask[:, 0] = 0
                    mask[torch.arange(len(batch)), mask.sum(1)] = 0
                else:  # </s>
                    mask[torch.arange(len(batch)), mask.sum(1) - 1] = 0
                mask = mask.unsqueeze(-1).to(hidden.dtype)
                means.append(((hidden * mask).sum(1) / mask.sum(1)).float())
                batch = []
            if index is not None:
                batch.append(index)
        return torch.cat(means).cpu().numpy()


def matmul_tflops(device: torch.device, size: int) -> float:
    """The device's own dense matrix rate in bf16 (float32 on a CPU): the practical ceiling."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    repeats = 20 if device.type == "cuda" else 2
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


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
    batching = adapter.batching
    budget_used = args.budget or default_tokens_per_batch(adapter)
    del adapter
    if device.type == "cuda":
        torch.cuda.empty_cache()
    compiled = measure_compiled(directory, shape, sequences, tokens, args) if args.compile else {}

    plain_rates = {}
    plain = PlainLoop(shape, directory, device)
    plain.embed(sequences[:64], args.plain_budgets[0])  # warm-up
    for budget in args.plain_budgets:
        plain_rates[budget] = tokens / timed(plain.embed, sequences, budget)
    del plain
    if device.type == "cuda":
        torch.cuda.empty_cache()

    seed = SeedPath(shape, directory, device)
    seed.embed(seed_sequences[:4])
    seed_seconds = timed(seed.embed, seed_sequences)
    del seed
    if device.type == "cuda":
        torch.cuda.empty_cache()

    peak = args.peak_tflops * 1e12
    plain_budget = max(plain_rates, key=plain_rates.get)
    return {
        "model": name,
        "precision": precision,
        "attention": attention,
        "batching": batching,
        "budget": budget_used,
        "proteins": len(sequences),
        "tokens_per_s": tokens / ours_seconds,
        "peak_fraction": flops / ours_seconds / peak,
        "matmul_fraction": flops / ours_seconds / (args.matmul_tflops * 1e12),
        "plain_tokens_per_s": plain_rates[plain_budget],
        "plain_budget": plain_budget,
        "vs_plain": (tokens / ours_seconds) / plain_rates[plain_budget],
        "seed_proteins": len(seed_sequences),
        "seed_tokens_per_s": seed_tokens / seed_seconds,
        "seed_peak_fraction": seed_flops / seed_seconds / peak,
        "speedup": (tokens / ours_seconds) / (seed_tokens / seed_seconds),
    } | compiled


def measure_compiled(directory: Path, shape: Shape, sequences, tokens: int, args) -> dict:
    """model.compile: true, cold (the compilation counted, as a shard pays it) and warm.
    `auto` should switch it on where cold beats ours uncompiled over a typical shard."""
    adapter = load_adapter(str(directory), shape.family, args.device, "auto", compile=True)
    cold = timed(run_ours, adapter, sequences, args.budget)
    warm = timed(run_ours, adapter, sequences, args.budget)
    del adapter
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {
        "compiled_cold_tokens_per_s": tokens / cold,
        "compiled_warm_tokens_per_s": tokens / warm,
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
        "--plain-budgets",
        default="16384,65536",
        help="comma-separated token budgets for the plain loop; its best is reported",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=H100_SXM_DENSE_BF16_TFLOPS,
        help="the device's dense bf16 peak (default: H100 SXM)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny shapes, few proteins (smoke test)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time model.compile: true, compilation included (cold) and warm",
    )
    args = parser.parse_args(argv)
    args.plain_budgets = [int(b) for b in args.plain_budgets.split(",")]
    if args.tiny:
        args.limit = args.limit or 12
        args.seed_proteins = min(args.seed_proteins, 4)
    shapes = TINY if args.tiny else MODELS
    proteins = [p["sequence"] for p in read_proteins(args.fasta)[: args.limit]]
    device = torch.device(args.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    args.matmul_tflops = matmul_tflops(device, 512 if args.tiny else 8192)
    print(
        f"{where}; torch {torch.__version__}, transformers {transformers.__version__}; "
        f"{len(proteins)} proteins from {args.fasta.name}; datasheet peak {args.peak_tflops} "
        f"TFLOP/s, measured matrix rate {args.matmul_tflops:.1f} TFLOP/s",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="protembed-gpu-bench-") as scratch:
        for name in args.models.split(","):
            result = measure(name, shapes[name], proteins, args, Path(scratch))
            results.append(result)
            print(
                f"{name:<10} ours {result['tokens_per_s']:10.0f} tokens/s "
                f"({result['precision']}, {result['batching']}, budget {result['budget']}; "
                f"{100 * result['matmul_fraction']:5.1f}% of the measured matrix rate, "
                f"{100 * result['peak_fraction']:5.1f}% of peak) | plain loop "
                f"{result['plain_tokens_per_s']:10.0f} (budget {result['plain_budget']}) "
                f"{result['vs_plain']:4.2f}x | seed {result['seed_tokens_per_s']:9.0f} "
                f"({100 * result['seed_peak_fraction']:5.1f}%) {result['speedup']:5.1f}x",
                flush=True,
            )
            if args.compile:
                print(
                    f"{name:<10} compiled: cold {result['compiled_cold_tokens_per_s']:10.0f} "
                    f"tokens/s (compilation included), warm "
                    f"{result['compiled_warm_tokens_per_s']:10.0f}",
                    flush=True,
                )
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
