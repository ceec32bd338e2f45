"""Oracle, run in the esm package's environment (envs/esm.yaml): ESM-C and ESM-3 there.

usage: python esm_reference.py ESMC_DIR SEQUENCES_JSON WORK_DIR OUT_NPZ PROTEINS_FASTA

ESM-C: the weights of ESMC_DIR (written by transformers' native EsmcForMaskedLM) through
the esm package's ESMC, the API of its tutorials, one sequence at a time
("esmc_embeddings{i}": its `embeddings`, "esmc_hidden{i}": its `hidden_states`, residue
positions only), and through our esmc adapter, which uses the package's EsmcModel here
("adapter_{kind}": per-protein vectors).

ESM-3: a tiny random ESM-3 saved in WORK_DIR and read by our esm3 adapter: vectors
batched and one at a time, beside a long batch mate, for a chunked 3,000-residue protein,
and direct computations from the model's own forward pass ("esm3_*"); and what precision
does to ESM-3 on a CPU, on the first 30 real proteins of PROTEINS_FASTA ("esm3_cpu_*").
"""

import json
import sys
import warnings
from pathlib import Path
from unittest.mock import patch

import numpy as np
import torch
from esm.models.esmc import ESMC
from support.random_models import save_random_esm3

from protembed.adapters import base, load_adapter
from protembed.demo.proteins import read_proteins
from protembed.engine import EmbeddingKind, embed_sequences, plan_windows
from protembed.errors import UserError

PRECISION_PROTEINS = 30

KINDS = {
    "last": EmbeddingKind(),
    "first": EmbeddingKind("first"),
    "all": EmbeddingKind("all"),
    "layer0": EmbeddingKind(0),
    "last_l2": EmbeddingKind(normalize=True),
}


def vectors(adapter, sequences, **options) -> np.ndarray:
    return np.stack([r.vector for r in embed_sequences(adapter, sequences, **options)])


def esmc(esmc_dir: str, sequences: list[str], out: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ESMC now wraps EsmcForMaskedLM
        model = ESMC.from_pretrained(esmc_dir, device="cpu", use_flash_attn=False).eval()
    for i, sequence in enumerate(sequences):
        tokens = model.tokenizer([sequence], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            output = model(sequence_tokens=tokens)
        residues = slice(1, len(sequence) + 1)
        out[f"esmc_embeddings{i}"] = output.embeddings[0, residues].numpy()
        out[f"esmc_hidden{i}"] = output.hidden_states[:, 0, residues].numpy()
    adapter = load_adapter(esmc_dir, "auto", "cpu")
    out["adapter_implementation"] = np.array(adapter.implementation)
    for name, kind in KINDS.items():
        out[f"adapter_{name}"] = vectors(adapter, sequences, kind=kind)


def esm3_direct(model, sequence: str) -> np.ndarray:
    """Every layer of one sequence, taken from the blocks themselves: (layers + 1, L, D)."""
    blocks = model.transformer.blocks
    seen = []
    hooks = [blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))]
    hooks += [b.register_forward_hook(lambda m, args, out: seen.append(out[0])) for b in blocks]
    tokens = model.tokenizers.sequence([sequence], return_tensors="pt")["input_ids"]
    assert tokens.shape[1] == len(sequence) + 2  # <cls>, one token per residue, <eos>
    with torch.no_grad():
        output = model(sequence_tokens=tokens)
    for hook in hooks:
        hook.remove()
    # `embeddings` is the last block's output before the final norm: normalise it here.
    assert torch.equal(output.embeddings, seen[-1])
    seen[-1] = model.transformer.norm(output.embeddings)
    return torch.stack(seen)[:, 0, 1 : len(sequence) + 1].detach().numpy()


def esm3(work_dir: Path, sequences: list[str], out: dict) -> None:
    adapter = load_adapter(str(work_dir / "tiny_esm3"), "auto", "cpu")
    out["esm3_num_layers"] = np.array(adapter.num_layers)
    out["esm3_batched"] = vectors(adapter, sequences, tokens_per_batch=100_000)
    out["esm3_single"] = vectors(adapter, sequences, tokens_per_batch=1)
    short = sequences[0]
    out["esm3_with_mate"] = vectors(adapter, [short, "W" * 900], tokens_per_batch=100_000)[0]
    for name, kind in KINDS.items():
        out[f"esm3_{name}"] = vectors(adapter, sequences, kind=kind)
    for i, sequence in enumerate(sequences):
        out[f"esm3_direct{i}"] = esm3_direct(adapter.model, sequence)

    rng = np.random.default_rng(3)
    long = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 3000))
    (chunked,) = embed_sequences(adapter, [long], long_sequences="chunk", overlap=256)
    spans, _ = plan_windows(long, adapter.max_residues, "chunk", 256)
    out["esm3_long_vector"] = chunked.vector
    out["esm3_long_handling"] = np.array(chunked.handling)
    out["esm3_long_spans"] = np.array(spans)
    for w, (start, end) in enumerate(spans):
        out[f"esm3_long_window{w}"] = esm3_direct(adapter.model, long[start:end])[-1]


def esm3_precisions(work_dir: Path, proteins_fasta: str, out: dict) -> None:
    """On a CPU `auto` keeps ESM-3 in float32 whatever the CPU, and bfloat16 is refused
    (adapters/esm3.py says why); the float32 vectors of real proteins are the same as the
    default's."""
    proteins = read_proteins(proteins_fasta)[:PRECISION_PROTEINS]
    sequences = [protein["sequence"] for protein in proteins]
    model = str(work_dir / "tiny_esm3")
    with patch.object(base, "cpu_runs_bfloat16_natively", lambda: True):
        auto = load_adapter(model, "auto", "cpu", "auto")
    out["esm3_cpu_auto_precision"] = np.array(auto.precision)
    out["esm3_cpu_auto"] = vectors(auto, sequences)
    out["esm3_cpu_float32"] = vectors(load_adapter(model, "auto", "cpu", "float32"), sequences)
    try:
        load_adapter(model, "auto", "cpu", "bfloat16")
    except UserError as refusal:
        out["esm3_cpu_bfloat16_refusal"] = np.array(str(refusal))


def main(
    esmc_dir: str, sequences_json: str, work_dir: str, out_npz: str, proteins_fasta: str
) -> None:
    sequences = json.loads(Path(sequences_json).read_text())
    out: dict[str, np.ndarray] = {}
    esmc(esmc_dir, sequences, out)
    save_random_esm3(Path(work_dir) / "tiny_esm3")
    esm3(Path(work_dir), sequences, out)
    esm3_precisions(Path(work_dir), proteins_fasta, out)
    np.savez(out_npz, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
