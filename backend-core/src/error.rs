//! The one error type of the SDK and the one table that maps each error kind to an HTTP status and a problem+json
//! `type`/`title`, shared by the manager (which renders it) and the client (which decodes it).

use serde::{Deserialize, Serialize};

/// Errors of the SDK. Each maps to exactly one [`ErrorKind`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed or its values are impossible.
    #[error("invalid API parameters: {msg}")]
    InvalidParams {
        /// What is wrong.
        msg: String,
    },
    /// Missing or wrong credentials, signature or date.
    #[error("authorization failed: {msg}")]
    AuthFailed {
        /// Why.
        msg: String,
    },
    /// The caller may not do this.
    #[error("forbidden: {msg}")]
    Forbidden {
        /// Why.
        msg: String,
    },
    /// No session of that name or id visible to the caller.
    #[error("session not found: {name}")]
    SessionNotFound {
        /// The name or id asked for.
        name: String,
    },
    /// No virtual folder of that name (or id) visible to the caller.
    #[error("virtual folder not found: {name}")]
    VFolderNotFound {
        /// The name or id asked for.
        name: String,
    },
    /// The caller already has a virtual folder of that name.
    #[error("virtual folder already exists: {name}")]
    VFolderAlreadyExists {
        /// The name.
        name: String,
    },
    /// No object of that kind and name.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for (`keypair AKIA...`).
        what: String,
    },
    /// No kernel of that id.
    #[error("kernel not found: {id}")]
    KernelNotFound {
        /// The kernel id asked for.
        id: String,
    },
    /// No agent of that id, or it is gone.
    #[error("agent not found: {id}")]
    AgentNotFound {
        /// The agent id asked for.
        id: String,
    },
    /// No agent serves this image or language.
    #[error("unknown image: {image}")]
    ImageNotFound {
        /// The image reference asked for.
        image: String,
    },
    /// Another object of that name exists.
    #[error("already exists: {msg}")]
    AlreadyExists {
        /// What exists.
        msg: String,
    },
    /// The operation does not fit the object's current state.
    #[error("conflict: {msg}")]
    Conflict {
        /// Why.
        msg: String,
    },
    /// A status change that the lifecycle table does not allow.
    #[error("status transition {from} -> {to} is not allowed")]
    InvalidTransition {
        /// Current status.
        from: &'static str,
        /// Requested status.
        to: &'static str,
    },
    /// A quota or resource limit would be exceeded.
    #[error("quota exceeded: {msg}")]
    QuotaExceeded {
        /// Which limit.
        msg: String,
    },
    /// The request body is larger than allowed.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The caller's rate-limit window is full.
    #[error("rate limit exceeded")]
    TooManyRequests,
    /// An optional capability the chosen implementation does not have.
    #[error("not supported: {what}")]
    Unsupported {
        /// The capability.
        what: String,
    },
    /// A dependency (agent, store, bus) is unreachable right now.
    #[error("service unavailable: {msg}")]
    Unavailable {
        /// What is unavailable.
        msg: String,
    },
    /// A bug or an unexpected failure.
    #[error("internal error: {msg}")]
    Internal {
        /// Details for the log.
        msg: String,
    },
    /// Any I/O failure.
    #[error("I/O error: {context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An error answered by a remote server, decoded from its problem+json body.
    #[error("{} ({}): {}", problem.title, status, problem.msg)]
    Remote {
        /// HTTP status.
        status: u16,
        /// The body.
        problem: Problem,
    },
}

