//! Cross-field rules, each reported at the span of the value that breaks it.

use super::*;

/// Metrics every run records; probe metrics are `<layer>/<name>`.
pub const RUN_METRICS: &[&str] =
    &["train_loss", "train_acc", "val_loss", "val_acc", "lr", "grad_norm", "weight_norm", "dist_init"];
use crate::probes::{ATTENTION_METRIC, PROBE_METRICS};
use crate::signals::DetectorKind;

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Ctx<'_> {
    fn err<T>(&self, span: std::ops::Range<usize>, msg: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError::at(self.file, self.src, span.start, msg))
    }

    fn int_at_least(&self, v: &Option<Spanned<i64>>, min: i64, what: &str) -> Result<(), ConfigError> {
        match v {
            Some(s) if *s.get_ref() < min => {
                self.err(s.span(), format!("{what} must be at least {min}, got {}", s.get_ref()))
            }
            _ => Ok(()),
        }
    }

    fn in_range(&self, v: &Option<Spanned<f64>>, lo: f64, hi: f64, what: &str) -> Result<(), ConfigError> {
        match v {
            Some(s) if !(s.get_ref().is_finite() && *s.get_ref() >= lo && *s.get_ref() <= hi) => {
                self.err(s.span(), format!("{what} must be in [{lo}, {hi}], got {}", s.get_ref()))
            }
            _ => Ok(()),
        }
    }
}

pub(super) fn validate(c: &Config, file: &str, src: &str) -> Result<(), ConfigError> {
    let cx = Ctx { file, src };
    if *c.run.max_steps.get_ref() == 0 {
        return cx.err(c.run.max_steps.span(), "max_steps must be at least 1");
    }
    let factor = c.run.rollback_lr_factor;
    if !(factor > 0.0 && factor <= 1.0) {
        let at = src.find("rollback_lr_factor").unwrap_or(0);
        return cx.err(at..at, format!("rollback_lr_factor must be in (0, 1], got {factor}"));
    }
    task(&cx, &c.task)?;
    model(&cx, c)?;
    let layers = c.model.layer_names();
    if c.phases.is_empty() {
        return cx.err(0..0, "no phases: add at least one [[phase]] table");
    }
    for l in &c.probes.layers {
        if !layers.contains(l.get_ref()) {
            return cx
                .err(l.span(), format!("unknown layer \"{}\", expected one of {}", l.get_ref(), layers.join(", ")));
        }
    }
    if *c.probes.batch.get_ref() < 2 {
        return cx.err(c.probes.batch.span(), "probe batch must be at least 2");
    }
    let mut seen: Vec<&str> = Vec::new();
    for p in &c.phases {
        let name = p.name.get_ref();
        if name.is_empty() || name.chars().any(|ch| ch.is_whitespace()) {
            return cx.err(p.name.span(), format!("phase name \"{name}\" must be non-empty without spaces"));
        }
        if seen.contains(&name.as_str()) {
            return cx.err(p.name.span(), format!("duplicate phase name \"{name}\""));
        }
        seen.push(name);
        phase(&cx, c, p, &layers)?;
    }
    Ok(())
}

