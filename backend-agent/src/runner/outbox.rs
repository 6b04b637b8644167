//! The one task that writes to the agent: it owns the current connection, keeps run events while no agent is
//! connected (bounded), and replaces the connection when a new agent connects.

use backend_core::runner::{RunnerCodec, RunnerEvent, Stream};
use futures::SinkExt;
use std::collections::VecDeque;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;

/// The writing half of an agent connection.
pub type Connection = FramedWrite<OwnedWriteHalf, RunnerCodec>;

/// How many bytes of output are kept for the next agent while none is connected.
pub const DISCONNECTED_OUTPUT_LIMIT: usize = 1 << 20;

/// Small messages from the request side; they never wait on the agent.
#[derive(Debug)]
pub enum Control {
    /// A run was accepted: events that follow belong to it, and `Ready` reports it until its `Finished`.
    RunStarted(String),
    /// An answer to a request of the connected agent (dropped when no agent is connected).
    Reply(RunnerEvent),
}

enum Item {
    /// The greeting of the current connection, filled in when it is sent.
    Ready,
    Started(String),
    Event(RunnerEvent),
}

/// The outgoing side of the runner.
pub struct Outbox {
    lang: String,
    conn: Option<Connection>,
    queue: VecDeque<Item>,
    /// The active run as of the front of `queue`: what the agent will believe once it has read so far.
    active_run: Option<String>,
    queued_output: usize,
    dropping: bool,
}

impl Outbox {
    /// An outbox without a connection.
    pub fn new(lang: &str) -> Self {
        Self {
            lang: lang.to_owned(),
            conn: None,
            queue: VecDeque::new(),
            active_run: None,
            queued_output: 0,
            dropping: false,
        }
    }

    /// Serves until one of the channels closes. Run events come from `events` (bounded: a slow agent slows the
    /// producers down, not this loop's other inputs).
    pub async fn run(
        mut self,
        mut connections: mpsc::UnboundedReceiver<Connection>,
        mut control: mpsc::UnboundedReceiver<Control>,
        mut events: mpsc::Receiver<RunnerEvent>,
    ) {
        loop {
            if self.conn.is_some() && !self.queue.is_empty() {
                let Some(frame) = self.front_frame() else {
                    continue;
                };
                let Some(conn) = self.conn.as_mut() else {
                    continue;
                };
                tokio::select! {
                    biased;
                    // A new agent replaces one that is not reading, even in the middle of a frame.
                    Some(c) = connections.recv() => self.attach(c),
                    sent = conn.send(frame) => match sent {
                        Ok(()) => self.pop_front(),
                        Err(_) => self.conn = None, // the frame stays queued for the next agent
                    },
                }
                continue;
            }
            tokio::select! {
                biased;
                c = connections.recv() => match c {
                    Some(c) => self.attach(c),
                    None => return,
                },
                m = control.recv() => match m {
                    Some(Control::RunStarted(id)) => self.queue.push_back(Item::Started(id)),
                    Some(Control::Reply(ev)) => {
                        if self.conn.is_some() {
                            self.queue.push_back(Item::Event(ev));
                        }
                    }
                    None => return,
                },
                ev = events.recv() => match ev {
                    Some(ev) => self.push(ev),
                    None => return,
                },
            }
        }
    }

    /// The frame to send for the queue's front, handling the items that are not frames.
    fn front_frame(&mut self) -> Option<RunnerEvent> {
        match self.queue.front()? {
            Item::Started(id) => {
                self.active_run = Some(id.clone());
                self.queue.pop_front();
                None
            }
            Item::Ready => Some(RunnerEvent::Ready { lang: self.lang.clone(), active_run: self.active_run.clone() }),
            Item::Event(ev) => Some(ev.clone()),
        }
    }

    fn pop_front(&mut self) {
        if let Some(Item::Event(ev)) = self.queue.pop_front() {
            match ev {
                RunnerEvent::Finished { run_id, .. } if self.active_run.as_ref() == Some(&run_id) => {
                    self.active_run = None;
                }
                RunnerEvent::Output { data, .. } => self.queued_output -= data.len().min(self.queued_output),
                _ => {}
            }
        }
    }

    fn attach(&mut self, conn: Connection) {
        self.conn = Some(conn);
        if matches!(self.queue.front(), Some(Item::Ready)) {
            self.queue.pop_front(); // never sent: it greeted an agent that is gone
        }
        self.queue.push_front(Item::Ready);
        self.dropping = false;
    }

    fn push(&mut self, ev: RunnerEvent) {
        if self.conn.is_none() && !self.keep_while_disconnected(&ev) {
            return;
        }
        if let RunnerEvent::Output { data, .. } = &ev {
            self.queued_output += data.len();
        }
        self.queue.push_back(Item::Event(ev));
    }

    /// Whether an event produced while no agent is connected is kept for the next agent. Output beyond the
    /// limit is dropped, leaving a note where the loss began; events that end or pause runs are always kept.
    fn keep_while_disconnected(&mut self, ev: &RunnerEvent) -> bool {
        match ev {
            // Answers to requests of an agent that is gone.
            RunnerEvent::Completion { .. } | RunnerEvent::Error { .. } => false,
            RunnerEvent::Output { run_id, data, .. } if self.queued_output + data.len() > DISCONNECTED_OUTPUT_LIMIT => {
                if !self.dropping {
                    self.dropping = true;
                    let data = format!(
                        "\n[backend-kernel-runner: output dropped here: more than {DISCONNECTED_OUTPUT_LIMIT} bytes \
                         while no agent was connected]\n"
                    );
                    let note = RunnerEvent::Output { run_id: run_id.clone(), stream: Stream::Stderr, data };
                    self.queue.push_back(Item::Event(note));
                }
                false
            }
            _ => true,
        }
    }
}
