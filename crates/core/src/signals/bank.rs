//! Naming detectors from configs, and feeding many (detector, metric) pairs.

use super::{
    Changepoint, ChangepointParams, Collapse, CollapseParams, Detector, Divergence, DivergenceParams, Firing, Jump,
    JumpParams, Plateau, PlateauParams, Spike,
};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The detectors, by the names configs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DetectorKind {
    Plateau,
    Changepoint,
    Jump,
    Divergence,
    Spike,
    Collapse,
}

impl DetectorKind {
    /// Every kind, in documentation order.
    pub const ALL: [DetectorKind; 6] = [
        DetectorKind::Plateau,
        DetectorKind::Changepoint,
        DetectorKind::Jump,
        DetectorKind::Divergence,
        DetectorKind::Spike,
        DetectorKind::Collapse,
    ];

    /// The config name: "plateau", "changepoint", "jump", "divergence", "spike", "collapse".
    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::Plateau => "plateau",
            DetectorKind::Changepoint => "changepoint",
            DetectorKind::Jump => "jump",
            DetectorKind::Divergence => "divergence",
            DetectorKind::Spike => "spike",
            DetectorKind::Collapse => "collapse",
        }
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DetectorKind {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        DetectorKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| SpecError::UnknownDetector(s.to_string()))
    }
}

/// Why a detector spec could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("unknown detector \"{0}\", expected one of plateau, changepoint, jump, divergence, spike, collapse")]
    UnknownDetector(String),
    #[error("invalid parameters for detector \"{detector}\": {message}")]
    Params { detector: DetectorKind, message: String },
}

/// A detector kind with its parameters, as a config names it.
#[derive(Clone, Debug, PartialEq)]
pub enum DetectorSpec {
    Plateau(PlateauParams),
    Changepoint(ChangepointParams),
    Jump(JumpParams),
    Divergence(DivergenceParams),
    Spike(DivergenceParams),
    Collapse(CollapseParams),
}

impl DetectorSpec {
    /// The spec with default parameters.
    pub fn default_for(kind: DetectorKind) -> DetectorSpec {
        match kind {
            DetectorKind::Plateau => DetectorSpec::Plateau(Default::default()),
            DetectorKind::Changepoint => DetectorSpec::Changepoint(Default::default()),
            DetectorKind::Jump => DetectorSpec::Jump(Default::default()),
            DetectorKind::Divergence => DetectorSpec::Divergence(Default::default()),
            DetectorKind::Spike => DetectorSpec::Spike(Default::default()),
            DetectorKind::Collapse => DetectorSpec::Collapse(Default::default()),
        }
    }

