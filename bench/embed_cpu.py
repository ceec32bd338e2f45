"""CPU throughput: our engine against the seed's path and fair-esm-style batching.

Same process, same data, same model, same thread count. The model is esm2_t6_8M_UR50D's
architecture (6 layers, 320 wide, 20 heads) with random weights: speed does not depend on
the weights. Sequences longer than ESM-2's 1,022 residues are truncated to 1,022 for all
paths, so every path embeds exactly the same residues.

The data is cut into `--rounds` interleaved slices (every R-th protein, so each slice has
the proteome's length mix); every round runs each path once on its slice, starting with a
different path each round. A neighbour loading the machine for a while then slows all
paths alike instead of whichever happened to run at the time. CPU seconds (this process's
user + system time) are printed beside wall seconds: on a shared machine and with one
thread they are the steadier measure.

    .venv/bin/python bench/embed_cpu.py                 # the whole proteome
    .venv/bin/python bench/embed_cpu.py --limit 300     # a quick look
    .venv/bin/python bench/embed_cpu.py --budgets 512,1024,2048,4096   # tune our budget
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import EsmModel, EsmTokenizer

from protembed.adapters import load_adapter
from protembed.embedding import default_tokens_per_batch, embed_sequences
from protembed.errors import RejectedSequence
from protembed.testing.fasta import read_proteins
from protembed.testing.random_models import cached_random_esm2

REPO = Path(__file__).resolve().parents[1]
PROTEOME = Path("/work/shared/data/proteome_UP000001425_synechocystis.fasta")
MODEL_DIR = REPO / ".cache" / "models" / "esm2_t6_8M_UR50D_random_weights"
MAX_RESIDUES = 1022  # ESM-2's trained length; every path gets the same truncated input
FAIR_ESM_TOKENS_PER_BATCH = 4096  # fair-esm's scripts/extract.py default


def esm2_8m_random(directory: Path = MODEL_DIR) -> Path:
    """esm2_t6_8M_UR50D's shape with random weights (the demo caches the same one)."""
    return cached_random_esm2(directory, layers=6, hidden=320, heads=20)


