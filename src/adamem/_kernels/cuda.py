"""The fused CUDA path: an AM step in three Triton launches over all of a group's tensors.

The torch paths launch a dozen kernels per tensor and read every tensor once per launch; on a
GPU their cost is launches more than bytes. These kernels make the two passes the model needs
(ALGORITHMS.md §4), like the C kernels of the CPU path (:mod:`adamem._kernels.cpu`), and each pass
covers every tensor of the group in one launch:

1. ``sums`` advances ``v`` (AM-AdamW) and writes each chunk's partial inner products;
   ``reduce`` adds each tensor's partials in a fixed order (deterministic), turns them into
   the tensor's ``(a, b)`` and advances its step count and bias factor;
2. :func:`adamem.beta.block_betas` solves the betas from the ``(a, b)`` in torch; where each
   tensor is a block of its own (``per_tensor``), ``reduce`` solves them instead, by
   ``select_beta``'s rules (:func:`_select_beta`), and the plan hands them back;
3. ``update`` applies the betas to ``d`` and ``x`` and records beta, ``Pi`` and the lr.

The kernels find the tensors in an int64 table on the device: the hyperparameters, a record
per tensor (addresses of its arrays and of its 0-d state scalars, its size) and the chunks of
``KernelConfig.chunk`` elements that the programs take one each. It is built and uploaded
when a group's tensors change (:class:`Layout`), not at every step. The kernels read and
write the state scalars in place, so the state layout is the reference path's and
checkpoints move freely between paths.

Arithmetic follows the reference functions in the compute dtype (float32, or float64 for
double parameters), with IEEE division and square roots except in AM-AdamW's float32 sums
pass (:data:`PRECISE_SUMS`); bf16/fp16 tensors are read into and rounded back from float32.
Sums run in the compute dtype over a program's chunk and are combined in float64, as in the
C kernels. Importing this module needs Triton; ``TRITON_INTERPRET=1`` runs the kernels on
CPU tensors (the tests do so where no GPU is present).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from .._core.batch import ParamBatch, capturing, compute_dtype
from .contract import HYPER, RECORD, hyper_values, kernel_hyper

__all__ = ["STEPS", "AdamWStep", "Layout", "SGDStep", "Unsupported", "layout"]


@dataclass(frozen=True)
class KernelConfig:
    """How the two passes of an optimizer cut their work."""

    block: int
    """Elements a program handles per loop iteration."""
    chunk: int
    """Elements per program: a tensor of ``n`` elements takes ``ceil(n / chunk)`` programs."""
    num_warps: int


# The fastest of benchmarks/triton_configs.py's configurations on an H200 (docs/speed.md).
CONFIGS = {
    "adamw": KernelConfig(block=1024, chunk=16 * 1024, num_warps=8),
    "sgd": KernelConfig(block=2048, chunk=32 * 1024, num_warps=4),
}
REDUCE_BLOCK = 256
"""Partials a ``reduce`` program adds per loop iteration."""
PRECISE_SUMS = False
"""Whether AM-AdamW's float32 sums pass divides and takes roots in IEEE arithmetic, as torch
does. With its five divisions and roots per element that pass is bound by arithmetic rather
than memory on a GPU; the fast versions (within 2 ulp) change its inner products by rounding
only, and at worst (subnormal or overflowing operands) change a beta, which stays in
``[0, cap]``. The update pass, which writes the parameters and state, is IEEE throughout."""

# The table starts with the hyperparameters, as float64 bit patterns, then a record per
# tensor (addresses of its arrays, its element count, addresses of its state scalars, 0 where
# the optimizer has none): both in the order of adamem._kernels.contract.
H_LR, H_CAP, H_BETA2, H_EPS, H_WEIGHT_DECAY, H_LAMBD, H_COMPAT_GAP, H_GRAD_SIGN = (
    tl.constexpr(HYPER.index(name))
    for name in ("lr", "cap", "beta2", "eps", "weight_decay", "lambd", "compat_gap", "grad_sign")
)
HYPER_FIELDS = len(HYPER)
R_X, R_G, R_D, R_V, R_NUMEL, R_STEP, R_BETA, R_BETA_PRODUCT, R_PREV_BC1, R_PREV_LR = (
    tl.constexpr(RECORD.index(name))
    for name in (
        "x",
        "g",
        "d",
        "v",
        "numel",
        "step",
        "beta",
        "beta_product",
        "prev_bias_correction1",
        "prev_lr",
    )
)
RECORD_FIELDS = tl.constexpr(len(RECORD))

_DTYPES = {
    torch.float32: tl.float32,
    torch.float64: tl.float64,
    torch.bfloat16: tl.bfloat16,
    torch.float16: tl.float16,
}


# ---------------------------------------------------------------------------------- helpers
@triton.jit
def _hyper(table, field):
    """Hyperparameter ``field`` of the table, in float64."""
    return tl.load(table + field).to(tl.float64, bitcast=True)


@triton.jit
def _scalar(record, field, COMPUTE: tl.constexpr):
    """The address of one of a tensor's 0-d state scalars (kept in the compute dtype)."""
    return tl.load(record + field).to(tl.pointer_type(COMPUTE))