    /// Builds a spec from a detector name and a parameter table (a config's
    /// `until.params`). Missing parameters take their defaults; unknown ones, wrong
    /// types and out-of-range values are errors.
    pub fn from_toml(name: &str, params: &toml::Table) -> Result<DetectorSpec, SpecError> {
        let kind: DetectorKind = name.parse()?;
        let value = toml::Value::Table(params.clone());
        let err = |e: toml::de::Error| SpecError::Params { detector: kind, message: e.message().to_string() };
        let spec = match kind {
            DetectorKind::Plateau => DetectorSpec::Plateau(value.try_into().map_err(err)?),
            DetectorKind::Changepoint => DetectorSpec::Changepoint(value.try_into().map_err(err)?),
            DetectorKind::Jump => DetectorSpec::Jump(value.try_into().map_err(err)?),
            DetectorKind::Divergence => DetectorSpec::Divergence(value.try_into().map_err(err)?),
            DetectorKind::Spike => DetectorSpec::Spike(value.try_into().map_err(err)?),
            DetectorKind::Collapse => DetectorSpec::Collapse(value.try_into().map_err(err)?),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks parameter ranges.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |message: &str| Err(SpecError::Params { detector: self.kind(), message: message.to_string() });
        let pos = |x: f64| x.is_finite() && x > 0.0;
        match self {
            DetectorSpec::Plateau(p) => {
                if p.window == 0 {
                    return bad("window must be at least 1 step");
                }
                if !pos(p.tolerance) {
                    return bad("tolerance must be > 0");
                }
                if !(p.ema_steps.is_finite() && p.ema_steps >= 0.0) {
                    return bad("ema_steps must be ≥ 0");
                }
                if !(p.rearm_factor.is_finite() && p.rearm_factor >= 1.0) {
                    return bad("rearm_factor must be ≥ 1");
                }
                if !pos(p.min_scale) {
                    return bad("min_scale must be > 0");
                }
            }
            DetectorSpec::Changepoint(p) => {
                if !(p.hazard_points.is_finite() && p.hazard_points > 1.0) {
                    return bad("hazard_points must be > 1");
                }
                if p.max_run < 2 || p.max_run > 100_000 {
                    return bad("max_run must be in 2..=100000");
                }
                if p.short_run >= p.max_run {
                    return bad("short_run must be < max_run");
                }
                if !(p.threshold > 0.0 && p.threshold <= 1.0) {
                    return bad("threshold must be in (0, 1]");
                }
                if !pos(p.prior_level_sd) || !pos(p.prior_slope_sd) || !pos(p.prior_curvature_sd) {
                    return bad("prior_level_sd, prior_slope_sd and prior_curvature_sd must be > 0");
                }
                if !(p.clip.is_finite() && p.clip >= 0.0) {
                    return bad("clip must be ≥ 0");
                }
                let nonneg = |x: f64| x.is_finite() && x >= 0.0;
                if !nonneg(p.min_effect) || !nonneg(p.min_effect_sd) || !nonneg(p.min_visible) {
                    return bad("min_effect, min_effect_sd and min_visible must be ≥ 0");
                }
            }
            DetectorSpec::Jump(p) => {
                if !pos(p.min_rise) {
                    return bad("min_rise must be > 0");
                }
                if !(p.min_z.is_finite() && p.min_z >= 0.0) {
                    return bad("min_z must be ≥ 0");
                }
            }
            DetectorSpec::Divergence(p) | DetectorSpec::Spike(p) => {
                if !(p.factor.is_finite() && p.factor > 1.0) {
                    return bad("factor must be > 1");
                }
                if !(p.level_steps.is_finite() && p.level_steps >= 0.0) {
                    return bad("level_steps must be ≥ 0");
                }
                if !(p.min_initial_fraction.is_finite() && p.min_initial_fraction >= 0.0) {
                    return bad("min_initial_fraction must be ≥ 0");
                }
            }
            DetectorSpec::Collapse(p) => {
                if !(p.fraction > 0.0 && p.fraction < 1.0) {
                    return bad("fraction must be in (0, 1)");
                }
                if p.baseline_points == 0 {
                    return bad("baseline_points must be ≥ 1");
                }
                if !(p.ema_points.is_finite() && p.ema_points >= 0.0) {
                    return bad("ema_points must be ≥ 0");
                }
            }
        }
        Ok(())
    }

    /// The quiet period after a firing that the [`Bank`] applies (`quiet_steps` of
    /// plateau, changepoint, jump and collapse; divergence and spike use their own
    /// `quiet_steps` to end a burst, and non-finite values always fire).
    pub fn quiet_steps(&self) -> u64 {
        match self {
            DetectorSpec::Plateau(p) => p.quiet_steps,
            DetectorSpec::Changepoint(p) => p.quiet_steps,
            DetectorSpec::Jump(p) => p.quiet_steps,
            DetectorSpec::Collapse(p) => p.quiet_steps,
            DetectorSpec::Divergence(_) | DetectorSpec::Spike(_) => 0,
        }
    }

    pub fn kind(&self) -> DetectorKind {
        match self {
            DetectorSpec::Plateau(_) => DetectorKind::Plateau,
            DetectorSpec::Changepoint(_) => DetectorKind::Changepoint,
            DetectorSpec::Jump(_) => DetectorKind::Jump,
            DetectorSpec::Divergence(_) => DetectorKind::Divergence,
            DetectorSpec::Spike(_) => DetectorKind::Spike,
            DetectorSpec::Collapse(_) => DetectorKind::Collapse,
        }
    }

    /// A fresh detector.
    pub fn build(&self) -> Box<dyn Detector> {
        match self {
            DetectorSpec::Plateau(p) => Box::new(Plateau::new(p.clone())),
            DetectorSpec::Changepoint(p) => Box::new(Changepoint::new(p.clone())),
            DetectorSpec::Jump(p) => Box::new(Jump::new(p.clone())),
            DetectorSpec::Divergence(p) => Box::new(Divergence::new(p.clone())),
            DetectorSpec::Spike(p) => Box::new(Spike::new(p.clone())),
            DetectorSpec::Collapse(p) => Box::new(Collapse::new(p.clone())),
        }
    }
}

/// A firing with the names of its detector and metric: the content of an
/// `Event::Signal`.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    pub step: u64,
    pub detector: String,
    pub metric: String,
    pub score: f64,
    pub message: String,
    pub figures: crate::event::SignalFigures,
}

