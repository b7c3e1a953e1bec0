//! The one guard every JSON line from a socket or a pipe passes before it is parsed.
//!
//! serde_json parses (and drops) nested arrays and objects recursively. Its own limit
//! (128 levels) is deeper than a small thread stack allows: ~120 bytes of `[` aborted a
//! built-in host's 256 KiB `control-conn` thread. So the nesting is counted first, by a
//! flat scan that recurses nowhere, and a line nested deeper than [`MAX_DEPTH`] is refused
//! before any recursive code sees it. No frame phasetop writes nests deeper than a few
//! levels.

/// Deepest nesting of arrays and objects accepted in one line.
pub const MAX_DEPTH: usize = 32;

/// `Err` names the depth limit and the byte where it was passed. Brackets inside strings
/// (escapes included) do not count; the scan says nothing about whether the line is
/// otherwise valid JSON — the parser that follows does.
pub fn check_depth(line: &[u8]) -> Result<(), String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in line.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("JSON nested deeper than {MAX_DEPTH} levels (at byte {i})"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// `serde_json::from_slice` behind [`check_depth`]; the error text is the reason.
pub fn from_slice<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, String> {
    check_depth(line)?;
    serde_json::from_slice(line).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_lines_are_refused_before_parsing_and_strings_do_not_count() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = check_depth(deep.as_bytes()).unwrap_err();
        assert!(err.contains("deeper than 32") && err.contains("byte 32"), "{err}");
        // The campaign's line: unbalanced, 120 bytes of `[`; and a million of `{`.
        assert!(check_depth(&[b'['; 120]).is_err());
        assert!(from_slice::<serde_json::Value>(&vec![b'{'; 1 << 20]).is_err());
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(from_slice::<serde_json::Value>(ok.as_bytes()).is_ok());
        // Brackets in strings, with escaped quotes and backslashes, are text.
        let s = format!(r#"{{"a":"{}\"{}\\","b":[1]}}"#, "[".repeat(100), "{".repeat(100));
        assert_eq!(check_depth(s.as_bytes()), Ok(()));
        assert!(from_slice::<serde_json::Value>(s.as_bytes()).is_ok());
    }
}
