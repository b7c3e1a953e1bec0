//! A faster decoding path for the bulk event kinds: step, eval, probe and log.
//!
//! `Event` is an internally tagged enum, which serde decodes by first buffering every
//! field into an intermediate tree and then decoding that tree: about 3x the cost of a
//! plain struct. The kinds written every step are read here by a small parser of exactly
//! the bytes our writer produces (serde_json's compact output: tag first, fields in
//! declaration order, no whitespace). Anything it does not recognise (another key order,
//! whitespace, a string with escapes, an unknown kind, a malformed payload) returns
//! `None` and goes through the general `Event` decoder, so what is accepted and every
//! error message are the general decoder's. `tests` check that both agree.
//!
//! Numbers are parsed with `str::parse::<f64>`, which rounds correctly (serde_json's
//! default float parser can be one ULP off); values out of f64 range are left to the
//! general decoder, which rejects them.

use crate::event::{Event, LogLevel, Metrics};

/// A position in a payload already checked to be UTF-8 (slices are cut at ASCII
/// delimiters, so always at character boundaries).
struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + s.len())? == s {
            self.i += s.len();
            Some(())
        } else {
            None
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// A JSON unsigned integer that fits u64 (no leading zeros, no sign, no fraction).
    fn u64(&mut self) -> Option<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 || (n > 1 && self.b[start] == b'0') {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(v)
    }

    /// A JSON string without escapes or control characters.
    fn str(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let start = self.i;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let s = self.s.get(start..self.i)?;
        self.i += 1;
        Some(s)
    }

    /// A JSON number as a finite f64.
    fn f64(&mut self) -> Option<f64> {
        let start = self.i;
        self.skip_if(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.skip_if(b'.') {
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return None;
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return None;
            }
            self.digits();
        }
        let v: f64 = self.s.get(start..self.i)?.parse().ok()?;
        v.is_finite().then_some(v)
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }

    fn skip_if(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// `{"name":number|null,...}`; null reads as NaN, the last of duplicate names wins.
    fn metrics(&mut self) -> Option<Metrics> {
        self.lit(b"{")?;
        let mut m = Metrics::new();
        if self.skip_if(b'}') {
            return Some(m);
        }
        loop {
            let k = self.str()?;
            self.lit(b":")?;
            let v = if self.peek() == Some(b'n') {
                self.lit(b"null")?;
                f64::NAN
            } else {
                self.f64()?
            };
            m.insert(k.to_string(), v);
            if self.skip_if(b'}') {
                return Some(m);
            }
            self.lit(b",")?;
        }
    }

    fn end(&self) -> Option<()> {
        (self.i == self.b.len()).then_some(())
    }
}

/// Decodes the common kinds in our writer's encoding; `None` means "use the general
/// decoder".
pub(crate) fn decode(payload: &[u8]) -> Option<Event> {
    let s = std::str::from_utf8(payload).ok()?;
    let mut c = Cursor { s, b: payload, i: 0 };
    c.lit(br#"{"type":""#)?;
    let ev = if c.lit(br#"step","step":"#).is_some() {
        let step = c.u64()?;
        c.lit(br#","phase":"#)?;
        let phase = c.str()?.to_string();
        c.lit(br#","t":"#)?;
        let t = c.f64()?;
        c.lit(br#","metrics":"#)?;
        let metrics = c.metrics()?;
        Event::Step { step, phase, t, metrics }
    } else if c.lit(br#"log","step":"#).is_some() {
        let step = c.u64()?;
        c.lit(br#","level":"#)?;
        let level = match c.str()? {
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => return None,
        };
        c.lit(br#","message":"#)?;
        let message = c.str()?.to_string();
        Event::Log { step, level, message }
    } else if c.lit(br#"eval","step":"#).is_some() {
        let step = c.u64()?;
        c.lit(br#","split":"#)?;
        let split = c.str()?.to_string();
        c.lit(br#","metrics":"#)?;
        let metrics = c.metrics()?;
        Event::Eval { step, split, metrics }
    } else if c.lit(br#"probe","step":"#).is_some() {
        let step = c.u64()?;
        c.lit(br#","layer":"#)?;
        let layer = c.str()?.to_string();
        c.lit(br#","metrics":"#)?;
        let metrics = c.metrics()?;
        Event::Probe { step, layer, metrics }
    } else {
        return None;
    };
    c.lit(b"}")?;
    c.end()?;
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn general(payload: &[u8]) -> Option<Event> {
        serde_json::from_slice(payload).ok()
    }

    /// Equal, NaN equal to NaN.
    fn same(a: &Event, b: &Event) -> bool {
        a == b || serde_json::to_string(a).unwrap() == serde_json::to_string(b).unwrap()
    }

    /// Every field of the kinds read here, spelled out: adding a field to one of these
    /// events breaks this test's build, which is the cue to update the parser.
    #[test]
    fn reads_our_own_encoding_exactly() {
        let m: Metrics = [
            ("a".to_string(), 1.5),
            ("b/c".to_string(), -2.0),
            ("big".to_string(), 1e300),
            ("tiny".to_string(), -5e-324),
            ("third".to_string(), 1.0 / 3.0),
            ("nan".to_string(), f64::NAN),
            ("inf".to_string(), f64::INFINITY),
            ("zero".to_string(), -0.0),
        ]
        .into();
        let events = vec![
            Event::Step { step: 7, phase: "main ü 名".into(), t: 1_700_000_000.123, metrics: m.clone() },
            Event::Step { step: u64::MAX, phase: String::new(), t: 0.0, metrics: Metrics::new() },
            Event::Eval { step: 8, split: "val".into(), metrics: m.clone() },
            Event::Probe { step: 9, layer: "blocks.0".into(), metrics: m },
            Event::Log { step: 10, level: LogLevel::Warn, message: "all's well".into() },
            Event::Log { step: 11, level: LogLevel::Error, message: String::new() },
            Event::Log { step: 12, level: LogLevel::Info, message: "x".into() },
        ];
        for ev in events {
            let json = serde_json::to_vec(&ev).unwrap();
            let fast = decode(&json).unwrap_or_else(|| panic!("fast path refused {}", String::from_utf8_lossy(&json)));
            assert!(same(&fast, &ev), "{fast:?} != {ev:?}");
        }
    }

    #[test]
    fn random_steps_round_trip_exactly() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut taken = 0;
        for _ in 0..20_000 {
            let mut metrics = Metrics::new();
            for k in 0..rng.random_range(0..5) {
                let v = match rng.random_range(0..6) {
                    0 => f64::from_bits(rng.random::<u64>()),
                    1 => rng.random_range(-1e6..1e6),
                    2 => rng.random_range(0..1000) as f64,
                    3 => rng.random::<f64>() * 1e-9,
                    4 => f64::NAN,
                    _ => rng.random::<f64>(),
                };
                metrics.insert(format!("m{k}"), v);
            }
            let phase = ["main", "a\"b", "tab\t", "é", "back\\slash", ""][rng.random_range(0..6)].to_string();
            let ev = Event::Step { step: rng.random(), phase, t: rng.random::<f64>() * 2e9, metrics };
            let json = serde_json::to_vec(&ev).unwrap();
            if let Some(fast) = decode(&json) {
                taken += 1;
                // Exact against the original (the general decoder may be an ULP off).
                assert!(same(&fast, &ev), "{}", String::from_utf8_lossy(&json));
            }
            assert!(general(&json).is_some());
        }
        assert!(taken > 8_000, "the fast path took only {taken}"); // half the phases have escapes
    }

    #[test]
    fn nan_integers_and_spellings() {
        let json = br#"{"type":"step","step":3,"phase":"p","t":5,"metrics":{"loss":null,"lr":1,"e":1E+2,"d":2.5e-3}}"#;
        let Some(Event::Step { metrics, t, .. }) = decode(json) else { panic!() };
        assert!(metrics["loss"].is_nan());
        assert_eq!((metrics["lr"], metrics["e"], metrics["d"], t), (1.0, 100.0, 0.0025, 5.0));
        // Duplicate names: the last wins, as in the general decoder.
        let json = br#"{"type":"eval","step":3,"split":"val","metrics":{"a":1,"a":2}}"#;
        let Some(Event::Eval { metrics, .. }) = decode(json) else { panic!() };
        assert_eq!(metrics["a"], 2.0);
        assert_eq!(general(json), decode(json));
    }

    #[test]
    fn everything_else_falls_back() {
        for json in [
            &br#"{"step":3,"type":"step","phase":"p","t":5,"metrics":{}}"#[..],
            br#"{"type":"step", "step":3,"phase":"p","t":5,"metrics":{}}"#,
            br#"{"type":"step","step":3,"phase":"p","t":5,"metrics":{}} "#,
            br#"{"type":"step","step":3,"phase":"p","t":5,"metrics":{}}}"#,
            br#"{"type":"step","step":03,"phase":"p","t":5,"metrics":{}}"#,
            br#"{"type":"step","step":3.0,"phase":"p","t":5,"metrics":{}}"#,
            br#"{"type":"step","step":-3,"phase":"p","t":5,"metrics":{}}"#,
            br#"{"type":"step","step":18446744073709551616,"phase":"p","t":5,"metrics":{}}"#,
            br#"{"type":"step","step":3,"phase":"p","t":null,"metrics":{}}"#,
            br#"{"type":"step","step":3,"phase":"p","t":1e400,"metrics":{}}"#,
            br#"{"type":"step","step":3,"phase":"p","t":.5,"metrics":{}}"#,
            br#"{"type":"step","step":3,"phase":"p","t":5.,"metrics":{}}"#,
            br#"{"type":"step","step":3,"phase":"p","t":01,"metrics":{}}"#,
            br#"{"type":"step","step":3,"phase":"p","t":5,"metrics":{"a":1,}}"#,
            br#"{"type":"step","step":3,"phase":"p","t":5,"metrics":{"a":nul}}"#,
            br#"{"type":"step","step":3,"phase":"a\"b","t":5,"metrics":{}}"#,
            br#"{"type":"step","step":3,"phase":"p","t":5}"#,
            br#"{"type":"log","step":3,"level":"debug","message":"m"}"#,
            br#"{"type":"checkpoint","step":3,"path":"x"}"#,
            br#"{"type":"steps","step":3}"#,
            b"{\"type\":\"log\",\"step\":3,\"level\":\"info\",\"message\":\"\xff\"}",
            b"",
            b"{",
        ] {
            assert!(decode(json).is_none(), "{}", String::from_utf8_lossy(json));
        }
    }

    #[test]
    fn truncations_never_panic_and_never_pass() {
        let ev = Event::Step {
            step: 12,
            phase: "main".into(),
            t: 1.25,
            metrics: [("a".to_string(), 0.5), ("b".to_string(), f64::NAN)].into(),
        };
        let json = serde_json::to_vec(&ev).unwrap();
        for cut in 0..json.len() {
            assert!(decode(&json[..cut]).is_none(), "cut at {cut}");
        }
    }
}
