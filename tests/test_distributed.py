"""AM under torch.distributed: FSDP2, HSDP, DDP and tensor parallel DTensors give the parameters
of a single-process run, with one all_reduce per step (gloo, 2 CPU processes).

The two ranks run every case once (tests/distributed_worker.py, about 15 s on 2 cores); the
tests below compare their results with single-process runs made here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import adamem

if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import distributed_worker as worker  # noqa: E402

TIMEOUT_S = 300
ATOL = 1e-6  # fp32; sums over shards are added in another order than over whole tensors


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    """Start two gloo ranks on 127.0.0.1, wait (killing them after TIMEOUT_S), load results."""
    out = tmp_path_factory.mktemp("distributed")
    env = dict(os.environ)
    paths = [str(Path(adamem.__file__).parents[1]), str(Path(__file__).parent)]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    if Path("/sys/class/net/lo").exists():
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    port = free_port()
    logs = [open(out / f"rank{rank}.log", "w") for rank in range(2)]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [sys.executable, worker.__file__, str(rank), "2", str(port), str(out)],
            env=env,
            stdout=logs[rank],
            stderr=subprocess.STDOUT,
        )
        for rank in range(2)
    ]
    deadline = time.monotonic() + TIMEOUT_S
    try:
        # Until both exit, a rank fails (its peer would wait in a collective) or time is up.
        while time.monotonic() < deadline:
            codes = [proc.poll() for proc in procs]
            if all(code is not None for code in codes) or any(code for code in codes):
                break
            time.sleep(0.1)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    if any(proc.returncode != 0 for proc in procs):
        tails = "\n".join(
            f"--- rank {rank} (exit {proc.returncode}) ---\n"
            + (out / f"rank{rank}.log").read_text()[-4000:]
            for rank, proc in enumerate(procs)
        )
        pytest.fail(f"distributed worker failed (or ran past {TIMEOUT_S} s):\n{tails}")
    loaded = torch.load(out / "results.pt", weights_only=False)
    loaded["_dir"] = out
    return loaded


def max_difference(got: dict, expected: dict) -> float:
    assert got.keys() == expected.keys()
    return max(float((got[k] - expected[k]).abs().max()) for k in got)


def reference(name: str, scope: str, steps: int = worker.STEPS):
    model, optimizer = worker.reference_run(name, scope, steps)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    return params, worker.full_state(model, optimizer)


ONE_PER_STEP = [0] + [1] * (worker.STEPS - 1)  # the first step solves no beta


def one_all_reduce_per_step(name: str, sharded_matrices: int) -> dict[str, list[int]]:
    """The collectives of each step: one all_reduce (none in the first step), and for a class
    that needs whole matrices one all-gather per sharded matrix; nothing else."""
    gathers = sharded_matrices if worker.FSDP_OPTIMIZERS[name].family.whole_matrices else 0
    return {"all_reduce": ONE_PER_STEP, "collectives": [c + gathers for c in ONE_PER_STEP]}


FSDP_RUNS = [("fsdp", name, scope) for name in worker.FSDP_OPTIMIZERS for scope in worker.SCOPES]
FSDP_RUNS += [("fsdp-foreach", name, "tensor") for name in worker.FSDP_OPTIMIZERS]


@pytest.mark.parametrize("kind, name, scope", FSDP_RUNS)
def test_fsdp2_matches_single_process(results, kind, name, scope):
    got = results[f"{kind}/{name}/{scope}"]
    params, state = reference(name, scope)
    assert max_difference(got["params"], params) <= ATOL
    assert max_difference(got["state"], state) <= ATOL
    # One all_reduce per step and no other collective (no hidden DTensor ones either).
    assert got["counts"] == one_all_reduce_per_step(name, sharded_matrices=2)
    assert got["group_sizes"] == {2}
    # Buffers are DTensors laid out like their parameters (checkpointable by DCP).
    assert got["buffer_layouts"] and all(
        layout == ("DTensor", True) for layout in got["buffer_layouts"]
    )


@pytest.mark.parametrize("name", worker.OPTIMIZERS)
def test_fsdp2_per_shard_sums_would_differ(results, name):
    """Sensitivity: with the reduction disabled (beta from local shards) the run differs."""
    params, _ = reference(name, "tensor")
    assert max_difference(results[f"naive/{name}/tensor"]["params"], params) > 1e-3


@pytest.mark.parametrize("mesh", ["2x1", "1x2"])
@pytest.mark.parametrize("name", worker.OPTIMIZERS)
def test_hsdp_matches_single_process(results, name, mesh):
    """(replicate, shard) meshes: only the shard dimension is reduced."""
    got = results[f"hsdp{mesh}/{name}/global"]
    params, _ = reference(name, "global")
    assert max_difference(got["params"], params) <= ATOL
    shard_size = int(mesh.split("x")[1])  # a shard group of one rank holds whole matrices
    sharded_matrices = 2 if shard_size > 1 else 0
    assert got["counts"] == one_all_reduce_per_step(name, sharded_matrices=sharded_matrices)
    # Over the shard group only: summing the replicas too would scale a and b alike, which
    # leaves beta unchanged, so check the group itself.
    assert got["group_sizes"] == {shard_size}


@pytest.mark.parametrize("scope", worker.SCOPES)
@pytest.mark.parametrize("name", worker.OPTIMIZERS)
def test_ddp_matches_single_process(results, name, scope):
    got = results[f"ddp/{name}/{scope}"]
    params, _ = reference(name, scope)
    assert max_difference(got["params"], params) <= ATOL
    zero = [0] * worker.STEPS
    assert got["counts"] == {"all_reduce": zero, "collectives": zero}


@pytest.mark.parametrize("name", worker.OPTIMIZERS)
def test_dcp_resume_continues_identically(results, name):
    """Save with torch.distributed.checkpoint mid-run, load into a fresh model and optimizer,
    continue: bit-identical to the uninterrupted FSDP2 run."""
    resumed, uninterrupted = results[f"dcp/{name}"], results[f"fsdp/{name}/global"]
    for kind in ("params", "state"):
        assert resumed[kind].keys() == uninterrupted[kind].keys()
        for key in resumed[kind]:
            assert torch.equal(resumed[kind][key], uninterrupted[kind][key]), (kind, key)


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
@pytest.mark.parametrize("name", worker.OPTIMIZERS)
def test_dcp_checkpoint_reshards_into_single_process(results, name):
    """The 2-rank checkpoint (sharded DTensor state) loads into a plain single-process model
    and optimizer, which then continues like the single-process run."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    model = worker.build_model(seed=1)
    optimizer = worker.make_optimizer(name, model, "global")
    state = {
        "model": get_model_state_dict(model),
        "optim": get_optimizer_state_dict(model, optimizer),
    }
    dcp.load(state, checkpoint_id=str(results["_dir"] / f"dcp-{name}"), no_dist=True)
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])
    for step in range(worker.RESUME_AT, worker.STEPS):
        worker.reference_grads(model, step)
        optimizer.step()
    params, optimizer_state = reference(name, "global")
    assert max_difference({n: p.detach() for n, p in model.named_parameters()}, params) <= ATOL
    assert max_difference(worker.full_state(model, optimizer), optimizer_state) <= ATOL


