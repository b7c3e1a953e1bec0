"""What the adapters do with a sync's answer: the learning rate to the optimizers."""


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


def lr_of(ctl):
    """The lr a sync asks for: ``ctl set lr=…`` first, else a new phase's ``lr`` setting."""
    if "lr" in ctl.set:
        return ctl.set["lr"]
    if ctl.phase_changed and "lr" in ctl.settings:
        return ctl.settings["lr"]
    return None
