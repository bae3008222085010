"""Unit tests of the benchmark's pieces: the heavy-ball baseline, methods, the results file,
the length of warmups."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch

import adamem
from adamem.bench.heavy_ball import HeavyBall
from adamem.bench.methods import family_methods, method
from adamem.bench.plan import plan
from adamem.bench.store import CorruptRecord, ResultStore
from adamem.bench.tasks import (
    CUDA_SUITES,
    MIN_WARMUP_STEPS,
    SUITES,
    TASKS,
    suite_tasks,
    warmup_steps,
)


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
    param = torch.nn.Linear(1, 1, bias=False)
    optimizer = method("sgd-0.9").build(param, lr=2.0, weight_decay=0.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2)
    nesterov = method("sgd-nesterov-0.95").build(param, lr=2.0, weight_decay=0.0)
    assert nesterov.param_groups[0]["lr"] == pytest.approx(0.1)
    assert nesterov.param_groups[0]["nesterov"] is True


def test_nesterov_methods_build_their_optimizers():
    param = torch.nn.Linear(1, 1, bias=False)
    am = method("amadamw-nesterov-tensor").build(param, lr=1e-3, weight_decay=0.01)
    assert isinstance(am, adamem.AMAdamW) and am.param_groups[0]["nesterov"] is True
    assert method("amsgd-nesterov-tensor").build(param, 0.1, 0.0).param_groups[0]["nesterov"]
    averaging = method("amsgd-na-tensor").build(param, 0.1, 0.0).param_groups[0]
    assert averaging["noise_averaging"] == 0.9 and averaging["scope"] == "tensor"
    si = method("amadamw-si-tensor").build(param, lr=1e-3, weight_decay=0.01)
    assert isinstance(si, adamem.AMAdamW) and si.param_groups[0]["scale_invariant"] is True
    assert si.param_groups[0]["nesterov"] is False
    nadam = method("nadamw-0.9").build(param, lr=1e-3, weight_decay=0.01)
    assert isinstance(nadam, torch.optim.NAdam)
    assert nadam.param_groups[0]["decoupled_weight_decay"] is True
    assert nadam.param_groups[0]["betas"] == (0.9, 0.999)


class TinyGPT(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.hidden = torch.nn.Linear(4, 4)
        self.norm = torch.nn.LayerNorm(4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.hidden(self.embed(tokens))) @ self.embed.weight.T


@pytest.mark.parametrize("name", ["ammuon-tensor", "muon-0.95"])
def test_muon_methods_pair_muon_on_hidden_matrices_with_adam_on_the_rest(name):
    model = TinyGPT()
    optimizer = method(name).build(model, lr=3e-3, weight_decay=0.1)
    muon, adam = optimizer.optimizers
    assert [p for g in muon.param_groups for p in g["params"]] == [model.hidden.weight]
    rest = [p for g in adam.param_groups for p in g["params"]]
    assert sorted(map(id, rest)) == sorted(
        id(p) for p in model.parameters() if p is not model.hidden.weight
    )
    # One learning rate for both, Muon's step at AdamW's RMS; a schedule reaches both.
    assert {g["lr"] for g in optimizer.param_groups} == {3e-3}
    assert muon.param_groups[0]["adjust_lr_fn"] == "match_rms_adamw"
    assert muon.param_groups[0]["weight_decay"] == 0.1
    if name == "muon-0.95":
        assert isinstance(muon, torch.optim.Muon) and isinstance(adam, torch.optim.AdamW)
        assert muon.param_groups[0]["momentum"] == 0.95 and muon.param_groups[0]["nesterov"]
    else:
        assert isinstance(muon, adamem.AMMuon) and isinstance(adam, adamem.AMAdamW)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.arange(6)).logsumexp(-1).sum().backward()
        optimizer.step()
    assert len(optimizer.state) == len(list(model.parameters()))
    if name == "ammuon-tensor":  # every tensor has a beta, found in whichever optimizer holds it
        assert all("beta" in optimizer.state[p] for p in model.parameters())
    with pytest.raises(KeyError):  # a lookup does not create state
        optimizer.state[torch.nn.Parameter(torch.zeros(1))]
    assert len(optimizer.state) == len(list(model.parameters()))


def test_families_hold_the_issue_grid():
    assert [m.name for m in family_methods("sgd")] == [
        "amsgd-tensor",
        "amsgd-global",
        "amsgd-nesterov-tensor",
        "amsgd-na-tensor",
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
        "amadamw-si-tensor",
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


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ('{"key": ', """'{"key": ' (not JSON: Expecting value"""),
        ("{}", """'{}' (no "key")"""),
        ("[1, 2]", """'[1, 2]' (no "key")"""),
        ("x" * 50, f"'{'x' * 40}...' (not JSON"),
    ],
)
def test_store_names_the_line_and_what_it_expected_of_a_corrupt_record(tmp_path, line, found):
    path = tmp_path / "results.jsonl"
    path.write_text(f'{{"key": "a"}}\n{line}\n{{"key": "c"}}\n')
    with pytest.raises(CorruptRecord) as error:
        ResultStore(path).load()
    expected = f'{path}:2: expected a JSON object with a "key" on every line, found {found}'
    assert str(error.value).startswith(expected)
    assert (error.value.path, error.value.number) == (path, 2)


def test_setting_aside_corrupt_lines_loses_nothing(tmp_path):
    store = ResultStore(tmp_path / "results.jsonl")
    store.corrupt_path.write_text("set aside before\n")
    store.path.write_text('{"key": "a"}\ngarbage\n\n{"key": "b"}\n{}\n{"key": "partial')
    assert store.set_aside_corrupt() == 2
    assert store.corrupt_path.read_text() == "set aside before\ngarbage\n{}\n"
    assert store.path.read_text() == '{"key": "a"}\n{"key": "b"}\n{"key": "partial'
    assert store.set_aside_corrupt() == 0
    store.append({"key": "c"})  # the partial line is cut off as before
    assert [record["key"] for record in store.load()] == ["a", "b", "c"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "results.jsonl",
        "results.jsonl.corrupt",
    ]


def test_plot_styles_separate_am_from_baselines_and_every_method_from_the_others():
    pytest.importorskip("numpy")
    from adamem.bench.plots import LOOKS, _styles

    for family in ("sgd", "adam"):
        methods = [SimpleNamespace(method=m) for m in family_methods(family)]
        styles = _styles(methods, points=40)
        looks = {name: (s["color"], s["linestyle"], s["marker"]) for name, s in styles.items()}
        assert sorted(looks) == sorted(m.method.name for m in methods)
        for index in range(3):  # colours, dash patterns and markers each differ within a kind
            for adaptive in (True, False):
                kind = [
                    looks[m.method.name][index] for m in methods if m.method.adaptive == adaptive
                ]
                assert len(set(map(str, kind))) == len(kind)
        am_colours = {styles[m.method.name]["color"] for m in methods if m.method.adaptive}
        assert am_colours <= set(LOOKS[True].colours)
        assert not am_colours & set(LOOKS[False].colours)
        markevery = [styles[m.method.name]["markevery"] for m in methods]
        assert len(set(markevery)) > 1 and all(every == 5 for _, every in markevery)


def test_every_suite_plans_warmups_of_at_least_the_minimum_length():
    for suite in SUITES:
        for device in ("cuda",) if suite in CUDA_SUITES else ("cpu", "cuda"):
            plan(suite, suite_tasks(suite), 1, device)  # raises on a warmup that is too short
            for name in suite_tasks(suite):
                if any(m.warmup for m in TASKS[name].methods(suite)):
                    config = TASKS[name].config(suite, device)
                    assert warmup_steps(config) >= MIN_WARMUP_STEPS


def test_a_warmup_shorter_than_the_minimum_is_refused(monkeypatch):
    task = TASKS["gpt-warmup"]
    smoke = {**task.configs["smoke"], "warmup": 0.1}  # 1 of 12 steps: no warmup at all
    changed = dataclasses.replace(task, configs={**task.configs, "smoke": smoke})
    monkeypatch.setitem(TASKS, "gpt-warmup", changed)
    with pytest.raises(ValueError, match="warmup of 1 steps is too short"):
        plan("smoke", ["gpt-warmup"], 1, "cpu")


def test_beta_per_tensor_averages_the_seeds_at_the_best_lr():
    from adamem.bench.analysis import MethodSummary, Stats

    runs = [
        {"beta": {"per_tensor": {"w": 0.2, "b": 0.9}}},
        {"beta": {"per_tensor": {"w": 0.4, "b": 0.7}}},
    ]
    one = Stats.of([1.0])
    summary = MethodSummary(method("amsgd-tensor"), [0.1], {}, 0.1, runs, one, one, {}, 1)
    assert summary.beta_per_tensor() == pytest.approx({"w": 0.3, "b": 0.8})
    fixed = MethodSummary(method("hb-0.9"), [0.1], {}, 0.1, [{"beta": None}], one, one, {}, 1)
    assert fixed.beta_per_tensor() == {}