@pytest.mark.parametrize("scope", worker.SCOPES)
@pytest.mark.parametrize("name", worker.OPTIMIZERS)
def test_tensor_parallel_matches_single_process(results, name, scope):
    """Shard(0), Shard(1), Replicate and an empty shard on a 1-D mesh."""
    got = results[f"tp/{name}/{scope}"]
    expected = worker.tp_reference(name, scope)
    assert max(float((g - e).abs().max()) for g, e in zip(got["params"], expected)) <= ATOL
    assert got["counts"] == one_all_reduce_per_step(name, sharded_matrices=2)


@pytest.mark.parametrize("name", worker.ZERO_OPTIMIZERS)  # the classes that take the bias
def test_tensor_parallel_partial_gradient_is_reduced(results, name):
    """A Partial (unreduced) gradient of a replicated parameter is reduced by DTensor first:
    exact, at the cost of that one extra collective."""
    got = results[f"tp/{name}/global/partial-grad"]
    expected = worker.tp_reference(name, "global")
    assert max(float((g - e).abs().max()) for g, e in zip(got["params"], expected)) <= ATOL
    assert got["counts"]["all_reduce"] == ONE_PER_STEP
    assert got["counts"]["collectives"] == [c + 1 for c in ONE_PER_STEP]


def test_reduction_counts_every_shard_once(results):
    """Parts split over both mesh dims add up; copies over a replicated dim count once;
    a sub-mesh maps onto its root; whole tensors are left alone."""
    reduction = results["reduction"]
    for mesh, a in (("2x1", [3.0, 10.0, 7.0, 100.0]), ("1x2", [3.0, 30.0, 7.0, 300.0])):
        got_a, got_b = reduction[mesh]
        assert got_a.tolist() == a
        assert got_b.tolist() == [2 * v for v in a]
    assert "one device mesh" in reduction["two-meshes"]


def test_unsupported_layouts_raise(results):
    errors = results["errors"]
    assert "gradient a plain tensor" in errors["plain-grad"]
    assert "Shard or Replicate" in errors["partial-param"]
    assert "FSDP1" in errors["fsdp1"]


@pytest.mark.parametrize("scope", ["group", "global"])
@pytest.mark.parametrize("name", worker.ZERO_OPTIMIZERS)
def test_zero_flat_partitions_match_single_process(results, name, scope):
    """DeepSpeed ZeRO-1/2 layout (one flat slice per group and rank) with
    set_flat_partition_group: exact for scope group and global, one all_reduce per step."""
    got = results[f"zero/{name}/{scope}"]
    params, _ = reference(name, scope)
    assert max_difference(got["params"], params) <= ATOL
    assert got["counts"] == {"all_reduce": ONE_PER_STEP, "collectives": ONE_PER_STEP}


@pytest.mark.parametrize("name", worker.ZERO_OPTIMIZERS)
def test_zero_flat_partitions_reject_tensor_scope(results, name):
    assert "scope='tensor'" in results[f"zero/{name}/tensor-scope"]
