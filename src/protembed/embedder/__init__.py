"""The front door for notebooks and the workflow alike: one object that turns sequences into
vectors.

    from protembed import Embedder
    embedder = Embedder("facebook/esm2_t33_650M_UR50D")
    vectors = embedder.encode(["MKTAYIAKQR", "MSLNKIIVEGR"])  # (2, 1280) float32

The workflow's embed step calls `Embedder.embed`, the same path as `encode`, so a notebook's
vectors are the workflow's. Loaded models are kept per (model, family, device, precision)
for the life of the process; with `devices=` a call is spread over one spawned worker
process per device, each keeping its own model between calls.
"""

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import TqdmWarning

from ..adapters.base import Adapter
from ..config import ModelSettings, embedder_settings
from ..engine import Embedded, EmbeddingKind, default_tokens_per_batch, embed_sequences
from ..errors import RejectedSequence, UserError
from ..sequences import sequence_sha256
from .models import cached_adapter
from .pyeed import PYEED_EMBEDDING_TYPES, pyeed_settings
from .records import Records
from .workers import WorkerPool

# tqdm.auto: the widget in a Jupyter kernel with ipywidgets, else the text bar, which
# notebooks show as well. Without ipywidgets it first warns "IProgress not found" to whoever
# imports it first: imported here, quietly, before transformers (which imports it too), so
# the warning does not greet every notebook that has no use for widgets.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm as auto_bar

ERROR_MODES = ("raise", "nan", "skip")

# progress="auto" shows no bar for fewer sequences than this. A call that small is mostly
# one of many (a loop over proteins, a quick look at one), where a finished bar per call
# would bury the cell's output; the bar is for following a long call.
BAR_FROM_SEQUENCES = 10

# sentence-transformers' encode() keywords that have no counterpart here, and what does
# their job (those that do are encode's own keywords).
NOT_SENTENCE_TRANSFORMERS = {
    "batch_size": "batches hold a number of tokens, not of sequences: set "
    "Embedder(..., tokens_per_batch=N) (default auto: sized to the GPU's free memory)",
    "device": "the device is the Embedder's: Embedder(model, device='cuda:1'), or "
    "devices=[...] for several",
    "output_value": "per-residue vectors come from encode_records(records, per_residue=True)",
    "precision": "encode returns float32; Embedder(model, precision=...) sets the precision "
    "the model computes in",
}


