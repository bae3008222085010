"""Every invalid argument is a clear error naming it; invalid groups are not added."""

import pytest
import torch
from helpers import BASE_CASES, parametrize_cases

import adamem


def params(case=None):
    """One parameter, in a shape ``case``'s class takes."""
    return case.params(shapes=[(2,)]) if case else [torch.nn.Parameter(torch.ones(2))]


# Options every AM optimizer takes; each case adds its own lr unless the entry sets one.
INVALID_FOR_EVERY_OPTIMIZER = [
    (dict(lr=-0.1), ValueError, "lr"),
    (dict(lr=-1e-3), ValueError, "lr"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr=float("inf")), ValueError, "lr"),
    (dict(lr="0.1"), TypeError, "lr"),
    (dict(lr=torch.tensor([0.1, 0.2])), ValueError, "lr"),
    (dict(lr=torch.tensor(1)), TypeError, "lr"),
    (dict(lambd=-0.1), ValueError, "lambd"),
    (dict(lambd=-1.0), ValueError, "lambd"),
    (dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    (dict(weight_decay=-0.01), ValueError, "weight_decay"),
    (dict(scope="layer"), ValueError, "scope"),
    (dict(scope="all"), ValueError, "scope"),
    (dict(maximize="yes"), TypeError, "maximize"),
    (dict(maximize=None), TypeError, "maximize"),
    (dict(foreach=1), TypeError, "foreach"),
]

AMSGD_CASES = [
    (dict(lr=0.1, beta_max=1.0), ValueError, "beta_max"),
    (dict(lr=0.1, beta_max=-0.1), ValueError, "beta_max"),
]

AMADAMW_CASES = [
    (dict(betas=(1.0, 0.999)), ValueError, "beta1_max"),
    (dict(betas=(-0.1, 0.999)), ValueError, "beta1_max"),
    (dict(betas=(0.89, 1.0)), ValueError, "beta2"),
    (dict(betas=(0.89, -0.5)), ValueError, "beta2"),
    (dict(betas=(0.89,)), TypeError, "betas"),
    (dict(eps=0.0), ValueError, r"eps must lie in \(0.0, inf\), got 0.0"),
    (dict(eps=-1e-8), ValueError, r"eps must lie in \(0.0, inf\), got -1e-08"),
    (dict(lr=1.0, weight_decay=1.0), ValueError, "weight_decay"),
    (dict(lr=0.5, weight_decay=3.0), ValueError, "weight_decay"),
    (dict(gap_estimate="exact"), ValueError, "gap_estimate"),
    (dict(scale_invariant="yes"), TypeError, "scale_invariant"),
    (dict(scale_invariant=None), TypeError, "scale_invariant"),
]


@pytest.mark.parametrize(("kwargs", "error", "name"), INVALID_FOR_EVERY_OPTIMIZER)
@parametrize_cases(BASE_CASES)
def test_every_optimizer_rejects(case, kwargs, error, name):
    with pytest.raises(error, match=name):
        case.make(params(case), **kwargs)


@pytest.mark.parametrize(("kwargs", "error", "name"), AMSGD_CASES)
def test_amsgd_rejects(kwargs, error, name):
    with pytest.raises(error, match=name):
        adamem.AMSGD(params(), **kwargs)


@pytest.mark.parametrize(("kwargs", "error", "name"), AMADAMW_CASES)
def test_amadamw_rejects(kwargs, error, name):
    with pytest.raises(error, match=name):
        adamem.AMAdamW(params(), **kwargs)


@parametrize_cases(BASE_CASES)
def test_invalid_group_is_not_added(case):
    optimizer = case.make(params(case))
    with pytest.raises(ValueError, match="lambd"):
        optimizer.add_param_group({"params": params(case), "lambd": -1.0})
    assert len(optimizer.param_groups) == 1


@parametrize_cases(BASE_CASES)
def test_global_groups_must_share_the_cap(case):
    def groups():  # fresh dicts: an optimizer fills its defaults into the ones it is given
        return [{"params": params(case)}, {"params": params(case), **case.family.cap_options(0.5)}]

    with pytest.raises(ValueError, match="cap"):
        case.make(groups(), scope="global")
    # Different caps are fine when the groups are separate blocks.
    case.make(groups())


def test_valid_edge_values_are_accepted():
    adamem.AMSGD(params(), lr=0.0, beta_max=0.0, lambd=0.0)
    adamem.AMAdamW(params(), lr=torch.tensor(0.0), betas=(0.0, 0.0), weight_decay=0.0)
