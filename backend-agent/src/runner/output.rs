//! Turning a child's stdout/stderr pipes into coalesced, UTF-8-safe `Output` chunks of at most [`CHUNK`] bytes.

use backend_core::runner::{RunnerEvent, Stream};
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{ChildStderr, ChildStdout};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The most output bytes one event carries.
pub const CHUNK: usize = 64 * 1024;
/// How long output may wait in a buffer: short enough to look live, long enough that a flood of tiny writes
/// becomes a few large frames.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// The bytes `c` takes inside a JSON string (serde_json escapes quotes, backslashes and control characters).
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Splits `s` into pieces that take at most `max` bytes once JSON-encoded, never inside a character: a frame's
/// size is what the limit is about, and escapes (every `\n` is two bytes) count.
pub fn split_str(s: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, c) in s.char_indices() {
        let n = json_len(c);
        if size + n > max && i > start {
            pieces.push(&s[start..i]);
            (start, size) = (i, 0);
        }
        size += n;
    }
    if start < s.len() {
        pieces.push(&s[start..]);
    }
    pieces
}

/// Sends `Output` events for `data`, split to the frame limit. Send errors mean the runner is shutting down.
pub async fn emit_output(events: &mpsc::Sender<RunnerEvent>, run_id: &str, stream: Stream, data: &str) {
    for piece in split_str(data, CHUNK) {
        let ev = RunnerEvent::Output { run_id: run_id.to_owned(), stream, data: piece.to_owned() };
        if events.send(ev).await.is_err() {
            return;
        }
    }
}

/// The length of the longest prefix of `bytes` that does not end inside a multi-byte UTF-8 sequence.
fn utf8_prefix(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(3) {
        let b = bytes[len - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let need = match b {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if need > back { len - back } else { len };
    }
    len
}

/// A child's stdout and stderr pipes with their pending bytes.
pub struct PipeOutput {
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    bufs: [Vec<u8>; 2],
    deadline: Option<Instant>,
}

impl PipeOutput {
    /// Takes over the pipes (either may be absent).
    pub fn new(stdout: Option<ChildStdout>, stderr: Option<ChildStderr>) -> Self {
        Self { stdout, stderr, bufs: [Vec::new(), Vec::new()], deadline: None }
    }

    /// Reads until something should be emitted (a full chunk, or buffered bytes older than [`FLUSH_INTERVAL`]).
    /// Never completes once both pipes are closed and nothing is buffered. Cancel-safe: read bytes stay buffered.
    pub async fn ready(&mut self) {
        loop {
            let [out_buf, err_buf] = &mut self.bufs;
            let deadline = self.deadline;
            tokio::select! {
                n = read_some(&mut self.stdout, out_buf) => {
                    if n == 0 {
                        self.stdout = None;
                    }
                }
                n = read_some(&mut self.stderr, err_buf) => {
                    if n == 0 {
                        self.stderr = None;
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => return,
            }
            if self.bufs.iter().any(|b| b.len() >= CHUNK) {
                return;
            }
            if self.deadline.is_none() && self.bufs.iter().any(|b| !b.is_empty()) {
                self.deadline = Some(Instant::now() + FLUSH_INTERVAL);
            }
        }
    }

    /// Reads whatever the pipes hold right now without waiting. The reactor may not have seen that data yet, so
    /// this reads the descriptors directly (they are non-blocking): output a process wrote before it told us it
    /// finished is then never reported after its end.
    pub fn drain_now(&mut self) {
        let [out_buf, err_buf] = &mut self.bufs;
        if drain_fd(self.stdout.as_ref().map(|p| p.as_raw_fd()), out_buf) {
            self.stdout = None;
        }
        if drain_fd(self.stderr.as_ref().map(|p| p.as_raw_fd()), err_buf) {
            self.stderr = None;
        }
    }

    /// Removes the buffered output as chunks; unless `all`, an incomplete character at the end stays buffered.
    pub fn take(&mut self, all: bool) -> Vec<(Stream, String)> {
        self.deadline = None;
        let mut chunks = Vec::new();
        for (buf, stream) in self.bufs.iter_mut().zip([Stream::Stdout, Stream::Stderr]) {
            while !buf.is_empty() {
                let end = buf.len().min(CHUNK);
                let mut cut = if all && end == buf.len() { end } else { utf8_prefix(&buf[..end]) };
                if cut == 0 {
                    if end < buf.len() || all {
                        cut = end; // not valid UTF-8 anyway: let the lossy conversion mark it
                    } else {
                        break;
                    }
                }
                chunks.push((stream, String::from_utf8_lossy(&buf[..cut]).into_owned()));
                buf.drain(..cut);
            }
        }
        if self.bufs.iter().any(|b| !b.is_empty()) {
            self.deadline = Some(Instant::now() + FLUSH_INTERVAL);
        }
        chunks
    }
}

/// Reads once into `buf`; 0 means the pipe is closed (or failed). Pending forever when there is no pipe.
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut Vec<u8>) -> usize {
    match pipe {
        Some(p) => {
            buf.reserve(CHUNK);
            p.read_buf(buf).await.unwrap_or(0)
        }
        None => std::future::pending().await,
    }
}

/// Reads a non-blocking descriptor until it would block; returns true at end of file. Bounded, so a process
/// that keeps writing cannot hold us here.
fn drain_fd(fd: Option<i32>, buf: &mut Vec<u8>) -> bool {
    let Some(fd) = fd else { return false };
    let mut tmp = vec![0u8; CHUNK];
    for _ in 0..64 {
        match nix::unistd::read(fd, &mut tmp) {
            Ok(0) => return true,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return false,
            Err(_) => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_str_respects_characters() {
        let s = "ab€cd"; // € is 3 bytes
        assert_eq!(split_str(s, 3), vec!["ab", "€", "cd"]);
        assert_eq!(split_str("", 3), Vec::<&str>::new());
        assert_eq!(split_str("abc", 3), vec!["abc"]);
        assert_eq!(split_str("a\nb", 2), vec!["a", "\n", "b"]);
    }

    #[test]
    fn utf8_prefix_keeps_incomplete_tail() {
        let euro = "€".as_bytes();
        assert_eq!(utf8_prefix(b"abc"), 3);
        assert_eq!(utf8_prefix(&[b'a', euro[0], euro[1]]), 1);
        assert_eq!(utf8_prefix(&[b'a', euro[0], euro[1], euro[2]]), 4);
    }
}