@triton.jit
def _divide(x, y, PRECISE: tl.constexpr):
    """IEEE division as torch divides, or, for float32 and not ``PRECISE``, the GPU's fast
    division (within 2 ulp)."""
    if x.dtype == tl.float64 or not PRECISE:
        return x / y
    else:
        return tl.div_rn(x, y)


@triton.jit
def _root(x, PRECISE: tl.constexpr):
    """IEEE square root as torch's ``sqrt``, or, for float32 and not ``PRECISE``, the GPU's
    fast one."""
    if x.dtype == tl.float64 or not PRECISE:
        return tl.sqrt(x)
    else:
        return tl.sqrt_rn(x)


@triton.jit
def _lerp(start, end, weight):
    """``torch.lerp`` with ATen's formula: exact at both ends."""
    return tl.where(
        weight < 0.5, start + weight * (end - start), end - (end - start) * (1 - weight)
    )


@triton.jit
def _inv_sqrt_bias_correction2(beta2, step, COMPUTE: tl.constexpr):
    """``(1 - beta2^step) ** -0.5`` as amadamw_block_sums computes it in the compute dtype:
    beta2 rounded to it first, then power and root in float64, each rounded back."""
    beta2 = beta2.to(COMPUTE).to(tl.float64)
    power = tl.exp2(step.to(tl.float64) * tl.log2(beta2)).to(COMPUTE)
    return (1.0 / tl.sqrt((1 - power).to(tl.float64))).to(COMPUTE)


@triton.jit
def _pull_weight(lambd, p, SCALE_INVARIANT: tl.constexpr):
    """amadamw.pull_weight: lambd P, or lambd for the scale-invariant pull; 0 when lambd is 0
    even where P overflowed to inf."""
    if SCALE_INVARIANT:
        weight = tl.zeros_like(p) + lambd
    else:
        weight = tl.where(lambd != 0, lambd * p, 0.0)
    return weight


@triton.jit
def _preconditioner(v, bias_correction1, inv_sqrt_bias_correction2, eps, PRECISE: tl.constexpr):
    """amadamw_preconditioner: P = (1 - beta1_max Pi) (sqrt(v) / sqrt(1 - beta2^k) + eps)."""
    return bias_correction1 * (_root(v, PRECISE) * inv_sqrt_bias_correction2 + eps)


