"""A Hugging Face ``transformers`` TrainerCallback: logs what the Trainer logs (``loss``
→ ``train_loss``, ``eval_loss`` → ``val_loss``, ``learning_rate`` → ``lr``, other keys
as they are), syncs at every step end, applies a phase's ``lr`` and ``ctl set lr=…`` to
the optimizer and the scheduler's base, and stops training on ``should_stop``.

    from phasetop.hf import PhasetopCallback
    trainer = transformers.Trainer(..., callbacks=[PhasetopCallback()])
"""

from transformers import TrainerCallback

from . import _run
from ._apply import apply, changes_of

_NAMES = {"loss": "train_loss", "learning_rate": "lr", "grad_norm": "grad_norm"}


def _name(k):
    if k in _NAMES:
        return _NAMES[k]
    if k.startswith("eval_"):
        return "val_" + k[len("eval_"):]
    return k


class PhasetopCallback(TrainerCallback):
    def __init__(self, run=None, config=None):
        self.run = run
        self.config = config
        self.control = None
        self._first = True

    def _get(self, args):
        if self.run is None:
            cfg = self.config
            if cfg is None:
                try:
                    cfg = args.to_sanitized_dict()
                except Exception:
                    cfg = None
            self.run = _run.current() or _run.init(config=cfg)
        return self.run

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        run = self._get(args)
        # The first phase's lr, as phasetop's plan says.
        if optimizer is not None:
            self._first = False
            apply([optimizer], [lr_scheduler] if lr_scheduler is not None else [], run.settings)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        # The Trainer's end-of-training figures (its whole-run average loss, runtime, flos,
        # rates): the run's summary, not a step's metrics.
        if "train_runtime" in logs:
            run = self._get(args)
            for k, v in logs.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
                    run.summary[k] = v
            return
        out = {}
        for k, v in logs.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "step"):
                out[_name(k)] = v
        if out:
            self._get(args).log(out, step=state.global_step)

    def on_step_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        run = self._get(args)
        opts = [optimizer] if optimizer is not None else []
        scheds = [lr_scheduler] if lr_scheduler is not None else []
        if self._first:
            self._first = False
            apply(opts, scheds, run.settings)
        ctl = self.control = run.sync(state.global_step)
        apply(opts, scheds, changes_of(ctl))
        if ctl.should_stop:
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.run is not None:
            self.run.flush()
