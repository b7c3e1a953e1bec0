//! The one grammar of the commands an operator types at a run: `phasetop ctl RUN …` and
//! the dashboard's `:` line parse here, so the same words give the same command and the
//! same error on both (the dashboard adds its own view verbs — `goto`, `layout`, … —
//! before it asks this grammar). Refusals are a [`GrammarError`], whose `Display` is the
//! one text both show; `ctl` exits 2 with it.

use crate::event::Command;
use crate::settings::SETTABLE_KEYS;

/// The verbs of the grammar, in the order help and completion list them.
pub const VERBS: &[&str] =
    &["switch", "pause", "resume", "stop", "checkpoint", "set", "accept", "dismiss", "plan", "status"];

/// What a command line asks of the run's host.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// A command the host applies between steps (and logs).
    Command(Command),
    /// `plan FILE`: the caller reads FILE and sends it as [`Command::Plan`].
    Plan { path: String },
    /// `status`: the host's state, not a command.
    Status,
}

/// Why a command line was refused before anything was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    #[error("empty command, expected one of {verbs}", verbs = VERBS.join(", "))]
    Empty,
    #[error("unknown command \"{0}\", expected one of {verbs}", verbs = VERBS.join(", "))]
    UnknownVerb(String),
    #[error("{verb} needs {what}, e.g. {example}")]
    MissingArgument { verb: &'static str, what: &'static str, example: &'static str },
    /// `takes`: "no argument" or "one argument".
    #[error("{verb} takes {takes}, got \"{extra}\"")]
    ExtraArgument { verb: &'static str, takes: &'static str, extra: String },
    #[error("set needs KEY=VALUE, e.g. set lr=0.001, got \"{0}\"")]
    NotKeyValue(String),
    /// The built-in trainer's refusal (`SetKeys::Trainer`); an external run's plan words its own.
    #[error("unknown key \"{0}\", expected one of {keys}", keys = SETTABLE_KEYS.join(", "))]
    UnknownKey(String),
    #[error("set: {0}")]
    BadKey(String),
    #[error("set {key}: \"{value}\" must be a finite number")]
    NotANumber { key: String, value: String },
    #[error("suggestion id \"{0}\" is not a number")]
    BadId(String),
    #[error("unknown phase \"{phase}\", expected one of {names}", names = .known.join(", "))]
    UnknownPhase { phase: String, known: Vec<String> },
}

/// Parses a command line's words (`ctl`'s arguments after the run, or the `:` line split
/// on whitespace).
pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Request, GrammarError> {
    let mut it = words.iter().map(AsRef::as_ref);
    let verb = it.next().ok_or(GrammarError::Empty)?;
    let arg = it.next();
    let rest: Vec<&str> = it.collect();
    let Some(&verb) = VERBS.iter().find(|v| **v == verb) else { return Err(GrammarError::UnknownVerb(verb.into())) };
    // Every verb takes at most one argument.
    if let Some(extra) = rest.first() {
        return Err(GrammarError::ExtraArgument { verb, takes: "one argument", extra: extra.to_string() });
    }
    let missing = |what, example| GrammarError::MissingArgument { verb, what, example };
    let command = match (verb, arg) {
        ("status", None) => return Ok(Request::Status),
        ("plan", Some(path)) => return Ok(Request::Plan { path: path.to_string() }),
        ("plan", None) => return Err(missing("a config file", "plan configs/next.toml")),
        ("switch", Some(phase)) => Command::Switch { phase: phase.to_string() },
        ("switch", None) => return Err(missing("a phase name", "switch main")),
        ("set", Some(kv)) => {
            let (key, value) = parse_setting(kv)?;
            Command::Set { key, value }
        }
        ("set", None) => return Err(missing("KEY=VALUE", "set lr=0.001")),
        ("accept" | "dismiss", id) => {
            let id = id.map(|s| s.parse::<u64>().map_err(|_| GrammarError::BadId(s.to_string()))).transpose()?;
            if verb == "accept" { Command::Accept { id } } else { Command::Dismiss { id } }
        }
        (_, Some(extra)) => {
            return Err(GrammarError::ExtraArgument { verb, takes: "no argument", extra: extra.to_string() });
        }
        ("pause", None) => Command::Pause,
        ("resume", None) => Command::Resume,
        ("stop", None) => Command::Stop,
        ("checkpoint", None) => Command::Checkpoint,
        (other, None) => unreachable!("verb {other} is in VERBS but not parsed"),
    };
    Ok(Request::Command(command))
}

