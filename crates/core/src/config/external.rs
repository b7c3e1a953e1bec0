//! The config of an external run (`phasetop run [CONFIG] -- CMD`): the phase plan of a
//! script phasetop does not train itself. A phase has a `name`, optional `steps` and
//! `until` rule (the built-in trainer's meaning), and any other keys are the phase's
//! *settings*: free key/values handed to the script at every phase change (`lr = 3e-4`,
//! `freeze = ["encoder"]`, `augment = "strong"`). The built-in trainer's config keeps
//! refusing unknown keys; only this type takes them.
//!
//! ```toml
//! [run]
//! name = "external-demo"
//! max_steps = 2000          # optional: the job is told to stop here
//! stop_grace_s = 30         # ctl stop → SIGTERM after this, then SIGKILL after as long again
//!
//! [probes]
//! layers = ["encoder"]      # collapse detectors on these layers' probe metrics
//!
//! [[phase]]
//! name = "warm"
//! steps = 200
//! lr = 0.05
//! until = { detector = "plateau", metric = "train_loss", mode = "suggest" }
//! ```

use super::{ConfigError, UntilRule, validate};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    #[serde(default)]
    pub run: ExternalRunSection,
    #[serde(default)]
    pub probes: ExternalProbes,
    #[serde(default, rename = "phase")]
    pub phases: Vec<ExternalPhase>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalRunSection {
    #[serde(default = "default_name")]
    pub name: String,
    /// The job is told to stop (`should_stop`) once it reaches this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// After `ctl stop`: seconds until SIGTERM, and as long again until SIGKILL.
    #[serde(default = "default_grace")]
    pub stop_grace_s: f64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group_readable: bool,
}

impl Default for ExternalRunSection {
    fn default() -> Self {
        ExternalRunSection {
            name: default_name(),
            max_steps: None,
            stop_grace_s: default_grace(),
            group_readable: false,
        }
    }
}

fn default_name() -> String {
    "external".into()
}

fn default_grace() -> f64 {
    30.0
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExternalProbes {
    /// Layers whose `eff_rank` and `diversity` (sent by `run.probe`) get collapse detectors.
    #[serde(default)]
    pub layers: Vec<String>,
}

/// A phase: `name`, `steps`, `until`, and free settings (every other key).
#[derive(Debug, Clone)]
pub struct ExternalPhase {
    pub name: Spanned<String>,
    pub steps: Option<Spanned<u64>>,
    pub until: Option<Spanned<UntilRule>>,
    /// Key → (value as JSON, where it is written).
    pub settings: Vec<(String, Spanned<toml::Value>)>,
}

impl ExternalPhase {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    /// The settings as the JSON object the script receives.
    pub fn settings_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.settings
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v.get_ref()).unwrap_or(serde_json::Value::Null)))
            .collect()
    }

    fn single() -> ExternalPhase {
        ExternalPhase { name: Spanned::new(0..0, "main".into()), steps: None, until: None, settings: Vec::new() }
    }
}

/// Serialised like a built-in phase (name, steps, until) with the settings beside them,
/// so the dashboard's plan panel and `inspect` read it from `run_started.config`.
impl Serialize for ExternalPhase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", self.name.get_ref())?;
        if let Some(n) = &self.steps {
            m.serialize_entry("steps", n.get_ref())?;
        }
        if let Some(u) = &self.until {
            m.serialize_entry("until", u.get_ref())?;
        }
        for (k, v) in &self.settings {
            m.serialize_entry(k, v.get_ref())?;
        }
        m.end()
    }
}

/// A map visitor rather than `#[serde(flatten)]`: flatten would buffer the table and
/// lose the spans that errors are located by.
impl<'de> Deserialize<'de> for ExternalPhase {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExternalPhase;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [[phase]] table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExternalPhase, A::Error> {
                let (mut name, mut steps, mut until, mut settings) = (None, None, None, Vec::new());
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => name = Some(map.next_value::<Spanned<String>>()?),
                        "steps" => steps = Some(map.next_value::<Spanned<u64>>()?),
                        "until" => until = Some(map.next_value::<Spanned<UntilRule>>()?),
                        _ => settings.push((key, map.next_value::<Spanned<toml::Value>>()?)),
                    }
                }
                let name = name.ok_or_else(|| serde::de::Error::missing_field("name"))?;
                Ok(ExternalPhase { name, steps, until, settings })
            }
        }
        d.deserialize_map(V)
    }
}

impl ExternalConfig {
    pub fn phase_names(&self) -> Vec<String> {
        self.phases.iter().map(|p| p.name().to_string()).collect()
    }

    pub fn phase_index(&self, name: &str) -> Option<usize> {
        self.phases.iter().position(|p| p.name() == name)
    }

    /// No config: one phase, `main`, default detectors.
    pub fn single_phase() -> ExternalConfig {
        ExternalConfig { phases: vec![ExternalPhase::single()], ..Default::default() }
    }
}

/// A loaded external config with where it came from (`None`: no CONFIG was given).
#[derive(Debug, Clone)]
pub struct LoadedExternal {
    pub config: ExternalConfig,
    pub path: Option<PathBuf>,
    pub source: String,
}

impl LoadedExternal {
    pub fn name(&self) -> String {
        match &self.path {
            Some(p) => p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            None => self.config.run.name.clone(),
        }
    }
}

/// Whether `check` takes config text as an external run's: a built-in run's config must
/// have a `[task]` and a `[model]` table, an external run's can have neither, so a file
/// with either is the built-in kind and one with neither the external kind. (Text that is
/// not TOML is the built-in kind: its syntax error is the same under both rules.) What is
/// applied is always said: [`RULES_APPLIED`], [`check_line`].
pub fn is_external(source: &str) -> bool {
    toml::from_str::<toml::Table>(source).is_ok_and(|t| !t.contains_key("task") && !t.contains_key("model"))
}