fn task(cx: &Ctx, t: &TaskSection) -> Result<(), ConfigError> {
    let kind = *t.kind.get_ref();
    // Fields that belong to other task kinds are mistakes worth naming.
    let foreign: &[(&str, bool)] = match kind {
        TaskKind::Modular => &[("dim", t.dim.is_some()), ("path", t.path.is_some()), ("classes", t.classes.is_some())],
        TaskKind::Parity => &[("p", t.p.is_some()), ("path", t.path.is_some()), ("classes", t.classes.is_some())],
        TaskKind::Gaussian => &[("p", t.p.is_some()), ("path", t.path.is_some()), ("k", t.k.is_some())],
        TaskKind::Csv => &[("p", t.p.is_some()), ("dim", t.dim.is_some()), ("k", t.k.is_some())],
    };
    if let Some((field, _)) = foreign.iter().find(|(_, set)| *set) {
        return cx.err(t.kind.span(), format!("field \"{field}\" does not apply to task kind \"{kind}\""));
    }
    if let Some(o) = t.online.as_ref().filter(|o| *o.get_ref()) {
        if matches!(kind, TaskKind::Modular | TaskKind::Csv) {
            return cx.err(
                o.span(),
                format!(
                    "online = true needs a task that generates its samples (parity, gaussian); \
                     \"{kind}\" has a fixed set of examples split into train and held-out"
                ),
            );
        }
    }
    if let Some(c) = &t.centre_scale {
        if kind != TaskKind::Gaussian {
            return cx.err(c.span(), format!("centre_scale applies to task kind \"gaussian\", not \"{kind}\""));
        }
        if !(c.get_ref().is_finite() && *c.get_ref() > 0.0) {
            return cx.err(c.span(), format!("centre_scale must be a positive number, got {}", c.get_ref()));
        }
    }
    match kind {
        TaskKind::Modular => {
            cx.int_at_least(&t.p, 2, "p")?;
            cx.in_range(&t.train_fraction, 0.01, 0.99, "train_fraction")?;
            if t.op == Some(ModOp::Div) {
                let p = t.modulus();
                if !is_prime(p) {
                    let span = t.p.as_ref().map_or(t.kind.span(), |s| s.span());
                    return cx.err(span, format!("op \"div\" needs a prime modulus, {p} is not prime"));
                }
            }
        }
        TaskKind::Parity => {
            cx.int_at_least(&t.dim, 2, "dim")?;
            cx.int_at_least(&t.k, 1, "k")?;
            if let Some(k) = &t.k {
                if *k.get_ref() as usize > t.parity_dim() {
                    return cx.err(k.span(), format!("k ({}) cannot exceed dim ({})", k.get_ref(), t.parity_dim()));
                }
            }
            cx.int_at_least(&t.n_train, 1, "n_train")?;
            cx.int_at_least(&t.n_val, 1, "n_val")?;
        }
        TaskKind::Gaussian => {
            cx.int_at_least(&t.dim, 1, "dim")?;
            cx.int_at_least(&t.classes, 2, "classes")?;
            cx.int_at_least(&t.clusters_per_class, 1, "clusters_per_class")?;
            cx.int_at_least(&t.n_train, 1, "n_train")?;
            cx.int_at_least(&t.n_val, 1, "n_val")?;
        }
        TaskKind::Csv => {
            if t.path.is_none() {
                return cx.err(t.kind.span(), "task kind \"csv\" needs a path = \"file.csv\"");
            }
            if t.label.is_none() {
                return cx.err(t.kind.span(), "task kind \"csv\" needs label = \"column\"");
            }
            cx.in_range(&t.val_fraction, 0.01, 0.99, "val_fraction")?;
        }
    }
    Ok(())
}

fn model(cx: &Ctx, c: &Config) -> Result<(), ConfigError> {
    let m = &c.model;
    if let Some(s) = &m.init_scale {
        if !(s.get_ref().is_finite() && *s.get_ref() > 0.0) {
            return cx.err(s.span(), format!("init_scale must be positive, got {}", s.get_ref()));
        }
    }
    if let Some(e) = &m.embed {
        if *m.kind.get_ref() != ModelKind::Mlp {
            return cx.err(e.span(), "embed applies to an mlp; a transformer embeds its tokens in d_model");
        }
        if *c.task.kind.get_ref() != TaskKind::Modular {
            return cx.err(e.span(), format!("embed needs a token task (modular), not \"{}\"", c.task.kind.get_ref()));
        }
        cx.int_at_least(&m.embed, 1, "embed")?;
    }
    if let Some(s) = &m.embed_shared {
        if m.embed.is_none() {
            return cx.err(s.span(), "embed_shared needs embed = N (an mlp's token embedding width)");
        }
    }
    match m.kind.get_ref() {
        ModelKind::Mlp => {
            cx.int_at_least(&m.depth, 1, "depth")?;
            cx.int_at_least(&m.width, 1, "width")?;
        }
        ModelKind::Transformer => {
            if *c.task.kind.get_ref() != TaskKind::Modular {
                return cx.err(
                    m.kind.span(),
                    format!("model \"transformer\" needs a token task (modular), not \"{}\"", c.task.kind.get_ref()),
                );
            }
            cx.int_at_least(&m.d_model, 1, "d_model")?;
            cx.int_at_least(&m.heads, 1, "heads")?;
            cx.int_at_least(&m.layers, 1, "layers")?;
            cx.int_at_least(&m.d_ff, 1, "d_ff")?;
            let (d, h) = (m.transformer_d_model(), m.transformer_heads());
            if d % h != 0 {
                let span = m.heads.as_ref().map_or(m.kind.span(), |s| s.span());
                return cx.err(span, format!("heads ({h}) must divide d_model ({d})"));
            }
        }
    }
    Ok(())
}

