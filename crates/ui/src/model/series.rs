//! A metric series with bounded memory and render cost that does not grow with history:
//! the most recent points are kept exactly, and the whole history as min/max/mean
//! buckets whose width doubles whenever there are too many. Downsampling for display is
//! by min and max per column, so a one-step spike is never averaged away.

use std::collections::VecDeque;

/// Exact points kept for the recent window.
const RECENT: usize = 1 << 15;
/// Buckets kept for the whole history (after a merge there are half as many).
const MAX_BUCKETS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub first: u64,
    pub last: u64,
    pub min: f32,
    pub max: f32,
    sum: f64,
    n: u32,
    /// Non-finite values seen in this bucket (NaN/Inf never enter min/max).
    pub non_finite: u32,
}

impl Bucket {
    fn new(step: u64, v: f32) -> Bucket {
        let finite = v.is_finite();
        Bucket {
            first: step,
            last: step,
            min: if finite { v } else { f32::INFINITY },
            max: if finite { v } else { f32::NEG_INFINITY },
            sum: if finite { v as f64 } else { 0.0 },
            n: finite as u32,
            non_finite: (!finite) as u32,
        }
    }

    fn absorb(&mut self, o: &Bucket) {
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.n += o.n;
        self.non_finite += o.non_finite;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Series {
    recent: VecDeque<(u64, f32)>,
    buckets: Vec<Bucket>,
    width: u64,
    len: u64,
    last: Option<(u64, f64)>,
}

/// One display column: the extremes of the points that fall in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    pub step: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

impl Series {
    pub fn push(&mut self, step: u64, value: f64) {
        // A resumed run replays steps it had already logged: drop the superseded tail.
        if self.last.is_some_and(|(s, _)| step <= s) {
            self.truncate_after(step.saturating_sub(1));
        }
        let v = value as f32;
        self.len += 1;
        self.last = Some((step, value));
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((step, v));
        if self.width == 0 {
            self.width = 1;
        }
        let b = Bucket::new(step, v);
        match self.buckets.last_mut() {
            Some(lb) if lb.first / self.width == step / self.width => lb.absorb(&b),
            _ => self.buckets.push(b),
        }
        if self.buckets.len() > MAX_BUCKETS {
            self.width *= 2;
            let old = std::mem::take(&mut self.buckets);
            for b in old {
                match self.buckets.last_mut() {
                    Some(lb) if lb.first / self.width == b.first / self.width => lb.absorb(&b),
                    _ => self.buckets.push(b),
                }
            }
        }
    }

    fn truncate_after(&mut self, step: u64) {
        while self.recent.back().is_some_and(|(s, _)| *s > step) {
            self.recent.pop_back();
        }
        while self.buckets.last().is_some_and(|b| b.first > step) {
            self.buckets.pop();
        }
        // A bucket straddling the cut keeps its (slightly wider) summary.
        self.last = self.recent.back().map(|&(s, v)| (s, v as f64));
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_none()
    }
    pub fn last(&self) -> Option<(u64, f64)> {
        self.last
    }
    pub fn first_step(&self) -> Option<u64> {
        self.buckets.first().map(|b| b.first)
    }
    pub fn points_seen(&self) -> u64 {
        self.len
    }

    /// The value at (or just before) `step`: exact within the recent window, a bucket
    /// mean further back.
    pub fn value_at(&self, step: u64) -> Option<f64> {
        if let Some(&(first, _)) = self.recent.front()
            && step >= first
        {
            let i = self.recent.partition_point(|(s, _)| *s <= step);
            return (i > 0).then(|| self.recent[i - 1].1 as f64);
        }
        let i = self.buckets.partition_point(|b| b.first <= step);
        (i > 0).then(|| self.buckets[i - 1].mean()).flatten()
    }

    /// Min/max per column over `[from, to]` split into `columns` equal spans. Uses the
    /// exact recent points where they cover the span, the buckets otherwise; cost is
    /// O(columns + points in view), bounded by the window sizes.
    pub fn columns(&self, from: u64, to: u64, columns: usize) -> Vec<Column> {
        // Per column: (first step, min, max, sum of means, count).
        type Acc = (u64, f64, f64, f64, u32);
        let mut out: Vec<Option<Acc>> = vec![None; columns.max(1)];
        let span = to.saturating_sub(from) as u128 + 1;
        let col_of = |s: u64| ((s - from) as u128 * columns as u128 / span) as usize;
        let mut add = |s: u64, lo: f64, hi: f64, mean: f64| {
            if s < from || s > to || !lo.is_finite() || !hi.is_finite() {
                return;
            }
            let c = col_of(s).min(columns - 1);
            let e = out[c].get_or_insert((s, lo, hi, 0.0, 0));
            e.1 = e.1.min(lo);
            e.2 = e.2.max(hi);
            e.3 += mean;
            e.4 += 1;
        };
        let recent_from = self.recent.front().map_or(u64::MAX, |r| r.0);
        // Exact points are worth it when the view is within the recent window.
        if from >= recent_from {
            let start = self.recent.partition_point(|(s, _)| *s < from);
            for &(s, v) in self.recent.range(start..) {
                if s > to {
                    break;
                }
                add(s, v as f64, v as f64, v as f64);
            }
        } else {
            let start = self.buckets.partition_point(|b| b.last < from);
            for b in &self.buckets[start..] {
                if b.first > to {
                    break;
                }
                if let Some(m) = b.mean() {
                    add(b.first.max(from), b.min as f64, b.max as f64, m);
                }
            }
        }
        out.into_iter()
            .flatten()
            .map(|(step, min, max, sum, n)| Column { step, min, max, mean: sum / n.max(1) as f64 })
            .collect()
    }

    /// Approximate bytes held, for the memory benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.recent.capacity() * std::mem::size_of::<(u64, f32)>()
            + self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }
}

/// Buckets per shared chunk of a [`Frozen`] series.
const FROZEN_CHUNK: usize = 512;

/// A series kept by the replay index: the same state in about a quarter of the memory.
/// Recent steps are stored as runs (steps are regular: every step, every 50th), and the
/// buckets as chunks shared with the previous snapshot's wherever they are unchanged
/// (between two doublings only the last bucket moves).
#[derive(Debug, Clone)]
pub struct Frozen {
    /// (first step, stride, count) runs covering the recent window.
    runs: Vec<(u64, u64, u32)>,
    values: Box<[f32]>,
    chunks: Vec<std::sync::Arc<[Bucket]>>,
    width: u64,
    len: u64,
    last: Option<(u64, f64)>,
    /// Heap bytes not shared with the snapshot it was frozen against.
    own_bytes: usize,
}

impl Frozen {
    pub fn own_bytes(&self) -> usize {
        self.own_bytes
    }
}

impl Series {
    /// The state, compactly; chunks equal to `prev`'s are shared, not copied.
    pub fn freeze(&self, prev: Option<&Frozen>) -> Frozen {
        let mut runs: Vec<(u64, u64, u32)> = Vec::new();
        for &(step, _) in &self.recent {
            match runs.last_mut() {
                Some((first, stride, n)) if *n == 1 => {
                    *stride = step - *first;
                    *n = 2;
                }
                Some((first, stride, n)) if step == *first + *stride * *n as u64 => *n += 1,
                _ => runs.push((step, 0, 1)),
            }
        }
        let values: Box<[f32]> = self.recent.iter().map(|r| r.1).collect();
        let mut own_bytes = values.len() * 4 + runs.len() * 24;
        let chunks = self
            .buckets
            .chunks(FROZEN_CHUNK)
            .enumerate()
            .map(|(i, c)| match prev.and_then(|p| p.chunks.get(i)) {
                Some(p) if c.len() == FROZEN_CHUNK && **p == *c => p.clone(),
                _ => {
                    own_bytes += std::mem::size_of_val(c);
                    std::sync::Arc::from(c)
                }
            })
            .collect();
        Frozen { runs, values, chunks, width: self.width, len: self.len, last: self.last, own_bytes }
    }