class Embedder:
    """A protein language model with one embedding kind, as notebooks and the workflow use it.

    `model`: a hub name or a local directory (or the workflow's ModelSettings). The other
    settings are config.yaml's `model` keys, flat, with the same defaults and ranges (the
    schema's; docs/configuration.md): `family`, `device`, `layer` (last, first, all, or a
    layer number, 0 the input embeddings), `normalize` (L2), `long_sequences` (chunk,
    truncate or reject beyond `max_residues`, default the model's trained length),
    `chunk_overlap`, `precision` (auto: the family's half precision on a GPU, bfloat16 on a
    CPU that runs it natively, float32 elsewhere), `tokens_per_batch` (auto: on a GPU, sized
    to its free memory) and `compile` (torch.compile; auto: off until a benchmark shows a
    gain).
    `devices`: "all" or a list of devices to spread each call over, one worker process each;
    `progress`: auto (a bar for calls of BAR_FROM_SEQUENCES sequences or more), True or
    False; the bar is tqdm's widget in Jupyter with ipywidgets, its text bar elsewhere.
    """

    def __init__(
        self,
        model: "str | Path | ModelSettings",
        *,
        devices: str | list[str] | None = None,
        progress: bool | str = "auto",
        **settings,
    ):
        if isinstance(model, ModelSettings):
            self.settings = model._replace(**settings)
        else:
            self.settings = embedder_settings(str(model), **settings)
        self.model = self.settings.name
        self._workers = WorkerPool(devices)
        self.devices = self._workers.devices
        # With workers, this process only prepares sequences: its copy stays off the GPUs.
        device = self.settings.device
        self._device = "cpu" if self.devices and device == "auto" else device
        self.kind = EmbeddingKind(self.settings.layer, False, self.settings.normalize)
        self.progress = progress
        self.last_rejects: dict[int, str] = {}  # encode's rejected inputs: index -> reason

    @classmethod
    def like_pyeed(cls, model: str, embedding_type: str, **settings) -> tuple["Embedder", bool]:
        """The Embedder for one of PyEED's embedding types, and whether PyEED returns residue
        matrices for it (then call encode_records(..., per_residue=True))."""
        arguments, per_residue = pyeed_settings(embedding_type)
        return cls(model, **(settings | arguments)), per_residue

    # What the model is -------------------------------------------------------------

    @property
    def adapter(self) -> Adapter:
        """The model in this process (loaded on first use, then shared by every Embedder
        with the same model, family, device and precision)."""
        return cached_adapter(
            self.model,
            self.settings.family,
            self._device,
            self.settings.precision,
            self.settings.compile,
        )

    @property
    def dimension(self) -> int:
        return self.adapter.dimension

    @property
    def num_layers(self) -> int:
        return self.adapter.num_layers

    @property
    def precision(self) -> str:
        return self.adapter.precision

    @property
    def device(self) -> str:
        return str(self.adapter.device)

    def describe(self) -> str:
        """Exactly what a vector is, in words: the pooling statement stored with them."""
        return self.kind.describe(self.adapter)

    def token_budget(self, divisor: int = 1) -> int:
        """Tokens per forward pass: tokens_per_batch, or the device's automatic one."""
        budget = self.settings.tokens_per_batch
        if budget == "auto" or self.adapter.device.type == "cpu":  # a CPU: always one piece
            layers = len(self.kind.layers(self.num_layers))
            budget = default_tokens_per_batch(self.adapter, layers)
        return max(1, budget // divisor)

    # Embedding -----------------------------------------------------------------------

    def embed(
        self,
        sequences: list,
        *,
        per_residue: bool = False,
        progress=None,
        token_budget_divisor: int = 1,
    ) -> list[Embedded | RejectedSequence]:
        """One result per input sequence, in input order: its vector (and residue matrix)
        or the reason it was rejected. Sequences are prepared here (uppercase, whitespace
        and a terminal * dropped); identical prepared sequences are embedded once.

        `progress`: "auto", True, False, a file or a tqdm class for the bar; None: the
        Embedder's own setting.
        """
        results: list[Embedded | RejectedSequence | None] = [None] * len(sequences)
        unique: dict[str, list[int]] = {}  # prepared sequence -> its inputs
        for index, sequence in enumerate(sequences):
            if not isinstance(sequence, str):
                results[index] = RejectedSequence("sequence is not a string")
                continue
            try:
                unique.setdefault(self.adapter.prepare(sequence), []).append(index)
            except RejectedSequence as reason:
                results[index] = reason
        if unique:
            kind = EmbeddingKind(self.kind.layer, per_residue, self.kind.normalize)
            progress = self.progress if progress is None else progress
            if progress == "auto":
                progress = len(unique) >= BAR_FROM_SEQUENCES
            progress = _progress(progress)
            embedded = self._embed_prepared(
                list(unique), kind, self.token_budget(token_budget_divisor), progress
            )
            for indices, result in zip(unique.values(), embedded, strict=True):
                for index in indices:
                    results[index] = result
        return results  # type: ignore[return-value]

    def _embed_prepared(self, prepared: list[str], kind: EmbeddingKind, budget: int, progress):
        settings = {
            "kind": kind,
            "long_sequences": self.settings.long_sequences,
            "overlap": self.settings.chunk_overlap,
            "max_residues": self.settings.max_residues,
            "tokens_per_batch": budget,
        }
        if len(self.devices) < 2 or len(prepared) < 2:
            return embed_sequences(self.adapter, prepared, progress=progress, **settings)
        model = (self.model, self.settings.family, self.settings.precision, self.settings.compile)
        return self._workers.spread(model, prepared, settings)

    def close(self) -> None:
        """Stop the worker processes (their models go with them)."""
        self._workers.close()

    def __enter__(self) -> "Embedder":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def encode(
        self,
        sequences: str | Path | Iterable[str],
        *,
        errors: str = "raise",
        progress=None,
        normalize_embeddings: bool = False,
        convert_to_tensor: bool = False,
        convert_to_numpy: bool = True,
        show_progress_bar: bool | None = None,
        **others,
    ):
        """(n, dimension) float32 vectors in input order; a single string gives one vector,
        a pathlib.Path the vectors of a FASTA file's records in file order.

        A sequence that cannot be embedded (empty, characters the model cannot read, too
        long under long_sequences="reject") raises with its index and reason
        (errors="raise"), becomes a row of NaN ("nan") or is left out ("skip"); with "nan"
        and "skip", `last_rejects` maps each such input's index to its reason.

        As sentence-transformers has them: `normalize_embeddings` L2-normalises the
        returned vectors, `convert_to_tensor` returns a CPU torch.Tensor (convert_to_numpy
        is the default), `show_progress_bar` is `progress`.
        """
        for keyword in others:
            if keyword not in NOT_SENTENCE_TRANSFORMERS:
                raise TypeError(f"encode() got an unexpected keyword argument {keyword!r}")
            raise UserError(f"encode() takes no {keyword}: {NOT_SENTENCE_TRANSFORMERS[keyword]}")
        if errors not in ERROR_MODES:
            raise UserError(f"errors {errors!r} is not one of {', '.join(ERROR_MODES)}")
        if not (convert_to_numpy or convert_to_tensor):
            raise UserError(
                "encode() returns a NumPy array, or a torch.Tensor with convert_to_tensor=True"
            )
        if show_progress_bar is not None:
            if progress is not None and progress != show_progress_bar:
                raise UserError("pass progress or show_progress_bar, not both")
            progress = show_progress_bar
        single = isinstance(sequences, str)
        sequences = _sequences_to_encode(sequences)
        matrix = self._encoded(sequences, errors, progress, single)
        if normalize_embeddings:
            with np.errstate(invalid="ignore", divide="ignore"):  # NaN rows stay NaN
                matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix[0] if single else matrix
        if convert_to_tensor:
            import torch

            return torch.from_numpy(matrix)
        return matrix

    def _encoded(self, sequences: list, errors: str, progress, single: bool) -> np.ndarray:
        results = self.embed(sequences, progress=progress)
        self.last_rejects = {
            i: str(r) for i, r in enumerate(results) if isinstance(r, RejectedSequence)
        }
        if self.last_rejects and (errors == "raise" or (single and errors == "skip")):
            index, reason = next(iter(self.last_rejects.items()))
            raise UserError(
                f"sequence {index} cannot be embedded: {reason} (pass errors='nan' or "
                f"errors='skip' to go on without it)"
            )
        rows = [
            r.vector if isinstance(r, Embedded) else np.full(self.dimension, np.nan, np.float32)
            for r in results
            if errors != "skip" or isinstance(r, Embedded)
        ]
        return np.stack(rows) if rows else np.zeros((0, self.dimension), np.float32)

    def encode_records(
        self,
        records,
        *,
        per_residue: bool = False,
        id_column: str | None = None,
        sequence_column: str = "sequence",
        progress=None,
    ):
        """Embed (id, sequence) pairs, a {id: sequence} dict, a FASTA path or a DataFrame.

        Returns (embedded, rejects), two pandas DataFrames in input order: `id`, `vector`
        (float32), `residues`, `long_sequence_handling`, `sequence_sha256` (of the sequence
        as given) and, with per_residue, `residue_vectors` (residues x dimension); and `id`,
        `reason`. Every record is in one of the two.
        """
        import pandas as pd

        given = Records.of(records, id_column=id_column, sequence_column=sequence_column)
        results = self.embed(given.sequences, per_residue=per_residue, progress=progress)
        rows, rejects = [], []
        for protein_id, sequence, result in zip(given.ids, given.sequences, results, strict=True):
            if isinstance(result, RejectedSequence):
                rejects.append({"id": protein_id, "reason": str(result)})
                continue
            row = {
                "id": protein_id,
                "vector": result.vector,
                "residues": result.residues,
                "long_sequence_handling": result.handling,
                "sequence_sha256": sequence_sha256(sequence),
            }
            if per_residue:
                row["residue_vectors"] = result.residue_vectors
            rows.append(row)
        columns = ["id", "vector", "residues", "long_sequence_handling", "sequence_sha256"]
        columns += ["residue_vectors"] if per_residue else []
        return pd.DataFrame(rows, columns=columns), pd.DataFrame(rejects, columns=["id", "reason"])


def _sequences_to_encode(sequences) -> list:
    """encode's input as a list: a Path is a FASTA file to read; a string naming a file is
    refused, since it was meant as a path and would be embedded (or rejected) as letters."""
    if isinstance(sequences, Path):
        records = Records.from_fasta(sequences).sequences
        if not records:
            raise UserError(f"FASTA file {sequences} holds no record (no line starts with '>')")
        return records
    if isinstance(sequences, str):
        if os.path.isfile(sequences):
            raise UserError(
                f"{sequences!r} is a file, not a sequence: encode(pathlib.Path({sequences!r})) "
                "reads a FASTA file, encode_records reads one with its ids"
            )
        return [sequences]
    return list(sequences)


def _progress(progress):
    """What embed_sequences takes: a file or tqdm class for the bar, or None for none."""
    return auto_bar if progress is True else progress or None


__all__ = ["PYEED_EMBEDDING_TYPES", "Embedder", "Records", "cached_adapter"]
