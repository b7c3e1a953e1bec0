//! TFRecord framing, as TensorBoard event files use it:
//!
//! ```text
//! u64 LE length | u32 LE masked_crc32c(length bytes) | data | u32 LE masked_crc32c(data)
//! ```
//!
//! The mask (rotate right by 15, add 0xa282ead8) is TensorFlow's, so that CRCs of data
//! that itself holds CRCs stay well distributed.

use std::io::{self, Write};

/// Length word and its CRC.
pub const HEADER_LEN: usize = 12;
/// The data CRC after the payload.
pub const FOOTER_LEN: usize = 4;
/// Larger records are taken as corruption (TensorBoard's own limit is far smaller in
/// practice; this only keeps a garbled length from asking for gigabytes).
pub const MAX_RECORD: u64 = 1 << 30;

pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one framed record to `out`.
pub fn write_record(out: &mut (impl Write + ?Sized), data: &[u8]) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    let mut head = [0u8; HEADER_LEN];
    head[..8].copy_from_slice(&len);
    head[8..].copy_from_slice(&masked_crc(&len).to_le_bytes());
    out.write_all(&head)?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

/// Why framing stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The file ends inside a record (a writer killed mid-record): `have` of `need` bytes.
    Truncated { offset: u64, need: u64, have: u64 },
    /// The length word's CRC does not match: not TFRecord framing, or damage.
    LengthCrc { offset: u64 },
    /// A length beyond [`MAX_RECORD`] (with a matching CRC: a foreign or hostile file).
    TooLong { offset: u64, len: u64 },
    /// The payload's CRC does not match.
    DataCrc { offset: u64 },
}

impl FrameError {
    /// Where the bad record starts.
    pub fn offset(&self) -> u64 {
        match self {
            FrameError::Truncated { offset, .. }
            | FrameError::LengthCrc { offset }
            | FrameError::TooLong { offset, .. }
            | FrameError::DataCrc { offset } => *offset,
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated { need, have, .. } => {
                write!(f, "truncated record: {have} of {need} bytes present (the writer stopped mid-record?)")
            }
            FrameError::LengthCrc { .. } => f.write_str("length CRC mismatch (not TFRecord framing, or damaged)"),
            FrameError::TooLong { len, .. } => write!(f, "record length {len} exceeds the {MAX_RECORD}-byte limit"),
            FrameError::DataCrc { .. } => f.write_str("data CRC mismatch (the record is damaged)"),
        }
    }
}

/// Iterates the records of an in-memory file: `Ok((offset, data))` per record, then at
/// most one `Err` (iteration stops after it).
pub struct Records<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Records<'a> {
    pub fn new(bytes: &'a [u8]) -> Records<'a> {
        Records { bytes, pos: 0, failed: false }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(u64, &'a [u8]), FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let offset = self.pos as u64;
        let rest = &self.bytes[self.pos..];
        let fail = |s: &mut Self, e| {
            s.failed = true;
            Some(Err(e))
        };
        if rest.len() < HEADER_LEN {
            // A partial header whose bytes are plausible is a torn tail; check what we can.
            return fail(self, FrameError::Truncated { offset, need: HEADER_LEN as u64, have: rest.len() as u64 });
        }
        let len_bytes: [u8; 8] = rest[..8].try_into().expect("8 bytes");
        let len_crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        if masked_crc(&len_bytes) != len_crc {
            return fail(self, FrameError::LengthCrc { offset });
        }
        let len = u64::from_le_bytes(len_bytes);
        if len > MAX_RECORD {
            return fail(self, FrameError::TooLong { offset, len });
        }
        let need = HEADER_LEN as u64 + len + FOOTER_LEN as u64;
        if (rest.len() as u64) < need {
            return fail(self, FrameError::Truncated { offset, need, have: rest.len() as u64 });
        }
        let len = len as usize;
        let data = &rest[HEADER_LEN..HEADER_LEN + len];
        let crc = u32::from_le_bytes(rest[HEADER_LEN + len..HEADER_LEN + len + 4].try_into().expect("4 bytes"));
        if masked_crc(data) != crc {
            return fail(self, FrameError::DataCrc { offset });
        }
        self.pos += need as usize;
        Some(Ok((offset, data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            write_record(&mut out, r).unwrap();
        }
        out
    }

    #[test]
    fn masked_crc_matches_tensorflow() {
        // Values from TensorBoard's own masked_crc32c (tensorboard.compat.tensorflow_stub).
        assert_eq!(masked_crc(b"foo"), 0xfebe8a61);
        assert_eq!(masked_crc(&[0u8; 8]), 0x07980329);
        assert_eq!(masked_crc(b"123456789"), 0xc78ab0e5);
        // An empty-length record header, as every TFRecord reader accepts it.
        assert_eq!(framed(&[b""]).len(), HEADER_LEN + FOOTER_LEN);
    }

    #[test]
    fn round_trips_and_reports_damage_with_offsets() {
        let bytes = framed(&[b"first", b"second record"]);
        let got: Vec<_> = Records::new(&bytes).collect();
        assert_eq!(got, vec![Ok((0, &b"first"[..])), Ok((21, &b"second record"[..]))]);

        let cut = &bytes[..bytes.len() - 3];
        let got: Vec<_> = Records::new(cut).collect();
        assert_eq!(got[1], Err(FrameError::Truncated { offset: 21, need: 29, have: 26 }));

        let mut flipped = bytes.clone();
        flipped[21 + HEADER_LEN + 2] ^= 0x40;
        assert_eq!(Records::new(&flipped).nth(1), Some(Err(FrameError::DataCrc { offset: 21 })));

        let garbage: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        assert_eq!(Records::new(&garbage).next(), Some(Err(FrameError::LengthCrc { offset: 0 })));
        assert_eq!(Records::new(&[]).next(), None);
    }
}
