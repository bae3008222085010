"""Unit tests of the benchmark's pieces: the heavy-ball baseline, methods, the results file."""

import pytest
import torch

from adamem.bench.heavy_ball import HeavyBall
from adamem.bench.methods import family_methods, method
from adamem.bench.store import ResultStore


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


def test_families_hold_the_issue_grid():
    assert [m.name for m in family_methods("sgd")] == [
        "amsgd-tensor",
        "amsgd-global",
        "hb-0",
        "hb-0.5",
        "hb-0.9",
        "hb-0.95",
        "hb-0.99",
        "sgd-0.9",
    ]
    adam = family_methods("adam")
    assert [m.name for m in adam if not m.adaptive] == [
        "adamw-0",
        "adamw-0.5",
        "adamw-0.9",
        "adamw-0.95",
        "adamw-0.99",
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
