"""Checkpoints resume bit-exactly, survive dtype moves, and old state gets new defaults."""

import copy
import io

import pytest
import torch
from helpers import (
    OPTION_CASES,
    WEIGHT_DECAY_CASES,
    parametrize_cases,
    quadratic_grads,
    run,
    state_tensors,
)

LRS = [0.05, 0.04, 0.03, 0.02, 0.05]


def save_and_load(params, optimizer, case, dtype=None, **kw):
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in params], "opt": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    restored = [torch.nn.Parameter(p.clone().to(dtype or p.dtype)) for p in checkpoint["params"]]
    new_optimizer = case.make(restored, **kw)
    new_optimizer.load_state_dict(checkpoint["opt"])
    return restored, new_optimizer


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("scope", ["tensor", "global"])
@parametrize_cases(WEIGHT_DECAY_CASES + OPTION_CASES)
def test_resume_is_bit_exact(case, scope, foreach):
    kw = dict(scope=scope, foreach=foreach)
    params = case.params(torch.float32)
    uninterrupted = case.make(params, **kw)
    run(uninterrupted, params, steps=10, lrs=LRS, skip_every=3)

    first_half = case.params(torch.float32)
    optimizer = case.make(first_half, **kw)
    run(optimizer, first_half, steps=5, lrs=LRS, skip_every=3)
    resumed, optimizer = save_and_load(first_half, optimizer, case, **kw)
    # Continue the same gradient and lr sequence from step 5.
    for step in range(5, 10):
        quadratic_grads(resumed, step, skip_every=3)
        for group in optimizer.param_groups:
            group["lr"] = LRS[step % len(LRS)]
        optimizer.step()
    expected, actual = state_tensors(uninterrupted, params), state_tensors(optimizer, resumed)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert actual[key].dtype == expected[key].dtype, key
        assert torch.equal(actual[key], expected[key]), key


@parametrize_cases(WEIGHT_DECAY_CASES)
def test_tensor_lr_resumes(case):
    params = case.params(torch.float32)
    optimizer = case.make(params)
    optimizer.param_groups[0]["lr"] = torch.tensor(0.02)
    run(optimizer, params, steps=3)
    restored, optimizer = save_and_load(params, optimizer, case)
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
    run(optimizer, restored, steps=2)
    assert all(torch.isfinite(p).all() for p in restored)


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
@parametrize_cases(WEIGHT_DECAY_CASES + OPTION_CASES)
def test_statistics_stay_fp32_when_loaded_into_low_precision(case, low):
    params = case.params(torch.float32)
    optimizer = case.make(params)
    run(optimizer, params, steps=4)
    saved = optimizer.state_dict()
    restored, optimizer = save_and_load(params, optimizer, case, dtype=low)
    for index, p in enumerate(restored):
        state = optimizer.state[p]
        # Some statistics belong to options (noise_averaging's pair): those the state has.
        statistics = optimizer._statistic_keys & saved["state"][index].keys()
        assert optimizer._statistic_keys & optimizer._state_keys <= statistics
        for key in statistics:
            assert state[key].dtype == torch.float32, key
            assert torch.equal(state[key], saved["state"][index][key]), key
        assert state[case.family.momentum_key].dtype == low
        second_moment = case.family.second_moment_key
        if second_moment:
            expected = torch.float32 if low == torch.float16 else low
            assert state[second_moment].dtype == expected
    run(optimizer, restored, steps=2)
    assert all(torch.isfinite(p).all() for p in restored)


@parametrize_cases(WEIGHT_DECAY_CASES)
def test_deepcopy_copies_state(case):
    params = case.params()
    optimizer = case.make(params)
    run(optimizer, params, steps=3)
    twin = copy.deepcopy(optimizer)
    assert repr(twin) == repr(optimizer)
    for original, copied in zip(optimizer.state.values(), twin.state.values()):
        for key, value in original.items():
            assert torch.equal(copied[key], value) and copied[key] is not value


@parametrize_cases(WEIGHT_DECAY_CASES)
def test_deepcopy_of_model_and_optimizer_together(case):
    model = torch.nn.Linear(3, 2)
    optimizer = case.make([p for p in model.parameters() if case.takes(p)])
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    twin_model, twin_optimizer = copy.deepcopy((model, optimizer))
    for m, o in ((model, optimizer), (twin_model, twin_optimizer)):
        o.zero_grad()
        m(torch.ones(1, 3)).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), twin_model.parameters()):
        assert torch.equal(a, b)
        assert a is not b


@parametrize_cases(WEIGHT_DECAY_CASES)
def test_repr_names_the_hyperparameters(case):
    text = repr(case.make(case.params()))
    assert case.cls.__name__ in text
    for key in ("lr", "lambd", "scope", "maximize", "foreach"):
        assert key in text


@parametrize_cases(WEIGHT_DECAY_CASES)
def test_setstate_fills_flags_missing_from_old_checkpoints(case):
    """A setting that a class gained after its first release is filled with the behaviour
    checkpoints without it had."""
    behaviour_before = {
        "scope": "tensor",
        "maximize": False,
        "foreach": None,
        "fused": None,
        "gap_estimate": "displacement",
        "nesterov": False,
        "scale_invariant": False,
        "ns_dtype": None,
        "weight_decay": 0.0,
        "noise_averaging": None,
    }
    optimizer = case.make(case.params())
    gained = type(optimizer)._group_defaults
    assert set(gained) <= set(behaviour_before)
    state = optimizer.__getstate__()
    for group in state["param_groups"]:
        for key in gained:
            del group[key]
    restored = object.__new__(type(optimizer))
    restored.__setstate__(state)
    group = restored.param_groups[0]
    assert {key: group[key] for key in gained} == {key: behaviour_before[key] for key in gained}
