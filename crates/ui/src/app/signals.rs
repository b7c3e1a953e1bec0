//! Signal wording: a detector's firing as a row (what it means for the metric, what
//! one might do) and as the row's full text.

/// A signal row in words: what the firing means for this metric and what one might do
/// about it (`train_loss flat for 500 steps — consider switching phase (s)`). `switch`
/// is the key that switches phase when the run is live (else the advice names no key);
/// the detector's own message, with its figures, is the row's full text (Enter).
/// `next`: the plan's phase after the one the signal fired in (`None`: it fired in the last
/// phase, so there is nothing to switch to and no row advises it).
pub fn signal_gist(
    detector: &str,
    metric: &str,
    step: u64,
    message: &str,
    switch: Option<&str>,
    next: Option<&str>,
    ascii: bool,
) -> String {
    let dash = if ascii { "-" } else { "—" };
    let key = |what: &str| match next {
        None => "the plan has no later phase".to_string(),
        Some(next) => {
            let what = what.replace("PHASE", next);
            switch.map_or(what.clone(), |k| format!("{what} ({k})"))
        }
    };
    // "… since step N …": the plateau's start.
    let since = message
        .split("since step ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n <= step);
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
            let dir = if message.contains("jump down") { "dropped" } else { "jumped" };
            (format!("{metric} {dir}"), key("the stage you waited for? switch to PHASE"))
        }
        "divergence" => (format!("{metric} blew up and stays up"), "lower the lr or branch from before".into()),
        "spike" => (format!("{metric} spiked and came back"), "harmless unless it repeats".into()),
        "collapse" => (format!("{metric} collapsed"), "features lost diversity; try a lower lr".into()),
        _ => return format!("{detector}: {metric}: {message}"),
    };
    format!("{detector}: {what} {dash} {todo}")
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
