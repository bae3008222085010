"""The optimizer registry of tests/helpers.py covers every AM optimizer and states its facts
correctly, so that tests drawing from it test what they claim."""

import torch
from helpers import BASE_CASES, CASES, parametrize_cases

import adamem
from adamem._core.optimizer import AMOptimizer


def test_every_exported_am_optimizer_has_cases():
    exported = {
        value
        for value in vars(adamem).values()
        if isinstance(value, type) and issubclass(value, AMOptimizer)
    }
    assert exported == {case.cls for case in CASES}


def test_case_names_are_unique():
    names = [case.name for case in CASES]
    assert len(set(names)) == len(names)


@parametrize_cases(BASE_CASES)
def test_base_cases_run_their_class_defaults(case):
    assert not case.options


@parametrize_cases(BASE_CASES)
def test_family_states_the_default_cap_and_how_to_set_it(case):
    """Setting the cap to ``beta_cap`` through ``cap_options`` changes no hyperparameter."""
    default = case.make(case.params()).param_groups[0]
    capped = case.make(case.params(), **case.family.cap_options(case.family.beta_cap))
    hyperparameters = {key: value for key, value in default.items() if key != "params"}
    assert {key: capped.param_groups[0][key] for key in hyperparameters} == hyperparameters


@parametrize_cases(BASE_CASES)
def test_family_states_the_state_keys(case):
    params = case.params()
    optimizer = case.make(params)
    for _ in range(2):
        for p in params:
            p.grad = torch.ones_like(p)
        optimizer.step()
    state = optimizer.state[params[0]]
    assert case.family.momentum_key in state
    if case.family.second_moment_key:
        assert case.family.second_moment_key in state