/// Result with the SDK's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An internal error from anything displayable.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal { msg: e.to_string() }
    }

    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// The kind of this error, which decides its HTTP status and problem type.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidParams { .. } => ErrorKind::InvalidParams,
            Error::AuthFailed { .. } => ErrorKind::AuthFailed,
            Error::Forbidden { .. } => ErrorKind::Forbidden,
            Error::SessionNotFound { .. } => ErrorKind::SessionNotFound,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::VFolderNotFound { .. } => ErrorKind::VFolderNotFound,
            Error::VFolderAlreadyExists { .. } => ErrorKind::VFolderAlreadyExists,
            Error::KernelNotFound { .. } => ErrorKind::KernelNotFound,
            Error::AgentNotFound { .. } => ErrorKind::AgentNotFound,
            Error::ImageNotFound { .. } => ErrorKind::ImageNotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Conflict { .. } | Error::InvalidTransition { .. } => ErrorKind::Conflict,
            Error::QuotaExceeded { .. } => ErrorKind::QuotaExceeded,
            Error::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            Error::TooManyRequests => ErrorKind::TooManyRequests,
            Error::Unsupported { .. } => ErrorKind::NotImplemented,
            Error::Unavailable { .. } => ErrorKind::ServiceUnavailable,
            Error::Internal { .. } | Error::Io { .. } => ErrorKind::Internal,
            Error::Remote { problem, status } => ErrorKind::from_type(&problem.kind).unwrap_or(match status {
                400 => ErrorKind::InvalidParams,
                401 => ErrorKind::AuthFailed,
                403 => ErrorKind::Forbidden,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                413 => ErrorKind::PayloadTooLarge,
                429 => ErrorKind::TooManyRequests,
                503 => ErrorKind::ServiceUnavailable,
                _ => ErrorKind::Internal,
            }),
        }
    }

    /// The problem+json body for this error, for untrusted callers: the title says what kind of error it is and
    /// `msg` the details of this one, except that internal errors keep their details to the server log.
    pub fn to_problem(&self) -> Problem {
        match self {
            Error::Internal { .. } | Error::Io { .. } => self.problem_with("see the server log".to_owned()),
            _ => self.to_detailed_problem(),
        }
    }

    /// The problem+json body with every detail, internal ones included (for trusted peers such as a manager
    /// calling its agents).
    pub fn to_detailed_problem(&self) -> Problem {
        let msg = match self {
            Error::Remote { problem, .. } => problem.msg.clone(),
            Error::InvalidParams { msg }
            | Error::AuthFailed { msg }
            | Error::Forbidden { msg }
            | Error::AlreadyExists { msg }
            | Error::Conflict { msg }
            | Error::QuotaExceeded { msg }
            | Error::Unavailable { msg }
            | Error::Internal { msg } => msg.clone(),
            Error::SessionNotFound { name } => format!("no session {name:?}"),
            Error::VFolderNotFound { name } => format!("no virtual folder {name:?}"),
            Error::VFolderAlreadyExists { name } => format!("a virtual folder named {name:?} exists already"),
            Error::ImageNotFound { image } => format!("no agent serves the image {image:?}"),
            Error::Io { context, source } => format!("{context}: {source}"),
            other => other.to_string(),
        };
        self.problem_with(msg)
    }

    fn problem_with(&self, msg: String) -> Problem {
        let kind = self.kind();
        Problem { kind: kind.type_url(), title: kind.title().to_owned(), msg }
    }

    /// Rebuilds an error from a remote problem+json body.
    pub fn from_problem(status: u16, problem: Problem) -> Self {
        Error::Remote { status, problem }
    }
}

/// A problem+json body (RFC 7807 as Backend.AI writes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `https://api.backend.ai/probs/<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A human sentence for the kind.
    pub title: String,
    /// Details of this occurrence.
    #[serde(default)]
    pub msg: String,
}

/// The prefix of every problem `type`.
pub const PROBLEM_BASE: &str = "https://api.backend.ai/probs/";

macro_rules! error_kinds {
    ($($(#[$doc:meta])* $kind:ident => $status:literal, $slug:literal, $title:literal;)*) => {
        /// Kinds of error, each with one HTTP status and one problem type. This is the one table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $($(#[$doc])* $kind,)*
        }

        impl ErrorKind {
            /// Every kind, in table order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind,)*];

            /// The HTTP status.
            pub fn status(self) -> u16 {
                match self { $(ErrorKind::$kind => $status,)* }
            }

            /// The slug after [`PROBLEM_BASE`].
            pub fn slug(self) -> &'static str {
                match self { $(ErrorKind::$kind => $slug,)* }
            }

            /// The problem title.
            pub fn title(self) -> &'static str {
                match self { $(ErrorKind::$kind => $title,)* }
            }
        }
    };
}