class SeedPath:
    """PyEED's ESM-2 path (src/pyeed/embeddings/models/esm2.py at 22f6bda,
    get_batch_embeddings): one sequence per forward pass, the model as from_pretrained
    gives it (with its pooling head), output_hidden_states=True, and the mean of
    last_hidden_state over ALL tokens.

    That mean is the seed's pooling bug: it includes <cls> and <eos>, so its vectors are not
    residue means (we reproduce it only to time it; our engine averages residues only).
    """

    name = "seed: 1 sequence per forward"

    def __init__(self, model_dir: Path):
        self.tokenizer = EsmTokenizer.from_pretrained(model_dir)
        self.model = EsmModel.from_pretrained(model_dir).eval()

    def embed(self, sequences: list[str]) -> list[np.ndarray]:
        vectors = []
        for sequence in sequences:
            inputs = self.tokenizer(sequence, padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                outputs = self.model(**inputs, output_hidden_states=True)
            vectors.append(outputs.last_hidden_state.cpu().numpy().mean(axis=1)[0])
        return vectors


def fair_esm_batches(lengths: list[int], tokens_per_batch: int, extra_tokens: int = 1):
    """fair-esm's FastaBatchedDataset.get_batch_indices: shortest first, a batch grows while
    its longest sequence times its size stays within the budget."""
    batches, current, longest = [], [], 0
    for size, index in sorted((n, i) for i, n in enumerate(lengths)):
        size += extra_tokens
        if current and max(size, longest) * (len(current) + 1) > tokens_per_batch:
            batches.append(current)
            current, longest = [], 0
        longest = max(longest, size)
        current.append(index)
    if current:
        batches.append(current)
    return batches


class FairEsmPath:
    """fair-esm's scripts/extract.py way: length-sorted padded batches under a 4,096-token
    budget, residue-only means (`t[i, 1 : len + 1].mean(0)`), through the same HF model."""

    name = f"fair-esm style: {FAIR_ESM_TOKENS_PER_BATCH}-token batches"

    def __init__(self, model_dir: Path):
        self.tokenizer = EsmTokenizer.from_pretrained(model_dir)
        self.model = EsmModel.from_pretrained(model_dir, add_pooling_layer=False).eval()

    def embed(self, sequences: list[str]) -> list[np.ndarray]:
        vectors: list[np.ndarray | None] = [None] * len(sequences)
        lengths = [len(s) for s in sequences]
        for batch in fair_esm_batches(lengths, FAIR_ESM_TOKENS_PER_BATCH):
            inputs = self.tokenizer(
                [sequences[i] for i in batch], padding=True, return_tensors="pt"
            )
            with torch.no_grad():
                hidden = self.model(**inputs).last_hidden_state
            for row, index in enumerate(batch):
                vectors[index] = hidden[row, 1 : lengths[index] + 1].mean(0).numpy()
        return vectors


class OurPath:
    """protembed's engine: load_adapter + embed_sequences with a token budget."""

    def __init__(self, model_dir: Path, tokens_per_batch: int):
        self.adapter = load_adapter(str(model_dir), "esm2", "cpu")
        self.tokens_per_batch = tokens_per_batch
        self.name = f"ours: {tokens_per_batch}-token budget"

    def embed(self, sequences: list[str]) -> list[np.ndarray]:
        results = embed_sequences(
            self.adapter,
            sequences,
            long_sequences="truncate",
            tokens_per_batch=self.tokens_per_batch,
        )
        return [r.vector for r in results]


def load_sequences(fasta: Path, limit: int | None, adapter) -> list[str]:
    """The proteome's sequences the model can read, truncated to ESM-2's trained length."""
    sequences = []
    for protein in read_proteins(fasta)[:limit]:
        try:
            sequences.append(adapter.prepare(protein["sequence"])[:MAX_RESIDUES])
        except RejectedSequence:
            continue
    return sequences


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fasta", type=Path, default=PROTEOME)
    parser.add_argument("--limit", type=int, help="only the first N proteins")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=4, help="interleaved slices (see above)")
    parser.add_argument(
        "--budgets",
        default=str(default_tokens_per_batch(torch.device("cpu"))),
        help="our token budgets to time, comma-separated (default: the engine's CPU default)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model_dir = esm2_8m_random()
    ours = [OurPath(model_dir, int(b)) for b in args.budgets.split(",")]
    sequences = load_sequences(args.fasta, args.limit, ours[0].adapter)
    paths = [SeedPath(model_dir), FairEsmPath(model_dir), *ours]
    residues = sum(map(len, sequences))
    print(
        f"{len(sequences)} proteins, {residues} residues (truncated at {MAX_RESIDUES}) from "
        f"{args.fasta.name}; {args.threads} torch threads; {args.rounds} interleaved rounds; "
        f"torch {torch.__version__}",
        flush=True,
    )
    warm_up = sequences[:8]
    for path in paths:
        path.embed(warm_up)

    seconds = {path.name: 0.0 for path in paths}
    cpu_seconds = {path.name: 0.0 for path in paths}
    vectors = {path.name: [None] * len(sequences) for path in paths}
    for round_number in range(args.rounds):
        indices = list(range(round_number, len(sequences), args.rounds))
        chunk = [sequences[i] for i in indices]
        shift = round_number % len(paths)
        for path in paths[shift:] + paths[:shift]:
            started, cpu_started = time.perf_counter(), time.process_time()
            embedded = path.embed(chunk)
            seconds[path.name] += time.perf_counter() - started
            cpu_seconds[path.name] += time.process_time() - cpu_started
            for index, vector in zip(indices, embedded, strict=True):
                vectors[path.name][index] = vector
        print(f"  round {round_number + 1}/{args.rounds} done", flush=True)

    rate = {name: residues / s for name, s in seconds.items()}
    cpu_rate = {name: residues / s for name, s in cpu_seconds.items()}
    seed, fair = paths[0].name, paths[1].name
    print(
        f"\n{'path':<36} {'wall s':>7} {'residues/s':>10} {'x seed':>6} {'x fair':>6}"
        f" | {'CPU s':>7} {'res/CPU-s':>9} {'x seed':>6} {'x fair':>6}"
    )
    for name in rate:
        print(
            f"{name:<36} {seconds[name]:7.1f} {rate[name]:10.0f} {rate[name] / rate[seed]:6.2f} "
            f"{rate[name] / rate[fair]:6.2f} | {cpu_seconds[name]:7.1f} {cpu_rate[name]:9.0f} "
            f"{cpu_rate[name] / cpu_rate[seed]:6.2f} {cpu_rate[name] / cpu_rate[fair]:6.2f}"
        )
    for path in ours:
        wall_ratio = rate[path.name] / max(rate[seed], rate[fair])
        cpu_ratio = cpu_rate[path.name] / max(cpu_rate[seed], cpu_rate[fair])
        print(
            f"{path.name}: {wall_ratio:.2f}x the best baseline by wall time, "
            f"{cpu_ratio:.2f}x by CPU time"
        )

    # The paths must compute the same thing (except the seed's pooling bug).
    agreement = min(cosine(a, b) for a, b in zip(vectors[ours[0].name], vectors[fair], strict=True))
    seed_agreement = min(
        cosine(a, b) for a, b in zip(vectors[ours[0].name], vectors[seed], strict=True)
    )
    print(
        f"lowest cosine, ours vs fair-esm style: {agreement:.6f}; ours vs seed (its mean "
        f"includes <cls>/<eos>): {seed_agreement:.6f}"
    )
    return 0 if agreement > 0.999 else 1


if __name__ == "__main__":
    sys.exit(main())
