"""``phasetop.SummaryWriter``: a drop-in for ``torch.utils.tensorboard.SummaryWriter``'s
scalars (``add_scalar``, ``add_scalars``, ``flush``, ``close``), text (``add_text``: an
event at its step) and hyperparameters (``add_hparams``: the hparams join the run's
config, the metrics its summary), so existing code changes one import. Tags map to phasetop's metric names where the meaning is clear, as
``phasetop import`` maps them (docs/INTEROP.md): ``Loss/train`` → ``train_loss``,
``val/accuracy`` → ``val_acc``, ``learning_rate`` → ``lr``; other tags are kept, with
whitespace turned into ``_`` (``Gradient Norm`` → ``Gradient_Norm``, said once). Other
``add_*`` methods (histograms, images, audio, graphs) are accepted and not recorded; each
says so once on stderr.
"""

import re
import sys

from . import _run

_QUANTITY = {"loss": "loss", "acc": "acc", "accuracy": "acc", "lr": "lr", "learning_rate": "lr",
             "learning-rate": "lr", "grad_norm": "grad_norm", "gradient_norm": "grad_norm"}
_SPLIT = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "eval": "val"}
_NAMES = {("train", "loss"): "train_loss", ("train", "acc"): "train_acc", ("val", "loss"): "val_loss",
          ("val", "acc"): "val_acc", ("train", "lr"): "lr", ("train", "grad_norm"): "grad_norm"}
_cache = {}


def metric_name(tag):
    """phasetop's name for a TensorBoard tag (src/interop/import.rs `metric_name`)."""
    name = _cache.get(tag)
    if name is not None:
        return name
    t = tag.lower()
    name = None
    if t in _QUANTITY:
        name = _NAMES.get(("train", _QUANTITY[t]))
    else:
        parts = t.split("/", 1) if "/" in t else t.split("_", 1)
        if len(parts) == 2:
            a, b = parts
            if a in _SPLIT and b in _QUANTITY:
                name = _NAMES.get((_SPLIT[a], _QUANTITY[b]))
            elif a in _QUANTITY and b in _SPLIT:
                name = _NAMES.get((_SPLIT[b], _QUANTITY[a]))
    if name is None:
        # A metric name has no whitespace (docs/RUNLOG.md); TensorBoard tags may.
        name = re.sub(r"\s+", "_", tag.strip()) or "_"
        if name != tag:
            print(f"phasetop: SummaryWriter tag {tag!r} is recorded as {name!r}", file=sys.stderr, flush=True)
    if len(_cache) < 10_000:
        _cache[tag] = name
    return name


class SummaryWriter:
    def __init__(self, log_dir=None, *args, run=None, **kwargs):
        # log_dir and TensorBoard's other arguments are accepted for compatibility.
        self._run = run or _run.current() or _run.init()

    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, new_style=False, double_precision=False):
        self._run.log({metric_name(tag): scalar_value}, step=global_step)

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None):
        self._run.log({f"{main_tag}/{k}": v for k, v in tag_scalar_dict.items()}, step=global_step)

    def add_text(self, tag, text_string, global_step=None, walltime=None):
        self._run.text(tag, text_string, step=global_step)

    def add_hparams(self, hparam_dict, metric_dict, hparam_domain_discrete=None, run_name=None,
                    global_step=None):
        self._run.config.update(hparam_dict)
        # TensorBoard's hparams metrics are a run's final figures: the summary.
        self._run.summary.update({metric_name(k): v for k, v in metric_dict.items()})

    def flush(self):
        self._run.flush()

    def close(self):
        self._run.flush()

    _unrecorded = set()

    def __getattr__(self, name):
        if name.startswith("add_"):
            def unrecorded(*a, **k):
                if name not in SummaryWriter._unrecorded:
                    SummaryWriter._unrecorded.add(name)
                    print(f"phasetop: SummaryWriter.{name} is not recorded (only scalars are)", file=sys.stderr,
                          flush=True)
            return unrecorded
        raise AttributeError(name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