@triton.jit
def _chunk(
    records,
    chunks,
    X: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    V: tl.constexpr,
    ALIGNED: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """This program's chunk: its number, tensor, first element, the tensor's record and
    element count, and the addresses of x, g, d, v."""
    pid = tl.program_id(0)
    tensor = tl.load(chunks + 2 * pid)
    start = tl.multiple_of(tl.load(chunks + 2 * pid + 1), CHUNK)
    record = records + RECORD_FIELDS * tensor
    x = tl.load(record + R_X).to(tl.pointer_type(X))
    g = tl.load(record + R_G).to(tl.pointer_type(G))
    d = tl.load(record + R_D).to(tl.pointer_type(D))
    v = tl.load(record + R_V).to(tl.pointer_type(V))
    if ALIGNED:
        # Addresses read from memory are opaque to the compiler: without this promise (checked
        # by the host) it would not issue wide vector loads.
        x = tl.multiple_of(x, 16)
        g = tl.multiple_of(g, 16)
        d = tl.multiple_of(d, 16)
        v = tl.multiple_of(v, 16)
    return pid, tensor, start, record, tl.load(record + R_NUMEL), x, g, d, v


@triton.jit
def _chunk_sum(
    partials,
    begin,
    end,
    term,
    TERMS: tl.constexpr,
    REDUCE_BLOCK: tl.constexpr,
    ROUNDS: tl.constexpr,
):
    """Partial ``term`` of chunks ``begin`` to ``end`` added in a fixed order, in float64."""
    total = tl.zeros([REDUCE_BLOCK], tl.float64)
    for turn in range(ROUNDS):
        index = begin + turn * REDUCE_BLOCK + tl.arange(0, REDUCE_BLOCK)
        total += tl.load(partials + index * TERMS + term, mask=index < end, other=0.0)
    return tl.sum(total, axis=0)


@triton.jit
def _select_beta(a, b, cap):
    """:func:`adamem.beta.select_beta` of one block (ALGORITHMS.md §7), in float64: the
    maximiser of ``a beta - b beta^2 / 2`` over ``[0, cap]``, 0 where it is undefined."""
    ratio = a / b
    interior = tl.minimum(tl.maximum(ratio, 0.0), cap)
    beta = tl.where(b > 0, interior, tl.where(a > 0, cap, 0.0))
    undefined = ((b > 0) & (ratio != ratio)) | (a != a) | (b != b)
    return tl.where(undefined, 0.0, beta)


# ---------------------------------------------------------------------------------- AM-SGD
@triton.jit
def _sgd_sums_kernel(
    table,
    records,
    chunks,
    partials,
    X: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    COMPUTE: tl.constexpr,
    DECAY: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """amsgd_block_sums of one chunk: <g, d>, <d - g, g + lambd d>, <d - g, d - g>, with
    g + weight_decay x as the gradient."""
    pid, tensor, start, record, count, x, g, d, v = _chunk(
        records, chunks, X, G, D, D, ALIGNED, CHUNK
    )
    # maximize: the stored gradient, negated as it is read (exact).
    sign = _hyper(table, H_GRAD_SIGN).to(COMPUTE)
    lambd = _hyper(table, H_LAMBD).to(COMPUTE)
    weight_decay = _hyper(table, H_WEIGHT_DECAY).to(COMPUTE)
    memory_dot = tl.zeros([BLOCK], COMPUTE)
    pull = tl.zeros([BLOCK], COMPUTE)
    curvature = tl.zeros([BLOCK], COMPUTE)
    for offset in range(0, CHUNK, BLOCK):
        index = start + offset + tl.arange(0, BLOCK)
        mask = index < count
        grad = tl.load(g + index, mask=mask, other=0.0).to(COMPUTE) * sign
        if DECAY:
            grad = grad + weight_decay * tl.load(x + index, mask=mask, other=0.0).to(COMPUTE)
        memory = tl.load(d + index, mask=mask, other=0.0).to(COMPUTE)
        difference = memory - grad
        memory_dot += grad * memory
        pull += difference * (grad + lambd * memory)
        curvature += difference * difference
    tl.store(partials + 3 * pid, tl.sum(memory_dot, axis=0).to(tl.float64))
    tl.store(partials + 3 * pid + 1, tl.sum(pull, axis=0).to(tl.float64))
    tl.store(partials + 3 * pid + 2, tl.sum(curvature, axis=0).to(tl.float64))


@triton.jit
def _sgd_reduce_kernel(
    table,
    records,
    chunk_begins,
    partials,
    dots,
    first_steps,
    seen,
    COMPUTE: tl.constexpr,
    REDUCE_BLOCK: tl.constexpr,
    ROUNDS: tl.constexpr,
    SOLVE: tl.constexpr,
):
    """amsgd_block_sums' dots of tensor ``first_steps + program``: ``dots`` gets the gap
    prev_lr <g, d>, then <d - g, g + lambd d>, then ||d - g||^2; with ``SOLVE`` (the tensor
    is a block of its own) ``dots[program]`` gets instead the beta of amsgd_terms_from_dots'
    (a, b)."""
    s = tl.program_id(0)
    tensor = first_steps + s
    record = records + RECORD_FIELDS * tensor
    begin = tl.load(chunk_begins + tensor)
    end = tl.load(chunk_begins + tensor + 1)
    memory_dot = _chunk_sum(partials, begin, end, 0, 3, REDUCE_BLOCK, ROUNDS)
    pull = _chunk_sum(partials, begin, end, 1, 3, REDUCE_BLOCK, ROUNDS)
    curvature = _chunk_sum(partials, begin, end, 2, 3, REDUCE_BLOCK, ROUNDS)
    prev_lr = tl.load(_scalar(record, R_PREV_LR, COMPUTE)).to(tl.float64)
    if SOLVE:
        scale = _hyper(table, H_LR) / (1 + _hyper(table, H_LAMBD))
        a = prev_lr * memory_dot - scale * pull
        tl.store(dots + s, _select_beta(a, scale * curvature, _hyper(table, H_CAP)))
    else:
        tl.store(dots + s, prev_lr * memory_dot)
        tl.store(dots + seen + s, pull)
        tl.store(dots + 2 * seen + s, curvature)


@triton.jit
def _sgd_update_kernel(
    table,
    records,
    chunks,
    betas,
    first_steps,
    X: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    COMPUTE: tl.constexpr,
    DECAY: tl.constexpr,
    NESTEROV: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """amsgd_tensor_step: d <- lerp(d, g, w), w = (1 - beta) / (1 + lambd); x <- x - lr d, or
    with Nesterov x <- x - lr lerp(d, g, w); a first step takes d = g (w = 1). The tensor's
    first chunk records beta and lr."""
    pid, tensor, start, record, count, x, g, d, v = _chunk(
        records, chunks, X, G, D, D, ALIGNED, CHUNK
    )
    # maximize: the stored gradient, negated as it is read (exact).
    sign = _hyper(table, H_GRAD_SIGN).to(COMPUTE)
    lr = _hyper(table, H_LR).to(COMPUTE)
    lambd = _hyper(table, H_LAMBD)
    weight_decay = _hyper(table, H_WEIGHT_DECAY).to(COMPUTE)
    first = tensor < first_steps
    beta = tl.load(betas + tensor - first_steps, mask=tensor >= first_steps, other=0.0)
    weight = tl.where(first, 1.0, (1 - beta) / (1 + lambd)).to(COMPUTE)
    for offset in range(0, CHUNK, BLOCK):
        index = start + offset + tl.arange(0, BLOCK)
        mask = index < count
        param = tl.load(x + index, mask=mask).to(COMPUTE)
        grad = tl.load(g + index, mask=mask).to(COMPUTE) * sign
        if DECAY:
            grad = grad + weight_decay * param
        memory = _lerp(tl.load(d + index, mask=mask).to(COMPUTE), grad, weight)
        tl.store(d + index, memory.to(D), mask=mask)
        if NESTEROV:
            direction = _lerp(memory, grad, weight)
        else:
            direction = memory
        tl.store(x + index, (param - lr * direction).to(X), mask=mask)
    if start == 0:
        if tensor >= first_steps:
            tl.store(_scalar(record, R_BETA, COMPUTE), beta.to(COMPUTE))
        tl.store(_scalar(record, R_PREV_LR, COMPUTE), lr)


# -------------------------------------------------------------------------------- AM-AdamW
@triton.jit
def _adamw_sums_kernel(
    table,
    records,
    chunks,
    partials,
    first_steps,
    X: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    V: tl.constexpr,
    COMPUTE: tl.constexpr,
    DECAY: tl.constexpr,
    COMPAT: tl.constexpr,
    SCALE_INVARIANT: tl.constexpr,
    PRECISE_SUMS: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """amadamw_block_sums of one chunk: advance v and add <g, d / P_last + mu x>,
    <x, d - g>, <M (d - g), g + pull d> and <d - g, M (d - g)>, M = 1 / (P (1 + pull)),
    pull = _pull_weight, P_last = P_{t-1} (displacement gap) or P_t (compat). A first step
    only advances v."""
    pid, tensor, start, record, count, x, g, d, v = _chunk(
        records, chunks, X, G, D, V, ALIGNED, CHUNK
    )
    # maximize: the stored gradient, negated as it is read (exact).
    sign = _hyper(table, H_GRAD_SIGN).to(COMPUTE)
    beta2_wide = _hyper(table, H_BETA2)
    beta2 = beta2_wide.to(COMPUTE)
    one_minus_beta2 = (1.0 - beta2_wide).to(COMPUTE)
    if tensor < first_steps:
        for offset in range(0, CHUNK, BLOCK):
            index = start + offset + tl.arange(0, BLOCK)
            mask = index < count
            grad = tl.load(g + index, mask=mask).to(COMPUTE) * sign
            second_moment = tl.load(v + index, mask=mask).to(COMPUTE)
            second_moment = beta2 * second_moment + one_minus_beta2 * grad * grad
            tl.store(v + index, second_moment.to(V), mask=mask)
    else:
        eps = _hyper(table, H_EPS).to(COMPUTE)
        lambd = _hyper(table, H_LAMBD).to(COMPUTE)
        mu = _hyper(table, H_WEIGHT_DECAY).to(COMPUTE)
        step = tl.load(_scalar(record, R_STEP, COMPUTE))
        beta_product = tl.load(_scalar(record, R_BETA_PRODUCT, COMPUTE))
        bias_correction1 = 1 - _hyper(table, H_CAP).to(COMPUTE) * beta_product
        inv_sqrt_bias_correction2 = _inv_sqrt_bias_correction2(beta2_wide, step + 1, COMPUTE)
        prev_bias_correction1 = tl.load(_scalar(record, R_PREV_BC1, COMPUTE))
        inv_sqrt_prev_bias_correction2 = _inv_sqrt_bias_correction2(beta2_wide, step, COMPUTE)
        gap = tl.zeros([BLOCK], COMPUTE)
        decay = tl.zeros([BLOCK], COMPUTE)
        pull = tl.zeros([BLOCK], COMPUTE)
        curvature = tl.zeros([BLOCK], COMPUTE)
        for offset in range(0, CHUNK, BLOCK):
            index = start + offset + tl.arange(0, BLOCK)
            mask = index < count
            grad = tl.load(g + index, mask=mask, other=0.0).to(COMPUTE) * sign
            memory = tl.load(d + index, mask=mask, other=0.0).to(COMPUTE)
            old_v = tl.load(v + index, mask=mask, other=0.0).to(COMPUTE)
            new_v = beta2 * old_v + one_minus_beta2 * grad * grad
            tl.store(v + index, new_v.to(V), mask=mask)
            p = _preconditioner(
                new_v, bias_correction1, inv_sqrt_bias_correction2, eps, PRECISE_SUMS
            )
            if COMPAT:
                last_p = p
            else:
                # displacement_gap: P_{t-1} from the v this loop just replaced.
                last_p = _preconditioner(
                    old_v,
                    prev_bias_correction1,
                    inv_sqrt_prev_bias_correction2,
                    eps,
                    PRECISE_SUMS,
                )
            difference = memory - grad
            # Dividing twice, as amadamw_terms does: P (1 + pull) may overflow.
            pull_weight = _pull_weight(lambd, p, SCALE_INVARIANT)
            metric_difference = _divide(
                _divide(difference, p, PRECISE_SUMS), 1 + pull_weight, PRECISE_SUMS
            )
            if DECAY:
                param = tl.load(x + index, mask=mask, other=0.0).to(COMPUTE)
                gap += grad * (_divide(memory, last_p, PRECISE_SUMS) + mu * param)
                decay += param * difference
            else:
                gap += grad * _divide(memory, last_p, PRECISE_SUMS)
            pull += metric_difference * (grad + pull_weight * memory)
            curvature += difference * metric_difference
        tl.store(partials + 4 * pid, tl.sum(gap, axis=0).to(tl.float64))
        tl.store(partials + 4 * pid + 1, tl.sum(decay, axis=0).to(tl.float64))
        tl.store(partials + 4 * pid + 2, tl.sum(pull, axis=0).to(tl.float64))
        tl.store(partials + 4 * pid + 3, tl.sum(curvature, axis=0).to(tl.float64))


@triton.jit
def _adamw_reduce_kernel(
    table,
    records,
    chunk_begins,
    partials,
    dots,
    first_steps,
    seen,
    COMPUTE: tl.constexpr,
    REDUCE_BLOCK: tl.constexpr,
    ROUNDS: tl.constexpr,
    SOLVE: tl.constexpr,
):
    """For every tensor: advance the step count and store this step's bias factor
    1 - beta1_max Pi; past its first step, also write its dots: ``dots`` gets the gap
    (gap_scale times <g, d / P_last + mu x>), <x, d - g>, <M (d - g), g + pull d>,
    <d - g, M (d - g)>; with ``SOLVE`` (the tensor is a block of its own) ``dots[s]`` gets
    instead the beta of amadamw_terms_from_dots' (a, b)."""
    tensor = tl.program_id(0)
    record = records + RECORD_FIELDS * tensor
    step_address = _scalar(record, R_STEP, COMPUTE)
    beta_product = tl.load(_scalar(record, R_BETA_PRODUCT, COMPUTE))
    bias_correction1 = 1 - _hyper(table, H_CAP).to(COMPUTE) * beta_product
    if tensor >= first_steps:
        s = tensor - first_steps
        begin = tl.load(chunk_begins + tensor)
        end = tl.load(chunk_begins + tensor + 1)
        gap_dot = _chunk_sum(partials, begin, end, 0, 4, REDUCE_BLOCK, ROUNDS)
        decay = _chunk_sum(partials, begin, end, 1, 4, REDUCE_BLOCK, ROUNDS)
        pull = _chunk_sum(partials, begin, end, 2, 4, REDUCE_BLOCK, ROUNDS)
        curvature = _chunk_sum(partials, begin, end, 3, 4, REDUCE_BLOCK, ROUNDS)
        lr = _hyper(table, H_LR)
        mu = _hyper(table, H_WEIGHT_DECAY)
        prev_lr = tl.load(_scalar(record, R_PREV_LR, COMPUTE)).to(tl.float64)
        if _hyper(table, H_COMPAT_GAP) != 0:
            gap_scale = (1 + mu * lr) * prev_lr
        else:
            gap_scale = prev_lr / (1 - mu * prev_lr)
        if SOLVE:
            a = gap_scale * gap_dot - lr * (mu * decay + pull)
            tl.store(dots + s, _select_beta(a, lr * curvature, _hyper(table, H_CAP)))
        else:
            tl.store(dots + s, gap_scale * gap_dot)
            tl.store(dots + seen + s, decay)
            tl.store(dots + 2 * seen + s, pull)
            tl.store(dots + 3 * seen + s, curvature)
    tl.store(step_address, tl.load(step_address) + 1)
    tl.store(_scalar(record, R_PREV_BC1, COMPUTE), bias_correction1)


@triton.jit
def _adamw_update_kernel(
    table,
    records,
    chunks,
    betas,
    first_steps,
    X: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    V: tl.constexpr,
    COMPUTE: tl.constexpr,
    NESTEROV: tl.constexpr,
    SCALE_INVARIANT: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """amadamw_tensor_step with P from the advanced v (beta = beta1_max on a first step):
    d <- lerp(d, g, w), w = (1 - beta) / (1 + pull), pull = _pull_weight;
    x <- (1 - mu lr) x - lr d / P, or with Nesterov x <- (1 - mu lr) x - lr lerp(d, bc1 g, w) / P.
    The tensor's first chunk records beta, Pi beta and lr."""
    pid, tensor, start, record, count, x, g, d, v = _chunk(
        records, chunks, X, G, D, V, ALIGNED, CHUNK
    )
    # maximize: the stored gradient, negated as it is read (exact).
    sign = _hyper(table, H_GRAD_SIGN).to(COMPUTE)
    lr_wide = _hyper(table, H_LR)
    lr = lr_wide.to(COMPUTE)
    decay_factor = (1.0 - _hyper(table, H_WEIGHT_DECAY) * lr_wide).to(COMPUTE)
    eps = _hyper(table, H_EPS).to(COMPUTE)
    lambd = _hyper(table, H_LAMBD).to(COMPUTE)
    # The reduce kernel stored this step's count and bias factor.
    bias_correction1 = tl.load(_scalar(record, R_PREV_BC1, COMPUTE))
    step = tl.load(_scalar(record, R_STEP, COMPUTE))
    inv_sqrt_bias_correction2 = _inv_sqrt_bias_correction2(_hyper(table, H_BETA2), step, COMPUTE)
    first = tensor < first_steps
    beta = tl.load(betas + tensor - first_steps, mask=tensor >= first_steps, other=0.0)
    beta = beta.to(COMPUTE)
    beta = tl.where(first, _hyper(table, H_CAP).to(COMPUTE), beta)
    one_minus_beta = 1 - beta
    for offset in range(0, CHUNK, BLOCK):
        index = start + offset + tl.arange(0, BLOCK)
        mask = index < count
        grad = tl.load(g + index, mask=mask).to(COMPUTE) * sign
        second_moment = tl.load(v + index, mask=mask).to(COMPUTE)
        p = _preconditioner(second_moment, bias_correction1, inv_sqrt_bias_correction2, eps, True)
        weight = _divide(one_minus_beta, 1 + _pull_weight(lambd, p, SCALE_INVARIANT), True)
        memory = _lerp(tl.load(d + index, mask=mask).to(COMPUTE), grad, weight)
        tl.store(d + index, memory.to(D), mask=mask)
        param = tl.load(x + index, mask=mask).to(COMPUTE)
        if NESTEROV:
            direction = _lerp(memory, bias_correction1 * grad, weight)
        else:
            direction = memory
        step_x = lr * _divide(direction, p, True)
        tl.store(x + index, (decay_factor * param - step_x).to(X), mask=mask)
    if start == 0:
        beta_product_address = _scalar(record, R_BETA_PRODUCT, COMPUTE)
        tl.store(_scalar(record, R_BETA, COMPUTE), beta)
        tl.store(beta_product_address, tl.load(beta_product_address) * beta)
        tl.store(_scalar(record, R_PREV_LR, COMPUTE), lr)


# ------------------------------------------------------------------------------------ host
class Unsupported(Exception):
    """The group cannot take the kernels; the message says why."""


class Layout:
    """Where a group's tensors are, as the kernels' table, kept from step to step while the
    tensors stay (cached by :func:`adamem._kernels.fused.plan`).

    The table goes to the device once; a step then only refreshes the hyperparameters that
    changed, each with a ``fill_`` (the value travels as a kernel argument, exactly), so
    that a step makes no host-to-device copy.
    """

    def __init__(
        self,
        body: array,
        sections: tuple[int, int, int],
        dtypes: dict[str, Any],
        aligned: bool,
        most_chunks: int,
        config: KernelConfig,
        device: torch.device,
    ) -> None:
        self.dtypes = dtypes
        self.aligned = aligned
        self.chunks = sections[2] // 2
        self.most_chunks = most_chunks
        self.config = config
        table = array("q", bytes(8 * HYPER_FIELDS)) + body
        # Built during a CUDA graph capture: the graph repeats the upload at every replay.
        self.captured = capturing(device)
        self.table, self._host_table = _upload(table, device, self.captured)
        hyper, self.records, self.chunk_begins, self.chunk_list = self.table.split(
            [HYPER_FIELDS, *sections]
        )
        self._hyper = hyper.view(torch.float64)
        self._hyper_values: list[float | None] = [0.0] * HYPER_FIELDS

    def set_hyper(self, values: list[float | Tensor]) -> None:
        """Make the table's hyperparameters ``values``; a device tensor (an lr a scheduler
        updates in place) is copied on the device, and read by the kernels only."""
        for field, value in enumerate(values):
            if isinstance(value, Tensor):
                self._hyper[field].copy_(value.reshape(()))
                self._hyper_values[field] = None
            elif value != self._hyper_values[field]:
                self._hyper[field].fill_(value)
                self._hyper_values[field] = value


def layout(batch: ParamBatch, kind: Any) -> Layout:
    """The :class:`Layout` of ``batch``; raises :class:`Unsupported` if the kernels cannot
    take it.

    The kernels trust every address in the table: each array must be contiguous on the
    gradients' device with the parameter's element count, each kind of array (parameters,
    memories, second moments) must share one dtype across the group (the dtypes are
    compile-time constants of the kernels), and each state scalar must be a tensor of the
    compute dtype on that device. The checks are one expression because they run for every
    tensor whenever the group's tensors change.
    """
    grads = batch.grads
    compute = compute_dtype(batch.params[0])
    grad_dtype = grads[0].dtype
    memories = batch.state_list(kind.memory_key)
    second_moments = (
        batch.state_list(kind.second_moment_key) if kind.second_moment_key else memories
    )
    dtypes = (batch.params[0].dtype, memories[0].dtype, second_moments[0].dtype)
    for dtype in (*dtypes, grad_dtype):
        if dtype not in _DTYPES:
            raise Unsupported(f"a parameter, gradient or state tensor is {dtype}")
    x_dtype, d_dtype, v_dtype = dtypes
    kernel_dtypes = {
        "X": _DTYPES[x_dtype],
        "G": _DTYPES[grad_dtype],
        "D": _DTYPES[d_dtype],
        "COMPUTE": _DTYPES[compute],
    }
    if kind.second_moment_key:
        kernel_dtypes["V"] = _DTYPES[v_dtype]
    device = grads[0].get_device()
    config = CONFIGS[kind.name]
    records, chunk_begins, chunks = array("q"), array("q", [0]), array("q")
    aligned = True
    for x, g, d, v, state in zip(batch.params, grads, memories, second_moments, batch.states):
        count = x.numel()
        if not (
            x.dtype is x_dtype
            and d.dtype is d_dtype
            and v.dtype is v_dtype
            and g.dtype is grad_dtype
            and x.get_device() == device
            and d.get_device() == device
            and v.get_device() == device
            and x.is_contiguous()
            and g.is_contiguous()  # the grad setter gave it the parameter's shape
            and d.is_contiguous()
            and v.is_contiguous()
            and d.numel() == count
            and v.numel() == count
        ):
            raise Unsupported(
                "the kernels need contiguous tensors on one device, with one dtype per kind "
                "(parameters, gradients, each state buffer) across the group"
            )
        addresses = (x.data_ptr(), g.data_ptr(), d.data_ptr(), v.data_ptr())
        aligned = aligned and not any(address % 16 for address in addresses)
        records.extend(addresses)
        records.append(count)
        for scalar in kind.scalars(state):
            if scalar is None:
                records.append(0)
                continue
            if scalar.dtype is not compute or scalar.get_device() != device:
                raise Unsupported(f"a state scalar is not a {compute} tensor on the device")
            records.append(scalar.data_ptr())
        # A tensor without elements still takes a program: it records the step.
        for start in range(0, max(count, 1), config.chunk):
            chunks.extend((len(chunk_begins) - 1, start))
        chunk_begins.append(len(chunks) // 2)
    return Layout(
        records + chunk_begins + chunks,
        (len(records), len(chunk_begins), len(chunks)),
        kernel_dtypes,
        aligned,
        max(b - a for a, b in zip(chunk_begins, chunk_begins[1:])),
        config,
        grads[0].device,
    )


class _Step:
    """One group's step on the kernels: :meth:`block_sums` and :meth:`apply` are the
    optimizer's ``_block_sums`` and ``_apply``. Subclasses name the kernels."""

    solved: Tensor | None = None  # set by block_sums with per_tensor (StepPlan.solved)

    sums_kernel: Any
    reduce_kernel: Any
    update_kernel: Any

    def __init__(
        self, batch: ParamBatch, layout: Layout, kernels: Any, per_tensor: bool = False
    ) -> None:
        self.batch = batch
        self.per_tensor = per_tensor
        self.layout = layout
        self.kernels = kernels
        self.dots = kernels.dots
        self.device = batch.grads[0].device
        self.tensors = len(batch)
        self.seen = self.tensors - batch.first_steps
        hyper = kernel_hyper(kernels, batch.group)
        values = {name: _lr(value) for name, value in hyper.items()}
        layout.set_hyper(hyper_values(values))

    def block_sums(self) -> tuple[Tensor, Tensor] | None:
        """The sums pass and the reduction: the ``(a, b)`` of the tensors past their first
        step (float64), or ``None`` if there is none. With ``per_tensor`` (each tensor is a
        block of its own) the reduction solves the betas and the update pass follows: the
        betas are left in :attr:`solved` and ``None`` is returned."""
        layout = self.layout
        partials = torch.empty(layout.chunks, self.dots, dtype=torch.float64, device=self.device)
        self._launch_chunks(self.sums_kernel, partials, *self._sums_arguments())
        solve = self.per_tensor and self.seen > 0
        rows = 1 if solve else self.dots
        dots = torch.empty(rows, self.seen, dtype=torch.float64, device=self.device)
        grid = self._reduce_grid()
        if grid:
            rounds = max(-(-layout.most_chunks // REDUCE_BLOCK), 1)
            self.reduce_kernel[(grid,)](
                layout.table,
                layout.records,
                layout.chunk_begins,
                partials,
                dots,
                self.batch.first_steps,
                self.seen,
                COMPUTE=layout.dtypes["COMPUTE"],
                REDUCE_BLOCK=REDUCE_BLOCK,
                # A power of two: a model compiles the kernel for one or two values at most.
                ROUNDS=triton.next_power_of_2(rounds),
                SOLVE=solve,
            )
        if not self.seen:
            return None
        if solve:
            self.solved = dots[0]
            self.apply(self.solved)
            return None
        return self.kernels.terms_from_dots(dots, self.batch.group)

    def apply(self, betas: Tensor | None) -> None:
        """The update pass, with one beta per tensor past its first step."""
        if betas is None:  # only first steps: the kernel reads no beta
            betas = torch.empty(1, dtype=torch.float64, device=self.device)
        betas = betas.to(torch.float64).contiguous()
        self._launch_chunks(self.update_kernel, betas, self.batch.first_steps)

    def _sums_arguments(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _reduce_grid(self) -> int:
        raise NotImplementedError

    def _constants(self, kernel: Any) -> dict[str, Any]:
        return {}

    def _launch_chunks(self, kernel: Any, *args: Any) -> None:
        layout = self.layout
        kernel[(layout.chunks,)](
            layout.table,
            layout.records,
            layout.chunk_list,
            *args,
            **layout.dtypes,
            **self._constants(kernel),
            ALIGNED=layout.aligned,
            BLOCK=layout.config.block,
            CHUNK=layout.config.chunk,
            num_warps=layout.config.num_warps,
        )


class SGDStep(_Step):
    """AM-SGD: weight decay enters the gradient in both passes."""

    sums_kernel = _sgd_sums_kernel
    reduce_kernel = _sgd_reduce_kernel
    update_kernel = _sgd_update_kernel

    def block_sums(self) -> tuple[Tensor, Tensor] | None:
        if not self.seen:  # first steps have no sums
            return None
        return super().block_sums()

    def _sums_arguments(self) -> tuple[Any, ...]:
        # First steps get partials too (of d = 0): fewer branches, and the reduction skips them.
        return ()

    def _reduce_grid(self) -> int:
        return self.seen

    def _constants(self, kernel: Any) -> dict[str, Any]:
        group = self.batch.group
        if kernel is _sgd_update_kernel:
            return {"DECAY": group["weight_decay"] != 0, "NESTEROV": group["nesterov"]}
        return {"DECAY": group["weight_decay"] != 0}


class AdamWStep(_Step):
    """AM-AdamW: the reduction also advances every tensor's step count and bias factor."""

    sums_kernel = _adamw_sums_kernel
    reduce_kernel = _adamw_reduce_kernel
    update_kernel = _adamw_update_kernel

    def _sums_arguments(self) -> tuple[Any, ...]:
        return (self.batch.first_steps,)

    def _reduce_grid(self) -> int:
        return self.tensors

    def _constants(self, kernel: Any) -> dict[str, Any]:
        group = self.batch.group
        if kernel is _adamw_update_kernel:
            return {"NESTEROV": group["nesterov"], "SCALE_INVARIANT": group["scale_invariant"]}
        if kernel is not _adamw_sums_kernel:
            return {}
        return {
            "DECAY": group["weight_decay"] != 0,
            "COMPAT": group["gap_estimate"] == "compat",
            "SCALE_INVARIANT": group["scale_invariant"],
            "PRECISE_SUMS": PRECISE_SUMS,
        }


STEPS: dict[str, type[_Step]] = {"sgd": SGDStep, "adamw": AdamWStep}


def _lr(lr: float | Tensor) -> float | Tensor:
    """The lr as the table takes it: a float, or a device tensor (never read on the host)."""
    if isinstance(lr, Tensor) and lr.device.type == "cpu":
        return float(lr)
    return lr


def _upload(table: array, device: torch.device, captured: bool) -> tuple[Tensor, Any]:
    """Copy ``table`` to ``device`` without waiting; return the copy and the host memory that
    must outlive it: during a CUDA graph capture the copy becomes a node of the graph, which
    reads the host memory again at every replay."""
    host = torch.frombuffer(table, dtype=torch.int64)
    if device.type == "cpu":  # the interpreter runs the kernels on CPU tensors
        return host.clone(), None
    if captured:
        # Not through pinned memory, whose allocator may recycle a block once the copy is
        # done: the graph's copy node reads these bytes again at every replay, and the
        # layout keeps them, unchanged, for its lifetime.
        return host.to(device, non_blocking=True), (table, host)
    # Not host.pin_memory(): its is_pinned check alone costs more than the rest of the upload.
    pinned = torch.empty(len(table), dtype=torch.int64, pin_memory=True).copy_(host)
    return pinned.to(device, non_blocking=True), None