impl Signal {
    fn new(detector: &str, metric: &str, f: Firing) -> Signal {
        Signal {
            step: f.step,
            detector: detector.to_string(),
            metric: metric.to_string(),
            score: f.score,
            message: f.message,
            figures: f.figures,
        }
    }

    /// The run-log event for this signal.
    pub fn to_event(&self) -> crate::event::Event {
        crate::event::Event::Signal {
            step: self.step,
            detector: self.detector.clone(),
            metric: self.metric.clone(),
            score: self.score,
            message: self.message.clone(),
            figures: self.figures.clone(),
        }
    }
}

#[derive(Debug)]
struct Slot {
    detector: String,
    spec: DetectorSpec,
    det: Box<dyn Detector>,
    /// The step of the last firing let through (for `quiet_steps`).
    last_fired: Option<u64>,
}

impl Slot {
    /// Feeds a point; a firing within the spec's `quiet_steps` of the last one is folded
    /// into it (dropped: the detector has fired and waits for its re-arm as usual).
    fn push(&mut self, step: u64, value: f64) -> Option<Firing> {
        let f = self.det.push(step, value)?;
        let quiet = self.spec.quiet_steps();
        if quiet > 0 && self.last_fired.is_some_and(|l| f.step.saturating_sub(l) < quiet) {
            return None;
        }
        self.last_fired = Some(f.step);
        Some(f)
    }
}

/// Detectors keyed by (detector name, metric). The detector name is the kind's name
/// unless added with [`Bank::insert_named`] (to run one kind twice on a metric with
/// different parameters). Inserting an existing key replaces that detector.
#[derive(Debug, Default)]
pub struct Bank {
    /// metric → its detectors, in insertion order.
    by_metric: BTreeMap<String, Vec<Slot>>,
}

impl Bank {
    pub fn new() -> Bank {
        Bank::default()
    }

    /// Adds (or replaces) the detector `spec.kind()` on `metric`.
    pub fn insert(&mut self, spec: DetectorSpec, metric: &str) {
        self.insert_named(spec.kind().name(), spec, metric);
    }

    /// Adds (or replaces) a detector under a chosen name on `metric`.
    pub fn insert_named(&mut self, detector: &str, spec: DetectorSpec, metric: &str) {
        let det = spec.build();
        let slots = self.by_metric.entry(metric.to_string()).or_default();
        let slot = Slot { detector: detector.to_string(), spec, det, last_fired: None };
        match slots.iter_mut().find(|s| s.detector == detector) {
            Some(s) => *s = slot,
            None => slots.push(slot),
        }
    }

    /// Removes a detector; returns whether it existed.
    pub fn remove(&mut self, detector: &str, metric: &str) -> bool {
        let Some(slots) = self.by_metric.get_mut(metric) else { return false };
        let before = slots.len();
        slots.retain(|s| s.detector != detector);
        let removed = slots.len() != before;
        if slots.is_empty() {
            self.by_metric.remove(metric);
        }
        removed
    }

    /// Whether (detector, metric) is present.
    pub fn contains(&self, detector: &str, metric: &str) -> bool {
        self.by_metric.get(metric).is_some_and(|v| v.iter().any(|s| s.detector == detector))
    }

