"""What the adapters do with the plan's settings: the optimizer's hyperparameters."""

#: Settings that are an optimizer's param-group hyperparameters, applied by the adapters.
OPTIMIZER_KEYS = ("lr", "weight_decay", "momentum")


def set_lr(optimizers, schedulers, lr):
    """Sets ``lr`` on every parameter group, and as the base of every scheduler that has
    one, so a schedule goes on from the new value instead of overwriting it."""
    lr = float(lr)
    for opt in optimizers:
        for g in opt.param_groups:
            g["lr"] = lr
            if "initial_lr" in g:
                g["initial_lr"] = lr
    for s in schedulers:
        if hasattr(s, "base_lrs"):
            s.base_lrs = [lr] * len(s.base_lrs)


def apply(optimizers, schedulers, settings):
    """Applies the optimizer keys among ``settings`` (a phase's, or ``ctl set`` values) to
    every parameter group that has them; other keys are the script's own."""
    for k, v in settings.items():
        if k == "lr":
            set_lr(optimizers, schedulers, v)
        elif k in OPTIMIZER_KEYS:
            for opt in optimizers:
                for g in opt.param_groups:
                    if k in g:
                        g[k] = float(v)


def changes_of(ctl):
    """What a sync asks the optimizer to change: a new phase's optimizer settings, then the
    ``ctl set`` values on top."""
    out = {}
    if ctl.phase_changed:
        out.update({k: v for k, v in ctl.settings.items() if k in OPTIMIZER_KEYS})
    out.update({k: v for k, v in ctl.set.items() if k in OPTIMIZER_KEYS})
    return out


def lr_of(ctl):
    """The lr a sync asks for: ``ctl set lr=…`` first, else a new phase's ``lr`` setting."""
    return changes_of(ctl).get("lr")
