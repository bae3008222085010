"""A byte-level decoder-only transformer (pre-LayerNorm GPT, no dropout, tied embeddings)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VOCAB = 256


class Block(nn.Module):
    """Causal multi-head self-attention and a 4x GELU MLP, each behind a LayerNorm and a
    residual connection."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.out = nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(self.ln1(x)).view(batch, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(batch, length, width))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """Byte embeddings plus learned positions, ``layers`` blocks, a final LayerNorm and a read-out
    tied to the embedding. Matrices (positions included) start at N(0, 0.02); the output
    projections of each block at N(0, 0.02/sqrt(2*layers)), as in GPT-2.

    >>> model = GPT(width=16, layers=1, heads=2, context=8)
    >>> model(torch.zeros(2, 8, dtype=torch.long)).shape
    torch.Size([2, 8, 256])
    """

    def __init__(self, width: int, layers: int, heads: int, context: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.position = nn.Parameter(torch.empty(context, width))
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(layers)))
        self.ln = nn.LayerNorm(width)
        for name, param in self.named_parameters():
            if param.dim() == 2:
                residual = name.endswith(("proj.weight", "out.weight"))
                nn.init.normal_(param, std=0.02 / (2 * layers) ** 0.5 if residual else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(param)

    def forward(self, tokens: Tensor) -> Tensor:
        hidden = self.embed(tokens) + self.position[: tokens.shape[1]]
        return self.ln(self.blocks(hidden)) @ self.embed.weight.T