    pub fn thaw(f: &Frozen) -> Series {
        let mut recent = VecDeque::with_capacity(f.values.len());
        let mut v = f.values.iter();
        for &(first, stride, n) in &f.runs {
            for i in 0..n as u64 {
                recent.push_back((first + stride * i, *v.next().expect("one value per step")));
            }
        }
        Series {
            recent,
            buckets: f.chunks.iter().flat_map(|c| c.iter().copied()).collect(),
            width: f.width,
            len: f.len,
            last: f.last,
        }
    }
}

/// The replay index file ([`super::index_file`], written with [`super::codec`]) stores frozen series in binary: the
/// bucket chunks once each (shared between snapshots, by number), the rest per snapshot.
impl Frozen {
    pub(crate) fn chunks(&self) -> &[std::sync::Arc<[Bucket]>] {
        &self.chunks
    }

    /// Writes the series, naming each chunk by `chunk_id`.
    pub(crate) fn encode(&self, e: &mut super::codec::Enc, mut chunk_id: impl FnMut(&std::sync::Arc<[Bucket]>) -> u32) {
        e.u32(self.runs.len() as u32);
        for &(first, stride, n) in &self.runs {
            e.u64(first);
            e.u64(stride);
            e.u32(n);
        }
        e.u32(self.values.len() as u32);
        for v in &self.values {
            e.f32(*v);
        }
        e.u32(self.chunks.len() as u32);
        for c in &self.chunks {
            e.u32(chunk_id(c));
        }
        e.u64(self.width);
        e.u64(self.len);
        e.u64(self.own_bytes as u64);
        match self.last {
            Some((s, v)) => {
                e.u8(1);
                e.u64(s);
                e.f64(v);
            }
            None => e.u8(0),
        }
    }

