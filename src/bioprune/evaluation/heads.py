"""Task heads on top of the encoder's last hidden states (paper appendix B).

- :class:`SequenceHead`: a linear layer or a 2-layer MLP. On the mean-pooled
  representation (B, D) it is the sequence-level head; applied to (B, L, D)
  residue embeddings it is the per-residue head (``nn.Linear`` maps the last
  axis); on the concatenation of two pooled embeddings (B, 2D) it is the pair
  head.
- :class:`PairwiseHead`: one logit (or value) per residue pair for base pairs,
  contacts and distances.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PairwiseHead", "SequenceHead", "mean_pool"]


class SequenceHead(nn.Module):
    """``Linear(D, C)`` or ``Linear(D, H) -> GELU -> Linear(H, C)`` with ``H = D``."""

    def __init__(self, in_dim: int, out_dim: int, mlp: bool) -> None:
        super().__init__()
        if mlp:
            self.net = nn.Sequential(
                nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim)
            )
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PairwiseHead(nn.Module):
    """Residue-pair head: (B, L, D) residue embeddings -> (B, L, L) symmetric outputs.

    Each residue is projected to ``p_i`` (``proj`` dims); the pair feature is
    ``[p_i * p_j, p_i + p_j]``, symmetric in ``i, j`` by construction, and a
    linear layer or a 2-layer MLP maps it to one output. The (B, L, L, 2 proj)
    feature tensor is materialised, so memory grows as ``B L^2``; lower the
    batch size for long sequences.
    """

    def __init__(self, in_dim: int, mlp: bool, proj: int = 32) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, proj)
        feat = 2 * proj
        if mlp:
            self.net = nn.Sequential(nn.Linear(feat, feat), nn.GELU(), nn.Linear(feat, 1))
        else:
            self.net = nn.Linear(feat, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        p = self.proj(h)  # (B, L, P)
        pi, pj = p.unsqueeze(2), p.unsqueeze(1)  # (B, L, 1, P), (B, 1, L, P)
        feats = torch.cat(torch.broadcast_tensors(pi * pj, pi + pj), dim=-1)
        return self.net(feats).squeeze(-1)


def mean_pool(residues: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over each sequence's residues.

    Parameters
    ----------
    residues : (B, L, D) residue embeddings (``<cls>``/``<eos>`` already removed,
        padded past each length).
    lengths : (B,) residues per sequence.
    """
    mask = torch.arange(residues.shape[1], device=residues.device)[None, :] < lengths[:, None]
    summed = (residues * mask.unsqueeze(-1).to(residues.dtype)).sum(dim=1)
    return summed / lengths.clamp(min=1).unsqueeze(-1).to(residues.dtype)
