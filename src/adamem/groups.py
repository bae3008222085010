"""Parameter groups for decoupled weight decay: decay the weights, not biases and norm layers.

Weight decay shrinks a parameter towards 0. That regularises the weight matrices of linear and
convolution layers, but for a bias it only adds a pull towards 0, and for the scale of a
normalisation layer (LayerNorm, BatchNorm, RMSNorm...) it fights the layer's purpose. So the
common recipe (BERT, GPT-2, timm, the Hugging Face ``Trainer``) gives those parameters no
decay. :func:`param_groups` builds the two groups of that recipe for any optimizer that reads
``weight_decay`` per group: ``AMAdamW`` (decoupled decay), ``AMSGD`` (coupled L2) and
``torch.optim`` alike.

Muon (:class:`adamem.AMMuon`, ``torch.optim.Muon``) is meant for the hidden weight matrices
only; :func:`muon_param_groups` splits a model into those and the rest (for AMAdamW).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from typing import Any

from torch import Tensor, nn

__all__ = ["HEAD_NAMES", "NO_DECAY_KINDS", "NORM_LAYER_TYPES", "muon_param_groups", "param_groups"]

NO_DECAY_KINDS: tuple[str, ...] = ("bias", "norm", "embedding")
"""The kinds of parameters :func:`param_groups` can exempt from weight decay."""

NORM_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
)
"""torch's normalisation layers; subclasses count as well."""

# Norm layers of other libraries, matched by class name: LlamaRMSNorm, T5LayerNorm,
# FusedLayerNorm, LazyBatchNorm2d, timm's LayerNorm2d...
_NORM_CLASS_NAME = re.compile(r"Norm(?:[123]d)?$")

_EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)

HEAD_NAMES: tuple[str, ...] = ("head", "lm_head", "classifier", "output", "fc_out")
"""Module names that :func:`muon_param_groups` takes for an output layer."""


