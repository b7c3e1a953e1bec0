"""A PyTorch Lightning callback: logs the training loss, the learning rate and the
logged metrics every step, syncs at every step boundary, applies a phase's optimizer
settings (``lr``, ``weight_decay``, ``momentum``) and ``ctl set`` of them to every rank's
optimizers (the lr as their schedulers' base too), and stops the trainer
on ``should_stop``.

    from phasetop.lightning import PhasetopCallback
    trainer = lightning.Trainer(callbacks=[PhasetopCallback()])
"""

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the older package name
    from pytorch_lightning.callbacks import Callback

from . import _run
from ._apply import apply, changes_of


def _scalars(d):
    out = {}
    for k, v in d.items():
        try:
            if hasattr(v, "numel") and v.numel() != 1:
                continue
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


class PhasetopCallback(Callback):
    def __init__(self, run=None, config=None):
        self.run = run
        self.config = config
        #: The last sync's answer.
        self.control = None

    def _run(self, pl_module):
        if self.run is None:
            cfg = self.config
            if cfg is None:
                try:
                    cfg = dict(pl_module.hparams)
                except Exception:
                    cfg = None
            self.run = _run.current() or _run.init(config=cfg)
        return self.run

    def on_train_start(self, trainer, pl_module):
        run = self._run(pl_module)
        # The first phase's optimizer settings, as phasetop's plan says (on every rank).
        apply(trainer.optimizers, [c.scheduler for c in trainer.lr_scheduler_configs], run.settings)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        run = self._run(pl_module)
        step = trainer.global_step
        metrics = _scalars(trainer.callback_metrics)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            metrics["train_loss"] = float(loss)
        if trainer.optimizers:
            metrics["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        run.log({k: v for k, v in metrics.items() if not k.startswith("val_")}, step=step)
        ctl = self.control = run.sync(step)
        apply(trainer.optimizers, [c.scheduler for c in trainer.lr_scheduler_configs], changes_of(ctl))
        if ctl.should_stop:
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        vals = {k: v for k, v in _scalars(trainer.callback_metrics).items() if k.startswith("val_")}
        if vals:
            self._run(pl_module).log(vals, step=trainer.global_step)

    def on_train_end(self, trainer, pl_module):
        if self.run is not None:
            # The metrics as training ended: the run's summary (inspect's "summary").
            self.run.summary.update(_scalars(trainer.callback_metrics))
            self.run.flush()
