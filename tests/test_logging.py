"""BetaLogger: when it logs, what it reports, and that it reads the device only when logging."""

import math

import pytest
import torch
from helpers import BASE_CASES, parametrize_cases
from torch import nn

import adamem
from adamem import BetaLogger, tensorboard_log_fn


class Recorder:
    """A log_fn that keeps every call."""

    def __init__(self):
        self.calls: list[tuple[int, dict[str, float]]] = []

    def __call__(self, scalars, step):
        self.calls.append((step, scalars))

    @property
    def steps(self):
        return [step for step, _ in self.calls]


def make_model():
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def train(model, optimizer, steps, *, batch_size=16, seed=0):
    """Regression steps on fixed random data; returns the betas solved after each step."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(64, 4, generator=generator)
    targets = torch.randn(64, 2, generator=generator)
    history = []
    for _ in range(steps):
        rows = torch.randint(0, 64, (batch_size,), generator=generator)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(inputs[rows]), targets[rows]).backward()
        optimizer.step()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        history.append([float(optimizer.state[p]["beta"]) for p in params])
    return history


@pytest.mark.parametrize("every", [1, 3, 5])
def test_logs_every_n_steps_with_python_floats(every):
    model = make_model()
    optimizer = adamem.AMSGD(model.parameters(), lr=0.1)
    recorder = Recorder()
    BetaLogger(optimizer, recorder, every=every)
    train(model, optimizer, 12)
    first = every if every > 1 else 2  # AM-SGD solves no beta in the first step
    assert recorder.steps == list(range(first, 13, every))
    for _, scalars in recorder.calls:
        assert all(type(value) is float for value in scalars.values())
        assert set(scalars) == {
            f"am/{quantity}_{statistic}"
            for quantity in ("beta", "momentum")
            for statistic in ("mean", "min", "max")
        }


@parametrize_cases(BASE_CASES)
def test_statistics_over_the_interval(case):
    """Mean of per-step means over tensors, extremes over steps and tensors; first step out."""
    model = make_model()
    optimizer = case.make([p for p in model.parameters() if case.takes(p)], lr=0.05)
    recorder = Recorder()
    BetaLogger(optimizer, recorder, every=4)
    history = torch.tensor(train(model, optimizer, 8))
    lambd = optimizer.param_groups[0]["lambd"]
    for (_, scalars), interval in zip(recorder.calls, (history[1:4], history[4:8])):
        momentum = case.family.effective_momentum(interval, lambd)
        for quantity, values in (("beta", interval), ("momentum", momentum)):
            assert scalars[f"am/{quantity}_mean"] == pytest.approx(values.mean(1).mean().item())
            assert scalars[f"am/{quantity}_min"] == pytest.approx(values.min().item())
            assert scalars[f"am/{quantity}_max"] == pytest.approx(values.max().item())
    assert recorder.steps == [4, 8]


def test_adamw_first_step_rule_is_not_reported():
    model = make_model()
    optimizer = adamem.AMAdamW(model.parameters(), lr=1e-2)
    recorder = Recorder()
    BetaLogger(optimizer, recorder, every=1)
    train(model, optimizer, 1)
    assert recorder.calls == []  # beta = beta1_max there by rule, not solved
    train(model, optimizer, 1)
    assert recorder.steps == [2]


def test_group_scope_counts_each_group_once():
    small, large = nn.Linear(2, 1, bias=False), nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    optimizer = adamem.AMSGD(
        [{"params": small.parameters()}, {"params": large.parameters()}], lr=0.1, scope="group"
    )
    recorder = Recorder()
    BetaLogger(optimizer, recorder, every=1)
    x = torch.randn(8, 2)
    for step in range(1, 5):
        optimizer.zero_grad()
        (small(x).pow(2).mean() + large(x).pow(2).mean()).backward()
        optimizer.step()
        if step == 1:
            continue
        group_betas = [
            float(optimizer.state[g["params"][0]]["beta"]) for g in optimizer.param_groups
        ]
        scalars = recorder.calls[-1][1]
        assert scalars["am/beta_mean"] == pytest.approx(sum(group_betas) / 2)
        assert scalars["am/beta_min"] == pytest.approx(min(group_betas))
        assert scalars["am/beta_max"] == pytest.approx(max(group_betas))


def test_global_scope_shares_beta_but_not_momentum():
    first, second = nn.Linear(3, 2), nn.Linear(2, 1)
    optimizer = adamem.AMSGD(
        [{"params": first.parameters(), "lambd": 0.0}, {"params": second.parameters()}],
        lr=0.1,
        lambd=0.5,
        scope="global",
    )
    recorder = Recorder()
    BetaLogger(optimizer, recorder, every=1)
    x = torch.randn(16, 3)
    for _ in range(4):
        optimizer.zero_grad()
        second(torch.tanh(first(x))).pow(2).mean().backward()
        optimizer.step()
    beta = float(optimizer.state[first.weight]["beta"])
    scalars = recorder.calls[-1][1]
    assert scalars["am/beta_min"] == scalars["am/beta_max"] == pytest.approx(beta)
    assert scalars["am/momentum_min"] == pytest.approx(min(beta, (beta + 0.5) / 1.5))
    assert scalars["am/momentum_max"] == pytest.approx(max(beta, (beta + 0.5) / 1.5))


def test_tensor_without_gradient_is_left_out():
    """A tensor skipped by the optimizer keeps a stale beta, which must not be reported."""
    used, unused_on_even_steps = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(3))
    optimizer = adamem.AMSGD([used, unused_on_even_steps], lr=0.1)
    recorder = Recorder()
    names = {"used": used, "sometimes": unused_on_even_steps}
    BetaLogger(optimizer, recorder, every=6, per_layer=True, names=names)
    solved = {"used": [], "sometimes": []}
    for step in range(1, 7):
        optimizer.zero_grad()
        loss = (used * torch.randn(3)).sum() ** 2
        if step % 2:
            loss = loss + (unused_on_even_steps * torch.randn(3)).sum() ** 2
        loss.backward()
        optimizer.step()
        for name, param in names.items():
            if param.grad is not None and step > 1:
                solved[name].append(float(optimizer.state[param]["beta"]))
    scalars = recorder.calls[-1][1]
    assert len(solved["sometimes"]) == 2  # steps 3 and 5; step 1 was its first
    for name, betas in solved.items():
        assert scalars[f"am/beta/{name}"] == pytest.approx(sum(betas) / len(betas))


def test_per_layer_names():
    model = make_model()
    optimizer = adamem.AMSGD(model.parameters(), lr=0.1)
    expected = {f"am/beta/{name}" for name, _ in model.named_parameters()}
    sources = [model, dict(model.named_parameters()), model.named_parameters()]
    recorders = [Recorder() for _ in sources]
    for names, recorder in zip(sources, recorders):
        BetaLogger(optimizer, recorder, every=2, per_layer=True, names=names)
    unnamed = Recorder()
    BetaLogger(optimizer, unnamed, every=2, per_layer=True)
    train(model, optimizer, 2)
    for recorder in recorders:
        assert expected <= set(recorder.calls[0][1])
    assert {"am/beta/group0.0", "am/beta/group0.3"} <= set(unnamed.calls[0][1])


def test_per_layer_names_from_named_param_groups():
    model = make_model()
    optimizer = adamem.AMAdamW(model.named_parameters(), lr=1e-3)
    recorder = Recorder()
    BetaLogger(optimizer, recorder, every=2, per_layer=True, prefix="")
    history = train(model, optimizer, 2)
    scalars = recorder.calls[0][1]
    for (name, _), beta in zip(model.named_parameters(), history[1]):
        assert scalars[f"beta/{name}"] == pytest.approx(beta)


def test_attached_after_training_started():
    """Tensors with state before the logger existed are past their first step."""
    model = make_model()
    optimizer = adamem.AMSGD(model.parameters(), lr=0.1)
    train(model, optimizer, 3)
    recorder = Recorder()
    logger = BetaLogger(optimizer, recorder, every=1)
    logger.steps = 3
    history = train(model, optimizer, 1)
    assert recorder.steps == [4]
    assert recorder.calls[0][1]["am/beta_mean"] == pytest.approx(sum(history[0]) / 4)


def test_close_detaches():
    model = make_model()
    optimizer = adamem.AMSGD(model.parameters(), lr=0.1)
    recorder = Recorder()
    logger = BetaLogger(optimizer, recorder, every=1)
    logger.close()
    train(model, optimizer, 3)
    assert recorder.calls == [] and logger.steps == 0


def test_mixed_precision_parameters():
    single, double = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(3, dtype=torch.float64))
    optimizer = adamem.AMAdamW([single, double], lr=1e-2)
    recorder = Recorder()
    BetaLogger(optimizer, recorder, every=3, per_layer=True)
    for _ in range(3):
        optimizer.zero_grad()
        (single.pow(2).sum() + double.pow(2).sum()).backward()
        optimizer.step()
    assert all(math.isfinite(v) for v in recorder.calls[0][1].values())


def test_reads_the_device_only_when_logging(monkeypatch):
    """On CPU a host read cannot be observed as a sync, so count the methods that would sync."""
    model = make_model()
    optimizer = adamem.AMAdamW(model.parameters(), lr=1e-2)
    recorder = Recorder()
    BetaLogger(optimizer, recorder, every=5, per_layer=True, names=model)
    reads = []
    for method in ("item", "tolist", "__float__", "__int__", "__bool__", "numpy", "cpu"):
        original = getattr(torch.Tensor, method)

        def counting(self, *args, _original=original, _method=method, **kwargs):
            reads.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counting)
    x = torch.randn(16, 4)
    for _ in range(10):
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()
    monkeypatch.undo()
    assert recorder.steps == [5, 10]
    assert reads == ["tolist", "tolist"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_cuda_sync_between_logs():
    """The logger's hook runs under CUDA's sync check, except on its logging steps."""
    model = make_model().cuda()
    optimizer = adamem.AMAdamW(model.parameters(), lr=1e-2, foreach=True)

    def forbid_syncs_unless_logging(*_):  # registered first, so it runs before the logger
        logging_step = (logger.steps + 1) % logger.every == 0
        torch.cuda.set_sync_debug_mode("default" if logging_step else "error")

    optimizer.register_step_post_hook(forbid_syncs_unless_logging)
    recorder = Recorder()
    logger = BetaLogger(optimizer, recorder, every=4, per_layer=True, names=model)
    x = torch.randn(16, 4, device="cuda")
    for _ in range(8):
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        try:
            optimizer.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert recorder.steps == [4, 8]


def test_rejects_bad_arguments():
    model = make_model()
    with pytest.raises(TypeError, match="AM optimizer"):
        BetaLogger(torch.optim.SGD(model.parameters(), lr=0.1), Recorder())
    optimizer = adamem.AMSGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="callable"):
        BetaLogger(optimizer, "print")
    for every in (0, 2.5, True):
        with pytest.raises(ValueError, match="every"):
            BetaLogger(optimizer, Recorder(), every=every)


def test_tensorboard_log_fn_writes_each_scalar():
    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, scalar_value, global_step):
            self.scalars.append((tag, scalar_value, global_step))

    writer = Writer()
    tensorboard_log_fn(writer)({"am/beta_mean": 0.25, "am/beta_max": 0.9}, 7)
    assert writer.scalars == [("am/beta_mean", 0.25, 7), ("am/beta_max", 0.9, 7)]


@pytest.mark.parametrize("optimizer_class", [adamem.AMSGD, adamem.AMAdamW])
def test_summary_and_record_hold_only_the_betas_of_the_last_step(optimizer_class):
    """beta_summary and solved_betas agree with the logger: a tensor without a gradient in the
    last step (stale beta) and a tensor in its first step are not among them."""
    used, skipped, late = (nn.Parameter(torch.randn(3)) for _ in range(3))
    optimizer = optimizer_class([used, skipped, late], lr=0.1)
    generator = torch.Generator().manual_seed(0)
    for step in range(4):
        for p in (used, skipped, late):
            p.grad = torch.randn(3, generator=generator)
        if step == 3:
            skipped.grad = None
        if step < 3:
            late.grad = None
        optimizer.step()
    ((params, betas),) = optimizer.solved_betas()
    assert [id(p) for p in params] == [id(used)]
    assert torch.equal(betas.float(), optimizer.state[used]["beta"].reshape(1).float())
    summary = adamem.beta_summary(optimizer)
    expected = optimizer.state[used]["beta"].float()
    for key in ("beta_mean", "beta_min", "beta_max"):
        assert summary[key] == expected, key
    assert optimizer.state[skipped]["beta"] != optimizer.state[used]["beta"]


@parametrize_cases(BASE_CASES)
def test_solved_betas_has_an_entry_per_group_also_for_groups_added_since(case):
    first, second = case.params(shapes=[(3,), (2,)])
    optimizer = case.make([first])
    for _ in range(2):
        first.grad = torch.randn_like(first)
        optimizer.step()
    optimizer.add_param_group({"params": [second]})
    solved = optimizer.solved_betas()
    assert len(solved) == 2 and solved[1] is None
    assert [id(p) for p in solved[0][0]] == [id(first)]
