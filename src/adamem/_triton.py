"""The fused CUDA path: each AM pass is one Triton kernel over all of a group's tensors.

The torch paths launch a dozen kernels per step and read every tensor once per launch; these
kernels make the two passes the model needs (ALGORITHMS.md §4), like the C kernels of the CPU
path (:mod:`adamem._fused`):

1. ``sums`` advances ``v`` (AM-AdamW) and writes each chunk's partial inner products, and
   ``reduce`` adds the partials of each tensor in a fixed order (deterministic);
2. :func:`adamem.beta.block_betas` solves the betas from the per-tensor ``(a, b)``: the kernels
   never compute beta;
3. ``update`` applies the betas to ``d`` and ``x``.

A launch covers every tensor of the group: the host uploads one int64 table per step (with
``non_blocking`` from pinned memory, so the step never waits for the device) that lists each
tensor's addresses and size, and chunks of ``CHUNK`` elements that the programs take one each.
The per-tensor scalars (bias factors, past learning rates) stay 0-d tensors in the optimizer
state and are computed with the same torch expressions as the reference path, so the kernels
see bit-identical constants; only the element loops are new.

Sums run in the compute dtype over a program's chunk and are combined in float64, as in the
C kernels. Importing this module needs Triton; ``TRITON_INTERPRET=1`` runs the kernels on CPU
tensors (the tests do so where no GPU is present).
"""

from __future__ import annotations

from array import array
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from . import amadamw, amsgd
from ._optimizer import ParamBatch

__all__ = ["AdamWStep", "SGDStep", "rejection"]

BLOCK = 1024
"""Elements each program handles per loop iteration."""
CHUNK = 16 * BLOCK
"""Elements per program: a tensor of ``n`` elements takes ``ceil(n / CHUNK)`` programs."""
REDUCE_BLOCK = 256

# The table's hyperparameters (float64 bit patterns in the int64 table), then its sections.
# The kernels read them as compile-time constants.
H_LR, H_BETA2, H_EPS, H_LAMBD, H_WEIGHT_DECAY = (tl.constexpr(field) for field in range(5))
HYPER_FIELDS = 5
RECORD_FIELDS = tl.constexpr(5)  # addresses of x, g, d, v, then the element count

_DTYPES = {
    torch.float32: tl.float32,
    torch.float64: tl.float64,
    torch.bfloat16: tl.bfloat16,
    torch.float16: tl.float16,
}


# ---------------------------------------------------------------------------------- helpers
@triton.jit
def _hyper(table, field, dtype: tl.constexpr):
    """Hyperparameter ``field`` of the table, given in float64, in ``dtype``."""
    return tl.load(table + field).to(tl.float64, bitcast=True).to(dtype)


@triton.jit
def _divide(x, y):
    """IEEE division, as torch's kernels divide (Triton's fp32 ``/`` is approximate)."""
    if x.dtype == tl.float64:
        return x / y
    else:
        return tl.div_rn(x, y)


