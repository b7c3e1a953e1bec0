"""phasetop client: stream a training script's metrics into a phasetop run and obey its
phase switches, ``ctl set`` and ``ctl stop`` (docs/CLIENT.md).

    import phasetop
    run = phasetop.init(config={"lr": 3e-4})
    for step, batch in enumerate(loader):
        ...
        run.log({"train_loss": loss.item()}, step=step)
        ctl = run.sync(step)
        if ctl.phase_changed: apply_phase(ctl.phase, ctl.settings)
        if ctl.should_stop: break
    run.finish()

Standard library only at import; torch is imported when a feature needs it.
"""

from ._run import Control, Run, init, current, finish  # noqa: F401

__version__ = "0.1.0"
__all__ = ["init", "current", "finish", "Run", "Control", "SummaryWriter", "probes"]


def __getattr__(name):
    # Lazy: the shim and the probe formulas import torch-related code only when used.
    import importlib

    if name == "SummaryWriter":
        return importlib.import_module(".tensorboard", __name__).SummaryWriter
    if name == "probes":
        return importlib.import_module(".probes", __name__)
    raise AttributeError(f"module 'phasetop' has no attribute {name!r}")
