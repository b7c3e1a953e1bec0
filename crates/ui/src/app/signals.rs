//! Signal wording: a detector's firing as a row (what it means for the metric, what
//! one might do) and as the row's full text.

use crate::model::state::SignalRow;

/// A signal row in words: what the firing means for this metric and what one might do
/// about it (`train_loss flat for 500 steps — consider switching phase (s)`). `switch`
/// is the key that switches phase when the run is live (else the advice names no key);
/// the detector's own message, with its figures, is the row's full text (Enter).
/// `next`: the plan's phase after the one the signal fired in (`None`: it fired in the last
/// phase, so there is nothing to switch to and no row advises it).
pub fn signal_gist(s: &SignalRow, switch: Option<&str>, next: Option<&str>, ascii: bool) -> String {
    let (detector, metric, step, message) = (s.detector.as_str(), s.metric.as_str(), s.step, s.message.as_str());
    let dash = if ascii { "-" } else { "—" };
    let key = |what: &str| match next {
        None => "the plan has no later phase".to_string(),
        Some(next) => {
            let what = what.replace("PHASE", next);
            switch.map_or(what.clone(), |k| format!("{what} ({k})"))
        }
    };
    // The plateau's start: the recorded figure, or in a log written before signals
    // carried figures, parsed out of the message ("… since step N …").
    let since = s.figures.since_step.or_else(|| old_log_since(message)).filter(|&n| n <= step);
    let (what, todo) = match detector {
        "plateau" => (
            match since {
                Some(n) => format!("{metric} flat for {} steps", step - n),
                None => format!("{metric} flat"),
            },
            key("consider switching to PHASE"),
        ),
        "change_point" | "changepoint" => (format!("{metric} changed course"), "a new stage may have begun".into()),
        "jump" => {
            let down = match (s.figures.before, s.figures.level) {
                (Some(before), Some(level)) => level < before,
                _ => message.contains("jump down"),
            };
            let dir = if down { "dropped" } else { "jumped" };
            (format!("{metric} {dir}"), key("the stage you waited for? switch to PHASE"))
        }
        "divergence" => (format!("{metric} blew up and stays up"), "lower the lr or branch from before".into()),
        "spike" => (format!("{metric} spiked and came back"), "harmless unless it repeats".into()),
        "collapse" => (format!("{metric} collapsed"), "features lost diversity; try a lower lr".into()),
        _ => return format!("{detector}: {metric}: {message}"),
    };
    format!("{detector}: {what} {dash} {todo}")
}

/// "since step N" in a detector's message: how a log without figures says where a
/// plateau began.
fn old_log_since(message: &str) -> Option<u64> {
    message.split("since step ").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// What a detector's firing means, in words, for a signal row's full text.
pub fn detector_meaning(detector: &str) -> Option<&'static str> {
    Some(match detector {
        "plateau" => "the metric stopped improving: consider switching phase (s) or changing the lr (:set lr=…)",
        "change_point" | "changepoint" => {
            "the metric's level or trend changed: a phase of training may have begun or ended"
        }
        "jump" => "a sudden rise or fall, larger than the metric's usual step-to-step noise",
        "divergence" => "the loss went non-finite or far above its running level",
        "collapse" => "a layer's features lost diversity (rank or spread fell well below the start)",
        "spike" => "a short burst of loss that came back down on its own",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SignalFigures;

    fn row(detector: &str, message: &str, figures: SignalFigures) -> SignalRow {
        SignalRow {
            step: 1500,
            detector: detector.into(),
            metric: "train_loss".into(),
            message: message.into(),
            count: 1,
            last_step: 1500,
            figures,
        }
    }

    #[test]
    fn the_gist_reads_the_figures_and_parses_only_a_log_without_them() {
        let figures = SignalFigures { since_step: Some(1000), ..Default::default() };
        // The figure wins over the message's words.
        let gist = signal_gist(&row("plateau", "plateau since step 1400: …", figures), None, Some("cool"), false);
        assert!(gist.contains("flat for 500 steps"), "{gist}");
        // An old log: only the message says where it began.
        let old =
            signal_gist(&row("plateau", "plateau since step 1400: …", SignalFigures::default()), None, None, true);
        assert!(old.contains("flat for 100 steps"), "{old}");
        // A jump's direction from its levels (a drop), whatever the message says.
        let drop = SignalFigures { before: Some(2.0), level: Some(0.5), ..Default::default() };
        assert!(signal_gist(&row("jump", "jump up", drop), None, None, true).contains("train_loss dropped"));
        assert!(
            signal_gist(&row("jump", "jump down: …", SignalFigures::default()), None, None, true).contains("dropped")
        );
    }
}
