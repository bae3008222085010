"""Unit tests of the benchmark's pieces: the heavy-ball baseline, methods, the results file,
the length of warmups."""

import dataclasses

import pytest
import torch

import adamem
from adamem.bench.heavy_ball import HeavyBall
from adamem.bench.methods import family_methods, method
from adamem.bench.plan import plan
from adamem.bench.store import ResultStore
from adamem.bench.tasks import MIN_WARMUP_STEPS, SUITES, TASKS, warmup_steps


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_heavy_ball_is_torch_sgd_with_dampening_equal_to_momentum(beta):
    start = torch.randn(5, dtype=torch.float64)
    ours, theirs = (torch.nn.Parameter(start.clone()) for _ in range(2))
    optimizers = [
        HeavyBall([ours], lr=0.3, beta=beta),
        torch.optim.SGD([theirs], lr=0.3, momentum=beta, dampening=beta),
    ]
    for _ in range(6):
        for param, optimizer in zip((ours, theirs), optimizers):
            param.grad = param.detach() ** 3 - 1
            optimizer.step()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-15)


def test_torch_sgd_gets_the_ema_learning_rate_times_one_minus_momentum():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = method("sgd-0.9").build([param], lr=2.0, weight_decay=0.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2)
    nesterov = method("sgd-nesterov-0.95").build([param], lr=2.0, weight_decay=0.0)
    assert nesterov.param_groups[0]["lr"] == pytest.approx(0.1)
    assert nesterov.param_groups[0]["nesterov"] is True


def test_nesterov_methods_build_their_optimizers():
    param = torch.nn.Parameter(torch.zeros(1))
    am = method("amadamw-nesterov-tensor").build([param], lr=1e-3, weight_decay=0.01)
    assert isinstance(am, adamem.AMAdamW) and am.param_groups[0]["nesterov"] is True
    assert method("amsgd-nesterov-tensor").build([param], 0.1, 0.0).param_groups[0]["nesterov"]
    nadam = method("nadamw-0.9").build([param], lr=1e-3, weight_decay=0.01)
    assert isinstance(nadam, torch.optim.NAdam)
    assert nadam.param_groups[0]["decoupled_weight_decay"] is True
    assert nadam.param_groups[0]["betas"] == (0.9, 0.999)


def test_families_hold_the_issue_grid():
    assert [m.name for m in family_methods("sgd")] == [
        "amsgd-tensor",
        "amsgd-global",
        "amsgd-nesterov-tensor",
        "hb-0",
        "hb-0.5",
        "hb-0.9",
        "hb-0.95",
        "hb-0.99",
        "sgd-0.9",
        "sgd-nesterov-0.5",
        "sgd-nesterov-0.9",
        "sgd-nesterov-0.95",
        "sgd-nesterov-0.99",
    ]
    adam = family_methods("adam")
    assert [m.name for m in adam if m.adaptive] == [
        "amadamw-tensor",
        "amadamw-global",
        "amadamw-nesterov-tensor",
    ]
    assert [m.name for m in adam if not m.adaptive] == [
        "adamw-0",
        "adamw-0.5",
        "adamw-0.9",
        "adamw-0.95",
        "adamw-0.99",
        "nadamw-0.5",
        "nadamw-0.9",
        "nadamw-0.95",
        "nadamw-0.99",
    ]
    param = torch.nn.Parameter(torch.zeros(1))
    amadamw = method("amadamw-global").build([param], lr=1e-3, weight_decay=0.01)
    assert amadamw.param_groups[0]["scope"] == "global"
    assert amadamw.param_groups[0]["betas"] == (0.89, 0.999)  # AM keeps its defaults


@pytest.mark.parametrize("family", ["sgd", "adam"])
def test_every_family_method_is_found_by_its_name(family):
    for listed in family_methods(family):
        assert method(listed.name) == listed
        assert method(f"{listed.name}+warmup").kind is listed.kind


def test_unknown_methods_and_families_are_errors():
    with pytest.raises(ValueError, match="unknown method"):
        method("amsgd")  # a prefix without its argument
    with pytest.raises(ValueError, match="unknown family"):
        family_methods("lion")


def test_store_rejects_a_corrupt_record_before_the_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"key": "a"}\n{"key": \n{"key": "c"}\n')
    with pytest.raises(ValueError, match="results.jsonl:2"):
        ResultStore(path).load()


def test_every_suite_plans_warmups_of_at_least_the_minimum_length():
    for suite in SUITES:
        for device in ("cpu", "cuda"):
            plan(suite, list(TASKS), 1, device)  # raises on a warmup that is too short
            assert warmup_steps(TASKS["gpt-warmup"].config(suite, device)) >= MIN_WARMUP_STEPS


def test_a_warmup_shorter_than_the_minimum_is_refused(monkeypatch):
    task = TASKS["gpt-warmup"]
    smoke = {**task.configs["smoke"], "warmup": 0.1}  # 1 of 12 steps: no warmup at all
    changed = dataclasses.replace(task, configs={**task.configs, "smoke": smoke})
    monkeypatch.setitem(TASKS, "gpt-warmup", changed)
    with pytest.raises(ValueError, match="warmup of 1 steps is too short"):
        plan("smoke", ["gpt-warmup"], 1, "cpu")
