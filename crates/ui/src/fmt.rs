//! Every number the dashboard shows is formatted here: values, steps, durations, axis
//! labels, and text fitted to a width. The rule is that a number is shown whole or not
//! at all: text is shortened at words (and words are cut), never inside a number, and
//! an axis label picks a precision that fits (`5.2e-4`, never `5.22e` or `9.66e-`).

/// A value for reading (cursor readouts, tables): 4 decimals in the usual range,
/// 1 decimal from 100, scientific (3 significant digits) outside [1e-3, 1e5).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// The most precise form of `v` that fits `width` cells (at most [`num`]'s precision),
/// or `None` when not even one significant digit fits.
pub fn num_fit(v: f64, width: usize) -> Option<String> {
    let full = num(v);
    if full.chars().count() <= width {
        return Some(full);
    }
    candidates(&[v]).into_iter().map(|mut c| c.remove(0)).find(|s| s.chars().count() <= width)
}

/// A step with thin grouping: `12 500`.
pub fn step(s: u64) -> String {
    let digits = s.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

/// How long ago, in the largest unit that keeps it short: `45s`, `12m`, `5h`, `3d`
/// (`ls`'s AGE column and the workspace's).
pub fn age(secs: u64) -> String {
    if secs < 120 {
        format!("{secs}s")
    } else if secs < 7200 {
        format!("{}m", secs / 60)
    } else if secs < 172_800 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}d", secs / 86400)
    }
}

/// `values` as a one-line sparkline of at most `width` cells (the newest at the right;
/// older values are left out, not squeezed), scaled between their min and max;
/// ` .:-=+*#` in ASCII. Non-finite values are gaps.
pub fn spark(values: &[f64], width: usize, ascii: bool) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    const ASCII: [char; 8] = ['_', '.', ':', '-', '=', '+', '*', '#'];
    let glyphs = if ascii { &ASCII } else { &BARS };
    let shown = &values[values.len().saturating_sub(width)..];
    let finite = shown.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    shown
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                ' '
            } else if hi > lo {
                glyphs[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
            } else {
                glyphs[3]
            }
        })
        .collect()
}

/// A rate for the header: whole units (`412 it/s`), one decimal below 10.
pub fn rate(r: f64) -> String {
    if r > 0.0 && r < 10.0 { format!("{r:.1}") } else { format!("{r:.0}") }
}

/// A fraction in [0, 1) with two decimals (a chart's smoothing weight: `ema 0.60`).
pub fn weight(v: f64) -> String {
    format!("{v:.2}")
}

/// A whole quantity with its unit (`37 %`, `61 °C`).
pub fn whole(v: f64, unit: &str) -> String {
    format!("{v:.0} {unit}")
}

/// Megabytes as MB, or GB with one decimal from 10 000 MB.
pub fn mb(v: f64) -> String {
    if v >= 10_000.0 { format!("{:.1} GB", v / 1000.0) } else { format!("{v:.0} MB") }
}

/// Memory used of a total, both in the total's unit: `3.3 of 150.8 GB`, `812 of 4096 MB`.
pub fn mb_of(used: f64, total: f64) -> String {
    if total >= 10_000.0 {
        format!("{:.1} of {:.1} GB", used / 1000.0, total / 1000.0)
    } else {
        format!("{used:.0} of {total:.0} MB")
    }
}

/// A replay speed: a factor of the recorded pace (`2×`), steps a second when paced
/// uniformly (`20 steps/s`), or `max`.
pub fn speed(factor: f64, steps_per_s: Option<f64>) -> String {
    match steps_per_s {
        _ if factor.is_infinite() => "max".into(),
        Some(s) => format!("{s} steps/s"),
        None => format!("{factor}×"),
    }
}

/// `hh:mm:ss`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn fixed(v: f64, d: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let s = format!("{v:.d$}");
    // -0.00 is 0.
    if s.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') { "0".into() } else { s }
}

fn sci(v: f64, m: usize) -> String {
    if v == 0.0 { "0".into() } else { format!("{v:.m$e}") }
}

