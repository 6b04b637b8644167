//! The framed protocol between an agent and the `backend-kernel-runner` inside each kernel.
//!
//! Frames are a 4-byte big-endian length followed by one JSON message. The agent sends [`RunnerRequest`]s; the runner
//! answers with a stream of [`RunnerEvent`]s. On connect the runner sends [`RunnerEvent::Ready`]. At most one run is
//! active at a time; its output events carry its `run_id`.

use bytes::{Buf, BufMut, BytesMut};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::marker::PhantomData;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 16 << 20;

/// The environment variable that tells the runner which socket to listen on (`--socket` overrides it).
pub const SOCKET_ENV: &str = "BACKENDAI_RUNNER_SOCKET";

/// How long a run that passed its time limit has, after its SIGINT, before it is killed.
pub const TIMEOUT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What a run does with its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// Run `code` in the kernel's persistent interpreter.
    Query,
    /// Run the shell commands in `options` (`clean`, `build`, `exec`) in that order.
    Batch,
}

/// Options of a batch run: shell commands run in the work directory, in the order clean, build, exec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOptions {
    /// Command run first; `clean-finished` follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean: Option<String>,
    /// Command run second; `build-finished` follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// Command run last; its exit code is the run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
}

/// Agent → runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum RunnerRequest {
    /// Start a run. Refused (an `Error` event) while another run is active.
    Execute {
        /// Chosen by the caller; echoed on every event of the run.
        run_id: String,
        /// Query or batch.
        mode: RunMode,
        /// The code (query mode).
        #[serde(default)]
        code: String,
        /// The commands (batch mode).
        #[serde(default)]
        options: BatchOptions,
        /// The run's time limit in milliseconds (the execute request's `options.exec_timeout`), counted from its
        /// start; in batch mode it bounds each command. When it passes, the runner sends [`RunnerEvent::TimedOut`]
        /// and interrupts the run (SIGINT, then SIGKILL after [`TIMEOUT_GRACE`]); its `Finished` follows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// A line of input for a run that is `WaitingInput`.
    Input {
        /// The run waiting for it.
        run_id: String,
        /// The text (a trailing newline is added when missing).
        text: String,
    },
    /// Send SIGINT to the running code; the kernel lives on.
    Interrupt,
    /// Code completion candidates for `code` (the result is a `Completion` event).
    Complete {
        /// The text before the cursor.
        code: String,
    },
    /// Stop the interpreter and exit.
    Shutdown,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Runner → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "kebab-case")]
pub enum RunnerEvent {
    /// Sent once on connect: the kernel's language and whether a run is active (after an agent restart).
    Ready {
        /// `python`, `shell`, ...
        lang: String,
        /// The run in progress, if any.
        #[serde(default)]
        active_run: Option<String>,
    },
    /// Output produced by the run, in order.
    Output {
        /// The run.
        run_id: String,
        /// stdout or stderr.
        stream: Stream,
        /// The text (UTF-8, lossy).
        data: String,
    },
    /// A rich output item (`media`: `[mime, payload]`, `html`).
    Media {
        /// The run.
        run_id: String,
        /// MIME type (`text/html` for html items).
        mime: String,
        /// The payload.
        data: String,
    },
    /// The run passed its time limit and is being stopped; its `Finished` follows, and the agent reports the run
    /// as `exec-timeout`.
    TimedOut {
        /// The run.
        run_id: String,
    },
    /// The code reads standard input; the run waits for an `Input` request.
    WaitingInput {
        /// The run.
        run_id: String,
        /// The prompt printed before reading, if any.
        #[serde(default)]
        prompt: String,
    },
    /// Batch mode: the clean command finished.
    CleanFinished {
        /// The run.
        run_id: String,
        /// Its exit code.
        exit_code: i32,
    },
    /// Batch mode: the build command finished.
    BuildFinished {
        /// The run.
        run_id: String,
        /// Its exit code.
        exit_code: i32,
    },
    /// The run ended; no more events for it.
    Finished {
        /// The run.
        run_id: String,
        /// 0 on success; 1 for an uncaught exception; the status of `sys.exit(n)` or of the exec command.
        exit_code: i32,
    },
    /// Completion candidates.
    Completion {
        /// Candidate strings.
        items: Vec<String>,
    },
    /// A request could not be carried out (for example an `Execute` while a run is active).
    Error {
        /// The run concerned, if any.
        #[serde(default)]
        run_id: Option<String>,
        /// What went wrong.
        message: String,
    },
}

/// A codec of length-prefixed JSON frames: encodes `Out`, decodes `In`.
#[derive(Debug)]
pub struct JsonFrames<In, Out> {
    inner: LengthDelimitedCodec,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> Default for JsonFrames<In, Out> {
    fn default() -> Self {
        Self { inner: LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_codec(), _types: PhantomData }
    }
}

/// The agent's side: sends requests, reads events.
pub type AgentCodec = JsonFrames<RunnerEvent, RunnerRequest>;
/// The runner's side: sends events, reads requests.
pub type RunnerCodec = JsonFrames<RunnerRequest, RunnerEvent>;

impl<In: DeserializeOwned, Out> Decoder for JsonFrames<In, Out> {
    type Item = In;
    type Error = std::io::Error;
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, std::io::Error> {
        match self.inner.decode(src)? {
            Some(frame) => serde_json::from_slice(frame.chunk())
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            None => Ok(None),
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for JsonFrames<In, Out> {
    type Error = std::io::Error;
    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let mut body = BytesMut::new().writer();
        serde_json::to_writer(&mut body, &item)?;
        self.inner.encode(body.into_inner().freeze(), dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut agent = AgentCodec::default();
        let mut runner = RunnerCodec::default();
        let mut buf = BytesMut::new();
        let req = RunnerRequest::Execute {
            run_id: "r1".into(),
            mode: RunMode::Query,
            code: "print(1)".into(),
            options: BatchOptions::default(),
            timeout_ms: Some(1500),
        };
        agent.encode(req.clone(), &mut buf).unwrap();
        assert_eq!(runner.decode(&mut buf).unwrap(), Some(req));
        let ev = RunnerEvent::Finished { run_id: "r1".into(), exit_code: 0 };
        runner.encode(ev.clone(), &mut buf).unwrap();
        assert_eq!(agent.decode(&mut buf).unwrap(), Some(ev));
        assert_eq!(agent.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn wire_shape_is_stable() {
        let v = serde_json::to_value(RunnerRequest::Input { run_id: "r".into(), text: "x".into() }).unwrap();
        assert_eq!(v, serde_json::json!({"op": "input", "run_id": "r", "text": "x"}));
        let v = serde_json::to_value(RunnerEvent::WaitingInput { run_id: "r".into(), prompt: "? ".into() }).unwrap();
        assert_eq!(v, serde_json::json!({"ev": "waiting-input", "run_id": "r", "prompt": "? "}));
    }
}
