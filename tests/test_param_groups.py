"""param_groups: which parameters get weight decay."""

import pytest
import torch
from helpers import BASE_CASES
from torch import nn

from adamem import param_groups


class LlamaRMSNorm(nn.Module):
    """Stands in for a norm layer of another library, recognised by its class name."""

    def __init__(self, size):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.position = nn.Parameter(torch.zeros(4, 8))
        self.conv = nn.Conv1d(8, 8, 1)
        self.batch_norm = nn.BatchNorm1d(8)
        self.attention = nn.MultiheadAttention(8, 2, add_bias_kv=True)
        self.layer_norm = nn.LayerNorm(8)
        self.rms_norm = LlamaRMSNorm(8)
        self.hidden = nn.Linear(8, 8)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, tokens):
        h = self.embed(tokens) + self.position
        h = self.batch_norm(self.conv(h.transpose(1, 2))).transpose(1, 2)
        h = h + self.attention(h, h, h, need_weights=False)[0]
        h = self.rms_norm(self.layer_norm(h))
        return self.head(self.frozen(torch.relu(self.hidden(h))))


def names_of(model, group):
    by_id = {id(p): name for name, p in model.named_parameters()}
    return [by_id[id(p)] for p in group["params"]]


DECAYED = [
    "embed.weight",
    "position",
    "conv.weight",
    "attention.in_proj_weight",
    "attention.out_proj.weight",
    "hidden.weight",
]
BIASES = ["conv.bias", "attention.in_proj_bias", "attention.bias_k", "attention.bias_v"]
BIASES += ["attention.out_proj.bias", "hidden.bias"]
NORMS = ["batch_norm.weight", "batch_norm.bias", "layer_norm.weight", "layer_norm.bias"]
NORMS += ["rms_norm.weight"]


def test_default_groups():
    model = Net()
    decayed, exempt = param_groups(model, weight_decay=0.1)
    assert decayed["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    assert sorted(names_of(model, decayed)) == sorted(DECAYED)
    assert sorted(names_of(model, exempt)) == sorted(BIASES + NORMS)


def test_every_trainable_parameter_once_in_model_order():
    model = Net()
    groups = param_groups(model)
    listed = [p for group in groups for p in group["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len({id(p) for p in listed}) == len(listed) == len(trainable)
    assert {id(p) for p in listed} == {id(p) for p in trainable}
    for group in groups:
        order = [next(i for i, q in enumerate(trainable) if q is p) for p in group["params"]]
        assert order == sorted(order)


def test_embeddings_and_tied_head_optionally_exempt():
    model = Net()
    decayed, exempt = param_groups(model, no_decay=("bias", "norm", "embedding"))
    assert "embed.weight" in names_of(model, exempt)
    assert "embed.weight" not in names_of(model, decayed)


def test_named_parameters_exempt():
    model = Net()
    decayed, exempt = param_groups(model, no_decay_names=["position"])
    assert "position" in names_of(model, exempt) and "position" not in names_of(model, decayed)


def test_no_decay_kinds_can_be_dropped():
    model = Net()
    decayed, exempt = param_groups(model, no_decay=("norm",))
    assert sorted(names_of(model, exempt)) == sorted(NORMS)
    (only_group,) = param_groups(model, no_decay=())
    assert only_group["weight_decay"] == 0.01 and len(only_group["params"]) == 17


def test_empty_group_is_omitted():
    (decayed,) = param_groups(nn.Linear(3, 3, bias=False))
    assert decayed["weight_decay"] == 0.01
    assert param_groups(nn.Linear(3, 3).requires_grad_(False)) == []


# The classes that take biases and norm weights (AMMuon takes matrices: muon_param_groups).
VECTOR_CASES = [case for case in BASE_CASES if case.takes(torch.empty(3))]


@pytest.mark.parametrize(
    "make_optimizer",
    [case.make for case in VECTOR_CASES] + [lambda groups: torch.optim.AdamW(groups, lr=1e-2)],
    ids=[case.name for case in VECTOR_CASES] + ["torch_adamw"],
)
def test_groups_train_with_optimizers(make_optimizer):
    model = Net()
    optimizer = make_optimizer(param_groups(model, weight_decay=0.1))
    tokens = torch.randint(0, 10, (6, 4))
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]


def test_rejects_bad_arguments():
    model = Net()
    with pytest.raises(ValueError, match="weight_decay"):
        param_groups(model, weight_decay=-1.0)
    with pytest.raises(TypeError, match="weight_decay"):
        param_groups(model, weight_decay="0.1")
    with pytest.raises(ValueError, match="kinds"):
        param_groups(model, no_decay=("bias", "norms"))
    with pytest.raises(TypeError, match="collection"):
        param_groups(model, no_decay="bias")
    with pytest.raises(ValueError, match="not found"):
        param_groups(model, no_decay_names=["positions"])
