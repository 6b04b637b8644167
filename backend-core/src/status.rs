//! The lifecycle of sessions and kernels: statuses, the one transition table, status history, and the rule that
//! derives a session's status from its kernels'.

use crate::error::Error;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! lifecycle_status {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        #[allow(missing_docs)]
        pub enum $name {
            Pending,
            Scheduled,
            Preparing,
            Pulling,
            Creating,
            Running,
            Restarting,
            RunningDegraded,
            Terminating,
            Terminated,
            Error,
            Cancelled,
        }

        impl $name {
            /// Every status, in lifecycle order.
            pub const ALL: [Self; 12] = [
                Self::Pending,
                Self::Scheduled,
                Self::Preparing,
                Self::Pulling,
                Self::Creating,
                Self::Running,
                Self::Restarting,
                Self::RunningDegraded,
                Self::Terminating,
                Self::Terminated,
                Self::Error,
                Self::Cancelled,
            ];

            /// The wire name (`RUNNING_DEGRADED`).
            pub fn as_str(self) -> &'static str {
                match self {
                    Self::Pending => "PENDING",
                    Self::Scheduled => "SCHEDULED",
                    Self::Preparing => "PREPARING",
                    Self::Pulling => "PULLING",
                    Self::Creating => "CREATING",
                    Self::Running => "RUNNING",
                    Self::Restarting => "RESTARTING",
                    Self::RunningDegraded => "RUNNING_DEGRADED",
                    Self::Terminating => "TERMINATING",
                    Self::Terminated => "TERMINATED",
                    Self::Error => "ERROR",
                    Self::Cancelled => "CANCELLED",
                }
            }

            /// True when `self → to` is in the transition table.
            pub fn can_transition_to(self, to: Self) -> bool {
                allowed(Lifecycle::from(self), Lifecycle::from(to))
            }

            /// Checks `self → to` against the transition table.
            pub fn transition(self, to: Self) -> Result<Self, Error> {
                if self.can_transition_to(to) {
                    Ok(to)
                } else {
                    Err(Error::InvalidTransition { from: self.as_str(), to: to.as_str() })
                }
            }

            /// TERMINATED and CANCELLED: nothing follows.
            pub fn is_final(self) -> bool {
                matches!(self, Self::Terminated | Self::Cancelled)
            }

            /// Final, or ERROR: the thing no longer runs and holds no resources once cleaned up.
            pub fn is_dead(self) -> bool {
                matches!(self, Self::Terminated | Self::Cancelled | Self::Error)
            }

            /// Holding or about to hold resources on an agent (scheduled and not yet dead).
            pub fn holds_resources(self) -> bool {
                !matches!(self, Self::Pending | Self::Terminated | Self::Cancelled | Self::Error)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::ALL
                    .into_iter()
                    .find(|st| st.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| Error::InvalidParams { msg: format!("unknown status {s:?}") })
            }
        }

        impl From<$name> for Lifecycle {
            fn from(s: $name) -> Lifecycle {
                Lifecycle::ALL[$name::ALL.iter().position(|x| *x == s).expect("listed")]
            }
        }
    };
}

/// The shared shape of both status enums, so the transition table is written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Pending,
    Scheduled,
    Preparing,
    Pulling,
    Creating,
    Running,
    Restarting,
    RunningDegraded,
    Terminating,
    Terminated,
    Error,
    Cancelled,
}

impl Lifecycle {
    const ALL: [Self; 12] = [
        Self::Pending,
        Self::Scheduled,
        Self::Preparing,
        Self::Pulling,
        Self::Creating,
        Self::Running,
        Self::Restarting,
        Self::RunningDegraded,
        Self::Terminating,
        Self::Terminated,
        Self::Error,
        Self::Cancelled,
    ];
}

/// The transition table of PROTOCOL.md (from → allowed targets).
fn allowed(from: Lifecycle, to: Lifecycle) -> bool {
    use Lifecycle::*;
    let targets: &[Lifecycle] = match from {
        Pending => &[Scheduled, Terminating, Terminated, Error, Cancelled],
        Scheduled => &[Preparing, Pulling, Terminated, Error, Cancelled],
        Preparing | Pulling => {
            &[Pulling, Creating, Running, RunningDegraded, Terminating, Terminated, Error, Cancelled]
        }
        Creating => &[Running, Terminating, Error],
        Running => &[Restarting, RunningDegraded, Terminating, Terminated, Error],
        Restarting => &[Running, RunningDegraded, Terminating, Terminated, Error],
        RunningDegraded => &[Running, Terminating, Terminated, Error],
        Terminating => &[Terminated, Error],
        Error => &[Terminating, Terminated],
        Terminated | Cancelled => &[],
    };
    targets.contains(&to)
}

lifecycle_status!(
    /// A compute session's status (derived from its kernels' once it has kernels running).
    SessionStatus
);
lifecycle_status!(
    /// One kernel's status.
    KernelStatus
);

impl From<KernelStatus> for SessionStatus {
    fn from(k: KernelStatus) -> Self {
        SessionStatus::ALL[KernelStatus::ALL.iter().position(|x| *x == k).expect("listed")]
    }
}

