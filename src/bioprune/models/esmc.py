"""ESM-C (EvolutionaryScale's ESM Cambrian) as a small native PyTorch / HF-style module.

The ``esm`` package that defines ESM-C cannot join bioprune's environment (it
needs Python 3.12 and pins older transformers/torch), so the architecture is
written here from its public definition (``esm/models/esmc.py``,
``esm/layers/{attention,blocks,transformer_stack,regression_head,rotary}.py``):

- token embedding, 64 rows (the tokenizer uses 33: ESM-2's order with ``|`` at 31);
- ``n_layers`` pre-LayerNorm blocks, each
  ``x = x + attn(x) / s`` and ``x = x + ffn(x) / s`` with ``s = sqrt(n_layers / 36)``;
- attention: LayerNorm (with bias) -> q, k, v projections (no bias; one fused
  ``(3d, d)`` matrix in the original, split here) -> LayerNorm of q and of k over
  the whole width (no bias) -> rotary positions (NeoX halves, base 10000,
  positions 0..T-1) -> softmax(q k^T / sqrt(d_head)) with keys restricted to
  the example's tokens -> output projection (no bias);
- SwiGLU FFN: LayerNorm (with bias) -> ``silu(gate x) * (up x)`` (one fused
  ``(2h, d)`` matrix in the original: gate is its first half) -> down (no
  bias), ``h = round_up(8/3 d, 256)``;
- final LayerNorm without bias;
- untied output head: Linear(d, d) -> GELU -> LayerNorm -> Linear(d, 64), with biases.

Module names follow HF ``EsmForMaskedLM`` (``esm.embeddings.word_embeddings``,
``esm.encoder.layer.N``, ``esm.encoder.emb_layer_norm_after`` for the final
norm, ``lm_head.{dense,layer_norm,decoder}``), so that bioprune's parameter
specs (``--params lm_head``, ``layers:A:B``), the influence hooks, training and
evaluation treat both families alike. ``EsmcForMaskedLM`` has HF's
``save_pretrained``/``from_pretrained``; importing this module registers
``model_type="esmc"`` with ``AutoConfig``/``AutoModel``/``AutoModelForMaskedLM``
(never ``trust_remote_code``).

Token ids: every token a bioprune protein corpus holds (specials, residues,
``<mask>``) has the same id in ESM-2's and ESM-C's vocabularies (id 31 is
``<null_1>`` in one and ``|`` in the other; no corpus or mask draw produces it),
so a corpus prepared once with ``--alphabet protein`` serves both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, PreTrainedModel

try:
    from transformers.configuration_utils import PreTrainedConfig
except ImportError:  # transformers 4.x spells it PretrainedConfig (5.x keeps that alias)
    from transformers.configuration_utils import PretrainedConfig as PreTrainedConfig
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput

__all__ = [
    "ESMC_TOKENS",
    "ESMC_VOCAB_ROWS",
    "EsmcConfig",
    "EsmcForMaskedLM",
    "EsmcModel",
    "esmc_ffn_size",
]

#: Rows of ESM-C's embedding table and output head (the tokenizer uses the first 33).
ESMC_VOCAB_ROWS = 64

#: ESM-C's tokenizer vocabulary (``esm.utils.constants.esm3.SEQUENCE_VOCAB``), in id order.
ESMC_TOKENS = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K",
    "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z",
    "O", ".", "-", "|",
    "<mask>",
)  # fmt: skip


def esmc_ffn_size(hidden: int, expansion: float = 8 / 3) -> int:
    """ESM-C's SwiGLU width: ``expansion * hidden`` rounded up to a multiple of 256."""
    return int(((expansion * hidden) + 255) // 256 * 256)


class EsmcConfig(PreTrainedConfig):
    """Configuration of an ESM-C masked LM (numbers of the original ``ESMC(d_model, n_heads,
    n_layers)``); ``intermediate_size`` defaults to :func:`esmc_ffn_size`."""

    model_type = "esmc"

    def __init__(
        self,
        vocab_size: int = ESMC_VOCAB_ROWS,
        hidden_size: int = 960,
        num_hidden_layers: int = 30,
        num_attention_heads: int = 15,
        intermediate_size: int | None = None,
        layer_norm_eps: float = 1e-5,
        rope_theta: float = 10000.0,
        residual_scale: float | None = None,
        alphabet_size: int = 33,
        pad_token_id: int = 1,
        mask_token_id: int = 32,
        initializer_range: float = 0.02,
        position_embedding_type: str = "rotary",
        max_position_embeddings: int = 1026,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size or esmc_ffn_size(hidden_size)
        self.layer_norm_eps = layer_norm_eps
        self.rope_theta = rope_theta
        self.residual_scale = (
            residual_scale if residual_scale is not None else math.sqrt(num_hidden_layers / 36)
        )
        self.alphabet_size = alphabet_size
        self.mask_token_id = mask_token_id
        self.initializer_range = initializer_range
        # Rotary positions: no table; bioprune caps inputs at 1,022 residues like ESM-2.
        self.position_embedding_type = position_embedding_type
        self.max_position_embeddings = max_position_embeddings
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        if hidden_size % num_attention_heads or (hidden_size // num_attention_heads) % 2:
            raise ValueError(
                f"hidden_size {hidden_size} must split into {num_attention_heads} heads of an "
                "even size"
            )


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, base: float):
    """``(cos, sin)`` of shape ``(T, head_dim)`` (NeoX halves), float32."""
    inv_freq = 1.0 / (
        base
        ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    )
    freqs = torch.outer(positions.float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x``: ``(B, H, S, D)``; ``cos``/``sin``: broadcastable to it (float32 math)."""
    dtype = x.dtype
    x = x.float()
    return (x * cos + rotate_half(x) * sin).to(dtype)


class EsmcEmbeddings(nn.Module):
    def __init__(self, config: EsmcConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        return self.word_embeddings(input_ids)


class EsmcAttention(nn.Module):
    def __init__(self, config: EsmcConfig):
        super().__init__()
        d = config.hidden_size
        self.heads = config.num_attention_heads
        self.head_dim = d // self.heads
        self.rope_theta = config.rope_theta
        self.layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.query = nn.Linear(d, d, bias=False)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d, bias=False)
        self.q_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, bias=False)
        self.k_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, bias=False)
        self.out_proj = nn.Linear(d, d, bias=False)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def attend(self, q_rows, normed, key_mask, cos_q, sin_q, cos_k, sin_k):
        """Attention output (before out_proj) for query inputs ``q_rows`` ``(B, S, d)``
        against keys/values from ``normed`` ``(B, T, d)``."""
        q = self._split(self.q_norm(self.query(q_rows)))
        k = self._split(self.k_norm(self.key(normed)))
        v = self._split(self.value(normed))
        q = apply_rotary(q, cos_q, sin_q)
        k = apply_rotary(k, cos_k, sin_k)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        b, _, s, _ = ctx.shape
        return ctx.transpose(1, 2).reshape(b, s, self.heads * self.head_dim)

    def forward(self, hidden, key_mask, cos, sin):
        normed = self.layer_norm(hidden)
        return self.out_proj(self.attend(normed, normed, key_mask, cos, sin, cos, sin))


class EsmcFeedForward(nn.Module):
    def __init__(self, config: EsmcConfig):
        super().__init__()
        d, h = config.hidden_size, config.intermediate_size
        self.layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.gate = nn.Linear(d, h, bias=False)
        self.up = nn.Linear(d, h, bias=False)
        self.down = nn.Linear(h, d, bias=False)

    def forward(self, x):
        x = self.layer_norm(x)
        return self.down(F.silu(self.gate(x)) * self.up(x))


class EsmcLayer(nn.Module):
    def __init__(self, config: EsmcConfig):
        super().__init__()
        self.scale = float(config.residual_scale)
        self.attention = EsmcAttention(config)
        self.ffn = EsmcFeedForward(config)

    def forward(self, hidden, key_mask, cos, sin):
        hidden = hidden + self.attention(hidden, key_mask, cos, sin) / self.scale
        return hidden + self.ffn(hidden) / self.scale


class EsmcEncoder(nn.Module):
    def __init__(self, config: EsmcConfig):
        super().__init__()
        self.layer = nn.ModuleList([EsmcLayer(config) for _ in range(config.num_hidden_layers)])
        # The original's final ``transformer.norm`` (no bias); named as ESM's final norm.
        self.emb_layer_norm_after = nn.LayerNorm(
            config.hidden_size, eps=config.layer_norm_eps, bias=False
        )


class EsmcPreTrainedModel(PreTrainedModel):
    config_class = EsmcConfig
    base_model_prefix = "esm"


def _attention_inputs(model_config, input_ids, attention_mask):
    if attention_mask is None:
        attention_mask = input_ids != model_config.pad_token_id
    b, t = input_ids.shape
    key_mask = (attention_mask > 0).view(b, 1, 1, t)
    head_dim = model_config.hidden_size // model_config.num_attention_heads
    positions = torch.arange(t, device=input_ids.device)
    cos, sin = rotary_cos_sin(positions, head_dim, model_config.rope_theta)
    return attention_mask, key_mask, cos, sin


class EsmcModel(EsmcPreTrainedModel):
    """The ESM-C encoder: ``last_hidden_state`` is after the final LayerNorm."""

    def __init__(self, config: EsmcConfig):
        super().__init__(config)
        self.embeddings = EsmcEmbeddings(config)
        self.encoder = EsmcEncoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def forward(self, input_ids=None, attention_mask=None, **kwargs) -> BaseModelOutput:
        """``input_ids`` ``(B, T)``; ``attention_mask`` 1 for tokens, 0 for padding (default:
        ``input_ids != pad``). Padding positions never reach a token's output."""
        _, key_mask, cos, sin = _attention_inputs(self.config, input_ids, attention_mask)
        hidden = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            hidden = layer(hidden, key_mask, cos, sin)
        return BaseModelOutput(last_hidden_state=self.encoder.emb_layer_norm_after(hidden))


class EsmcLMHead(nn.Module):
    def __init__(self, config: EsmcConfig):
        super().__init__()
        d = config.hidden_size
        self.dense = nn.Linear(d, d)
        self.layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(d, config.vocab_size)

    def forward(self, x):
        return self.decoder(self.layer_norm(F.gelu(self.dense(x))))


class EsmcForMaskedLM(EsmcPreTrainedModel):
    """ESM-C with its (untied) sequence head; logits over 64 rows."""

    def __init__(self, config: EsmcConfig):
        super().__init__(config)
        self.esm = EsmcModel(config)
        self.lm_head = EsmcLMHead(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.esm.embeddings.word_embeddings

    def get_output_embeddings(self):
        return None  # untied: nothing for transformers to tie

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        hidden = self.esm(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))
        return MaskedLMOutput(loss=loss, logits=logits)

    # ------------------------------------------------- bioprune's gathered last layer
    def gathered_module_names(self) -> set[str]:
        """Modules that run on the selected positions only in :meth:`encoder_at_selected`."""
        last = f"esm.encoder.layer.{len(self.esm.encoder.layer) - 1}"
        return {
            f"{last}.attention.query",
            f"{last}.attention.q_norm",
            f"{last}.attention.out_proj",
            f"{last}.ffn.layer_norm",
            f"{last}.ffn.gate",
            f"{last}.ffn.up",
            f"{last}.ffn.down",
            "esm.encoder.emb_layer_norm_after",
        }

    def encoder_at_selected(self, enter, input_ids, attention, order) -> torch.Tensor:
        """``self.esm(...).last_hidden_state[b, order[b]]``, ``(B, S, d)``, computing the last
        block's query side only at ``order``.

        The last block's attention LayerNorm, keys (with their LayerNorm and rotary) and
        values run on every position (every token is attended to); its query projection,
        query LayerNorm (per row), rotary at the original positions, attention, output
        projection, residual, FFN and the final LayerNorm run on the ``S`` selected rows.
        Equal to the full computation at those rows. ``enter(module, hidden)`` is the
        influence tracker's hook for a stage computed without calling the module.
        """
        _, key_mask, cos, sin = _attention_inputs(self.config, input_ids, attention)
        hidden = self.esm.embeddings(input_ids)
        layers = self.esm.encoder.layer
        for layer in layers[:-1]:
            hidden = layer(hidden, key_mask, cos, sin)
        last = layers[len(layers) - 1]
        hidden = enter(last, hidden)
        att = last.attention
        normed = att.layer_norm(hidden)
        idx = order.unsqueeze(-1)
        rows = normed.gather(1, idx.expand(-1, -1, normed.shape[-1]))
        cos_q = cos[order].unsqueeze(1)  # (B, 1, S, D)
        sin_q = sin[order].unsqueeze(1)
        ctx = att.attend(rows, normed, key_mask, cos_q, sin_q, cos, sin)
        resid = hidden.gather(1, idx.expand(-1, -1, hidden.shape[-1]))
        x = resid + att.out_proj(ctx) / last.scale
        x = x + last.ffn(x) / last.scale
        return self.esm.encoder.emb_layer_norm_after(x)


AutoConfig.register("esmc", EsmcConfig, exist_ok=True)
AutoModel.register(EsmcConfig, EsmcModel, exist_ok=True)
AutoModelForMaskedLM.register(EsmcConfig, EsmcForMaskedLM, exist_ok=True)
