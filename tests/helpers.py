"""Shared test data: the spec's vectors and float64 helpers."""

import json
from pathlib import Path

import torch

VECTORS = json.loads((Path(__file__).parent / "data" / "spec_test_vectors.json").read_text())[
    "vectors"
]


def vectors_of(kind: str) -> list[dict]:
    return [v for v in VECTORS if v["kind"] == kind]


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)