fn phase(cx: &Ctx, c: &Config, p: &Phase, layers: &[String]) -> Result<(), ConfigError> {
    let lr = *p.lr.get_ref();
    if !(lr.is_finite() && lr > 0.0) {
        return cx.err(p.lr.span(), format!("lr must be a positive number, got {lr}"));
    }
    if let Some(s) = &p.steps {
        if *s.get_ref() == 0 {
            return cx.err(s.span(), "steps must be at least 1 (leave it out for a phase that ends by hand)");
        }
    }
    cx.in_range(&p.weight_decay, 0.0, f64::MAX, "weight_decay")?;
    cx.in_range(&p.momentum, 0.0, 0.999_999, "momentum")?;
    if let Some(b) = &p.betas {
        let (b1, b2) = *b.get_ref();
        if !(0.0..1.0).contains(&b1) || !(0.0..1.0).contains(&b2) {
            return cx.err(b.span(), format!("betas must be in [0, 1), got [{b1}, {b2}]"));
        }
        if *p.optimizer.get_ref() == OptimizerKind::Sgd {
            return cx.err(b.span(), "betas apply to adam and adamw, not sgd");
        }
    }
    if let Some(m) = &p.momentum {
        if *p.optimizer.get_ref() != OptimizerKind::Sgd {
            return cx.err(m.span(), "momentum applies to sgd; adam and adamw use betas");
        }
    }
    if let Some(s) = &p.min_lr {
        if !(s.get_ref().is_finite() && *s.get_ref() >= 0.0 && *s.get_ref() <= lr) {
            return cx.err(s.span(), format!("min_lr must be in [0, lr = {lr}], got {}", s.get_ref()));
        }
    }
    if let Some(sched) = &p.schedule {
        match sched.get_ref() {
            ScheduleKind::Cosine | ScheduleKind::Cooldown if p.steps.is_none() => {
                return cx
                    .err(sched.span(), format!("schedule \"{}\" needs the phase to have steps = N", sched.get_ref()));
            }
            ScheduleKind::Warmup if p.warmup_steps.is_none() => {
                return cx.err(sched.span(), "schedule \"warmup\" needs warmup_steps = N");
            }
            ScheduleKind::Cyclical if p.cycle_steps.as_ref().is_none_or(|s| *s.get_ref() < 2) => {
                return cx.err(sched.span(), "schedule \"cyclical\" needs cycle_steps = N (at least 2)");
            }
            _ => {}
        }
    }
    if let (Some(w), Some(s)) = (&p.warmup_steps, &p.steps) {
        if w.get_ref() > s.get_ref() {
            return cx
                .err(w.span(), format!("warmup_steps ({}) exceeds the phase's steps ({})", w.get_ref(), s.get_ref()));
        }
    }
    if *p.batch_size.get_ref() < 1 {
        return cx.err(p.batch_size.span(), format!("batch_size must be at least 1, got {}", p.batch_size.get_ref()));
    }
    if !p.loss.is_empty() && !p.loss.iter().any(|t| *t.kind.get_ref() != LossKind::L2) {
        return cx.err(p.loss[0].kind.span(), "a phase needs a data loss term (ce, mse or hinge), not only l2");
    }
    if let Some(t) = p.loss.iter().find(|t| *t.kind.get_ref() == LossKind::Hinge) {
        if let Some(classes) = c.task.known_classes().filter(|&n| n != 2) {
            return cx.err(
                t.kind.span(),
                format!("loss \"hinge\" needs a binary task (2 classes), \"{}\" has {classes}", c.task.kind.get_ref()),
            );
        }
    }
    for t in &p.loss {
        if !(t.weight.is_finite() && t.weight >= 0.0) {
            return cx.err(t.kind.span(), format!("loss weight must be a non-negative number, got {}", t.weight));
        }
    }
    for f in &p.freeze {
        if !layers.contains(f.get_ref()) {
            return cx
                .err(f.span(), format!("unknown layer \"{}\", expected one of {}", f.get_ref(), layers.join(", ")));
        }
    }
    if p.freeze.len() == layers.len() {
        if let Some(f) = p.freeze.first() {
            return cx.err(f.span(), "every layer is frozen: nothing would train");
        }
    }
    cx.in_range(&p.label_noise, 0.0, 1.0, "label_noise")?;
    if let Some(w) = &p.class_weights {
        let weights = w.get_ref();
        if weights.iter().any(|v| !v.is_finite() || *v < 0.0) || !weights.iter().any(|v| *v > 0.0) {
            return cx.err(w.span(), "class_weights must be finite, ≥ 0, and not all 0");
        }
        if c.task.online() && *c.task.kind.get_ref() == TaskKind::Parity {
            return cx.err(
                w.span(),
                "class_weights cannot be combined with online parity samples (a label is drawn with its input)",
            );
        }
        if let Some(classes) = c.task.known_classes() {
            if weights.len() != classes {
                return cx.err(
                    w.span(),
                    format!("class_weights has {} entries, the task has {classes} classes", weights.len()),
                );
            }
        }
    }
    if let Some(n) = &p.input_noise {
        cx.in_range(&p.input_noise, 0.0, f64::MAX, "input_noise")?;
        if *c.task.kind.get_ref() == TaskKind::Modular {
            return cx.err(n.span(), "input_noise applies to real-valued inputs, not the token task \"modular\"");
        }
    }
    if let Some(rule) = &p.until {
        let r = rule.get_ref();
        if !DetectorKind::ALL.iter().any(|k| k.name() == r.detector.get_ref()) {
            let names: Vec<&str> = DetectorKind::ALL.iter().map(|k| k.name()).collect();
            return cx.err(
                r.detector.span(),
                format!("unknown detector \"{}\", expected one of {}", r.detector.get_ref(), names.join(", ")),
            );
        }
        if let Err(e) = crate::signals::DetectorSpec::from_toml(r.detector.get_ref(), &r.params) {
            return cx.err(rule.span(), e.to_string());
        }
        let metric = r.metric.get_ref();
        let grad_cos = metric.strip_prefix("grad_cos/");
        if let Some(pair) = grad_cos {
            grad_cos_rule(cx, c, p, &r.metric, pair)?;
        }
        let known = grad_cos.is_some()
            || RUN_METRICS.contains(&metric.as_str())
            || metric.strip_prefix("loss/").is_some_and(|t| LossKind::parse(t).is_some())
            || metric.rsplit_once('/').is_some_and(|(layer, m)| {
                layers.iter().any(|l| l == layer)
                    && if layer.ends_with(".attn") { m == ATTENTION_METRIC } else { PROBE_METRICS.contains(&m) }
            });
        if !known {
            return cx.err(
                r.metric.span(),
                format!(
                    "unknown metric \"{metric}\", expected one of {}, LAYER/{{{}}} or grad_cos/LOSS~LOSS",
                    RUN_METRICS.join(", "),
                    PROBE_METRICS.join(",")
                ),
            );
        }
    }
    Ok(())
}

