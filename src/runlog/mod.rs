//! TEMPORARY STUB (the lead's, so the crate builds): helper-1 replaces this file.
use crate::event::Event;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

pub struct Dropped {
    pub bytes: u64,
    pub offset: u64,
}
pub struct Writer {
    w: BufWriter<std::fs::File>,
    last: std::time::Instant,
    buf: Vec<u8>,
}
impl Writer {
    pub fn create(path: &Path) -> std::io::Result<Writer> {
        let f = std::fs::OpenOptions::new().create_new(true).write(true).open(path)?;
        let mut w = Writer { w: BufWriter::new(f), last: std::time::Instant::now(), buf: Vec::new() };
        w.w.write_all(b"PHTOPLOG")?;
        w.w.write_all(&1u32.to_le_bytes())?;
        w.w.write_all(&0u32.to_le_bytes())?;
        Ok(w)
    }
    pub fn open_append(path: &Path) -> std::io::Result<(Writer, Option<Dropped>)> {
        let b = std::fs::read(path)?;
        let mut off = 16;
        while off + 8 <= b.len() {
            let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap());
            if off + 8 + len > b.len() || crc32c::crc32c(&b[off + 8..off + 8 + len]) != crc {
                break;
            }
            off += 8 + len;
        }
        std::fs::OpenOptions::new().write(true).open(path)?.set_len(off as u64)?;
        let f = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok((Writer { w: BufWriter::new(f), last: std::time::Instant::now(), buf: Vec::new() }, None))
    }
    pub fn append(&mut self, ev: &Event) -> std::io::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, ev)?;
        self.w.write_all(&(self.buf.len() as u32).to_le_bytes())?;
        self.w.write_all(&crc32c::crc32c(&self.buf).to_le_bytes())?;
        self.w.write_all(&self.buf)
    }
    pub fn flush_if_due(&mut self) -> std::io::Result<()> {
        if self.last.elapsed().as_millis() >= 250 {
            self.last = std::time::Instant::now();
            self.w.flush()?;
        }
        Ok(())
    }
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.w.flush()?;
        self.w.get_ref().sync_all()
    }
}
pub struct Record {
    pub offset: u64,
    pub event: Event,
}
pub struct LogContents {
    pub records: Vec<Record>,
}
pub fn read_all(path: &Path) -> std::io::Result<LogContents> {
    let mut b = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut b)?;
    let mut off = 16;
    let mut records = Vec::new();
    while off + 8 <= b.len() {
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        if off + 8 + len > b.len() {
            break;
        }
        if let Ok(event) = serde_json::from_slice(&b[off + 8..off + 8 + len]) {
            records.push(Record { offset: off as u64, event });
        }
        off += 8 + len;
    }
    Ok(LogContents { records })
}

pub struct Tail {
    path: std::path::PathBuf,
    offset: u64,
}
impl Tail {
    pub fn new(path: &Path) -> Tail {
        Tail { path: path.to_path_buf(), offset: 16 }
    }
    pub fn poll(&mut self) -> std::io::Result<Vec<Record>> {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(self.offset))?;
        let mut b = Vec::new();
        f.read_to_end(&mut b)?;
        let mut off = 0;
        let mut out = Vec::new();
        while off + 8 <= b.len() {
            let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
            if off + 8 + len > b.len() {
                break;
            }
            if let Ok(event) = serde_json::from_slice(&b[off + 8..off + 8 + len]) {
                out.push(Record { offset: self.offset + off as u64, event });
            }
            off += 8 + len;
        }
        self.offset += off as u64;
        Ok(out)
    }
}