/// Said with an external config's errors in `check` (and with a built-in load's errors
/// of a file that is the external kind): which rules applied, and why.
pub const RULES_APPLIED: &str =
    "checked as an external-run config, for `phasetop run CONFIG -- CMD`: the file has no [task] or [model] table";

/// `check`'s line for a valid external config.
pub fn check_line(path: &Path, config: &ExternalConfig) -> String {
    format!(
        "{}: ok ({}) — an external-run config, for `phasetop run CONFIG -- CMD`: the file has no [task] or \
         [model] table, so the external rules applied",
        path.display(),
        super::phases_line(&config.phase_names())
    )
}

/// Reads, parses and validates an external run's config.
pub fn load(path: &Path) -> Result<LoadedExternal, ConfigError> {
    let display = path.display().to_string();
    let bytes = crate::files::read_regular(path, "the config", super::MAX_CONFIG_BYTES)
        .map_err(|message| ConfigError { file: display.clone(), line: 1, col: 1, message })?;
    let source = String::from_utf8(bytes).map_err(|e| ConfigError {
        file: display.clone(),
        line: 1,
        col: 1,
        message: format!("the config is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
    })?;
    let config = parse(&display, &source)?;
    Ok(LoadedExternal { config, path: Some(path.to_path_buf()), source })
}

/// Parses and validates external-run config text; `file` names it in errors.
pub fn parse(file: &str, source: &str) -> Result<ExternalConfig, ConfigError> {
    let mut c: ExternalConfig = toml::from_str(source).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        ConfigError::at(file, source, offset, e.message().trim().replace('`', "\""))
    })?;
    let err = |span: std::ops::Range<usize>, m: String| Err(ConfigError::at(file, source, span.start, m));
    validate::run_name_ok(file, source, &c.run.name)?;
    let grace = c.run.stop_grace_s;
    if !(grace.is_finite() && (0.0..=3600.0).contains(&grace)) {
        let at = super::validate::find_key(source, Some("run"), "stop_grace_s").unwrap_or(0);
        return err(at..at, format!("stop_grace_s must be in [0, 3600] seconds, got {grace}"));
    }
    if c.run.max_steps == Some(0) {
        let at = super::validate::find_key(source, Some("run"), "max_steps").unwrap_or(0);
        return err(at..at, "max_steps must be at least 1".into());
    }
    if c.phases.is_empty() {
        c.phases.push(ExternalPhase::single());
    }
    let mut seen: Vec<&str> = Vec::new();
    for p in &c.phases {
        let name = p.name.get_ref();
        if name.is_empty() || name.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            return err(p.name.span(), format!("phase name \"{name}\" must be non-empty without spaces"));
        }
        if seen.contains(&name.as_str()) {
            return err(p.name.span(), format!("duplicate phase name \"{name}\""));
        }
        seen.push(name);
        if let Some(s) = &p.steps
            && *s.get_ref() == 0
        {
            return err(s.span(), "steps must be at least 1 (leave it out for a phase that ends by hand)".into());
        }
        if let Some(rule) = &p.until {
            validate::until_detector(file, source, rule)?;
            let m = rule.get_ref().metric.get_ref();
            if let Err(why) = crate::external::protocol::check_metric_name(m) {
                return err(rule.get_ref().metric.span(), why);
            }
        }
        for (key, value) in &p.settings {
            if let Some(why) = setting_problem(value.get_ref()) {
                return err(value.span(), format!("phase \"{name}\" setting \"{key}\": {why}"));
            }
        }
    }
    Ok(c)
}

/// Why a setting cannot be handed to the script as JSON, if it cannot.
fn setting_problem(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::Float(f) if !f.is_finite() => Some(format!("{f} is not a finite number")),
        toml::Value::Datetime(_) => Some("dates are not settings; write it as a string".into()),
        toml::Value::Array(a) => a.iter().find_map(setting_problem),
        toml::Value::Table(t) => t.values().find_map(setting_problem),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_keys_are_settings_and_known_keys_are_checked() {
        let c = parse(
            "x.toml",
            "[[phase]]\nname='warm'\nsteps=10\nlr=0.05\nfreeze=['enc']\n[[phase]]\nname='main'\nlr=0.01\n",
        )
        .unwrap();
        assert_eq!(c.phase_names(), ["warm", "main"]);
        let s = c.phases[0].settings_json();
        assert_eq!(s["lr"], 0.05);
        assert_eq!(s["freeze"][0], "enc");
        let e = parse("x.toml", "[[phase]]\nname='a'\nsteps=-1\n").unwrap_err();
        assert_eq!((e.line, e.col), (3, 7), "{e}");
        let e = parse("x.toml", "[[phase]]\nname='a'\nlr=nan\n").unwrap_err();
        assert!(e.message.contains("setting \"lr\": NaN is not a finite number"), "{e}");
        assert_eq!((e.line, e.col), (3, 4));
        let e = parse("x.toml", "[[phase]]\nname='a'\nuntil={detector='nope', metric='m'}\n").unwrap_err();
        assert!(e.message.contains("unknown detector \"nope\""), "{e}");
        let e = parse("x.toml", "[run]\nnmae='x'\n").unwrap_err();
        assert!(e.message.contains("unknown field \"nmae\""), "{e}");
        assert_eq!(parse("x.toml", "").unwrap().phase_names(), ["main"]);
        // The built-in config still refuses the same free key.
        assert!(super::super::parse("y.toml", "[[phase]]\nname='a'\naugment='x'\n").is_err());
    }
}
