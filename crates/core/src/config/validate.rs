//! Cross-field rules, each reported at the span of the value that breaks it.

use super::*;

/// Metrics every run records; probe metrics are `<layer>/<name>`.
pub const RUN_METRICS: &[&str] =
    &["train_loss", "train_acc", "val_loss", "val_acc", "lr", "grad_norm", "weight_norm", "dist_init"];
use crate::event::{ATTENTION_METRIC, PROBE_METRICS};
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

    /// An integer setting against its row in the bounds table.
    fn bounded(&self, v: &Option<Spanned<i64>>, key: &str) -> Result<(), ConfigError> {
        match v {
            Some(s) => self.bounded_int(*s.get_ref() as i128, key, s.span()),
            None => Ok(()),
        }
    }

    fn bounded_int(&self, v: i128, key: &str, span: std::ops::Range<usize>) -> Result<(), ConfigError> {
        super::bounds::bound(key).check_int(v).or_else(|m| self.err(span, m))
    }

    /// A real setting against its row in the bounds table.
    fn bounded_real(&self, v: f64, key: &str, span: std::ops::Range<usize>) -> Result<(), ConfigError> {
        super::bounds::bound(key).check(v).or_else(|m| self.err(span, m))
    }

    fn bounded_f(&self, v: &Option<Spanned<f64>>, key: &str) -> Result<(), ConfigError> {
        match v {
            Some(s) => self.bounded_real(*s.get_ref(), key, s.span()),
            None => Ok(()),
        }
    }

    /// Where `key = …` is written (its value), for settings read without a span; the
    /// first such line after `[section]` when a section is given.
    fn key_at(&self, section: Option<&str>, key: &str) -> std::ops::Range<usize> {
        let o = find_key(self.src, section, key).unwrap_or(0);
        o..o
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

/// The byte offset of the value in the first `key = value` line (after the line
/// `[section]` when given), if any.
pub(super) fn find_key(src: &str, section: Option<&str>, key: &str) -> Option<usize> {
    let mut offset = 0;
    let mut in_section = section.is_none();
    for line in src.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let t = line.trim_start();
        if t.starts_with('[') {
            if let Some(sec) = section {
                let name = t.trim_start_matches('[').split(']').next().unwrap_or("").trim();
                in_section = name == sec;
            }
            continue;
        }
        if !in_section {
            continue;
        }
        let Some(rest) = t.strip_prefix(key) else { continue };
        let rest_trim = rest.trim_start();
        if let Some(value) = rest_trim.strip_prefix('=') {
            let v = value.trim_start();
            return Some(start + (line.len() - v.len()));
        }
    }
    None
}

/// A run name becomes a directory name under runs/: one plain path component.
pub(super) fn run_name_ok(file: &str, src: &str, name: &str) -> Result<(), ConfigError> {
    run_name(&Ctx { file, src }, name)
}

fn run_name(cx: &Ctx, name: &str) -> Result<(), ConfigError> {
    let bad = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > 100 {
        Some("must be at most 100 characters")
    } else if name.starts_with('.') {
        Some("must not start with \".\"")
    } else if !name.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '+')) {
        Some("may hold only letters, digits and - _ . + (it names the run's directory)")
    } else {
        None
    };
    match bad {
        Some(why) => cx.err(cx.key_at(Some("run"), "name"), format!("run name \"{name}\" {why}")),
        None => Ok(()),
    }
}

