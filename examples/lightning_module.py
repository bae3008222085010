"""A Lightning module whose ``configure_optimizers`` returns AM-AdamW, with beta logged.

:class:`BetaLogging` is a small callback that sends AM's beta statistics to whatever loggers the
``Trainer`` has (TensorBoard, CSV, W&B...), at the optimizer steps Lightning counts as
``global_step``. Run it with::

    pip install -e ".[lightning]"    # from the repository root
    python examples/lightning_module.py --output-dir /tmp/adamem-lightning

``tests/test_integrations_lightning.py`` runs :func:`train` for a few steps.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import adamem


class Regression(L.LightningModule):
    def __init__(self, lr: float = 1e-2, weight_decay: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, 64), nn.LayerNorm(64), nn.GELU(), nn.Linear(64, 1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        inputs, targets = batch
        loss = nn.functional.mse_loss(self.net(inputs), targets)
        self.log("train_loss", loss, on_step=True)
        return loss

    def configure_optimizers(self):
        optimizer = adamem.AMAdamW(
            adamem.param_groups(self, weight_decay=self.hparams.weight_decay),
            lr=self.hparams.lr,
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.trainer.max_steps
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class BetaLogging(L.Callback):
    """Log the beta statistics of every AM optimizer of the ``Trainer`` to its loggers."""

    def __init__(self, every: int = 50, per_layer: bool = False) -> None:
        self.every = every
        self.per_layer = per_layer
        self._beta_loggers: list[adamem.BetaLogger] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        def log_metrics(scalars: dict[str, float], step: int) -> None:
            for logger in trainer.loggers:
                logger.log_metrics(scalars, step)

        for optimizer in trainer.optimizers:
            if isinstance(optimizer, (adamem.AMAdamW, adamem.AMSGD)):
                beta_logger = adamem.BetaLogger(
                    optimizer,
                    log_metrics,
                    every=self.every,
                    per_layer=self.per_layer,
                    names=pl_module,
                )
                beta_logger.steps = trainer.global_step  # continue the count after a resume
                self._beta_loggers.append(beta_logger)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for beta_logger in self._beta_loggers:
            beta_logger.close()
        self._beta_loggers.clear()


def regression_data(size: int = 1024, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(size, 8, generator=generator)
    weights = torch.randn(8, 1, generator=generator) / 8**0.5
    noise = 0.1 * torch.randn(size, 1, generator=generator)
    return TensorDataset(inputs, torch.tanh(inputs @ weights) + noise)


@dataclass
class TrainResult:
    losses: list[float]
    """``train_loss`` at each logged step."""
    beta_rows: list[dict[str, str]]
    """The rows of the CSV log that hold beta statistics."""


def train(output_dir: str | Path, *, max_steps: int = 60, log_every: int = 10) -> TrainResult:
    L.seed_everything(0, verbose=False)
    logger = CSVLogger(save_dir=str(output_dir), name="am")
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=logger,
        log_every_n_steps=log_every,
        callbacks=[BetaLogging(every=log_every, per_layer=True)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(regression_data(), batch_size=64, shuffle=True)
    trainer.fit(Regression(), train_dataloaders=loader)
    with open(Path(logger.log_dir) / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    losses = [float(row["train_loss"]) for row in rows if row.get("train_loss")]
    beta_rows = [row for row in rows if row.get("am/beta_mean")]
    return TrainResult(losses=losses, beta_rows=beta_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="adamem-lightning-example")
    parser.add_argument("--max-steps", type=int, default=60)
    cli = parser.parse_args()
    result = train(cli.output_dir, max_steps=cli.max_steps)
    print(f"loss at each logged step: {[round(loss, 4) for loss in result.losses]}")
    print(f"mean beta at each log: {[row['am/beta_mean'][:5] for row in result.beta_rows]}")


if __name__ == "__main__":
    main()