error_kinds! {
    /// 400: malformed or impossible parameters.
    InvalidParams => 400, "invalid-api-params", "Missing or invalid API parameters.";
    /// 401: authentication failed.
    AuthFailed => 401, "auth-failed", "Credential/signature mismatch.";
    /// 403: not allowed.
    Forbidden => 403, "forbidden", "Forbidden operation.";
    /// 404: no such route or object.
    NotFound => 404, "object-not-found", "No such object.";
    /// 404: no such session.
    SessionNotFound => 404, "session-not-found", "No such session.";
    /// 404: no such kernel.
    KernelNotFound => 404, "kernel-not-found", "No such kernel.";
    /// 404: no such agent.
    AgentNotFound => 404, "instance-not-found", "No such agent.";
    /// 404: no such image.
    ImageNotFound => 404, "image-not-found", "Unknown image.";
    /// 404: no such virtual folder.
    VFolderNotFound => 404, "vfolder-not-found", "Virtual folder not found.";
    /// 405: method not allowed on the path.
    MethodNotAllowed => 405, "method-not-allowed", "Method not allowed.";
    /// 409: the object exists already.
    AlreadyExists => 409, "session-already-exists", "The session already exists.";
    /// 409: a virtual folder of that name exists.
    VFolderAlreadyExists => 409, "vfolder-already-exists", "Virtual folder already exists.";
    /// 409: the object's state does not allow the operation.
    Conflict => 409, "invalid-session-state", "The operation does not fit the current state.";
    /// 412: a quota or limit would be exceeded.
    QuotaExceeded => 412, "quota-exceeded", "You have reached your resource limit.";
    /// 413: request body too large.
    PayloadTooLarge => 413, "request-too-large", "The request body is too large.";
    /// 415: wrong content type.
    UnsupportedMediaType => 415, "unsupported-media-type", "Unsupported content type.";
    /// 429: rate limit.
    TooManyRequests => 429, "too-many-requests", "Too many API requests.";
    /// 500: internal error.
    Internal => 500, "internal-server-error", "Something has gone wrong.";
    /// 501: capability not implemented by this server.
    NotImplemented => 501, "not-implemented", "This operation is not implemented.";
    /// 503: a dependency is unavailable.
    ServiceUnavailable => 503, "service-unavailable", "The service is unavailable.";
}

impl ErrorKind {
    /// The full problem `type` URL.
    pub fn type_url(self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug())
    }

    /// Finds the kind of a problem `type` URL.
    pub fn from_type(url: &str) -> Option<Self> {
        let slug = url.strip_prefix(PROBLEM_BASE)?;
        Self::ALL.iter().copied().find(|k| k.slug() == slug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_round_trips_through_the_table() {
        let e = Error::SessionNotFound { name: "s1".into() };
        let p = e.to_problem();
        assert_eq!(p.kind, "https://api.backend.ai/probs/session-not-found");
        let back = Error::from_problem(404, p);
        assert_eq!(back.kind(), ErrorKind::SessionNotFound);
        assert_eq!(back.kind().status(), 404);
    }

    #[test]
    fn slugs_are_unique_and_statuses_are_errors() {
        for (i, a) in ErrorKind::ALL.iter().enumerate() {
            assert!(a.status() >= 400);
            for b in &ErrorKind::ALL[i + 1..] {
                assert_ne!(a.slug(), b.slug());
            }
        }
    }

    #[test]
    fn internal_details_are_not_leaked() {
        let p = Error::internal("db password is hunter2").to_problem();
        assert!(!p.msg.contains("hunter2"));
        assert_eq!(p.kind, ErrorKind::Internal.type_url());
    }
}
