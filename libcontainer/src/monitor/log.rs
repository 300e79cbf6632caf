//! The container's output in the CRI log format that kubelet reads
//! (`pkg/kubelet/kuberuntime/logs`): one record per line,
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout F hello
//! TIMESTAMP                      STREAM TAG MESSAGE
//! ```
//!
//! - TIMESTAMP: RFC 3339 with nanoseconds in UTC (kubelet parses
//!   `2006-01-02T15:04:05.999999999Z07:00`, so any number of fraction digits
//!   is accepted; we always write nine, so records sort as text too), taken
//!   when the monitor read the bytes.
//! - STREAM: `stdout` or `stderr` (with a terminal everything is `stdout`).
//! - TAG: `F` for a full line, `P` for a part of one. A line longer than
//!   [`MAX_LINE`] is cut into `P` records of that size and ends with an `F`
//!   record, and output that ends without a newline when the stream closes is
//!   written as a `P` record: both as containerd's CRI plugin does
//!   (`max_container_log_line_size`, default 16 KiB), so kubelet joins the
//!   parts back the same way.
//! - MESSAGE: the line without its `\n`, and without a `\r` before it (a
//!   terminal's line ends, again as containerd strips them).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// The longest message of one record; longer lines are split.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The CRI timestamp of `t`: RFC 3339, UTC, nine fraction digits.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Cuts one stream's bytes into records. Bytes of an unfinished line wait
/// for the rest of it (or for [`Lines::finish`]).
#[derive(Debug)]
pub struct Lines {
    stream: Stream,
    pending: Vec<u8>,
}

impl Lines {
    pub fn new(stream: Stream) -> Lines {
        Lines { stream, pending: Vec::new() }
    }

    /// Take `data`, appending the records it completes to `out`, stamped `ts`.
    pub fn feed(&mut self, data: &[u8], ts: &str, out: &mut Vec<u8>) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            // A newline within MAX_LINE + 1 bytes ends a full line of at most MAX_LINE.
            let window = &rest[..rest.len().min(MAX_LINE + 1)];
            if let Some(i) = window.iter().position(|b| *b == b'\n') {
                let line = &rest[..i];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                record(out, ts, self.stream, 'F', line);
                start += i + 1;
            } else if rest.len() > MAX_LINE {
                record(out, ts, self.stream, 'P', &rest[..MAX_LINE]);
                start += MAX_LINE;
            } else {
                break;
            }
        }
        self.pending.drain(..start);
    }

    /// The stream closed: what is left (a line without its newline) as a
    /// partial record.
    pub fn finish(&mut self, ts: &str, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            record(out, ts, self.stream, 'P', &self.pending);
            self.pending.clear();
        }
    }
}

fn record(out: &mut Vec<u8>, ts: &str, stream: Stream, tag: char, msg: &[u8]) {
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name().as_bytes());
    out.push(b' ');
    out.push(tag as u8);
    out.push(b' ');
    out.extend_from_slice(msg);
    out.push(b'\n');
}

/// The log file, appended to; reopened by path after logrotate (or
/// kubelet's own rotation) renamed it.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
}

impl LogFile {
    /// Open (creating it and its directory) `path` for appending.
    pub fn open(path: &Path) -> Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                op: "create log directory",
                path: dir.to_owned(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| Error::Io { op: "open log file", path: path.to_owned(), source })?;
        Ok(LogFile { path: path.to_owned(), file })
    }

    /// `file`, open for appending at `path` (the log a monitor's earlier image opened).
    pub(super) fn adopt(path: PathBuf, file: impl Into<File>) -> LogFile {
        LogFile { path, file: file.into() }
    }

    /// Open the path again: a new file if the old one was renamed away.
    pub fn reopen(&mut self) -> Result<()> {
        *self = LogFile::open(&self.path)?;
        Ok(())
    }

    pub fn write(&mut self, records: &[u8]) -> Result<()> {
        self.file.write_all(records).map_err(|source| Error::Io { op: "write log file", path: self.path.clone(), source })
    }
}

impl AsFd for LogFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]], close: bool) -> String {
        let mut l = Lines::new(Stream::Stdout);
        let mut out = Vec::new();
        for c in chunks {
            l.feed(c, "T", &mut out);
        }
        if close {
            l.finish("T", &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn full_lines_across_reads() {
        assert_eq!(feed_all(&[b"hel", b"lo\nwor", b"ld\n"], false), "T stdout F hello\nT stdout F world\n");
        assert_eq!(feed_all(&[b"\n\n"], false), "T stdout F \nT stdout F \n");
    }

    #[test]
    fn crlf_is_one_line_end() {
        assert_eq!(feed_all(&[b"a\r\nb\r", b"\n"], false), "T stdout F a\nT stdout F b\n");
        // A lone \r inside a line stays.
        assert_eq!(feed_all(&[b"a\rb\n"], false), "T stdout F a\rb\n");
    }

    #[test]
    fn unterminated_output_is_partial_at_close() {
        assert_eq!(feed_all(&[b"a\nno newline"], false), "T stdout F a\n");
        assert_eq!(feed_all(&[b"a\nno newline"], true), "T stdout F a\nT stdout P no newline\n");
        assert_eq!(feed_all(&[b"a\n"], true), "T stdout F a\n");
    }

    #[test]
    fn long_lines_split_in_partial_records() {
        let line = vec![b'x'; 40 * 1024];
        let mut data = line.clone();
        data.push(b'\n');
        // In odd-sized reads, as a pipe gives them.
        let chunks: Vec<&[u8]> = data.chunks(4093).collect();
        let text = feed_all(&chunks, false);
        let recs: Vec<(&str, usize)> = text.lines().map(|l| (&l[9..10], l.len() - 11)).collect();
        assert_eq!(recs, [("P", MAX_LINE), ("P", MAX_LINE), ("F", 40 * 1024 - 2 * MAX_LINE)]);
        // Exactly MAX_LINE is one full record; one more byte is P + F.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(feed_all(&[&exact], false).lines().map(|l| &l[9..10]).collect::<Vec<_>>(), ["F"]);
        let mut over = vec![b'y'; MAX_LINE + 1];
        over.push(b'\n');
        let t = feed_all(&[&over], false);
        assert_eq!(t.lines().map(|l| (&l[9..10], l.len() - 11)).collect::<Vec<_>>(), [("P", MAX_LINE), ("F", 1)]);
    }

    #[test]
    fn stderr_and_timestamps() {
        let mut l = Lines::new(Stream::Stderr);
        let mut out = Vec::new();
        let ts = timestamp(chrono::DateTime::from_timestamp(1475713029, 669794202).unwrap());
        assert_eq!(ts, "2016-10-06T00:17:09.669794202Z");
        l.feed(b"oops\n", &ts, &mut out);
        assert_eq!(out, b"2016-10-06T00:17:09.669794202Z stderr F oops\n");
        // Nine digits always, also for a whole second.
        assert_eq!(timestamp(chrono::DateTime::from_timestamp(0, 0).unwrap()), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn log_file_is_made_with_its_directory_and_reopened() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("pods/c/0.log");
        let mut f = LogFile::open(&path).unwrap();
        f.write(b"one\n").unwrap();
        std::fs::rename(&path, t.path().join("rotated")).unwrap();
        f.reopen().unwrap();
        f.write(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(std::fs::read_to_string(t.path().join("rotated")).unwrap(), "one\n");
    }
}