    /// The (detector, metric, spec) entries.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, &DetectorSpec)> {
        self.by_metric.iter().flat_map(|(m, v)| v.iter().map(move |s| (s.detector.as_str(), m.as_str(), &s.spec)))
    }

    pub fn len(&self) -> usize {
        self.by_metric.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_metric.is_empty()
    }

    /// Whether any detector watches `metric`.
    pub fn watches(&self, metric: &str) -> bool {
        self.by_metric.contains_key(metric)
    }

    /// Feeds one point of one metric to its detectors; returns their firings.
    pub fn push(&mut self, step: u64, metric: &str, value: f64) -> Vec<Signal> {
        let Some(slots) = self.by_metric.get_mut(metric) else { return Vec::new() };
        slots.iter_mut().filter_map(|s| s.push(step, value).map(|f| Signal::new(&s.detector, metric, f))).collect()
    }

    /// Feeds every watched metric present in `metrics` (e.g. a step's or an eval's
    /// metrics); returns the firings in (metric, insertion) order.
    pub fn push_all(&mut self, step: u64, metrics: &BTreeMap<String, f64>) -> Vec<Signal> {
        let mut out = Vec::new();
        for (metric, slots) in self.by_metric.iter_mut() {
            if let Some(&value) = metrics.get(metric) {
                out.extend(
                    slots.iter_mut().filter_map(|s| s.push(step, value).map(|f| Signal::new(&s.detector, metric, f))),
                );
            }
        }
        out
    }

    /// Re-arms the detector named `detector` on `metric` (see [`Detector::rearm`]).
    pub fn rearm(&mut self, detector: &str, metric: &str) {
        if let Some(slots) = self.by_metric.get_mut(metric) {
            slots.iter_mut().filter(|s| s.detector == detector).for_each(|s| {
                s.det.rearm();
                s.last_fired = None;
            });
        }
    }

    /// Whether the last firing's condition of `detector` on `metric` still holds (see
    /// [`Detector::holds`]); false when there is no such detector.
    pub fn holds(&self, detector: &str, metric: &str) -> bool {
        self.by_metric.get(metric).is_some_and(|v| v.iter().any(|s| s.detector == detector && s.det.holds()))
    }

    /// Resets every detector on `metric` (e.g. when a phase starts).
    pub fn reset_metric(&mut self, metric: &str) {
        if let Some(slots) = self.by_metric.get_mut(metric) {
            slots.iter_mut().for_each(|s| {
                s.det.reset();
                s.last_fired = None;
            });
        }
    }

    /// Resets every detector.
    pub fn reset(&mut self) {
        self.by_metric.values_mut().flatten().for_each(|s| {
            s.det.reset();
            s.last_fired = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_from_toml_applies_defaults_and_rejects_unknown_fields() {
        let t: toml::Table = toml::from_str("window = 100\ntolerance = 0.1").unwrap();
        let spec = DetectorSpec::from_toml("plateau", &t).unwrap();
        assert_eq!(
            spec,
            DetectorSpec::Plateau(PlateauParams { window: 100, tolerance: 0.1, ..PlateauParams::default() })
        );
        let bad: toml::Table = toml::from_str("windw = 100").unwrap();
        let e = DetectorSpec::from_toml("plateau", &bad).unwrap_err();
        assert!(e.to_string().contains("windw"), "{e}");
        let e = DetectorSpec::from_toml("platoo", &toml::Table::new()).unwrap_err();
        assert_eq!(e, SpecError::UnknownDetector("platoo".into()));
        let range: toml::Table = toml::from_str("fraction = 1.5").unwrap();
        assert!(DetectorSpec::from_toml("collapse", &range).is_err());
        let t: toml::Table = toml::from_str("direction = \"down\"\nrelative = true").unwrap();
        assert!(matches!(DetectorSpec::from_toml("jump", &t), Ok(DetectorSpec::Jump(p)) if p.relative));
        let t: toml::Table = toml::from_str("transform = \"none\"").unwrap();
        assert!(DetectorSpec::from_toml("changepoint", &t).is_ok());
    }

    #[test]
    fn every_kind_round_trips_its_name_and_defaults_validate() {
        for k in DetectorKind::ALL {
            assert_eq!(k.name().parse::<DetectorKind>().unwrap(), k);
            let spec = DetectorSpec::from_toml(k.name(), &toml::Table::new()).unwrap();
            assert_eq!(spec, DetectorSpec::default_for(k));
            assert_eq!(spec.build().kind(), k);
        }
    }

    #[test]
    fn bank_routes_points_by_metric_and_names_firings() {
        let mut bank = Bank::new();
        bank.insert(DetectorSpec::default_for(DetectorKind::Divergence), "train_loss");
        bank.insert_named(
            "div_tight",
            DetectorSpec::Divergence(DivergenceParams { factor: 1.5, ..Default::default() }),
            "train_loss",
        );
        bank.insert(DetectorSpec::default_for(DetectorKind::Jump), "val_acc");
        assert_eq!(bank.len(), 3);
        let mut signals = Vec::new();
        for s in 0..100u64 {
            let mut m = BTreeMap::new();
            m.insert("train_loss".to_string(), if s == 50 { f64::NAN } else { 1.0 });
            m.insert("val_acc".to_string(), if s < 60 { 0.0 } else { 1.0 });
            m.insert("other".to_string(), f64::NAN);
            signals.extend(bank.push_all(s, &m));
        }
        let got: Vec<(u64, &str, &str)> =
            signals.iter().map(|s| (s.step, s.detector.as_str(), s.metric.as_str())).collect();
        assert_eq!(
            got,
            vec![(50, "divergence", "train_loss"), (50, "div_tight", "train_loss"), (60, "jump", "val_acc")]
        );
        assert!(bank.remove("div_tight", "train_loss"));
        assert!(!bank.contains("div_tight", "train_loss"));
        assert!(bank.push(200, "val_acc", 1.0).is_empty());
    }

    #[test]
    fn quiet_steps_fold_repeats_and_rearm_clears_them() {
        // A sawtooth: +1 over 10 steps every 100 steps, back to 0: a jump each cycle.
        let v = |s: u64| {
            if s % 100 < 10 {
                (s % 100) as f64 / 10.0
            } else if s % 100 < 50 {
                1.0
            } else {
                0.0
            }
        };
        let fire = |quiet: u64| {
            let mut bank = Bank::new();
            let p = JumpParams { min_z: 0.0, quiet_steps: quiet, ..Default::default() };
            bank.insert(DetectorSpec::Jump(p), "m");
            (0..1000u64).flat_map(|s| bank.push(s, "m", v(s))).map(|s| s.step).collect::<Vec<_>>()
        };
        let every = fire(0);
        assert_eq!(every.len(), 10, "{every:?}");
        let quiet = fire(250);
        assert!(quiet.windows(2).all(|w| w[1] - w[0] >= 250), "{quiet:?}");
        assert_eq!(quiet.len(), 4, "{quiet:?}");
        let t: toml::Table = toml::from_str("quiet_steps = 250").unwrap();
        assert_eq!(DetectorSpec::from_toml("collapse", &t).unwrap().quiet_steps(), 250);
    }

    /// Issue 23: a loss that goes flat and stays flat is told once (the detector waits to
    /// re-arm until it is no longer flat); a new flat stretch is told again.
    #[test]
    fn a_condition_that_holds_is_one_signal() {
        let mut bank = Bank::new();
        bank.insert(DetectorSpec::default_for(DetectorKind::Plateau), "loss");
        let mut noise = 0x2545F4914F6CDD1Du64;
        let mut z = || {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            (noise >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        // Flat at 1.0 for 20 000 steps; a drop to 0.5 over 2 000; flat for 20 000 more.
        let level = |s: u64| match s {
            0..20_000 => 1.0,
            20_000..22_000 => 1.0 - 0.5 * (s - 20_000) as f64 / 2000.0,
            _ => 0.5,
        };
        let fired: Vec<u64> =
            (0..42_000u64).flat_map(|s| bank.push(s, "loss", level(s) * (1.0 + 0.001 * z()))).map(|f| f.step).collect();
        let first = fired.iter().filter(|&&s| s < 20_000).count();
        let second = fired.iter().filter(|&&s| s >= 22_000).count();
        assert_eq!((first, second), (1, 1), "one signal per flat stretch: {fired:?}");
    }
}