impl From<SessionStatus> for KernelStatus {
    fn from(s: SessionStatus) -> Self {
        KernelStatus::ALL[SessionStatus::ALL.iter().position(|x| *x == s).expect("listed")]
    }
}

impl SessionStatus {
    /// Derives a session's status from its kernels' statuses:
    /// any kernel in ERROR makes the session ERROR; kernels that agree give their status; a session whose kernels
    /// are all final is TERMINATED (CANCELLED only when all were cancelled); any kernel TERMINATING makes it
    /// TERMINATING; running kernels beside dead ones make it RUNNING_DEGRADED; otherwise the session is as far as its
    /// least advanced kernel.
    pub fn derive(kernels: &[KernelStatus]) -> Option<SessionStatus> {
        let first = *kernels.first()?;
        if kernels.contains(&KernelStatus::Error) {
            return Some(SessionStatus::Error);
        }
        if kernels.iter().all(|k| *k == first) {
            return Some(first.into());
        }
        if kernels.iter().all(|k| k.is_final()) {
            return Some(SessionStatus::Terminated);
        }
        if kernels.contains(&KernelStatus::Terminating) {
            return Some(SessionStatus::Terminating);
        }
        let running = |k: &KernelStatus| matches!(k, KernelStatus::Running | KernelStatus::RunningDegraded);
        if kernels.iter().any(running) && kernels.iter().all(|k| running(k) || k.is_final()) {
            return Some(SessionStatus::RunningDegraded);
        }
        let order = |k: &KernelStatus| KernelStatus::ALL.iter().position(|x| x == k).unwrap_or(0);
        kernels.iter().filter(|k| !k.is_final()).min_by_key(|k| order(k)).map(|k| (*k).into())
    }
}

/// One entry of a status history: the status and when it was entered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The status entered.
    pub status: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The statuses a session or kernel went through, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StatusHistory(pub Vec<StatusChange>);

impl StatusHistory {
    /// A history starting at `status`, now.
    pub fn starting(status: impl fmt::Display, at: DateTime<Utc>) -> Self {
        Self(vec![StatusChange { status: status.to_string(), at }])
    }

    /// Records entering `status` at `at`.
    pub fn push(&mut self, status: impl fmt::Display, at: DateTime<Utc>) {
        self.0.push(StatusChange { status: status.to_string(), at });
    }

    /// When `status` was last entered.
    pub fn entered(&self, status: impl fmt::Display) -> Option<DateTime<Utc>> {
        let s = status.to_string();
        self.0.iter().rev().find(|c| c.status == s).map(|c| c.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use KernelStatus as K;
    use SessionStatus as S;

    #[test]
    fn table_matches_protocol() {
        assert!(S::Pending.can_transition_to(S::Scheduled));
        assert!(S::Pending.can_transition_to(S::Cancelled));
        assert!(!S::Running.can_transition_to(S::Cancelled), "CANCELLED only from PENDING/SCHEDULED/PREPARING");
        assert!(!S::Creating.can_transition_to(S::Terminated));
        assert!(S::Error.can_transition_to(S::Terminated));
        assert!(!S::Error.can_transition_to(S::Running));
        for to in S::ALL {
            assert!(!S::Terminated.can_transition_to(to));
            assert!(!S::Cancelled.can_transition_to(to));
        }
        let allowed: usize = S::ALL.iter().map(|f| S::ALL.iter().filter(|t| f.can_transition_to(**t)).count()).sum();
        assert_eq!(allowed, 5 + 5 + 8 + 8 + 3 + 5 + 5 + 4 + 2 + 2, "every edge of the table, no more");
        assert_eq!(K::Running.transition(K::Pending).unwrap_err().kind(), crate::error::ErrorKind::Conflict);
    }

    #[test]
    fn wire_names_round_trip() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::Value::String(s.as_str().into()));
        }
        assert!("NOPE".parse::<S>().is_err());
    }

    #[test]
    fn session_status_derivation() {
        assert_eq!(S::derive(&[]), None);
        assert_eq!(S::derive(&[K::Running, K::Running]), Some(S::Running));
        assert_eq!(S::derive(&[K::Running, K::Error]), Some(S::Error));
        assert_eq!(S::derive(&[K::Terminated, K::Cancelled]), Some(S::Terminated));
        assert_eq!(S::derive(&[K::Running, K::Terminating]), Some(S::Terminating));
        assert_eq!(S::derive(&[K::Running, K::Terminated]), Some(S::RunningDegraded));
        assert_eq!(S::derive(&[K::Preparing, K::Running]), Some(S::Preparing));
        assert_eq!(S::derive(&[K::Creating, K::Scheduled]), Some(S::Scheduled));
    }

    #[test]
    fn history_records_entries() {
        let t0 = Utc::now();
        let mut h = StatusHistory::starting(S::Pending, t0);
        h.push(S::Running, t0 + chrono::Duration::milliseconds(5));
        assert_eq!(h.entered(S::Running), Some(t0 + chrono::Duration::milliseconds(5)));
        assert_eq!(h.entered(S::Error), None);
    }
}