def param_groups(
    model: nn.Module,
    weight_decay: float = 0.01,
    *,
    no_decay: Collection[str] = ("bias", "norm"),
    no_decay_names: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into a decayed group and a group without decay.

    A parameter gets no weight decay if it is of a kind listed in ``no_decay``:

    * ``"bias"``: its attribute name contains ``bias`` (``bias``, ``in_proj_bias``,
      ``bias_k``...);
    * ``"norm"``: it belongs to a normalisation layer: an instance of :data:`NORM_LAYER_TYPES`,
      or a module whose class name ends in ``Norm`` (optionally followed by ``1d``/``2d``/``3d``),
      which covers the norm layers of other libraries (``LlamaRMSNorm``, ``T5LayerNorm``...);
    * ``"embedding"`` (not in the default): it belongs to an ``nn.Embedding`` or
      ``nn.EmbeddingBag``, including an output layer whose weight is tied to an embedding;

    or if its full name (as in ``model.named_parameters()``) is in ``no_decay_names``, e.g. a
    position embedding or class token stored as a bare ``nn.Parameter``. A parameter shared by
    several modules is exempt if any of them qualifies; it is listed once.

    Parameters with ``requires_grad=False`` are left out, as the Hugging Face ``Trainer`` and
    timm do: build the groups after freezing. The groups keep ``model.named_parameters()``
    order, and an empty group is omitted (so the result may have one group, or none).

    Args:
        model: the module whose parameters to group.
        weight_decay: the ``weight_decay`` of the decayed group (``>= 0``).
        no_decay: kinds of parameters without decay, from :data:`NO_DECAY_KINDS`.
        no_decay_names: full names of further parameters without decay.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay},
        {"params": exempt, "weight_decay": 0.0}]``, to pass as an optimizer's ``params``.

    Example:
        >>> import torch, adamem
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8))
        >>> groups = adamem.param_groups(model, weight_decay=0.05)
        >>> [(len(g["params"]), g["weight_decay"]) for g in groups]
        [(1, 0.05), (3, 0.0)]
        >>> opt = adamem.AMAdamW(groups, lr=1e-3)
    """
    return _decay_groups(model, weight_decay, no_decay, no_decay_names, leave_out=set())


def muon_param_groups(
    model: nn.Module,
    weight_decay: float = 0.01,
    *,
    head_names: Collection[str] = HEAD_NAMES,
    no_decay: Collection[str] = ("bias", "norm"),
    no_decay_names: Collection[str] = (),
) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """Split ``model`` into its hidden weight matrices, for Muon, and the rest, for AdamW.

    The hidden matrices are the weights of ``nn.Linear`` layers (and subclasses) except an
    output layer: one whose name (its last component in ``model.named_modules()``) is in
    ``head_names``, or whose weight is tied to an embedding. Embeddings, the output layer,
    norms, biases, convolutions and bare ``nn.Parameter`` tensors go to the rest, which is
    split as by :func:`param_groups` (``weight_decay``, ``no_decay``, ``no_decay_names``).
    Parameters with ``requires_grad=False`` are left out.

    Returns:
        ``(matrices, groups)``: the parameters for :class:`adamem.AMMuon` and the parameter
        groups for :class:`adamem.AMAdamW`.

    Example:
        >>> import torch, adamem
        >>> model = torch.nn.Sequential()
        >>> model.add_module("embed", torch.nn.Embedding(10, 8))
        >>> model.add_module("hidden", torch.nn.Linear(8, 8))
        >>> model.add_module("norm", torch.nn.LayerNorm(8))
        >>> model.add_module("head", torch.nn.Linear(8, 10))
        >>> matrices, rest = adamem.muon_param_groups(model, weight_decay=0.1)
        >>> [tuple(p.shape) for p in matrices]
        [(8, 8)]
        >>> muon = adamem.AMMuon(matrices, lr=0.02)
        >>> adamw = adamem.AMAdamW(rest, lr=3e-4)
    """
    if isinstance(head_names, str):
        raise TypeError(f"head_names must be a collection of names, e.g. ({head_names!r},)")
    others: set[int] = set()
    candidates: dict[int, Tensor] = {}
    for name, module in model.named_modules():
        is_head = name.rsplit(".", 1)[-1] in head_names
        for attribute, param in module.named_parameters(recurse=False, remove_duplicate=False):
            if isinstance(module, nn.Linear) and attribute == "weight" and not is_head:
                candidates[id(param)] = param
            else:  # a parameter owned by any other module (a tied embedding) is not a matrix
                others.add(id(param))
    matrices = [
        p
        for p in dict(model.named_parameters()).values()
        if p.requires_grad and id(p) in candidates and id(p) not in others and p.ndim == 2
    ]
    matrix_ids = {id(p) for p in matrices}
    groups = _decay_groups(model, weight_decay, no_decay, no_decay_names, leave_out=matrix_ids)
    return matrices, groups


def _decay_groups(
    model: nn.Module,
    weight_decay: float,
    no_decay: Collection[str],
    no_decay_names: Collection[str],
    leave_out: set[int],
) -> list[dict[str, Any]]:
    """:func:`param_groups` of the parameters whose ids are not in ``leave_out``."""
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
        raise TypeError(f"weight_decay must be a real number, got {type(weight_decay).__name__}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if isinstance(no_decay, str):
        raise TypeError(f"no_decay must be a collection of kinds, e.g. ({no_decay!r},)")
    unknown_kinds = set(no_decay) - set(NO_DECAY_KINDS)
    if unknown_kinds:
        raise ValueError(f"no_decay kinds must be in {NO_DECAY_KINDS}, got {sorted(unknown_kinds)}")
    named = dict(model.named_parameters())
    unknown_names = set(no_decay_names) - set(named)
    if unknown_names:
        raise ValueError(f"no_decay_names not found in the model: {sorted(unknown_names)}")

    exempt_ids = {id(named[name]) for name in no_decay_names}
    for module, attribute, param in _owned_parameters(model):
        if _is_exempt(module, attribute, no_decay):
            exempt_ids.add(id(param))

    kept = [p for p in named.values() if p.requires_grad and id(p) not in leave_out]
    decayed = [p for p in kept if id(p) not in exempt_ids]
    exempt = [p for p in kept if id(p) in exempt_ids]
    groups = [
        {"params": decayed, "weight_decay": float(weight_decay)},
        {"params": exempt, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def _owned_parameters(model: nn.Module) -> Iterator[tuple[nn.Module, str, Tensor]]:
    """Every ``(module, attribute name, parameter)`` registration, tied parameters included."""
    for module in model.modules():
        for attribute, param in module.named_parameters(recurse=False, remove_duplicate=False):
            yield module, attribute, param


def _is_exempt(module: nn.Module, attribute: str, no_decay: Collection[str]) -> bool:
    if "bias" in no_decay and "bias" in attribute:
        return True
    if "norm" in no_decay and (
        isinstance(module, NORM_LAYER_TYPES) or _NORM_CLASS_NAME.search(type(module).__name__)
    ):
        return True
    return "embedding" in no_decay and isinstance(module, _EMBEDDING_TYPES)