/// Label sets for `values`, most precise first: fixed decimals where the values are of
/// ordinary size, then scientific with 2, 1, 0 mantissa decimals.
fn candidates(values: &[f64]) -> Vec<Vec<String>> {
    let max = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut out = Vec::new();
    if max == 0.0 {
        return vec![values.iter().map(|_| "0".to_string()).collect()];
    }
    if (1e-2..1e5).contains(&max) {
        for d in (0..=4).rev() {
            out.push(values.iter().map(|&v| fixed(v, d)).collect());
        }
    }
    for m in (0..=2).rev() {
        out.push(values.iter().map(|&v| sci(v, m)).collect());
    }
    out
}

/// Labels for an axis at `values` (bottom to top) in at most `width` cells each: the
/// shortest set that still tells the values apart, at no more precision than the
/// span needs; empty strings when not even one digit fits (never a cut number).
pub fn axis_labels(values: &[f64], width: usize) -> Vec<String> {
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let span = (hi - lo).abs();
    let fits = |set: &Vec<String>| set.iter().all(|s| s.chars().count() <= width);
    let distinct = |set: &Vec<String>| {
        let mut s: Vec<&String> = set.iter().collect();
        s.sort();
        s.dedup();
        s.len() == set.len()
    };
    let all = candidates(values);
    // Enough decimals for ~2 significant digits of the span, no more.
    let need = if span > 0.0 { (1.0 - span.log10().floor()).max(0.0) as usize } else { 4 };
    let useful =
        |set: &Vec<String>| set.iter().all(|s| s.contains('e') || s.split('.').nth(1).is_none_or(|d| d.len() <= need));
    all.iter()
        .find(|s| fits(s) && distinct(s) && useful(s))
        .or_else(|| all.iter().find(|s| fits(s) && distinct(s)))
        .or_else(|| all.iter().find(|s| fits(s)))
        .cloned()
        .unwrap_or_else(|| values.iter().map(|_| String::new()).collect())
}

/// Labels for a log axis: each value to 2 significant digits on its own (a log axis
/// spans decades, so one precision for all would print its bottom as `0`), fewer
/// digits where the width asks, nothing where not even one fits.
pub fn axis_labels_log(values: &[f64], width: usize) -> Vec<String> {
    values
        .iter()
        .map(|&v| {
            let a = v.abs();
            let mut forms = Vec::new();
            if (1e-2..1e5).contains(&a) {
                let d = (1.0 - a.log10().floor()).max(0.0) as usize;
                forms.push(fixed(v, d));
                if d > 0 {
                    forms.push(fixed(v, d - 1));
                }
            }
            forms.push(sci(v, 1));
            forms.push(sci(v, 0));
            forms.into_iter().find(|s| s.chars().count() <= width && (s != "0" || v == 0.0)).unwrap_or_default()
        })
        .collect()
}

fn has_digit(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_digit())
}

/// `text` in at most `width` cells: whole words while they fit, then a word without
/// digits cut short, or a mark that something was left out; a number is never cut.
/// `ascii` uses `~` for the mark instead of `…`.
pub fn fit(text: &str, width: usize, ascii: bool) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mark = if ascii { "~" } else { "…" };
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    // Words with the spaces before them, so runs of spaces (column padding) survive.
    let mut words: Vec<(String, String)> = Vec::new();
    let mut space = String::new();
    let mut word = String::new();
    for c in text.chars() {
        if c == ' ' {
            if !word.is_empty() {
                words.push((std::mem::take(&mut space), std::mem::take(&mut word)));
            }
            space.push(c);
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        words.push((space, word));
    }
    for (sp, w) in words {
        let (ns, nw) = (sp.chars().count(), w.chars().count());
        // Room for this word and, unless it is the last, the mark after it.
        if used + ns + nw < width {
            out.push_str(&sp);
            out.push_str(&w);
            used += ns + nw;
            continue;
        }
        let room = width.saturating_sub(used + ns + 1);
        if !has_digit(&w) && room >= 2 {
            out.push_str(&sp);
            out.extend(w.chars().take(room));
        } else if let Some(tail) = path_tail(&w, room) {
            // A path that does not fit keeps its last components whole (the file, its
            // step): `…/step-000034000.json`, never a bare `…`.
            out.push_str(&sp);
            out.push_str(mark);
            out.push_str(tail);
            return out;
        } else if used + 2 <= width && used > 0 {
            out.push(' ');
        }
        break;
    }
    let n = out.chars().count();
    if n < width {
        out.push_str(mark);
    }
    out
}

