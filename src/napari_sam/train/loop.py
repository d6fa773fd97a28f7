"""What the trainers share: AdamW with warm-up and cosine decay, a step counter, checkpoints in
a work folder (resumed from the latest) and the loop of :meth:`SteppedTraining.fit`."""

from __future__ import annotations

import json
import pathlib
from dataclasses import asdict

import keras
import tensorflow as tf

__all__ = ["SteppedTraining"]


class SteppedTraining:
    """Base of :class:`~napari_sam.train.training.Trainer` and
    :class:`~napari_sam.train.decoder_training.DecoderTrainer`.

    A subclass calls :meth:`_setup` in its constructor and implements :meth:`_one_step`; its
    config has ``steps``, ``warmup_steps``, ``learning_rate``, ``weight_decay`` and
    ``checkpoint_every``.
    """

    def _setup(self, config, workdir, variables, **tracked) -> None:
        """The optimizer of ``variables``, the step counter and the checkpoints of ``tracked``
        (and of both) in ``workdir/checkpoints``, restored from the latest one."""
        self.cfg = config
        self.workdir = pathlib.Path(workdir) if workdir is not None else None
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, max(config.steps - config.warmup_steps, 1), warmup_target=config.learning_rate,
            warmup_steps=config.warmup_steps,
        )  # fmt: skip
        self.optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.variables = variables
        self.optimizer.build(self.variables)
        self._manager = None
        if self.workdir is not None:
            ckpt = tf.train.Checkpoint(optimizer=self.optimizer, step=self.step, **tracked)
            self._manager = tf.train.CheckpointManager(ckpt, self.workdir / "checkpoints", 3)
            if self._manager.latest_checkpoint:
                ckpt.restore(self._manager.latest_checkpoint).assert_existing_objects_matched()

    def _one_step(self) -> tuple[float, str, float]:
        """One optimisation step: its loss, and a metric's name and value to show."""
        raise NotImplementedError

    def fit(self, progress: bool = True, max_steps: int | None = None, callback=None):
        """Train until ``config.steps`` (or ``max_steps`` more), checkpointing.

        Returns the losses of this run. Stopping early and calling ``fit`` again (or making
        a new trainer on the same ``workdir``) continues the same schedule. ``callback(step,
        loss, metric)`` is called after every step (e.g. to drive a curriculum).
        """
        from tqdm.auto import tqdm

        losses = []
        start = int(self.step.numpy())
        end = self.cfg.steps if max_steps is None else min(self.cfg.steps, start + max_steps)
        bar = tqdm(total=self.cfg.steps, initial=start, disable=not progress, desc="training")
        log = None
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            (self.workdir / "train_config.json").write_text(json.dumps(asdict(self.cfg)))
            log = open(self.workdir / "loss.log", "a")  # noqa: SIM115
        try:
            while int(self.step.numpy()) < end:
                loss, name, value = self._one_step()
                losses.append(loss)
                step = int(self.step.numpy())
                bar.update(1)
                bar.set_postfix({"loss": f"{loss:.4f}", name: f"{value:.4f}"})
                if log is not None:
                    log.write(f"{step} {loss:.6f} {value:.6f}\n")
                    log.flush()
                if callback is not None:
                    callback(step, loss, value)
                if self._manager is not None and (
                    step % self.cfg.checkpoint_every == 0 or step == end
                ):
                    self._manager.save(checkpoint_number=step)
        finally:
            bar.close()
            if log is not None:
                log.close()
        return losses