    pub(crate) fn decode(d: &mut super::codec::Dec, chunks: &[std::sync::Arc<[Bucket]>]) -> Option<Frozen> {
        let n = d.len(20)?;
        let mut runs = Vec::with_capacity(n);
        for _ in 0..n {
            runs.push((d.u64()?, d.u64()?, d.u32()?));
        }
        let n = d.len(4)?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            values.push(d.f32()?);
        }
        let n = d.len(4)?;
        let mut own = Vec::with_capacity(n);
        for _ in 0..n {
            own.push(chunks.get(d.u32()? as usize)?.clone());
        }
        let (width, len, own_bytes) = (d.u64()?, d.u64()?, d.u64()? as usize);
        let last = match d.u8()? {
            0 => None,
            _ => Some((d.u64()?, d.f64()?)),
        };
        // The runs must cover the values exactly (thaw relies on it).
        if runs.iter().map(|r| r.2 as usize).sum::<usize>() != values.len() {
            return None;
        }
        Some(Frozen { runs, values: values.into(), chunks: own, width, len, last, own_bytes })
    }
}

impl Bucket {
    pub(crate) fn encode(&self, e: &mut super::codec::Enc) {
        e.u64(self.first);
        e.u64(self.last);
        e.f32(self.min);
        e.f32(self.max);
        e.f64(self.sum);
        e.u32(self.n);
        e.u32(self.non_finite);
    }

    pub(crate) fn decode(d: &mut super::codec::Dec) -> Option<Bucket> {
        Some(Bucket {
            first: d.u64()?,
            last: d.u64()?,
            min: d.f32()?,
            max: d.f32()?,
            sum: d.f64()?,
            n: d.u32()?,
            non_finite: d.u32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_series_thaws_to_the_same_state_and_shares_chunks() {
        let mut s = Series::default();
        let mut prev: Option<Frozen> = None;
        let mut step = 0;
        for i in 1..=300_000u64 {
            // Regular and irregular steps, a resume, non-finite values.
            step += if i % 7 == 0 { 3 } else { 1 };
            s.push(step, if i % 1000 == 0 { f64::NAN } else { (step as f64).sin() });
            if i == 150_000 {
                step -= 10_000;
                s.push(step, 5.0);
            }
            if i % 40_000 == 0 {
                let f = s.freeze(prev.as_ref());
                let t = Series::thaw(&f);
                // Bitwise, so NaN points compare equal.
                let d = t.recent.iter().zip(&s.recent).position(|(a, b)| (a.0, a.1.to_bits()) != (b.0, b.1.to_bits()));
                assert_eq!(d, None, "{:?}", d.map(|i| (i, t.recent[i], s.recent[i])));
                assert_eq!(t.recent.len(), s.recent.len());
                assert!(t.buckets == s.buckets, "buckets");
                assert_eq!((t.width, t.len), (s.width, s.len));
                assert_eq!(t.last.map(|l| (l.0, l.1.to_bits())), s.last.map(|l| (l.0, l.1.to_bits())));
                assert!(f.own_bytes() < s.heap_bytes(), "{} vs {}", f.own_bytes(), s.heap_bytes());
                // Unchanged buckets are shared: only the last, partial chunk is copied.
                let again = s.freeze(Some(&f));
                let unshared = f.values.len() * 4 + f.runs.len() * 24 + FROZEN_CHUNK * std::mem::size_of::<Bucket>();
                assert!(again.own_bytes() <= unshared, "{} > {unshared}", again.own_bytes());
                prev = Some(f);
            }
        }
    }

    #[test]
    fn spikes_survive_downsampling_in_full_history() {
        let mut s = Series::default();
        for step in 1..=1_000_000u64 {
            s.push(step, if step == 654_321 { 100.0 } else { 1.0 });
        }
        assert!(s.buckets.len() <= MAX_BUCKETS && s.recent.len() <= RECENT);
        let cols = s.columns(1, 1_000_000, 80);
        assert_eq!(cols.len(), 80);
        let maxes: Vec<f64> = cols.iter().map(|c| c.max).collect();
        assert_eq!(maxes.iter().filter(|m| **m == 100.0).count(), 1, "{maxes:?}");
        assert!(cols.iter().all(|c| c.min == 1.0));
    }

    #[test]
    fn recent_window_is_exact_and_value_at_reads_back() {
        let mut s = Series::default();
        for step in 1..=200_000u64 {
            s.push(step, step as f64);
        }
        assert_eq!(s.value_at(199_999), Some(199_999.0));
        let old = s.value_at(1000).unwrap();
        assert!((old - 1000.0).abs() < 200.0, "bucket mean near 1000, got {old}");
        let cols = s.columns(199_901, 200_000, 100);
        assert_eq!(cols.len(), 100);
        assert!(cols.iter().all(|c| c.min == c.max && c.step as f64 == c.min));
    }

    #[test]
    fn non_finite_values_are_skipped_not_plotted() {
        let mut s = Series::default();
        s.push(1, 1.0);
        s.push(2, f64::NAN);
        s.push(3, 3.0);
        let cols = s.columns(1, 3, 3);
        assert_eq!(cols.iter().map(|c| c.step).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn a_resume_replacing_steps_drops_the_superseded_tail() {
        let mut s = Series::default();
        for step in 1..=10 {
            s.push(step, 1.0);
        }
        s.push(6, 5.0);
        assert_eq!(s.last(), Some((6, 5.0)));
        assert_eq!(s.value_at(9), Some(5.0));
    }
}
