"""The one interface every model family implements.

Layers are numbered the same way for every family, as transformers and fair-esm do:
layer 0 is the input embeddings, layer i the output of transformer block i, and the last
layer (`num_layers`) the output of the last block after the model's final norm. Blocks
1 .. num_layers - 1 are taken before that norm, as the models produce them.
"""

import importlib.util
import logging
from abc import ABC
from typing import ClassVar

import numpy as np
import torch

from .. import layout
from ..errors import UserError
from ..sequences import clean_sequence

# The 20 standard residues plus the ambiguity and rare codes that ESM-style vocabularies hold.
ESM_ALPHABET = frozenset("ACDEFGHIKLMNPQRSTVWYXBZUO")

log = logging.getLogger(__name__)


class Adapter(ABC):
    """A loaded model that turns prepared sequences into per-residue vectors of chosen layers.

    Pooling, long-sequence windows and batching live in `embedding.py` and are the same for
    every family; an adapter says how its model reads residues, which token positions hold
    them, and what its layers are.
    """

    # model.family's value; load_adapter sets it from the family's record (adapters/__init__).
    family: str
    alphabet: ClassVar[frozenset[str]] = ESM_ALPHABET
    # Tokens added to every sequence (e.g. <cls> and <eos>); they count towards batches.
    special_tokens: ClassVar[int] = 2
    # Token position of the first residue (1 after a leading <cls>).
    first_residue: ClassVar[int] = 1
    # Which token positions the vectors are taken from, in words (goes into the metadata).
    tokens: ClassVar[str] = "residue positions only (<cls>, <eos> and padding excluded)"
    # The model's final norm, as its code names it.
    final_norm: ClassVar[str] = "the final layer norm"
    # Half precision this family tolerates on a GPU; T5 overflows in float16.
    half_precision: ClassVar[torch.dtype] = torch.float16

    name: str
    device: torch.device
    dimension: int
    max_residues: int
    num_layers: int
    # What the weights are held in and which attention kernel runs (use_precision).
    precision: str = "float32"
    attention: str | None = None

    # Token ids by residue letter: a 256-entry table indexed by the letter's byte, -1 for
    # letters outside the vocabulary; and the ids placed before and after every sequence.
    # With it the engine tokenises a whole shard by one lookup and builds every batch with
    # array operations. None: the family tokenises inside hidden_states (ESM-3, k-mers).
    residue_ids: np.ndarray | None = None
    prefix_ids: tuple[int, ...] = ()
    suffix_ids: tuple[int, ...] = ()
    pad_id: int = 0
    # Whether the model can read several sequences packed into one row (no padding), each
    # with its own positions and attention confined to it (see adapters/packing.py).
    packs: ClassVar[bool] = False
    # How batches ran: "padded", or "packed (<attention>)" once use_packing switched it on.
    batching: str = "padded"
    # Whether the model runs through torch.compile (use_compile).
    compiled: bool = False

    def prepare(self, sequence: str) -> str:
        """The sequence as this family reads it; raises RejectedSequence with the reason."""
        return clean_sequence(sequence, self.alphabet)

    def token_ids(self, sequences: list[str]) -> np.ndarray:
        """The residue ids of prepared sequences, concatenated (no special tokens): one
        table lookup over all their bytes."""
        residues = np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8)
        ids = self.residue_ids[residues]
        if (ids < 0).any():
            letter = chr(residues[np.argmax(ids < 0)])
            raise ValueError(f"{self.name} has no token for residue {letter!r}")
        return ids

    def tokenize(self, sequences: list[str]) -> dict[str, torch.Tensor]:
        """The model's inputs for a batch: input_ids and attention_mask, right-padded, as
        host tensors."""
        lengths = np.array([len(s) for s in sequences])
        sources = np.cumsum(lengths) - lengths
        batch = layout.padded(
            self.token_ids(sequences),
            sources,
            lengths,
            self.prefix_ids,
            self.suffix_ids,
            self.pad_id,
        )
        return {key: torch.from_numpy(value) for key, value in batch.inputs.items()}

    def forward(self, inputs: dict[str, torch.Tensor], layers: list[int]) -> list[torch.Tensor]:
        """hidden_states from the model's inputs (tokenize(), or a packed row), already on
        the device."""
        raise NotImplementedError(f"{type(self).__name__} implements hidden_states instead")

    def hidden_states(self, sequences: list[str], layers: list[int]) -> list[torch.Tensor]:
        """The given layers for a batch of prepared sequences: (batch, tokens, dimension) each,
        sequences right-padded, the attention mask applied so padding changes nothing."""
        return self.forward(self.to_device(self.tokenize(sequences)), layers)

    def to_device(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Host tensors to the device. On a GPU they go through pinned memory, so the copy
        is queued behind the running kernels instead of waiting for them."""
        if self.device.type != "cuda":
            return inputs
        return {
            key: value.pin_memory().to(self.device, non_blocking=True)
            if torch.is_tensor(value)
            else value
            for key, value in inputs.items()
        }

    @torch.inference_mode()
    def residue_embeddings(
        self, sequences: list[str], layers: list[int] | None = None
    ) -> list[torch.Tensor]:
        """One float32 (length, dimension) tensor per sequence, on the adapter's device,
        residues only: the average of the given layers (default: the last)."""
        layers = [self.num_layers] if layers is None else layers
        states = sum(s.float() for s in self.hidden_states(sequences, layers)) / len(layers)
        start = self.first_residue
        return [states[i, start : start + len(s)] for i, s in enumerate(sequences)]

    def use_precision(self, requested: str = "auto") -> None:
        """Hold the weights in `requested` (auto: see choose_precision); on a GPU also pick
        the fastest attention installed.

        Rotary frequencies stay float32: transformers multiplies positions by them in float32,
        but a frequency buffer cast to half precision has lost digits, and the angle error
        grows with the position (residue 1,000 would be rotated visibly wrong).
        """
        model = getattr(self, "model", None)
        if model is None:  # nothing to cast (the k-mer counts)
            return
        dtype = choose_precision(requested, self.device, self.half_precision)
        if dtype == torch.float16 and self.half_precision != torch.float16:
            raise UserError(
                f"precision float16 is refused for {self.family}: its half precision is "
                "bfloat16 (T5 overflows in float16); use bfloat16 or float32"
            )
        if dtype != torch.float32:
            cast_keeping_rotary_float32(model, dtype)
            self.precision = str(dtype).removeprefix("torch.")
        if self.device.type != "cuda":
            return
        config = getattr(model, "config", None)
        self.attention = getattr(config, "_attn_implementation", None)
        if getattr(model, "_supports_flash_attn", False):
            if importlib.util.find_spec("flash_attn") is None:
                log.info("attention: %s (flash-attn is not installed)", self.attention)
            else:
                try:
                    model.set_attn_implementation("flash_attention_2")
                    self.attention = "flash_attention_2"
                except (ImportError, ValueError, RuntimeError) as error:
                    log.warning(
                        "flash-attn is installed but not usable here (%s); attention stays %s",
                        error,
                        self.attention,
                    )
        log.info(
            "%s on %s in %s, attention %s", self.name, self.device, self.precision, self.attention
        )

    def use_compile(self, requested: bool | str = "auto") -> None:
        """Run the model through torch.compile (fused kernels) if asked for. `auto` leaves it
        off: no measurement has yet shown a gain over a typical shard once the compilation
        time is counted (BENCHMARKS.md), and a CPU gains nothing from it. Shapes are compiled
        dynamic and packed rows come in length buckets (embedding.py), so a shard triggers
        only a few compilations. Rotary angles stay float32 inside the compiled code: the
        frequencies are float32 buffers (use_precision) and transformers computes in float32.
        """
        if requested not in (True, False, "auto"):
            raise UserError(f"model.compile {requested!r} is not one of auto, true, false")
        model = getattr(self, "model", None)
        if requested is not True or model is None:
            return
        model.compile(dynamic=True)
        self.compiled = True
        log.info("%s: compiled with torch.compile", self.name)

    def describe_layer(self, layer: int) -> str:
        if layer == 0:
            return "layer 0 (the input embeddings, before any transformer block)"
        if layer == self.num_layers:
            return (
                f"layer {layer} of {self.num_layers} (the last block's output after "
                f"{self.final_norm})"
            )
        return (
            f"layer {layer} of {self.num_layers} (block {layer}'s output, before {self.final_norm})"
        )


PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def choose_precision(
    requested: str, device: torch.device, half_precision: torch.dtype
) -> torch.dtype:
    """What the weights are held in. The one place `auto` is decided: the family's half
    precision on a GPU, bfloat16 on a CPU that runs it natively, float32 elsewhere.
    tests/test_precision.py holds every choice to cosine >= 0.9999 against float32."""
    if requested not in PRECISIONS:
        raise UserError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda":
        return half_precision
    if device.type == "cpu" and cpu_runs_bfloat16_natively():
        return torch.bfloat16
    return torch.float32


def cpu_runs_bfloat16_natively() -> bool:
    """AVX512_BF16 or AMX, as torch's own CPU feature detection reports them. Without
    either, bfloat16 matrix products are emulated and run slower than float32."""
    # Private since torch 2.3, with no public equivalent; absent means "not known to".
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def cast_keeping_rotary_float32(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """model.to(dtype), except rotary frequencies (buffers named *inv_freq), kept float32."""
    rotary = {n: b.clone() for n, b in model.named_buffers() if n.endswith("inv_freq")}
    model.to(dtype)
    for name, buffer in rotary.items():
        owner, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(owner), attribute, buffer)


class TransformersAdapter(Adapter):
    """A transformers encoder whose hidden_states follow our layer numbering (ESM-2, ESM-C,
    ProtT5). Subclasses set residue_ids, prefix_ids, suffix_ids and pad_id."""

    def forward(self, inputs: dict[str, torch.Tensor], layers: list[int]) -> list[torch.Tensor]:
        # Padded inputs always carry the attention mask: these models do not infer padding
        # from the ids, so without it padding would leak into every shorter sequence.
        output = self.model(**inputs, output_hidden_states=layers != [self.num_layers])
        if layers == [self.num_layers]:
            return [output.last_hidden_state]
        return [output.hidden_states[i] for i in layers]


def residue_table(ids_by_residue: dict[str, int]) -> np.ndarray:
    """A byte-indexed lookup table from {residue letter: token id}, -1 elsewhere."""
    table = np.full(256, -1, dtype=np.int64)
    for residue, token in ids_by_residue.items():
        table[ord(residue)] = token
    return table


def tokenizer_table(tokenizer, alphabet: frozenset[str]) -> np.ndarray:
    """The residue table of a transformers tokenizer that reads one token per residue."""
    ids = {}
    for residue in sorted(alphabet):
        tokens = tokenizer(residue, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1 or tokens[0] == tokenizer.unk_token_id:
            raise RuntimeError(f"the tokenizer does not read residue {residue!r} as one token")
        ids[residue] = tokens[0]
    return residue_table(ids)