pub(super) fn validate(c: &Config, file: &str, src: &str) -> Result<(), ConfigError> {
    let cx = Ctx { file, src };
    run_name(&cx, &c.run.name)?;
    if *c.run.max_steps.get_ref() == 0 {
        return cx.err(c.run.max_steps.span(), "max_steps must be at least 1");
    }
    let factor = c.run.rollback_lr_factor;
    if !(factor > 0.0 && factor <= 1.0) {
        return cx.err(
            cx.key_at(Some("run"), "rollback_lr_factor"),
            format!("rollback_lr_factor must be in (0, 1], got {factor}"),
        );
    }
    cx.bounded_int(*c.run.max_steps.get_ref() as i128, "max_steps", c.run.max_steps.span())?;
    cx.bounded_int(c.run.threads as i128, "threads", cx.key_at(Some("run"), "threads"))?;
    cx.bounded_real(c.run.rollback_lr_factor, "rollback_lr_factor", cx.key_at(Some("run"), "rollback_lr_factor"))?;
    cx.bounded_int(c.eval.max_samples as i128, "max_samples", cx.key_at(Some("eval"), "max_samples"))?;
    cx.bounded_int(c.checkpoint.keep as i128, "checkpoint_keep", cx.key_at(Some("checkpoint"), "keep"))?;
    task(&cx, &c.task)?;
    model(&cx, c)?;
    // A TorchScript module's layers and parameters are known once it is loaded:
    // `check_module_layers` checks what names them then (`trainer::memory::preflight`).
    let module = *c.model.kind.get_ref() == ModelKind::TorchScript;
    let layers = c.model.layer_names();
    let known = (!module).then_some(layers.as_slice());
    if c.phases.is_empty() {
        return cx.err(0..0, "no phases: add at least one [[phase]] table");
    }
    if let Some(layers) = known {
        probe_layers(&cx, c, layers)?;
    }
    if *c.probes.batch.get_ref() < 2 {
        return cx.err(c.probes.batch.span(), "probe batch must be at least 2");
    }
    cx.bounded_int(*c.probes.batch.get_ref() as i128, "probe_batch", c.probes.batch.span())?;
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
        phase(&cx, c, p, known)?;
    }
    Ok(())
}

fn probe_layers(cx: &Ctx, c: &Config, layers: &[String]) -> Result<(), ConfigError> {
    for l in &c.probes.layers {
        if !layers.contains(l.get_ref()) {
            return cx
                .err(l.span(), format!("unknown layer \"{}\", expected one of {}", l.get_ref(), layers.join(", ")));
        }
    }
    Ok(())
}

