"""Train a tiny GPT-2 with the Hugging Face ``Trainer`` and AM-AdamW; log beta to TensorBoard.

The model is built from a config with random weights and the data are generated, so nothing is
downloaded. Run it with::

    pip install -e ".[hf,tensorboard]"    # from the repository root
    python examples/hf_trainer.py --output-dir /tmp/adamem-hf
    tensorboard --logdir /tmp/adamem-hf/runs

``tests/test_integrations_hf.py`` runs :func:`train` for a few steps.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model comes from a config: never download

import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402
from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainingArguments,
    get_cosine_schedule_with_warmup,
)

import adamem  # noqa: E402

VOCAB_SIZE = 32
SEQUENCE_LENGTH = 16


class ArithmeticSequences(Dataset):
    """Token sequences ``start, start + stride, ...`` modulo the vocabulary: easy to learn."""

    def __init__(self, size: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, VOCAB_SIZE, (size, 1), generator=generator)
        strides = torch.randint(1, 4, (size, 1), generator=generator)
        self.tokens = (starts + strides * torch.arange(SEQUENCE_LENGTH)) % VOCAB_SIZE

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        # GPT2LMHeadModel shifts the labels itself.
        return {"input_ids": self.tokens[index], "labels": self.tokens[index]}


def tiny_gpt2() -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_positions=SEQUENCE_LENGTH,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config)


@dataclass
class TrainResult:
    losses: list[float]
    """The training loss at each of the Trainer's logging steps."""
    beta_log_dir: Path
    """Where the beta statistics were written (TensorBoard event files)."""


def train(output_dir: str | Path, *, max_steps: int = 60, logging_steps: int = 10) -> TrainResult:
    torch.manual_seed(0)
    output_dir = Path(output_dir)
    model = tiny_gpt2()
    # The usual AdamW recipe: no decay on biases and LayerNorm; the same lr as for AdamW.
    optimizer = adamem.AMAdamW(adamem.param_groups(model, weight_decay=0.01), lr=3e-3)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, num_warmup_steps=max_steps // 10, num_training_steps=max_steps
    )
    beta_log_dir = output_dir / "runs" / "am_beta"
    writer = SummaryWriter(log_dir=str(beta_log_dir))
    # The hook counts optimizer steps, which are the Trainer's global steps.
    beta_logger = adamem.BetaLogger(
        optimizer,
        adamem.tensorboard_log_fn(writer),
        every=logging_steps,
        per_layer=True,
        names=model,
    )
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=16,
        logging_steps=logging_steps,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ArithmeticSequences(size=512),
        optimizers=(optimizer, scheduler),
    )
    try:
        trainer.train()
    finally:
        beta_logger.close()
        writer.close()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return TrainResult(losses=losses, beta_log_dir=beta_log_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="adamem-hf-example")
    parser.add_argument("--max-steps", type=int, default=60)
    cli = parser.parse_args()
    result = train(cli.output_dir, max_steps=cli.max_steps)
    print(f"loss at each logging step: {[round(loss, 3) for loss in result.losses]}")
    print(f"beta statistics: tensorboard --logdir {result.beta_log_dir.parent}")


if __name__ == "__main__":
    main()
