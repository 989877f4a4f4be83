//! Container logs in the CRI log format, as kubelet and `kubectl logs` read them.
//!
//! Each line of a container's output becomes one record:
//! `2024-05-01T10:00:00.123456789Z stdout F hello`: the time (RFC 3339 with
//! nanoseconds), the stream, `F` for a full line or `P` for a partial one
//! (a long line split, or output that ended without a newline), then the
//! text. The file lives at `<ns>_<pod>_<uid>/<container>/<restart>.log`
//! like kubelet's `/var/log/pods`, and is rotated by size: `0.log` moves to
//! `0.log.1` (and `.1` to `.2` ...) when it grows past the limit.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Longest line written as one record; longer ones are split with `P`.
pub const MAX_LINE: usize = 16 * 1024;

/// Appends records to a container's log file, rotating it by size.
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl Writer {
    /// Open (or create) the log at `path` for appending. It is rotated when a
    /// record would take it past `max_size` bytes (0: never), keeping
    /// `max_files` rotated files (at least 1).
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// One record; `full` is false for a partial line.
    pub fn record(&mut self, stream: &str, full: bool, text: &[u8]) -> io::Result<()> {
        let mut line = format!(
            "{} {stream} {} ",
            timestamp(jiff::Timestamp::now()),
            if full { 'F' } else { 'P' }
        )
        .into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.max_size > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(name(self.max_files));
        for n in (1..self.max_files).rev() {
            let _ = std::fs::rename(name(n), name(n + 1));
        }
        std::fs::rename(&self.path, name(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// RFC 3339 with nine fractional digits, in UTC.
pub fn timestamp(t: jiff::Timestamp) -> String {
    format!("{t:.9}")
}

/// Splits a stream's bytes into records as they arrive: complete lines
/// are `F`, a line longer than [`MAX_LINE`] is cut into `P` pieces, and
/// output that ends without a newline is a final `P` ([`Lines::finish`]).
/// Bytes are pushed in (from a poll(2) loop), so one process can split
/// several streams without a thread each.
#[derive(Default)]
pub struct Lines {
    /// The line begun but not ended yet.
    pending: Vec<u8>,
}

impl Lines {
    /// Take `data`, giving every record it completes to `sink(full, text)`.
    pub fn feed(&mut self, mut data: &[u8], mut sink: impl FnMut(bool, &[u8])) {
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            if self.pending.is_empty() {
                sink(true, &data[..i]);
            } else {
                self.pending.extend_from_slice(&data[..i]);
                sink(true, &self.pending);
                self.pending.clear();
            }
            data = &data[i + 1..];
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_LINE {
            sink(false, &self.pending[..MAX_LINE]);
            self.pending.drain(..MAX_LINE);
        }
        if self.pending.is_empty() {
            // A long line's buffer is not kept for the rest of the stream.
            self.pending = Vec::new();
        }
    }

    /// The stream ended: what is left without a newline is a `P` record.
    pub fn finish(&mut self, mut sink: impl FnMut(bool, &[u8])) {
        if !self.pending.is_empty() {
            sink(false, &self.pending);
            self.pending = Vec::new();
        }
    }
}

/// One parsed record of a log file.
pub struct Record<'a> {
    /// When the line was written: RFC 3339 with nanoseconds.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// `F`, the record ends a line; else `P`, a piece of one.
    pub full: bool,
    /// The text, without the newline.
    pub text: &'a str,
}

/// Split one line of a log file into its record; `None` when it has fewer
/// than three fields.
pub fn parse(line: &str) -> Option<Record<'_>> {
    let mut it = line.splitn(4, ' ');
    let time = it.next()?;
    let stream = it.next()?;
    let tag = it.next()?;
    let text = it.next().unwrap_or("");
    Some(Record {
        time,
        stream,
        full: tag.starts_with('F'),
        text,
    })
}

/// A log's files, oldest first: the rotated ones (`0.log.N` ... `0.log.1`)
/// that exist, then `path` itself.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let prefix = format!("{}.", name.to_string_lossy());
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if let Some(k) = n.strip_prefix(&prefix).and_then(|k| k.parse().ok()) {
                rotated.push((k, e.path()));
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.push(path.to_path_buf());
    out
}

/// Append a record's text to `out` as `kubectl logs` shows it: with its
/// time first when `timestamps`, and a newline when it ends a line.
pub fn render(r: &Record<'_>, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(r.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(r.text.as_bytes());
    if r.full {
        out.push(b'\n');
    }
}

/// The text of a log file as the container wrote it (`kubectl logs`).
pub fn plain(path: &Path, out: &mut impl Write) -> io::Result<()> {
    let f = File::open(path)?;
    for line in BufReader::new(f).lines() {
        let line = line?;
        if let Some(r) = parse(&line) {
            let mut buf = Vec::with_capacity(r.text.len() + 1);
            render(&r, false, &mut buf);
            out.write_all(&buf)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split a whole stream into records with [`Lines`], reading until its
    /// end.
    fn copy_stream(
        mut input: impl io::Read,
        stream: &str,
        mut sink: impl FnMut(&str, bool, &[u8]),
    ) -> io::Result<()> {
        let mut lines = Lines::default();
        let mut buf = vec![0u8; MAX_LINE];
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => lines.feed(&buf[..n], |full, t| sink(stream, full, t)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        lines.finish(|full, t| sink(stream, full, t));
        Ok(())
    }

    fn records(input: &[u8]) -> Vec<(bool, Vec<u8>)> {
        let mut v = Vec::new();
        copy_stream(input, "stdout", |_, full, t| v.push((full, t.to_vec()))).unwrap();
        v
    }

    #[test]
    fn lines_partials_and_long_lines() {
        assert_eq!(
            records(b"a\nbc\nd"),
            vec![
                (true, b"a".to_vec()),
                (true, b"bc".to_vec()),
                (false, b"d".to_vec())
            ]
        );
        // The same records however the bytes arrive.
        let mut l = Lines::default();
        let mut v = Vec::new();
        for chunk in b"a\nb".chunks(1).chain([&b"c\nd"[..]]) {
            l.feed(chunk, |full, t| v.push((full, t.to_vec())));
        }
        l.finish(|full, t| v.push((full, t.to_vec())));
        assert_eq!(v, records(b"a\nbc\nd"));
        let long = vec![b'x'; MAX_LINE + 5];
        let mut input = long.clone();
        input.push(b'\n');
        let r = records(&input);
        assert_eq!(r.len(), 2);
        assert!(!r[0].0 && r[0].1.len() == MAX_LINE);
        assert!(r[1].0 && r[1].1.len() == 5);
    }

    #[test]
    fn writes_parses_and_rotates() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0.log");
        let mut w = Writer::open(&p, 200, 2).unwrap();
        for i in 0..20 {
            w.record("stderr", true, format!("line {i}").as_bytes())
                .unwrap();
        }
        assert!(d.path().join("0.log.1").exists());
        assert!(d.path().join("0.log.2").exists());
        assert!(!d.path().join("0.log.3").exists());
        let text = std::fs::read_to_string(&p).unwrap();
        let last = text.lines().last().unwrap();
        let r = parse(last).unwrap();
        assert_eq!((r.stream, r.full, r.text), ("stderr", true, "line 19"));
        assert!(r.time.ends_with('Z') && r.time.len() == 30, "{}", r.time);
        assert!(std::fs::metadata(&p).unwrap().len() <= 200);
    }
}
