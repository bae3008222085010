"""select_beta follows ALGORITHMS.md §7; block_betas forms the blocks of each scope."""

import math

import pytest
import torch

from adamem.beta import block_betas, select_beta

INF, NAN = math.inf, math.nan


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (4.65, 11.25, 4.65 / 11.25),  # interior
        (-2.1, 32.0, 0.0),  # below 0
        (2.198, 0.02, 0.9),  # above the cap
        (0.34375, 0.0, 0.9),  # flat dual rising: cap
        (0.0, 0.0, 0.0),  # g = d = 0
        (-1.0, 0.0, 0.0),  # flat dual falling
        (INF, 1.0, 0.9),
        (-INF, 1.0, 0.0),
        (INF, 0.0, 0.9),
        (INF, INF, 0.0),  # inf / inf
        (1.0, INF, 0.0),
        (NAN, 1.0, 0.0),
        (1.0, NAN, 0.0),
        (NAN, 0.0, 0.0),
    ],
)
def test_select_beta_rules(a, b, expected):
    beta = select_beta(
        torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64), 0.9
    )
    assert beta.dtype == torch.float64
    assert float(beta) == pytest.approx(expected, abs=1e-15)


def test_select_beta_maximises_the_dual_on_random_blocks():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(200, generator=generator, dtype=torch.float64) * 3
    b = torch.rand(200, generator=generator, dtype=torch.float64) * 4
    b[::7] = 0.0
    cap = 0.8
    grid = torch.linspace(0, cap, 80001, dtype=torch.float64)
    dual = a[:, None] * grid - 0.5 * b[:, None] * grid**2
    best = grid[dual.argmax(dim=1)]
    torch.testing.assert_close(select_beta(a, b, cap), best, rtol=0, atol=2e-5)


def sums(*pairs):
    return torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


def test_block_betas_per_scope():
    group_one = sums((1.0, 4.0), (3.0, 2.0))
    group_two = sums(
        (-1.0, 1.0),
    )
    tensor_scope = block_betas([group_one, group_two], ["tensor", "tensor"], [0.9, 0.9])
    torch.testing.assert_close(tensor_scope[0], torch.tensor([0.25, 0.9]))
    torch.testing.assert_close(tensor_scope[1], torch.tensor([0.0]))

    group_scope = block_betas([group_one, None, group_two], ["group"] * 3, [0.9] * 3)
    torch.testing.assert_close(group_scope[0], torch.tensor([4.0 / 6.0] * 2))
    assert group_scope[1] is None

    mixed = block_betas([group_one, group_two], ["global", "global"], [0.9, 0.9])
    torch.testing.assert_close(mixed[0], torch.tensor([3.0 / 7.0] * 2))
    torch.testing.assert_close(mixed[1], torch.tensor([3.0 / 7.0]))


def test_global_block_promotes_dtypes_and_rejects_mixed_caps():
    group_one = sums((1.0, 4.0))
    group_two = tuple(t.double() for t in sums((3.0, 2.0)))
    betas = block_betas([group_one, group_two], ["global", "global"], [0.9, 0.9])
    assert betas[0].dtype == torch.float32 and betas[1].dtype == torch.float64
    with pytest.raises(ValueError, match="cap"):
        block_betas([group_one, group_two], ["global", "global"], [0.9, 0.5])
    with pytest.raises(ValueError, match="scope"):
        block_betas([group_one], ["layer"], [0.9])
