"""The benchmark tasks and their sizes per suite.

A task belongs to the suites it has a configuration for: ``smoke``, ``quick`` and ``full`` hold
the small tasks, ``medium`` the tasks trained to real quality on the CPU, ``gpu`` a larger GPT
for one GPU. Every configuration fixes ``steps``, ``evals`` (evaluation points after step 0,
evenly spaced), ``lr_points`` (log-spaced learning rates over the family's range, or over
the configuration's own ``lr_ranges``) and the sizes its builder needs; optionally
``warmup`` (the fraction of steps of the ``+warmup`` methods' linear warm-up) and ``cosine``
(the learning rate's cosine decay, see :func:`lr_factor`). ``gpu`` overrides apply with
``--device cuda`` (only the small GPT tasks have any: the other small networks are too small to
gain from a GPU). The convex tasks always run in float64 on the CPU. All selection and report
metrics are lower-is-better.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import data
from .classification import Classification
from .convex import LogisticRegression, Quadratic
from .gpt import GPT
from .language import LanguageModel
from .methods import Method, family_methods, method, warmup_factor
from .models import ConvBase1d, ResNet, mlp
from .problem import Problem

Config = dict[str, Any]
Builder = Callable[[Config, int, str], Problem]
SUITES = ("smoke", "quick", "medium", "full", "gpu")
# Suites that only exercise the code: too few steps and learning rates for any comparison to
# mean something, so their reports give no verdicts.
MACHINERY_SUITES = ("smoke",)
# Suites tuned as AlgoPerf does: one seed tries every learning rate of the grid, and the other
# seeds run at the learning rate it chose (see plan.plan). The other suites run every seed at
# every learning rate.
TUNED_SUITES = ("medium", "gpu")
# Suites whose sizes are meant for a GPU: planning them for the CPU is an error.
CUDA_SUITES = ("gpu",)
# A linear warm-up over W steps (see methods.warmup_factor) takes (W-1)/2 steps' worth of
# learning rate off the start of a run in total. Below 5 steps that is less than two steps'
# worth: such a run is constant-rate training in all but name (W = 1 changes nothing at all),
# so the benchmark does not run or label it as a warm-up.
MIN_WARMUP_STEPS = 5


@dataclass(frozen=True)
class Task:
    """A problem, the methods compared on it and how runs are judged.

    ``select`` picks each method's learning rate (mean over seeds); ``report`` is the metric
    reported and compared at that learning rate; ``extras`` are further final metrics shown;
    ``anchor`` is a published reference result to check the baselines against.
    """

    name: str
    summary: str
    build: Builder
    lr_ranges: dict[str, tuple[float, float]]
    select: str
    report: str
    configs: dict[str, Config]
    extras: tuple[str, ...] = ()
    gpu: dict[str, Config] = field(default_factory=dict)
    # The methods compared in a suite, by suite; every method of the task's families where a
    # suite has none. Not part of the configuration: appending a method to a suite's list keeps
    # the records of the others valid.
    method_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    anchor: str = ""

    def config(self, suite: str, device: str) -> Config:
        """The sizes of ``suite`` on ``device`` (``gpu`` overrides for CUDA)."""
        config = dict(self.configs[suite])
        if device.startswith("cuda"):
            config.update(self.gpu.get(suite, {}))
        return config

    def methods(self, suite: str) -> list[Method]:
        """The methods compared on this task in ``suite``."""
        if suite in self.method_names:
            return [method(name) for name in self.method_names[suite]]
        return [m for family in self.lr_ranges for m in family_methods(family)]

    def lr_grid(self, family: str, config: Config) -> list[float]:
        """``config["lr_points"]`` log-spaced learning rates over the family's range (the
        configuration's ``lr_ranges`` if it has one), 3 digits.

        >>> TASKS["quadratic"].lr_grid("sgd", {"lr_points": 5})
        [1.0, 3.16, 10.0, 31.6, 100.0]
        """
        import numpy as np  # the bench extra: ``adamem bench --help`` works without it

        low, high = config.get("lr_ranges", self.lr_ranges)[family]
        grid = np.geomspace(low, high, config["lr_points"])
        return [float(f"{lr:.3g}") for lr in grid]


def suite_tasks(suite: str) -> list[str]:
    """The names of the tasks that ``suite`` runs, in report order.

    >>> suite_tasks("gpu")
    ['gpt-code']
    """
    return [name for name, task in TASKS.items() if suite in task.configs]


def warmup_steps(config: Config) -> int:
    """The length of the linear warm-up of ``+warmup`` methods: the configured fraction
    ``warmup`` of the ``steps``, rounded.

    >>> warmup_steps({"steps": 200, "warmup": 0.1}), warmup_steps({"steps": 200})
    (20, 0)
    """
    return round(config.get("warmup", 0.0) * config["steps"])


def lr_factor(config: Config, step: int, warmed_up: bool) -> float:
    """The multiple of the peak learning rate at step ``step`` (0-based): the linear warm-up
    of :func:`~.methods.warmup_factor` over :func:`warmup_steps` for ``warmed_up`` methods,
    times, with ``config["cosine"]`` = f, a cosine decay from 1 at the end of the configured
    warm-up to f at the last step. A method without warm-up follows the same decay: only the
    ramp differs.

    >>> config = {"steps": 11, "warmup": 0.2, "cosine": 0.1}
    >>> [round(lr_factor(config, s, True), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.55, 0.1]
    >>> [round(lr_factor(config, s, False), 3) for s in (0, 1, 2, 6, 10)]
    [1.0, 1.0, 1.0, 0.55, 0.1]
    """
    warmup = warmup_steps(config)
    factor = warmup_factor(step, warmup if warmed_up else 0)
    if "cosine" not in config:
        return factor
    floor, decay_steps = config["cosine"], config["steps"] - 1 - warmup
    progress = min(1.0, max(0, step - warmup) / decay_steps) if decay_steps > 0 else 1.0
    return factor * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _quadratic(noise: float) -> Builder:
    def build(config: Config, seed: int, device: str) -> Problem:
        return Quadratic(config["dim"], config["condition"], noise, config["dim"] * 2 // 5, seed)

    return build


def _logistic(config: Config, seed: int, device: str) -> Problem:
    return LogisticRegression(config.get("batch_size", 0), config["l2"], seed)


def _digits_mlp(config: Config, seed: int, device: str) -> Problem:
    model = mlp(64, config["hidden"], 10)
    return Classification(model, data.digits(), config["batch_size"], seed, device)


def _mnist1d_cnn(config: Config, seed: int, device: str) -> Problem:
    model = ConvBase1d(config["channels"])
    return Classification(model, data.mnist1d(), config["batch_size"], seed, device)


def _resnet(split: Callable[[], data.Split], dims: int) -> Builder:
    def build(config: Config, seed: int, device: str) -> Problem:
        model = ResNet(config["channels"], config["blocks"], dims=dims)
        return Classification(model, split(), config["batch_size"], seed, device)

    return build


def _gpt(corpus: Callable[[], data.Corpus]) -> Builder:
    def build(config: Config, seed: int, device: str) -> Problem:
        model = GPT(config["width"], config["layers"], config["heads"], config["context"])
        return LanguageModel(
            model,
            corpus(),
            config["context"],
            config["batch_size"],
            config["eval_windows"],
            seed,
            device,
            bf16=config.get("bf16", False),
        )

    return build


def _sizes(smoke: Config, quick: Config, full: Config, **shared: Any) -> dict[str, Config]:
    """The configurations of a task of the small suites."""
    suites = ("smoke", "quick", "full")
    return {name: {**shared, **sizes} for name, sizes in zip(suites, (smoke, quick, full))}


SMOKE = {"steps": 12, "evals": 3, "lr_points": 2}
QUADRATIC = {"dim": 100, "condition": 1000.0}
GPT_SMOKE = {**SMOKE, "width": 16, "layers": 1, "heads": 2, "context": 32, "batch_size": 4}
GPT_QUICK = {"width": 32, "layers": 2, "heads": 2, "context": 128, "batch_size": 4}
GPT_FULL = {"width": 192, "layers": 4, "heads": 6, "context": 128, "batch_size": 8}
GPT_GPU = {"width": 224, "layers": 4, "heads": 7, "context": 256, "batch_size": 64}
ADAM_NETS = 0.01  # decoupled weight decay of both AdamW and AMAdamW on the networks
GPT_SCHEDULE = {"warmup": 0.05, "cosine": 0.1, "weight_decay": ADAM_NETS}
# Sized so that AdamW reaches well under 2 bits per byte on the held-out files in a few minutes
# of one CPU thread (about 0.12M parameters, 10M training bytes over the run).
GPT_MEDIUM = {
    **GPT_SCHEDULE,
    "width": 64,
    "layers": 2,
    "heads": 2,
    "context": 128,
    "batch_size": 16,
    "steps": 5000,
    "evals": 10,
    "lr_points": 3,
    "eval_windows": 512,  # fewer windows make the estimate of held-out bits per byte noisy
}
# About 85M parameters and 33M training tokens (2000 steps of 32 windows of 512 bytes), for a
# few minutes per run on one large GPU. No tuning: one learning rate, usual for the size.
GPT_LARGE = {
    **GPT_SCHEDULE,
    "width": 768,
    "layers": 12,
    "heads": 12,
    "context": 512,
    "batch_size": 32,
    "steps": 2000,
    "evals": 10,
    "lr_points": 1,
    "eval_windows": 512,
    "bf16": True,
    "lr_ranges": {"adam": (6e-4, 6e-4), "muon": (6e-4, 6e-4)},
}
# The language-model pretraining recipe: AdamW (tuned beta1) with warm-up and cosine decay;
# AMAdamW with the same schedule, and without the warm-up (AM's claim is that it needs none).
# gpt-code has a learning-rate range for the muon family too: appending its methods here
# (ammuon-tensor+warmup, muon-<momentum>+warmup) and rerunning with --resume adds their runs.
GPT_MEDIUM_METHODS = (
    "adamw-0.9+warmup",
    "adamw-0.95+warmup",
    "amadamw-tensor+warmup",
    "amadamw-tensor",
    "amadamw-global+warmup",
    "amadamw-nesterov-tensor+warmup",
    "amadamw-si-tensor+warmup",
    "ammuon-tensor+warmup",
    "muon-0.9+warmup",
    "muon-0.95+warmup",
    "muon-0.98+warmup",
)
GPT_LARGE_METHODS = (
    "adamw-0.9+warmup",
    "amadamw-tensor+warmup",
    "amadamw-tensor",
    "ammuon-tensor+warmup",
    "muon-0.95+warmup",
)
# Image classification trained to convergence, with the usual cosine decay to 0.
IMAGE_MEDIUM = {"cosine": 0.0, "weight_decay": ADAM_NETS, "lr_points": 3, "evals": 20}
# Half-decade grids around the usual learning rates of ResNets (SGD 0.1 at momentum 0.9, that
# is 1 in EMA units; Adam 1e-3 to 1e-2).
IMAGE_LR_RANGES = {"sgd": (10**-0.5, 10**0.5), "adam": (1e-3, 1e-2)}


def _image_medium_task(
    name: str, summary: str, build: Builder, *, steps: int, channels: int, batch_size: int
) -> Task:
    """An image classification task of the medium suite: a ResNet of 3 blocks trained to
    convergence, selected on validation loss, reported in test error."""
    config = {**IMAGE_MEDIUM, "steps": steps, "channels": channels, "blocks": 3}
    return Task(
        name=name,
        summary=summary,
        build=build,
        lr_ranges=IMAGE_LR_RANGES,
        select="val_loss",
        report="test_error",
        extras=("test_acc", "test_loss"),
        configs={"medium": {**config, "batch_size": batch_size}},
    )


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="quadratic",
            summary="ill-conditioned quadratic x'Ax/2 (dim 100, condition number 1000, eigenvalues "
            "log-spaced, random rotation), exact gradients, float64; metric f(x) - f*",
            build=_quadratic(0.0),
            lr_ranges={"sgd": (1.0, 100.0), "adam": (10**-1.5, 10**0.5)},
            select="gap",
            report="gap",
            configs=_sizes(
                SMOKE,
                {"steps": 200, "evals": 40, "lr_points": 5},
                {"steps": 1000, "evals": 100, "lr_points": 9},
                **QUADRATIC,
            ),
        ),
        Task(
            name="quadratic-noisy",
            summary="the same quadratic with gradient noise N(0, I) added at every step",
            build=_quadratic(1.0),
            lr_ranges={"sgd": (0.003, 0.3), "adam": (0.001, 0.1)},
            select="gap",
            report="gap",
            configs=_sizes(
                SMOKE,
                {"steps": 300, "evals": 30, "lr_points": 5},
                {"steps": 2000, "evals": 100, "lr_points": 9},
                **QUADRATIC,
            ),
        ),
        Task(
            name="logreg",
            summary="L2-regularised (1e-3) logistic regression on breast_cancer (455 training "
            "samples, standardised), full batch, float64; metric f(x) - f* on the training "
            "objective",
            build=_logistic,
            lr_ranges={"sgd": (1.0, 100.0), "adam": (0.03, 3.0)},
            select="gap",
            report="gap",
            extras=("test_acc",),
            configs=_sizes(
                SMOKE,
                {"steps": 300, "evals": 30, "lr_points": 5},
                {"steps": 1000, "evals": 100, "lr_points": 9},
                l2=1e-3,
            ),
        ),
        Task(
            name="logreg-minibatch",
            summary="the same logistic regression with minibatches of 32",
            build=_logistic,
            lr_ranges={"sgd": (0.03, 3.0), "adam": (0.001, 0.1)},
            select="gap",
            report="gap",
            extras=("test_acc",),
            configs=_sizes(
                SMOKE,
                {"steps": 500, "evals": 25, "lr_points": 5},
                {"steps": 3000, "evals": 100, "lr_points": 9},
                l2=1e-3,
                batch_size=32,
            ),
        ),
        Task(
            name="digits-mlp",
            summary="MLP 64-128-10 (ReLU) on digits (8x8), 1257/270/270 split, minibatches of 64",
            build=_digits_mlp,
            lr_ranges={"sgd": (0.1, 10.0), "adam": (0.001, 0.1)},
            select="val_loss",
            report="test_loss",
            extras=("test_acc",),
            configs=_sizes(
                {**SMOKE, "hidden": 16},
                {"steps": 400, "evals": 20, "lr_points": 5, "hidden": 128},
                {"steps": 3000, "evals": 60, "lr_points": 9, "hidden": 128},
                batch_size=64,
                weight_decay=ADAM_NETS,
            ),
        ),
        Task(
            name="mnist1d-cnn",
            summary="the MNIST-1D paper's CNN (3 stride-2 convolutions, 25 channels) on MNIST-1D "
            "generated locally (4000/1000 train/test, 400 of train held out for validation), "
            "minibatches of 100",
            build=_mnist1d_cnn,
            anchor="the MNIST-1D authors report about 94% test accuracy for this CNN (6000 steps "
            "of Adam, lr 1e-2, batch 100); only the full suite trains that long",
            lr_ranges={"sgd": (0.03, 3.0), "adam": (0.001, 0.1)},
            select="val_loss",
            report="test_loss",
            extras=("test_acc",),
            configs=_sizes(
                {**SMOKE, "channels": 4},
                {"steps": 300, "evals": 15, "lr_points": 5, "channels": 25},
                {"steps": 6000, "evals": 60, "lr_points": 9, "channels": 25},
                batch_size=100,
                weight_decay=ADAM_NETS,
            ),
        ),
        Task(
            name="digits-resnet",
            summary="ResNet-style CNN (3x3 stem, residual blocks with batch norm, global pooling) "
            "on digits 8x8 images, 1257/270/270 split, minibatches of 64",
            build=_resnet(data.digits, dims=2),
            lr_ranges={"sgd": (0.1, 10.0), "adam": (0.001, 0.1)},
            select="val_loss",
            report="test_loss",
            extras=("test_acc",),
            configs=_sizes(
                {**SMOKE, "channels": 4, "blocks": 1},
                {"steps": 120, "evals": 8, "lr_points": 5, "channels": 12, "blocks": 2},
                {"steps": 1000, "evals": 20, "lr_points": 9, "channels": 16, "blocks": 3},
                batch_size=64,
                weight_decay=ADAM_NETS,
            ),
        ),
        Task(
            name="gpt",
            summary="byte-level GPT on Python's own sources (pydoc_data/topics.py and the "
            "top-level stdlib modules; 16 KiB blocks, 18/1/1 train/validation/test); metric "
            "bits per byte",
            build=_gpt(data.python_text),
            lr_ranges={"adam": (0.0003, 0.03), "muon": (0.0003, 0.03)},
            select="val_bpb",
            report="test_bpb",
            configs=_sizes(
                {**GPT_SMOKE, "eval_windows": 8},
                {**GPT_QUICK, "steps": 200, "evals": 8, "lr_points": 5, "eval_windows": 64},
                {**GPT_FULL, "steps": 2000, "evals": 20, "lr_points": 5, "eval_windows": 256},
                weight_decay=ADAM_NETS,
            ),
            gpu={
                "quick": {**GPT_GPU, "steps": 2000, "eval_windows": 512},
                "full": {**GPT_GPU, "steps": 20000, "evals": 50, "eval_windows": 2048},
            },
        ),
        Task(
            name="gpt-warmup",
            summary="the warmup question: the same GPT at aggressive learning rates, constant "
            "learning rate vs a linear warmup",
            build=_gpt(data.python_text),
            lr_ranges={"adam": (0.01, 0.1)},
            select="val_bpb",
            report="test_bpb",
            method_names=dict.fromkeys(
                ("smoke", "quick", "full"),
                ("adamw-0.9", "adamw-0.9+warmup", "amadamw-tensor", "amadamw-tensor+warmup"),
            ),
            configs=_sizes(
                # a tenth of the smoke suite's steps is shorter than MIN_WARMUP_STEPS
                {**GPT_SMOKE, "eval_windows": 8, "warmup": 0.5},
                {**GPT_QUICK, "steps": 200, "evals": 8, "lr_points": 3, "eval_windows": 64},
                {**GPT_FULL, "steps": 2000, "evals": 20, "lr_points": 3, "eval_windows": 256},
                weight_decay=ADAM_NETS,
                warmup=0.1,
            ),
            gpu={
                "quick": {**GPT_GPU, "steps": 2000, "eval_windows": 512},
                "full": {**GPT_GPU, "steps": 20000, "evals": 50, "eval_windows": 2048},
            },
        ),
        _image_medium_task(
            "mnist1d-resnet",
            "1-D ResNet (width-3 stem, residual blocks with batch norm at full resolution, "
            "global pooling) on MNIST-1D generated locally (4000/1000 train/test, 400 of train "
            "held out for validation), minibatches of 100, trained to convergence; metric test "
            "error",
            _resnet(data.mnist1d, dims=1),
            steps=2000,
            channels=32,
            batch_size=100,
        ),
        _image_medium_task(
            "digits-resnet-wide",
            "the digits ResNet, wider and deeper, trained to convergence; metric test error",
            _resnet(data.digits, dims=2),
            steps=1000,
            channels=24,
            batch_size=64,
        ),
        Task(
            name="gpt-code",
            summary="byte-level pre-norm GPT pretraining on Python code: the sources of the "
            "standard library and of torch, split by file (a hash of each file's name sends "
            "about 5% of files to validation and 5% to test); metric bits per byte on the "
            "held-out files",
            build=_gpt(data.code_corpus),
            lr_ranges={"adam": (10**-2.5, 10**-1.5), "muon": (10**-2.5, 10**-1.5)},
            select="val_bpb",
            report="test_bpb",
            configs={
                "medium": GPT_MEDIUM,
                "gpu": GPT_LARGE,
            },
            method_names={"medium": GPT_MEDIUM_METHODS, "gpu": GPT_LARGE_METHODS},
        ),
    )
}