/// What names a TorchScript module's parts, checked once it is loaded: `[probes]
/// layers` and `until` metrics against its probe-able `layers` (the keys of its
/// `features` method, or `output`), and each phase's `freeze` against its parameter
/// names (`params`): an entry is a parameter's name or a prefix of names at a dot
/// (`encoder` freezes `encoder.*`), and not every parameter may be frozen.
pub fn check_module_layers(loaded: &LoadedConfig, layers: &[String], params: &[String]) -> Result<(), ConfigError> {
    let file = loaded.path.display().to_string();
    let cx = Ctx { file: &file, src: &loaded.source };
    let c = &loaded.config;
    probe_layers(&cx, c, layers)?;
    let covers = |f: &str, name: &str| name == f || name.strip_prefix(f).is_some_and(|r| r.starts_with('.'));
    for p in &c.phases {
        for f in &p.freeze {
            if !params.iter().any(|n| covers(f.get_ref(), n)) {
                return cx.err(
                    f.span(),
                    format!(
                        "\"{}\" is no parameter of the module nor a prefix of one (its parameters: {})",
                        f.get_ref(),
                        params.join(", ")
                    ),
                );
            }
        }
        if let Some(f) = p.freeze.first()
            && params.iter().all(|n| p.freeze.iter().any(|f| covers(f.get_ref(), n)))
        {
            return cx.err(f.span(), "every parameter is frozen: nothing would train");
        }
        if let Some(rule) = &p.until {
            let metric = rule.get_ref().metric.get_ref();
            let ours = RUN_METRICS.contains(&metric.as_str())
                || metric.starts_with("loss/")
                || metric.starts_with("grad_cos/");
            if let Some((layer, _)) = metric.rsplit_once('/')
                && !ours
                && !layers.iter().any(|l| l == layer)
            {
                return cx.err(
                    rule.get_ref().metric.span(),
                    format!("unknown layer \"{layer}\" in \"{metric}\", expected one of {}", layers.join(", ")),
                );
            }
        }
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
        TaskKind::Tensors => &[
            ("p", t.p.is_some()),
            ("dim", t.dim.is_some()),
            ("classes", t.classes.is_some()),
            ("label", t.label.is_some()),
            ("features", t.features.is_some()),
            ("val_fraction", t.val_fraction.is_some()),
        ],
    };
    if let Some((field, _)) = foreign.iter().find(|(_, set)| *set) {
        return cx.err(t.kind.span(), format!("field \"{field}\" does not apply to task kind \"{kind}\""));
    }
    if let Some(o) = t.online.as_ref().filter(|o| *o.get_ref())
        && matches!(kind, TaskKind::Modular | TaskKind::Csv | TaskKind::Tensors)
    {
        return cx.err(
            o.span(),
            format!(
                "online = true needs a task that generates its samples (parity, gaussian); \
                     \"{kind}\" has a fixed set of examples split into train and held-out"
            ),
        );
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
            cx.bounded(&t.p, "p")?; // before the primality test, which is O(√p)
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
            if let Some(k) = &t.k
                && *k.get_ref() as usize > t.parity_dim()
            {
                return cx.err(k.span(), format!("k ({}) cannot exceed dim ({})", k.get_ref(), t.parity_dim()));
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
        TaskKind::Tensors => {
            if t.path.is_none() {
                return cx.err(
                    t.kind.span(),
                    "task kind \"tensors\" needs a path = \"data.safetensors\" (x_train, y_train, x_val, y_val)",
                );
            }
        }
    }
    // Then the range every setting has (`config::bounds`).
    for (v, key) in [(&t.p, "p"), (&t.dim, "dim"), (&t.k, "k"), (&t.classes, "classes")] {
        cx.bounded(v, key)?;
    }
    for (v, key) in [(&t.clusters_per_class, "clusters_per_class"), (&t.n_train, "n_train"), (&t.n_val, "n_val")] {
        cx.bounded(v, key)?;
    }
    if let Some(s) = t.spread {
        cx.bounded_real(s, "spread", cx.key_at(Some("task"), "spread"))?;
    }
    Ok(())
}

fn model(cx: &Ctx, c: &Config) -> Result<(), ConfigError> {
    let m = &c.model;
    if let Some(s) = &m.init_scale
        && !(s.get_ref().is_finite() && *s.get_ref() > 0.0)
    {
        return cx.err(s.span(), format!("init_scale must be positive, got {}", s.get_ref()));
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
    if let Some(s) = &m.embed_shared
        && m.embed.is_none()
    {
        return cx.err(s.span(), "embed_shared needs embed = N (an mlp's token embedding width)");
    }
    let kind = *m.kind.get_ref();
    let misplaced = [
        ("channels", m.channels.as_ref().map(|s| s.span()), ModelKind::Cnn),
        ("batch_norm", m.batch_norm.as_ref().map(|s| s.span()), ModelKind::Cnn),
        ("pool", m.pool.as_ref().map(|s| s.span()), ModelKind::Cnn),
        ("path", m.path.as_ref().map(|s| s.span()), ModelKind::TorchScript),
    ];
    for (key, span, owner) in misplaced {
        if let Some(span) = span.filter(|_| kind != owner) {
            return cx.err(span, format!("{key} applies to model kind \"{owner}\", not \"{kind}\""));
        }
    }
    match m.kind.get_ref() {
        ModelKind::Cnn => {
            if *c.task.kind.get_ref() != TaskKind::Tensors {
                return cx.err(
                    m.kind.span(),
                    format!(
                        "model \"cnn\" needs image-shaped inputs: a \"tensors\" task, not \"{}\"",
                        c.task.kind.get_ref()
                    ),
                );
            }
            if let Some(ch) = &m.channels {
                if ch.get_ref().is_empty() {
                    return cx.err(ch.span(), "channels needs at least one conv block, e.g. [32, 64]");
                }
                for &n in ch.get_ref() {
                    cx.bounded_int(n as i128, "channels", ch.span())?;
                }
            }
        }
        ModelKind::TorchScript => {
            if m.path.is_none() {
                return cx.err(m.kind.span(), "model kind \"torchscript\" needs a path = \"model.pt\"");
            }
            if let Some(e) = &m.init_scale {
                return cx
                    .err(e.span(), "init_scale applies to built-in models; a TorchScript module brings its weights");
            }
            if let Some(e) = &m.init {
                return cx.err(e.span(), "init applies to built-in models; a TorchScript module brings its weights");
            }
        }
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
    for (v, key) in
        [(&m.depth, "depth"), (&m.width, "width"), (&m.d_model, "d_model"), (&m.heads, "heads"), (&m.layers, "layers")]
    {
        cx.bounded(v, key)?;
    }
    cx.bounded(&m.d_ff, "d_ff")?;
    cx.bounded_f(&m.init_scale, "init_scale")?;
    Ok(())
}

/// `layers`: the model's layer names, `None` for a TorchScript module (known once it is
/// loaded, `check_module_layers`).
fn phase(cx: &Ctx, c: &Config, p: &Phase, layers: Option<&[String]>) -> Result<(), ConfigError> {
    let lr = *p.lr.get_ref();
    if !(lr.is_finite() && lr > 0.0) {
        return cx.err(p.lr.span(), format!("lr must be a positive number, got {lr}"));
    }
    if let Some(s) = &p.steps
        && *s.get_ref() == 0
    {
        return cx.err(s.span(), "steps must be at least 1 (leave it out for a phase that ends by hand)");
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
    if let Some(m) = &p.momentum
        && *p.optimizer.get_ref() != OptimizerKind::Sgd
    {
        return cx.err(m.span(), "momentum applies to sgd; adam and adamw use betas");
    }
    if let Some(s) = &p.min_lr
        && !(s.get_ref().is_finite() && *s.get_ref() >= 0.0 && *s.get_ref() <= lr)
    {
        return cx.err(s.span(), format!("min_lr must be in [0, lr = {lr}], got {}", s.get_ref()));
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
    if let (Some(w), Some(s)) = (&p.warmup_steps, &p.steps)
        && w.get_ref() > s.get_ref()
    {
        return cx.err(w.span(), format!("warmup_steps ({}) exceeds the phase's steps ({})", w.get_ref(), s.get_ref()));
    }
    if *p.batch_size.get_ref() < 1 {
        return cx.err(p.batch_size.span(), format!("batch_size must be at least 1, got {}", p.batch_size.get_ref()));
    }
    if !p.loss.is_empty() && !p.loss.iter().any(|t| *t.kind.get_ref() != LossKind::L2) {
        return cx.err(p.loss[0].kind.span(), "a phase needs a data loss term (ce, mse or hinge), not only l2");
    }
    if let Some(t) = p.loss.iter().find(|t| *t.kind.get_ref() == LossKind::Hinge)
        && let Some(classes) = c.task.known_classes().filter(|&n| n != 2)
    {
        return cx.err(
            t.kind.span(),
            format!("loss \"hinge\" needs a binary task (2 classes), \"{}\" has {classes}", c.task.kind.get_ref()),
        );
    }
    for t in &p.loss {
        if !(t.weight.is_finite() && t.weight >= 0.0) {
            return cx.err(t.kind.span(), format!("loss weight must be a non-negative number, got {}", t.weight));
        }
    }
    if let Some(layers) = layers {
        for f in &p.freeze {
            if !layers.contains(f.get_ref()) {
                return cx.err(
                    f.span(),
                    format!("unknown layer \"{}\", expected one of {}", f.get_ref(), layers.join(", ")),
                );
            }
        }
        if p.freeze.len() == layers.len()
            && let Some(f) = p.freeze.first()
        {
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
        if let Some(classes) = c.task.known_classes()
            && weights.len() != classes
        {
            return cx
                .err(w.span(), format!("class_weights has {} entries, the task has {classes} classes", weights.len()));
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
        until_detector(cx.file, cx.src, rule)?;
        let metric = r.metric.get_ref();
        let grad_cos = metric.strip_prefix("grad_cos/");
        if let Some(pair) = grad_cos {
            grad_cos_rule(cx, c, p, &r.metric, pair)?;
        }
        let known = grad_cos.is_some()
            || RUN_METRICS.contains(&metric.as_str())
            || metric.strip_prefix("loss/").is_some_and(|t| LossKind::parse(t).is_some())
            || metric.rsplit_once('/').is_some_and(|(layer, m)| {
                layers.is_none_or(|ls| ls.iter().any(|l| l == layer))
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
    // Then the range every setting has (`config::bounds`).
    cx.bounded_real(lr, "lr", p.lr.span())?;
    for (v, key) in [
        (&p.weight_decay, "weight_decay"),
        (&p.momentum, "momentum"),
        (&p.label_noise, "label_noise"),
        (&p.input_noise, "input_noise"),
        (&p.min_lr, "min_lr"),
    ] {
        cx.bounded_f(v, key)?;
    }
    for t in &p.loss {
        cx.bounded_real(t.weight, "loss_weight", t.kind.span())?;
    }
    cx.bounded_int(*p.batch_size.get_ref() as i128, "batch_size", p.batch_size.span())?;
    Ok(())
}

/// An `until` rule's detector and its parameters (built-in and external runs alike).
pub(super) fn until_detector(file: &str, src: &str, rule: &Spanned<UntilRule>) -> Result<(), ConfigError> {
    let cx = Ctx { file, src };
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
    if let Some(s) = &r.open_s
        && !(0.0..=86_400.0).contains(s.get_ref())
    {
        return cx.err(s.span(), format!("open_s = {}: expected seconds from 0 to 86400", s.get_ref()));
    }
    if r.hold && r.mode == super::RuleMode::Auto {
        return cx.err(rule.span(), "hold = true waits for an answer: it goes with mode = \"suggest\"");
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
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d))
}
