"""The multi-tensor paths work a bucket of tensors at a time; the result does not depend on
where the buckets end."""

import pytest
import torch
from helpers import CASES, parametrize_cases, run, state_tensors

from adamem._core import tensor_ops

SHAPES = [(4, 3), (3,), (2, 2, 2), (1,), (5,), (6, 2), (2,)]


@pytest.mark.parametrize("limit", [1, 7, 20])
@parametrize_cases(CASES)
def test_foreach_in_small_buckets_equals_reference(case, limit, monkeypatch):
    results = {}
    for foreach in (False, True):
        if foreach:
            monkeypatch.setattr(tensor_ops, "BUCKET_ELEMENTS", limit)
        params = case.params(shapes=SHAPES)
        optimizer = case.make(params, foreach=foreach)
        # Missing gradients every 3rd step: first steps and skipped tensors inside buckets.
        run(optimizer, params, steps=8, lrs=[0.05, 0.02, 0.0, 0.04], skip_every=3)
        results[foreach] = state_tensors(optimizer, params)
    assert len(tensor_ops.buckets(case.params(shapes=SHAPES), limit)) > 1
    for key, expected in results[False].items():
        torch.testing.assert_close(results[True][key], expected, rtol=0, atol=1e-12, msg=key)


def test_buckets_cover_every_tensor_once_in_order():
    tensors = [torch.empty(n) for n in (3, 0, 8, 1, 1, 2)]
    for limit in (1, 2, 3, 8, 100):
        runs = tensor_ops.buckets(tensors, limit)
        assert [i for part in runs for i in range(part.start, part.stop)] == list(range(6))
        for part in runs:
            sizes = [t.numel() for t in tensors[part]]
            assert sum(sizes) <= limit or len(sizes) == 1