@triton.jit
def _root(x):
    """IEEE square root, as torch's ``sqrt``."""
    if x.dtype == tl.float64:
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
def _chunk(
    records,
    chunks,
    dtype_x: tl.constexpr,
    dtype_d: tl.constexpr,
    dtype_v: tl.constexpr,
    compute: tl.constexpr,
    ALIGNED: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """This program's tensor index, first element, element count and array pointers."""
    pid = tl.program_id(0)
    tensor = tl.load(chunks + 2 * pid)
    start = tl.multiple_of(tl.load(chunks + 2 * pid + 1), CHUNK)
    record = records + RECORD_FIELDS * tensor
    x = tl.load(record).to(tl.pointer_type(dtype_x))
    g = tl.load(record + 1).to(tl.pointer_type(compute))
    d = tl.load(record + 2).to(tl.pointer_type(dtype_d))
    v = tl.load(record + 3).to(tl.pointer_type(dtype_v))
    if ALIGNED:
        # Addresses read from memory are opaque to the compiler: without this promise (checked
        # by the host) it would not issue wide vector loads.
        x = tl.multiple_of(x, 16)
        g = tl.multiple_of(g, 16)
        d = tl.multiple_of(d, 16)
        v = tl.multiple_of(v, 16)
    count = tl.load(record + 4)
    return pid, tensor, start, count, x, g, d, v


@triton.jit
def _preconditioner(v, bias_correction1, inv_sqrt_bias_correction2, eps):
    """amadamw_preconditioner: P = (1 - beta1_max Pi) (sqrt(v) / sqrt(1 - beta2^k) + eps)."""
    return bias_correction1 * (_root(v) * inv_sqrt_bias_correction2 + eps)


@triton.jit
def _reduce_kernel(
    partials,
    chunk_begins,
    sums,
    first_steps,
    seen,
    TERMS: tl.constexpr,
    REDUCE_BLOCK: tl.constexpr,
    ROUNDS: tl.constexpr,
):
    """``sums[term, s]``: the partials of tensor ``first_steps + s``, added in a fixed order.
    ``ROUNDS * REDUCE_BLOCK`` covers the most chunks any tensor has."""
    s = tl.program_id(0)
    begin = tl.load(chunk_begins + first_steps + s)
    end = tl.load(chunk_begins + first_steps + s + 1)
    for term in tl.static_range(TERMS):
        total = tl.zeros([REDUCE_BLOCK], tl.float64)
        for round in range(ROUNDS):
            index = begin + round * REDUCE_BLOCK + tl.arange(0, REDUCE_BLOCK)
            total += tl.load(partials + index * TERMS + term, mask=index < end, other=0.0)
        tl.store(sums + term * seen + s, tl.sum(total, axis=0))


# ---------------------------------------------------------------------------------- AM-SGD
@triton.jit
def _sgd_sums_kernel(
    table,
    records,
    chunks,
    partials,
    X: tl.constexpr,
    D: tl.constexpr,
    COMPUTE: tl.constexpr,
    DECAY: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """amsgd_block_sums of one chunk: <g, d>, <d - g, g + lambd d>, <d - g, d - g>, with
    g + weight_decay x as the gradient."""
    pid, tensor, start, count, x, g, d, v = _chunk(
        records, chunks, X, D, D, COMPUTE, ALIGNED, CHUNK
    )
    lambd = _hyper(table, H_LAMBD, COMPUTE)
    weight_decay = _hyper(table, H_WEIGHT_DECAY, COMPUTE)
    memory_dot = tl.zeros([BLOCK], COMPUTE)
    pull = tl.zeros([BLOCK], COMPUTE)
    curvature = tl.zeros([BLOCK], COMPUTE)
    for offset in range(0, CHUNK, BLOCK):
        index = start + offset + tl.arange(0, BLOCK)
        mask = index < count
        grad = tl.load(g + index, mask=mask, other=0.0)
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
def _sgd_update_kernel(
    table,
    records,
    chunks,
    weights,
    X: tl.constexpr,
    D: tl.constexpr,
    COMPUTE: tl.constexpr,
    DECAY: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """amsgd_tensor_step: d <- lerp(d, g, weight); x <- x - lr d, with weight
    (1 - beta) / (1 + lambd), or 1 on a first step (d = g)."""
    pid, tensor, start, count, x, g, d, v = _chunk(
        records, chunks, X, D, D, COMPUTE, ALIGNED, CHUNK
    )
    lr = _hyper(table, H_LR, COMPUTE)
    weight_decay = _hyper(table, H_WEIGHT_DECAY, COMPUTE)
    weight = tl.load(weights + tensor)
    for offset in range(0, CHUNK, BLOCK):
        index = start + offset + tl.arange(0, BLOCK)
        mask = index < count
        param = tl.load(x + index, mask=mask).to(COMPUTE)
        grad = tl.load(g + index, mask=mask)
        if DECAY:
            grad = grad + weight_decay * param
        memory = _lerp(tl.load(d + index, mask=mask).to(COMPUTE), grad, weight)
        tl.store(d + index, memory.to(D), mask=mask)
        tl.store(x + index, (param - lr * memory).to(X), mask=mask)


# -------------------------------------------------------------------------------- AM-AdamW
@triton.jit
def _adamw_sums_kernel(
    table,
    records,
    chunks,
    constants,
    partials,
    tensors,
    first_steps,
    X: tl.constexpr,
    D: tl.constexpr,
    V: tl.constexpr,
    COMPUTE: tl.constexpr,
    DECAY: tl.constexpr,
    COMPAT: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """amadamw_block_sums of one chunk: advance v and add <g, d / P_last + mu x>,
    <x, d - g>, <M (d - g), g + lambd P d> and <d - g, M (d - g)>, M = 1 / (P (1 + lambd P)),
    P_last = P_{t-1} (displacement gap) or P_t (compat). A first step only advances v."""
    pid, tensor, start, count, x, g, d, v = _chunk(
        records, chunks, X, D, V, COMPUTE, ALIGNED, CHUNK
    )
    beta2_wide = tl.load(table + H_BETA2).to(tl.float64, bitcast=True)
    beta2 = beta2_wide.to(COMPUTE)
    one_minus_beta2 = (1.0 - beta2_wide).to(COMPUTE)
    if tensor < first_steps:
        for offset in range(0, CHUNK, BLOCK):
            index = start + offset + tl.arange(0, BLOCK)
            mask = index < count
            grad = tl.load(g + index, mask=mask)
            second_moment = tl.load(v + index, mask=mask).to(COMPUTE)
            second_moment = beta2 * second_moment + one_minus_beta2 * grad * grad
            tl.store(v + index, second_moment.to(V), mask=mask)
    else:
        eps = _hyper(table, H_EPS, COMPUTE)
        lambd = _hyper(table, H_LAMBD, COMPUTE)
        mu = _hyper(table, H_WEIGHT_DECAY, COMPUTE)
        bias_correction1 = tl.load(constants + tensor)
        inv_sqrt_bias_correction2 = tl.load(constants + tensors + tensor)
        prev_bias_correction1 = tl.load(constants + 2 * tensors + tensor)
        inv_sqrt_prev_bias_correction2 = tl.load(constants + 3 * tensors + tensor)
        gap = tl.zeros([BLOCK], COMPUTE)
        decay = tl.zeros([BLOCK], COMPUTE)
        pull = tl.zeros([BLOCK], COMPUTE)
        curvature = tl.zeros([BLOCK], COMPUTE)
        for offset in range(0, CHUNK, BLOCK):
            index = start + offset + tl.arange(0, BLOCK)
            mask = index < count
            grad = tl.load(g + index, mask=mask, other=0.0)
            memory = tl.load(d + index, mask=mask, other=0.0).to(COMPUTE)
            old_v = tl.load(v + index, mask=mask, other=0.0).to(COMPUTE)
            new_v = beta2 * old_v + one_minus_beta2 * grad * grad
            tl.store(v + index, new_v.to(V), mask=mask)
            p = _preconditioner(new_v, bias_correction1, inv_sqrt_bias_correction2, eps)
            if COMPAT:
                last_p = p
            else:
                # displacement_gap: P_{t-1} from the v this loop just replaced.
                last_p = _preconditioner(
                    old_v, prev_bias_correction1, inv_sqrt_prev_bias_correction2, eps
                )
            difference = memory - grad
            # Dividing twice, as amadamw_terms does: P (1 + lambd P) may overflow.
            metric_difference = _divide(_divide(difference, p), 1 + lambd * p)
            if DECAY:
                param = tl.load(x + index, mask=mask, other=0.0).to(COMPUTE)
                gap += grad * (_divide(memory, last_p) + mu * param)
                decay += param * difference
            else:
                gap += grad * _divide(memory, last_p)
            pull += metric_difference * (grad + lambd * p * memory)
            curvature += difference * metric_difference
        tl.store(partials + 4 * pid, tl.sum(gap, axis=0).to(tl.float64))
        tl.store(partials + 4 * pid + 1, tl.sum(decay, axis=0).to(tl.float64))
        tl.store(partials + 4 * pid + 2, tl.sum(pull, axis=0).to(tl.float64))
        tl.store(partials + 4 * pid + 3, tl.sum(curvature, axis=0).to(tl.float64))


@triton.jit
def _adamw_update_kernel(
    table,
    records,
    chunks,
    constants,
    one_minus_betas,
    tensors,
    X: tl.constexpr,
    D: tl.constexpr,
    V: tl.constexpr,
    COMPUTE: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """amadamw_tensor_step with P from the advanced v:
    d <- lerp(d, g, (1 - beta) / (1 + lambd P)); x <- (1 - mu lr) x - lr d / P."""
    pid, tensor, start, count, x, g, d, v = _chunk(
        records, chunks, X, D, V, COMPUTE, ALIGNED, CHUNK
    )
    lr_wide = tl.load(table + H_LR).to(tl.float64, bitcast=True)
    mu_wide = tl.load(table + H_WEIGHT_DECAY).to(tl.float64, bitcast=True)
    lr = lr_wide.to(COMPUTE)
    decay_factor = (1.0 - mu_wide * lr_wide).to(COMPUTE)
    eps = _hyper(table, H_EPS, COMPUTE)
    lambd = _hyper(table, H_LAMBD, COMPUTE)
    bias_correction1 = tl.load(constants + tensor)
    inv_sqrt_bias_correction2 = tl.load(constants + tensors + tensor)
    one_minus_beta = tl.load(one_minus_betas + tensor)
    for offset in range(0, CHUNK, BLOCK):
        index = start + offset + tl.arange(0, BLOCK)
        mask = index < count
        grad = tl.load(g + index, mask=mask)
        second_moment = tl.load(v + index, mask=mask).to(COMPUTE)
        p = _preconditioner(second_moment, bias_correction1, inv_sqrt_bias_correction2, eps)
        weight = _divide(one_minus_beta, 1 + lambd * p)
        memory = _lerp(tl.load(d + index, mask=mask).to(COMPUTE), grad, weight)
        tl.store(d + index, memory.to(D), mask=mask)
        param = tl.load(x + index, mask=mask).to(COMPUTE)
        tl.store(x + index, (decay_factor * param - lr * _divide(memory, p)).to(X), mask=mask)


# ------------------------------------------------------------------------------------ host
def rejection(batch: ParamBatch, memory_key: str, second_moment_key: str | None) -> str | None:
    """Why ``batch`` cannot take the kernels (``None`` if it can).

    The kernels trust every address in the table: each array must be contiguous on the
    parameters' device with the parameter's element count, and each array kind (parameters,
    memories, second moments) must share one dtype across the group, since the dtypes are
    compile-time constants of the kernels.
    """
    device = batch.grads[0].device
    memories = batch.state_list(memory_key)
    second_moments = batch.state_list(second_moment_key) if second_moment_key else memories
    kinds = {"parameter": batch.params, "memory": memories, "second moment": second_moments}
    for name, tensors in kinds.items():
        dtype = tensors[0].dtype
        if dtype not in _DTYPES:
            return f"a {name} tensor is {dtype}"
        for tensor, x in zip(tensors, batch.params):
            if tensor.dtype != dtype:
                return f"the {name} tensors of the group have several dtypes"
            if tensor.device != device or not tensor.is_contiguous():
                return f"a {name} tensor is not contiguous on {device}"
            if tensor.numel() != x.numel():
                return f"a {name} tensor does not have its parameter's size"
    if not all(g.is_contiguous() for g in batch.grads):
        return "a gradient is not contiguous"
    return None


class _Step:
    """What the two optimizers' kernel steps share: the table, the upload, the sums."""

    terms: int
    memory_key: str
    second_moment_key: str | None

    def __init__(self, batch: ParamBatch, hyper: tuple[float, ...]) -> None:
        self.batch = batch
        self.chunk, self.block = CHUNK, BLOCK
        grads = batch.grads
        self.device = grads[0].device
        self.compute = grads[0].dtype
        memories = batch.state_list(self.memory_key)
        second_moments = (
            batch.state_list(self.second_moment_key) if self.second_moment_key else memories
        )
        self.dtypes = {
            "X": _DTYPES[batch.params[0].dtype],
            "D": _DTYPES[memories[0].dtype],
            "COMPUTE": _DTYPES[self.compute],
        }
        if self.second_moment_key:
            self.dtypes["V"] = _DTYPES[second_moments[0].dtype]
        records, chunk_begins, chunks = array("q"), array("q", [0]), array("q")
        self.aligned = True
        for x, g, d, v in zip(batch.params, grads, memories, second_moments):
            count = x.numel()
            addresses = (x.data_ptr(), g.data_ptr(), d.data_ptr(), v.data_ptr())
            self.aligned = self.aligned and not any(address % 16 for address in addresses)
            records.extend((*addresses, count))
            for start in range(0, count, self.chunk):
                chunks.extend((len(chunk_begins) - 1, start))
            chunk_begins.append(len(chunks) // 2)
        self.chunks = len(chunks) // 2
        self.most_chunks = max(b - a for a, b in zip(chunk_begins, chunk_begins[1:]))
        self.tensors = len(batch)
        table = array("q", array("d", hyper).tobytes()) + records + chunk_begins + chunks
        self.table = _upload(table, self.device)
        lr = batch.group["lr"]
        if isinstance(lr, Tensor) and lr.device.type != "cpu":
            # A device lr (a scheduler's tensor) is read by the kernels, never by the host.
            self.table[int(H_LR) : int(H_LR) + 1].view(torch.float64).copy_(lr.reshape(1))
        sections = [HYPER_FIELDS, len(records), len(chunk_begins), len(chunks)]
        _, self.records, self.chunk_begins, self.chunk_list = self.table.split(sections)

    def _reduce(self, partials: Tensor) -> Tensor | None:
        """Per-tensor sums ``[terms, tensors past their first step]`` in float64."""
        first_steps = self.batch.first_steps
        seen = self.tensors - first_steps
        if not seen:
            return None
        sums = torch.empty(self.terms, seen, dtype=torch.float64, device=self.device)
        rounds = -(-self.most_chunks // REDUCE_BLOCK)
        _reduce_kernel[(seen,)](
            partials,
            self.chunk_begins,
            sums,
            first_steps,
            seen,
            TERMS=self.terms,
            REDUCE_BLOCK=REDUCE_BLOCK,
            # A power of two: a model compiles the kernel for one or two values at most.
            ROUNDS=triton.next_power_of_2(max(rounds, 1)),
        )
        return sums

    def _partials(self) -> Tensor:
        return torch.empty(self.chunks, self.terms, dtype=torch.float64, device=self.device)

    def _launch(self, kernel: Any, *args: Any, **constants: Any) -> None:
        if self.chunks:
            kernel[(self.chunks,)](
                self.table,
                self.records,
                self.chunk_list,
                *args,
                **self.dtypes,
                **constants,
                ALIGNED=self.aligned,
                BLOCK=self.block,
                CHUNK=self.chunk,
            )


def _upload(table: array, device: torch.device) -> Tensor:
    """Copy ``table`` to ``device`` without waiting: from pinned memory, ``non_blocking``."""
    host = torch.frombuffer(table, dtype=torch.int64)
    if device.type == "cpu":  # the interpreter runs the kernels on CPU tensors
        return host.clone()
    return host.pin_memory().to(device, non_blocking=True)


class SGDStep(_Step):
    """One AM-SGD group's step on the kernels (the optimizer's ``_block_sums``/``_apply``)."""

    terms = 3
    memory_key = "momentum_buffer"
    second_moment_key = None

    def __init__(self, batch: ParamBatch) -> None:
        group = batch.group
        hyper = (_host_lr(group["lr"]), 0.0, 0.0, group["lambd"], group["weight_decay"])
        super().__init__(batch, hyper)
        self.decay = group["weight_decay"] != 0

    def block_sums(self) -> tuple[Tensor, Tensor] | None:
        batch, group = self.batch, self.batch.group
        if self.tensors == batch.first_steps:
            return None
        partials = self._partials()
        # First steps get partials too (of d = 0): fewer branches, and _reduce skips them.
        self._launch(_sgd_sums_kernel, partials, DECAY=self.decay)
        memory_dot, pull, curvature = self._reduce(partials).unbind()
        prev_lrs = torch.stack(batch.state_list("prev_lr", batch.first_steps))
        return amsgd.amsgd_terms_from_dots(
            prev_lrs * memory_dot, pull, curvature, lr=group["lr"], lambd=group["lambd"]
        )

    def apply(self, betas: Tensor | None) -> None:
        batch, group = self.batch, self.batch.group
        weights = torch.ones(batch.first_steps, dtype=self.compute, device=self.device)
        if betas is not None:
            seen_weights = (1 - betas.to(self.compute)) / (1 + group["lambd"])
            weights = torch.cat([weights, seen_weights])
        self._launch(_sgd_update_kernel, weights, DECAY=self.decay)
        amsgd.record_betas(batch, betas)


class AdamWStep(_Step):
    """One AM-AdamW group's step on the kernels (the optimizer's ``_block_sums``/``_apply``)."""

    terms = 4
    memory_key = "exp_avg"
    second_moment_key = "exp_avg_sq"

    def __init__(self, batch: ParamBatch) -> None:
        group = batch.group
        self.cap, self.beta2 = group["betas"]
        hyper = (
            _host_lr(group["lr"]),
            self.beta2,
            group["eps"],
            group["lambd"],
            group["weight_decay"],
        )
        super().__init__(batch, hyper)
        self.constants: Tensor | None = None

    def block_sums(self) -> tuple[Tensor, Tensor] | None:
        batch, group = self.batch, self.batch.group
        first_steps = batch.first_steps
        keys = ("step", "beta_product", "prev_bias_correction1", "prev_lr")
        scalars = [batch.state_list(key) for key in keys]
        steps, beta_products, prev_bias_corrections1, prev_lrs = torch.stack(
            [scalar for column in scalars for scalar in column]
        ).view(len(keys), self.tensors)
        # The per-tensor scalars of amadamw_block_sums, with its expressions.
        step_counts = steps + 1
        bias_corrections1 = 1 - self.cap * beta_products
        self.constants = torch.stack(
            [
                bias_corrections1,
                (1 - self.beta2**step_counts) ** -0.5,
                prev_bias_corrections1,
                (1 - self.beta2 ** (step_counts - 1)) ** -0.5,
            ]
        )
        torch._foreach_copy_(
            scalars[0] + scalars[2], list(torch.cat([step_counts, bias_corrections1]).unbind())
        )
        partials = self._partials()
        self._launch(
            _adamw_sums_kernel,
            self.constants,
            partials,
            self.tensors,
            first_steps,
            DECAY=group["weight_decay"] != 0,
            COMPAT=group["gap_estimate"] == "compat",
        )
        sums = self._reduce(partials)
        if sums is None:
            return None
        gap_dot, decay, pull, curvature = sums.unbind()
        scale = amadamw.gap_scale(
            prev_lrs[first_steps:],
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            gap_estimate=group["gap_estimate"],
        )
        return amadamw.amadamw_terms_from_dots(
            scale * gap_dot,
            decay,
            pull,
            curvature,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
        )

    def apply(self, betas: Tensor | None) -> None:
        all_betas = amadamw.betas_with_first_steps(self.batch, betas, self.cap)
        self._launch(_adamw_update_kernel, self.constants, 1 - all_betas, self.tensors)
        amadamw.record_betas(self.batch, all_betas)


STEPS: dict[str, type[_Step]] = {"sgd": SGDStep, "adamw": AdamWStep}


def _host_lr(lr: float | Tensor) -> float:
    """The lr for the table; a device tensor lr is copied in on the device instead."""
    if isinstance(lr, Tensor) and lr.device.type != "cpu":
        return 0.0
    return float(lr)