/// The longest tail of a path `w` that starts at a `/` and fits in `room` characters.
fn path_tail(w: &str, room: usize) -> Option<&str> {
    w.char_indices().filter(|(_, c)| *c == '/').map(|(i, _)| &w[i..]).find(|t| t.chars().count() <= room)
}

#[cfg(test)]
mod tests {

    #[test]
    fn sparklines_scale_to_their_range_and_keep_the_newest() {
        assert_eq!(spark(&[1.0, 2.0, 3.0], 10, true), "_=#");
        assert_eq!(spark(&[3.0, 2.0, 1.0], 10, false), "█▅▁");
        assert_eq!(spark(&[5.0, 0.0, 1.0, 2.0], 3, true), "_=#", "the oldest value is left out");
        assert_eq!(spark(&[2.0, 2.0], 5, true), "--", "a flat line sits mid-height");
        assert_eq!(spark(&[1.0, f64::NAN, 2.0], 5, true), "_ #");
        assert_eq!(spark(&[], 5, true), "");
    }

    #[test]
    fn ages_pick_a_short_unit() {
        assert_eq!([age(45), age(600), age(18_000), age(900_000)], ["45s", "10m", "5h", "10d"]);
    }
    use super::*;

    /// Issue 26 #2: a row that is one long path keeps its tail whole, not a bare mark.
    #[test]
    fn a_long_path_keeps_its_tail() {
        let s = fit("34 000 ckpt checkpoints/run-2026/step-000034000.json", 36, false);
        assert_eq!(s, "34 000 ckpt …/step-000034000.json");
        assert!(fit("ckpt checkpoints/step-000034000.json", 8, false).ends_with('…'), "no tail fits: the mark");
    }

    #[test]
    fn memory_of_a_total_is_in_the_totals_unit() {
        assert_eq!(mb_of(3254.6, 150_754.8), "3.3 of 150.8 GB");
        assert_eq!(mb_of(812.0, 4096.0), "812 of 4096 MB");
        assert_eq!(mb(3254.6), "3255 MB");
    }

    #[test]
    fn fit_never_cuts_a_number() {
        let t = "change point after step 1099: mean 0.52 → 0.31";
        for w in 0..t.len() + 2 {
            let f = fit(t, w, false);
            assert!(f.chars().count() <= w, "{w}: {f:?}");
            for word in f.split([' ', '…', ':']) {
                if has_digit(word) {
                    assert!(t.split([' ', ':']).any(|x| x == word), "{w}: {word:?} in {f:?}");
                }
            }
        }
        assert_eq!(fit("jump up at step 1975", 17, false), "jump up at step …");
        assert_eq!(fit("plateau everywhere", 10, true), "plateau ~");
        assert_eq!(fit("change_point", 5, false), "chan…");
        assert_eq!(axis_labels(&[0.095, 0.1, 0.105], 8), vec!["0.095", "0.100", "0.105"]);
    }

    #[test]
    fn axis_labels_fit_and_keep_their_exponent() {
        let l = axis_labels(&[0.000_921, 0.000_962, 0.001], 6);
        assert!(l.iter().all(|s| s.len() <= 6 && (s.contains("e-4") || s.contains("e-3"))), "{l:?}");
        assert_eq!(axis_labels(&[0.000_52, 0.000_6, 0.000_7], 6)[0], "5.2e-4");
        assert_eq!(axis_labels(&[0.0, 2.3623, 4.7245], 8), vec!["0", "2.4", "4.7"]);
        assert_eq!(axis_labels(&[0.0, 0.5, 1.0], 8), vec!["0", "0.5", "1.0"]);
        // Too narrow for even one digit and an exponent: nothing, not a cut number.
        assert_eq!(axis_labels(&[0.000_52, 0.000_7], 3), vec!["", ""]);
        assert_eq!(num_fit(0.000_522, 6).as_deref(), Some("5.2e-4"));
        assert_eq!(axis_labels_log(&[0.0071, 0.2091, 6.1165], 6), vec!["7.1e-3", "0.21", "6.1"]);
        assert_eq!(axis_labels_log(&[0.0071, 6.1165], 3), vec!["", "6.1"]);
        assert_eq!(step(1500), "1 500");
    }
}
