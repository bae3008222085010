"""torch.optim conventions: groups, tensor lr, maximize, closure, sparse, complex, no-grad."""

import warnings

import pytest
import torch
from helpers import (
    BASE_CASES,
    COMPLEX_CASES,
    parametrize_cases,
    quadratic_grads,
    run,
    state_tensors,
    with_kernels,
)

from adamem._kernels import build


@parametrize_cases(BASE_CASES)
def test_groups_behave_like_separate_optimizers(case):
    params = case.params()
    together = case.make([{"params": params[:2]}, {"params": params[2:], "lr": 0.01, "lambd": 0.5}])
    run(together, params, steps=6)

    apart = case.params()
    first = case.make(apart[:2])
    second = case.make(apart[2:], lr=0.01, lambd=0.5)
    for step in range(6):
        quadratic_grads(apart, step)
        first.step()
        second.step()
    for a, b in zip(params, apart):
        assert torch.equal(a, b)


@parametrize_cases(BASE_CASES)
def test_tensor_lr_equals_float_lr(case):
    results = []
    for lr in (
        0.02,
        torch.tensor(0.02, dtype=torch.float64),
        torch.tensor([0.02], dtype=torch.float64),
    ):
        params = case.params()
        opt = case.make(params, lr=lr)
        run(opt, params, steps=5)
        results.append(state_tensors(opt, params))
    for other in results[1:]:
        for key, value in results[0].items():
            torch.testing.assert_close(other[key], value, rtol=0, atol=1e-14, msg=key)


@pytest.mark.parametrize("foreach", [False, True])
@parametrize_cases(BASE_CASES)
def test_maximize_equals_minimising_the_negation_and_keeps_grad(case, foreach):
    maximised, minimised = case.params(), case.params()
    opt_max = case.make(maximised, maximize=True, foreach=foreach)
    opt_min = case.make(minimised, foreach=foreach)
    for step in range(5):
        quadratic_grads(maximised, step)
        quadratic_grads(minimised, step)
        for p in minimised:
            p.grad = -p.grad
        grads_before = [p.grad.clone() for p in maximised]
        opt_max.step()
        opt_min.step()
        for p, before in zip(maximised, grads_before):
            assert torch.equal(p.grad, before)
    for a, b in zip(maximised, minimised):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


@parametrize_cases(BASE_CASES)
def test_step_returns_closure_loss_computed_with_grad(case):
    model = torch.nn.Linear(3, 1)
    opt = case.make([p for p in model.parameters() if case.takes(p)])

    def closure():
        assert torch.is_grad_enabled()
        opt.zero_grad()
        loss = model(torch.ones(2, 3)).pow(2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.requires_grad
    assert opt.step() is None


@parametrize_cases(BASE_CASES)
def test_sparse_gradient_is_a_clear_error(case):
    embedding = torch.nn.Embedding(5, 2, sparse=True)
    opt = case.make(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(TypeError, match="sparse"):
        opt.step()


@pytest.mark.parametrize("foreach", [False, True])
@parametrize_cases(COMPLEX_CASES)
def test_complex_parameter_is_optimised_as_its_real_view(case, foreach):
    generator = torch.Generator().manual_seed(3)
    values = torch.randn(4, 2, generator=generator, dtype=torch.float64)
    complex_param = torch.nn.Parameter(torch.view_as_complex(values.clone()))
    real_param = torch.nn.Parameter(values.clone())
    opt_c = case.make([complex_param], foreach=foreach)
    opt_r = case.make([real_param], foreach=foreach)
    for _ in range(5):
        grad = torch.randn(4, 2, generator=generator, dtype=torch.float64) + real_param.detach()
        complex_param.grad = torch.view_as_complex(grad.clone())
        real_param.grad = grad.clone()
        opt_c.step()
        opt_r.step()
    torch.testing.assert_close(torch.view_as_real(complex_param.detach()), real_param.detach())
    assert opt_c.state[complex_param]["beta"].dtype == torch.float64
    torch.testing.assert_close(opt_c.state[complex_param]["beta"], opt_r.state[real_param]["beta"])


@pytest.mark.parametrize("scope", ["tensor", "global"])
@parametrize_cases(BASE_CASES)
def test_parameter_without_grad_is_left_out(case, scope):
    params = case.params()
    opt = case.make(params, scope=scope)
    run(opt, params, steps=3)
    frozen = params[-1]
    before = frozen.detach().clone()
    state_before = {k: v.clone() for k, v in opt.state[frozen].items()}
    (untouched,) = case.params(shapes=[(2,)])
    opt.add_param_group({"params": [untouched]})
    for step in range(3, 6):
        quadratic_grads(params, step)
        frozen.grad = None
        opt.step()
    assert torch.equal(frozen, before)
    for key, value in state_before.items():
        assert torch.equal(opt.state[frozen][key], value), key
    assert len(opt.state[untouched]) == 0


@parametrize_cases(BASE_CASES)
def test_foreach_none_uses_reference_on_cpu(case):
    opt = case.make(case.params())
    from adamem._core.batch import use_foreach

    assert not use_foreach(opt.param_groups[0], opt.param_groups[0]["params"])


@parametrize_cases(with_kernels(BASE_CASES))
def test_an_optimizer_without_kernels_runs_its_torch_step(case, monkeypatch):
    """A new AM optimizer may come before its fused kernels: kernels = None takes the torch
    step on every path setting, and fused=True says so once."""
    monkeypatch.setattr(case.cls, "kernels", None)
    monkeypatch.setattr(build, "_warned", set())
    reference = case.params()
    run(case.make(reference, foreach=False), reference, steps=3)
    for fused in (None, True):
        params = case.params()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(case.make(params, fused=fused), params, steps=3)
        for p, q in zip(params, reference):
            assert torch.equal(p, q)
        messages = [str(w.message) for w in caught]
        assert len(messages) == (1 if fused else 0) and all(
            "no fused kernels" in m for m in messages
        )
