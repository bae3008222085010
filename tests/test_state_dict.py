"""Checkpoints resume bit-exactly, survive dtype moves, and old state gets new defaults."""

import copy
import io

import pytest
import torch
from helpers import make_params, quadratic_grads, run, state_tensors

import adamem

FACTORIES = {
    "amsgd": lambda params, **kw: adamem.AMSGD(params, lr=0.05, weight_decay=1e-3, **kw),
    "amadamw": lambda params, **kw: adamem.AMAdamW(params, lr=0.03, **kw),
}
LRS = [0.05, 0.04, 0.03, 0.02, 0.05]


def save_and_load(params, optimizer, factory, dtype=None, **kw):
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in params], "opt": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    restored = [torch.nn.Parameter(p.clone().to(dtype or p.dtype)) for p in checkpoint["params"]]
    new_optimizer = factory(restored, **kw)
    new_optimizer.load_state_dict(checkpoint["opt"])
    return restored, new_optimizer


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("scope", ["tensor", "global"])
@pytest.mark.parametrize("name", FACTORIES)
def test_resume_is_bit_exact(name, scope, foreach):
    factory = FACTORIES[name]
    kw = dict(scope=scope, foreach=foreach)
    params = make_params(torch.float32)
    uninterrupted = factory(params, **kw)
    run(uninterrupted, params, steps=10, lrs=LRS, skip_every=3)

    first_half = make_params(torch.float32)
    optimizer = factory(first_half, **kw)
    run(optimizer, first_half, steps=5, lrs=LRS, skip_every=3)
    resumed, optimizer = save_and_load(first_half, optimizer, factory, **kw)
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


@pytest.mark.parametrize("name", FACTORIES)
def test_tensor_lr_resumes(name):
    params = make_params(torch.float32)
    optimizer = FACTORIES[name](params)
    optimizer.param_groups[0]["lr"] = torch.tensor(0.02)
    run(optimizer, params, steps=3)
    restored, optimizer = save_and_load(params, optimizer, FACTORIES[name])
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
    run(optimizer, restored, steps=2)
    assert all(torch.isfinite(p).all() for p in restored)


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", FACTORIES)
def test_statistics_stay_fp32_when_loaded_into_low_precision(name, low):
    params = make_params(torch.float32)
    optimizer = FACTORIES[name](params)
    run(optimizer, params, steps=4)
    saved = optimizer.state_dict()
    restored, optimizer = save_and_load(params, optimizer, FACTORIES[name], dtype=low)
    for index, p in enumerate(restored):
        state = optimizer.state[p]
        for key in optimizer._statistic_keys:
            assert state[key].dtype == torch.float32, key
            assert torch.equal(state[key], saved["state"][index][key]), key
        buffer = "momentum_buffer" if name == "amsgd" else "exp_avg"
        assert state[buffer].dtype == low
        if name == "amadamw":
            expected = torch.float32 if low == torch.float16 else low
            assert state["exp_avg_sq"].dtype == expected
    run(optimizer, restored, steps=2)
    assert all(torch.isfinite(p).all() for p in restored)


@pytest.mark.parametrize("name", FACTORIES)
def test_deepcopy_copies_state(name):
    params = make_params()
    optimizer = FACTORIES[name](params)
    run(optimizer, params, steps=3)
    twin = copy.deepcopy(optimizer)
    assert repr(twin) == repr(optimizer)
    for original, copied in zip(optimizer.state.values(), twin.state.values()):
        for key, value in original.items():
            assert torch.equal(copied[key], value) and copied[key] is not value


@pytest.mark.parametrize("name", FACTORIES)
def test_deepcopy_of_model_and_optimizer_together(name):
    model = torch.nn.Linear(3, 2)
    optimizer = FACTORIES[name](model.parameters())
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


@pytest.mark.parametrize("name", FACTORIES)
def test_repr_names_the_hyperparameters(name):
    text = repr(FACTORIES[name](make_params()))
    assert type(FACTORIES[name](make_params())).__name__ in text
    for key in ("lr", "lambd", "scope", "maximize", "foreach"):
        assert key in text


@pytest.mark.parametrize("name", FACTORIES)
def test_setstate_fills_flags_missing_from_old_checkpoints(name):
    optimizer = FACTORIES[name](make_params())
    state = optimizer.__getstate__()
    for group in state["param_groups"]:
        for key in ("scope", "maximize", "foreach", "gap_estimate"):
            group.pop(key, None)
    restored = object.__new__(type(optimizer))
    restored.__setstate__(state)
    group = restored.param_groups[0]
    assert group["scope"] == "tensor" and group["maximize"] is False and group["foreach"] is None
    if name == "amadamw":
        assert group["gap_estimate"] == "displacement"