/// `KEY=VALUE` of `set`: a name and a finite number. Which keys a run takes is the run's
/// own ([`crate::session::SetKeys`]): `ctl` and the dashboard check them from the run's log.
pub fn parse_setting(kv: &str) -> Result<(String, f64), GrammarError> {
    let (k, v) = kv.split_once('=').ok_or_else(|| GrammarError::NotKeyValue(kv.to_string()))?;
    let key = k.trim();
    crate::external::protocol::check_metric_name(key)
        .map_err(|e| GrammarError::BadKey(e.replace("metric name", "key")))?;
    match v.trim().parse::<f64>() {
        Ok(value) if value.is_finite() => Ok((key.to_string(), value)),
        _ => Err(GrammarError::NotANumber { key: key.to_string(), value: v.to_string() }),
    }
}

/// Whether a `switch` names a phase of the plan, where the caller knows the plan (the
/// dashboard); `ctl` leaves this to the host, which answers with the same text.
pub fn check_phase(phase: &str, known: &[&str]) -> Result<(), GrammarError> {
    if known.contains(&phase) {
        Ok(())
    } else {
        Err(GrammarError::UnknownPhase {
            phase: phase.to_string(),
            known: known.iter().map(|s| s.to_string()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Request, GrammarError> {
        parse(&line.split_whitespace().collect::<Vec<_>>())
    }

    #[test]
    fn commands_parse() {
        assert_eq!(p("switch main"), Ok(Request::Command(Command::Switch { phase: "main".into() })));
        assert_eq!(p("set lr=0.001"), Ok(Request::Command(Command::Set { key: "lr".into(), value: 0.001 })));
        assert_eq!(p("accept 3"), Ok(Request::Command(Command::Accept { id: Some(3) })));
        assert_eq!(p("dismiss"), Ok(Request::Command(Command::Dismiss { id: None })));
        assert_eq!(p("status"), Ok(Request::Status));
        assert_eq!(p("plan a.toml"), Ok(Request::Plan { path: "a.toml".into() }));
        assert_eq!(p("stop"), Ok(Request::Command(Command::Stop)));
    }

    #[test]
    fn refusals_are_typed_and_say_what() {
        // Which keys exist is the run's (session::SetKeys); the grammar takes any name.
        assert_eq!(p("set aux_w=1"), Ok(Request::Command(Command::Set { key: "aux_w".into(), value: 1.0 })));
        assert!(matches!(p("set =1"), Err(GrammarError::BadKey(_))));
        assert_eq!(p("set lr=abc").unwrap_err().to_string(), "set lr: \"abc\" must be a finite number");
        assert_eq!(p("set lr=inf").unwrap_err().to_string(), "set lr: \"inf\" must be a finite number");
        assert_eq!(p("set lr").unwrap_err(), GrammarError::NotKeyValue("lr".into()));
        assert_eq!(p("pause now").unwrap_err().to_string(), "pause takes no argument, got \"now\"");
        assert_eq!(p("switch a b").unwrap_err().to_string(), "switch takes one argument, got \"b\"");
        assert_eq!(p("switch").unwrap_err().to_string(), "switch needs a phase name, e.g. switch main");
        assert_eq!(p("accept x").unwrap_err(), GrammarError::BadId("x".into()));
        assert!(matches!(p("jump"), Err(GrammarError::UnknownVerb(v)) if v == "jump"));
        assert_eq!(p(""), Err(GrammarError::Empty));
        assert_eq!(
            check_phase("cool", &["warm", "main"]).unwrap_err().to_string(),
            "unknown phase \"cool\", expected one of warm, main"
        );
    }
}
