"""Padding-free batches: several sequences packed into one row, attention confined to each.

The engine (embedding.py) packs a batch's pieces one after another, with positions counted
from 0 in each, and passes their boundaries as `cu_seq_lens_q/k` and `max_length_q/k`.
transformers hands these keyword arguments through to the attention function named by the
model's `_attn_implementation`; registering ours under that name (its AttentionInterface)
makes ESM-2 and ESM-C read packed rows. Their rotary embeddings take the positions we pass
(`position_ids`), so each sequence is rotated as if it were alone.

Two attention functions read packed rows:
- varlen: torch.nn.attention.varlen.varlen_attn, flash attention over the packed tokens, on
  CUDA in half precision (torch >= 2.10);
- reference: one scaled_dot_product_attention call per sequence, anywhere; slow, it is what
  the tests hold the varlen path's layout to on a CPU.

Called without packed boundaries (a padded batch), both fall back to sdpa with the mask.
"""

import inspect
import logging

import torch
import transformers
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

log = logging.getLogger(__name__)

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
VARLEN = "protembed_varlen"
REFERENCE = "protembed_packed_reference"


def varlen_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether varlen_attn can run here: CUDA, half precision, a torch that has it."""
    if device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16):
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return True


def varlen_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """query/key/value: (1, heads, tokens, head size), as transformers lays them out."""
    if "cu_seq_lens_q" not in kwargs:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling)
    from torch.nn.attention.varlen import varlen_attn

    query, key, value = (x[0].transpose(0, 1).contiguous() for x in (query, key, value))
    options = {}
    if scaling is not None:
        if _VARLEN_TAKES_SCALE:
            options["scale"] = scaling
        else:  # an older varlen_attn always scales by 1/sqrt(head size)
            query = query * (scaling * query.shape[-1] ** 0.5)
    output = varlen_attn(
        query,
        key,
        value,
        kwargs["cu_seq_lens_q"],
        kwargs["cu_seq_lens_k"],
        kwargs["max_length_q"],
        kwargs["max_length_k"],
        **options,
    )
    return output.unsqueeze(0), None  # (1, tokens, heads, head size)


def reference_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    if "cu_seq_lens_q" not in kwargs:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling)
    bounds = kwargs["cu_seq_lens_q"].tolist()
    outputs = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], scale=scaling
        )
        for start, end in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def _takes_scale() -> bool:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return False
    return "scale" in inspect.signature(varlen_attn).parameters


_VARLEN_TAKES_SCALE = _takes_scale()
for _name, _function in ((VARLEN, varlen_attention), (REFERENCE, reference_attention)):
    AttentionInterface.register(_name, _function)
    # Padded calls build the same masks as sdpa; packed calls pass no mask at all.
    AttentionMaskInterface.register(_name, sdpa_mask)


def use_packing(adapter, *, reference: bool = False) -> bool:
    """Switch a family that packs to packed batches where varlen attention runs (or, with
    `reference`, anywhere, through the reference attention). Returns whether it did."""
    model = adapter.model
    dtype = next(model.parameters()).dtype
    if not adapter.packs or not (reference or varlen_available(adapter.device, dtype)):
        return False
    if getattr(adapter, "implementation", None) != "transformers" or TRANSFORMERS_MAJOR < 5:
        # The esm package's models, and transformers 4's ESM-2 (whose rotary ignores the
        # positions passed), do not read packed rows as ours do.
        return False
    model.config._attn_implementation = REFERENCE if reference else VARLEN
    adapter.batching = "packed (reference attention)" if reference else "packed (varlen_attn)"
    adapter.attention = model.config._attn_implementation
    log.info("%s: batches packed into one row, attention %s", adapter.name, adapter.attention)
    return True