/// A rule on `grad_cos/A~B` (either order: the pair is recorded sorted): both terms must be
/// the phase's loss terms (the same kind twice for `A~A`), and the cosine is computed on
/// the probe schedule (or the evaluation schedule when probes are off), so one of them
/// must be on.
fn grad_cos_rule(cx: &Ctx, c: &Config, p: &Phase, metric: &Spanned<String>, pair: &str) -> Result<(), ConfigError> {
    let names: Vec<&str> = LossKind::ALL.iter().map(|k| k.as_str()).collect();
    let Some((a, b)) = pair.split_once('~') else {
        return cx.err(metric.span(), format!("\"{}\" names no pair: expected grad_cos/LOSS~LOSS", metric.get_ref()));
    };
    for t in [a, b] {
        if LossKind::parse(t).is_none() {
            return cx.err(
                metric.span(),
                format!("unknown loss \"{t}\" in \"{}\", expected one of {}", metric.get_ref(), names.join(", ")),
            );
        }
    }
    let terms = p.loss_terms();
    let count = |t: &str| terms.iter().filter(|(k, _)| k.as_str() == t).count();
    if count(a) < 1 + usize::from(a == b) || count(b) < 1 {
        let listed: Vec<&str> = terms.iter().map(|(k, _)| k.as_str()).collect();
        return cx.err(
            metric.span(),
            format!(
                "\"{}\" needs both terms among phase \"{}\"'s loss terms (it has {})",
                metric.get_ref(),
                p.name(),
                listed.join(", ")
            ),
        );
    }
    if c.probes.every == 0 && c.eval.every == crate::config::EvalEvery::Steps(0) {
        return cx.err(
            metric.span(),
            format!(
                "\"{}\" is computed on the probe schedule, or the evaluation schedule when probes are off, \
                 and both are off: set [probes] every = N or [eval] every for the rule to see it",
                metric.get_ref()
            ),
        );
    }
    Ok(())
}

fn is_prime(n: usize) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}
