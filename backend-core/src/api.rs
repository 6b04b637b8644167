//! Wire types of the public REST API (Backend.AI v7.20230615), shared by the manager and the client.

pub mod admin;
pub mod vfolder;

use crate::model::{KernelRecord, SessionRecord, SessionType};
use crate::slots::ResourceSlots;
use crate::status::StatusHistory;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `GET /` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// API version.
    pub version: String,
    /// Server software version.
    pub manager: String,
}

/// `config` of a session-create request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Virtual folders to mount.
    #[serde(deserialize_with = "null_as_default")]
    pub mounts: Vec<String>,
    /// Mount paths per folder.
    #[serde(deserialize_with = "null_as_default")]
    pub mount_map: BTreeMap<String, String>,
    /// Environment variables for the kernels.
    #[serde(deserialize_with = "null_as_default")]
    pub environ: BTreeMap<String, String>,
    /// Slots per kernel (`cpu`, `mem`, ...).
    #[serde(deserialize_with = "null_as_default")]
    pub resources: ResourceSlots,
    /// Extra resource options (`shmem`).
    #[serde(deserialize_with = "null_as_default")]
    pub resource_opts: BTreeMap<String, serde_json::Value>,
    /// Scaling group.
    #[serde(rename = "scalingGroup", alias = "scaling_group")]
    pub scaling_group: Option<String>,
    /// Ports to open.
    #[serde(deserialize_with = "null_as_default")]
    pub preopen_ports: Vec<u16>,
    /// Legacy place of the cluster size.
    #[serde(rename = "clusterSize", skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<u32>,
    /// Admins: the agents the session must run on (`agentList`, as the official client sends it in `config`).
    #[serde(rename = "agentList", alias = "agent_list", skip_serializing_if = "Option::is_none")]
    pub agent_list: Option<Vec<String>>,
}

/// `POST /session` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateSessionRequest {
    /// Image reference (`python:3.11`); `lang` in the oldest API.
    #[serde(alias = "lang")]
    pub image: Option<String>,
    /// Session name (`clientSessionToken` in older APIs).
    #[serde(alias = "clientSessionToken")]
    pub name: Option<String>,
    /// interactive or batch.
    #[serde(rename = "type", alias = "sess_type")]
    pub session_type: Option<String>,
    /// Group (project) name.
    pub group: Option<String>,
    /// Domain name.
    pub domain: Option<String>,
    /// Number of kernels.
    #[serde(rename = "clusterSize", alias = "cluster_size")]
    pub cluster_size: Option<u32>,
    /// single-node or multi-node.
    #[serde(rename = "clusterMode", alias = "cluster_mode")]
    pub cluster_mode: Option<String>,
    /// Kernel configuration.
    #[serde(deserialize_with = "null_as_default")]
    pub config: SessionConfig,
    /// Free-form tag.
    pub tag: Option<String>,
    /// Answer at once with PENDING instead of waiting.
    #[serde(rename = "enqueueOnly", alias = "enqueue_only")]
    pub enqueue_only: Option<bool>,
    /// Wait at most this long for RUNNING (0: until it is scheduled and started or fails).
    #[serde(rename = "maxWaitSeconds", alias = "max_wait_seconds")]
    pub max_wait_seconds: Option<u64>,
    /// Return the caller's live session of the same name instead of failing (default true).
    #[serde(rename = "reuseIfExists", alias = "reuse_if_exists")]
    pub reuse_if_exists: Option<bool>,
    /// Batch sessions: the command to run.
    #[serde(rename = "startupCommand", alias = "startup_command")]
    pub startup_command: Option<String>,
    /// A script run before the kernel starts.
    pub bootstrap_script: Option<String>,
    /// Batch sessions: how long the startup command may run (seconds as a number, or a duration such as `"30s"`,
    /// `"10m"`, `"2h"`, `"1d"`; see [`parse_batch_timeout`]); past it the session fails with `batch-timeout`.
    #[serde(alias = "batchTimeout", skip_serializing_if = "Option::is_none")]
    pub batch_timeout: Option<serde_json::Value>,
    /// Do not start before this time: RFC 3339 (`2024-05-01T09:00:00+09:00`; without an offset it is UTC), or a
    /// delay from now such as `1h30m` (see [`parse_starts_at`]).
    #[serde(alias = "startsAt")]
    pub starts_at: Option<String>,
    /// Sessions (ids or names of the owner's sessions) that must end successfully before this one starts.
    pub dependencies: Option<Vec<String>>,
    /// Admins: the agents the session must run on (also accepted in `config`).
    #[serde(rename = "agent_list", alias = "agentList", skip_serializing_if = "Option::is_none")]
    pub agent_list: Option<Vec<String>>,
    /// URL called on status changes.
    pub callback_url: Option<String>,
    /// Admins: act for this keypair.
    pub owner_access_key: Option<String>,
    /// CPU architecture wanted.
    pub architecture: Option<String>,
    /// Scheduling priority (higher first).
    pub priority: Option<i32>,
}

/// `POST /session` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSessionResponse {
    /// The session's id.
    #[serde(rename = "sessionId")]
    pub session_id: String,
    /// Its name.
    #[serde(rename = "sessionName")]
    pub session_name: String,
    /// Its status when answered.
    pub status: String,
    /// Service ports (none for now).
    #[serde(rename = "servicePorts", default)]
    pub service_ports: Vec<serde_json::Value>,
    /// False when an existing session was reused.
    pub created: bool,
}

/// One kernel in a session's info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// Kernel id.
    pub id: String,
    /// `main1`, `sub1`, ...
    #[serde(rename = "clusterHostname")]
    pub cluster_hostname: String,
    /// main or sub.
    #[serde(rename = "clusterRole")]
    pub cluster_role: String,
    /// Status.
    pub status: String,
    /// Why.
    #[serde(rename = "statusInfo")]
    pub status_info: Option<String>,
    /// Agent it runs on.
    pub agent: Option<String>,
    /// Slots it holds.
    #[serde(rename = "occupiedSlots")]
    pub occupied_slots: ResourceSlots,
    /// Exit code when ended.
    #[serde(rename = "exitCode")]
    pub exit_code: Option<i32>,
}

/// `GET /session/{name}` answer (Backend.AI's keys plus `kernels` and `statusHistory`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Session id.
    #[serde(rename = "sessionId")]
    pub session_id: String,
    /// Session name.
    #[serde(rename = "sessionName")]
    pub session_name: String,
    /// Owner's access key.
    #[serde(rename = "accessKey")]
    pub access_key: String,
    /// Domain.
    #[serde(rename = "domainName")]
    pub domain_name: String,
    /// Group.
    #[serde(rename = "groupName")]
    pub group_name: String,
    /// Image.
    pub image: String,
    /// Image (legacy key).
    pub lang: String,
    /// interactive or batch.
    #[serde(rename = "type")]
    pub session_type: String,
    /// User tag.
    pub tag: Option<String>,
    /// Status.
    pub status: String,
    /// Why.
    #[serde(rename = "statusInfo")]
    pub status_info: Option<String>,
    /// Every status with its time.
    #[serde(rename = "statusHistory")]
    pub status_history: StatusHistory,
    /// SUCCESS, FAILURE or UNDEFINED.
    pub result: String,
    /// Slots asked for.
    #[serde(rename = "requestedSlots")]
    pub requested_slots: ResourceSlots,
    /// Slots held now.
    #[serde(rename = "occupiedSlots")]
    pub occupied_slots: ResourceSlots,
    /// Environment.
    pub environ: BTreeMap<String, String>,
    /// Agents its kernels run on.
    pub agents: Vec<String>,
    /// Created at (RFC 3339).
    #[serde(rename = "creationTime")]
    pub creation_time: String,
    /// Terminated at (RFC 3339).
    #[serde(rename = "terminationTime")]
    pub termination_time: Option<String>,
    /// Seconds since creation (until termination).
    pub age: f64,
    /// Resource options in force (`shmem`: bytes of `/dev/shm` per kernel); empty when none was asked for.
    #[serde(rename = "resourceOpts", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_opts: BTreeMap<String, u64>,
    /// Batch sessions: how long the startup command may run, in seconds (`batch_timeout`).
    #[serde(rename = "batchTimeout", default, skip_serializing_if = "Option::is_none")]
    pub batch_timeout: Option<u64>,
    /// Its kernels.
    pub kernels: Vec<KernelInfo>,
}

impl SessionInfo {
    /// Builds the answer from records.
    pub fn from_records(s: &SessionRecord, kernels: &[KernelRecord], now: chrono::DateTime<chrono::Utc>) -> Self {
        let occupied = kernels.iter().fold(ResourceSlots::new(), |acc, k| acc + k.occupied_slots.clone());
        let mut agents: Vec<String> =
            kernels.iter().filter_map(|k| k.agent_id.as_ref().map(|a| a.to_string())).collect();
        agents.dedup();
        let end = s.terminated_at.unwrap_or(now);
        Self {
            session_id: s.id.to_string(),
            session_name: s.name.clone(),
            access_key: s.access_key.to_string(),
            domain_name: s.domain.clone(),
            group_name: s.group.clone(),
            image: s.image.clone(),
            lang: s.image.clone(),
            session_type: s.session_type.as_str().to_owned(),
            tag: s.tag.clone(),
            status: s.status.to_string(),
            status_info: s.status_info.clone(),
            status_history: s.status_history.clone(),
            result: s.result.as_str().to_owned(),
            requested_slots: s.requested_slots.clone(),
            occupied_slots: occupied,
            environ: s.environ.clone(),
            agents,
            creation_time: s.created_at.to_rfc3339(),
            termination_time: s.terminated_at.map(|t| t.to_rfc3339()),
            age: (end - s.created_at).num_milliseconds() as f64 / 1000.0,
            resource_opts: s.shmem.map(|b| ("shmem".to_owned(), b)).into_iter().collect(),
            batch_timeout: s.batch_timeout,
            kernels: kernels
                .iter()
                .map(|k| KernelInfo {
                    id: k.id.to_string(),
                    cluster_hostname: k.cluster_hostname.clone(),
                    cluster_role: k.cluster_role.clone(),
                    status: k.status.to_string(),
                    status_info: k.status_info.clone(),
                    agent: k.agent_id.as_ref().map(|a| a.to_string()),
                    occupied_slots: k.occupied_slots.clone(),
                    exit_code: k.exit_code,
                })
                .collect(),
        }
    }
}

/// One row of `GET /session` (the caller's sessions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Session id.
    #[serde(rename = "sessionId")]
    pub session_id: String,
    /// Name.
    #[serde(rename = "sessionName")]
    pub session_name: String,
    /// Image.
    pub image: String,
    /// Type.
    #[serde(rename = "type")]
    pub session_type: String,
    /// Status.
    pub status: String,
    /// Why.
    #[serde(rename = "statusInfo")]
    pub status_info: Option<String>,
    /// Created at.
    #[serde(rename = "creationTime")]
    pub creation_time: String,
}

impl From<&SessionRecord> for SessionSummary {
    fn from(s: &SessionRecord) -> Self {
        Self {
            session_id: s.id.to_string(),
            session_name: s.name.clone(),
            image: s.image.clone(),
            session_type: s.session_type.as_str().to_owned(),
            status: s.status.to_string(),
            status_info: s.status_info.clone(),
            creation_time: s.created_at.to_rfc3339(),
        }
    }
}

/// `GET /session` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    /// The caller's sessions, newest first.
    pub sessions: Vec<SessionSummary>,
}

/// `DELETE /session/{name}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyResponse {
    /// Final stats where known (exit codes per kernel for now).
    pub stats: BTreeMap<String, serde_json::Value>,
}

/// The mode of an execute request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecuteMode {
    /// Run code.
    Query,
    /// Run clean/build/exec commands.
    Batch,
    /// Collect more output of a run.
    Continue,
    /// Send input to a run waiting for it.
    Input,
    /// Code completion.
    Complete,
}

/// `POST /session/{name}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteRequest {
    /// What to do.
    pub mode: ExecuteMode,
    /// Code (query), input text (input), or text before the cursor (complete).
    #[serde(default, deserialize_with = "null_as_default")]
    pub code: String,
    /// The run (required for continue and input; made by the server when absent for query and batch).
    #[serde(rename = "runId", default)]
    pub run_id: Option<String>,
    /// Batch commands (`clean`, `build`, `exec`) and other options.
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: serde_json::Value,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Ended; `exitCode` is set.
    Finished,
    /// Still running; call again with mode=continue.
    Continued,
    /// Reading stdin; call again with mode=input.
    WaitingInput,
    /// Batch: clean done.
    CleanFinished,
    /// Batch: build done.
    BuildFinished,
    /// Took longer than allowed.
    ExecTimeout,
}

/// One console item, on the wire `[type, data]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleItem {
    /// Standard output text.
    Stdout(String),
    /// Standard error text.
    Stderr(String),
    /// `[mime, payload]`.
    Media(String, String),
    /// HTML.
    Html(String),
    /// Completion candidates.
    Completion(Vec<String>),
}

impl Serialize for ConsoleItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ConsoleItem::Stdout(t) => ("stdout", t).serialize(s),
            ConsoleItem::Stderr(t) => ("stderr", t).serialize(s),
            ConsoleItem::Media(m, d) => ("media", (m, d)).serialize(s),
            ConsoleItem::Html(t) => ("html", t).serialize(s),
            ConsoleItem::Completion(c) => ("completion", c).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ConsoleItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let (kind, data): (String, serde_json::Value) = Deserialize::deserialize(d)?;
        let text =
            |v: serde_json::Value| v.as_str().map(str::to_owned).ok_or_else(|| D::Error::custom("text expected"));
        Ok(match kind.as_str() {
            "stdout" => ConsoleItem::Stdout(text(data)?),
            "stderr" => ConsoleItem::Stderr(text(data)?),
            "html" => ConsoleItem::Html(text(data)?),
            "media" => {
                let (m, p): (String, String) = serde_json::from_value(data).map_err(D::Error::custom)?;
                ConsoleItem::Media(m, p)
            }
            "completion" => ConsoleItem::Completion(serde_json::from_value(data).map_err(D::Error::custom)?),
            other => return Err(D::Error::custom(format!("unknown console item {other:?}"))),
        })
    }
}

/// The result of one execute call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionResult {
    /// The run.
    #[serde(rename = "runId")]
    pub run_id: String,
    /// Where it is.
    pub status: RunStatus,
    /// Set when finished (and after each batch phase).
    #[serde(rename = "exitCode")]
    pub exit_code: Option<i32>,
    /// Options echoed back (the prompt when waiting for input).
    #[serde(default)]
    pub options: serde_json::Value,
    /// Files produced (none for now).
    #[serde(default)]
    pub files: Vec<serde_json::Value>,
    /// Output since the previous call.
    pub console: Vec<ConsoleItem>,
}

/// `POST /session/{name}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteResponse {
    /// The result.
    pub result: ExecutionResult,
}

/// Parses a session type name (interactive or batch), defaulting to interactive.
pub fn session_type_of(req: &CreateSessionRequest) -> crate::Result<SessionType> {
    req.session_type.as_deref().map(str::parse).transpose().map(Option::unwrap_or_default)
}

/// The time limit an execute request's `options.exec_timeout` sets: seconds, a positive number (or a string holding
/// one, such as `"2.5"`); `None` when absent or null. Anything else is refused (400) naming `options.exec_timeout`.
pub fn exec_timeout(options: &serde_json::Value) -> crate::Result<Option<std::time::Duration>> {
    let Some(value) = options.get("exec_timeout").filter(|v| !v.is_null()) else { return Ok(None) };
    let seconds = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match seconds.filter(|s| s.is_finite() && *s > 0.0).and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()) {
        Some(limit) => Ok(Some(limit.max(std::time::Duration::from_millis(1)))),
        None => Err(crate::Error::InvalidParams {
            msg: format!("options.exec_timeout must be a positive number of seconds, not {value}"),
        }),
    }
}

/// The seconds a `batch_timeout` value names: a whole number of seconds (a JSON number, or a string of digits), or
/// a string of whole numbers with the units `d`, `h`, `m`, `s` (`"30s"`, `"10m"`, `"2h"`, `"1d"`, `"1h30m"`).
/// `None` for null; zero and anything else are refused (400) naming `batch_timeout`.
pub fn parse_batch_timeout(value: &serde_json::Value) -> crate::Result<Option<u64>> {
    let invalid = || {
        crate::Error::InvalidParams {
        msg: format!(
            "batch_timeout must be a positive whole number of seconds or a duration such as \"30s\", \"10m\",              \"2h\", \"1d\", not {value}"
        ),
    }
    };
    let seconds = match value {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Number(n) => n.as_u64().ok_or_else(invalid)?,
        serde_json::Value::String(s) => {
            let text = s.trim();
            if text.is_empty() {
                return Err(invalid());
            }
            let (mut total, mut digits) = (0u64, String::new());
            for c in text.chars() {
                if c.is_ascii_digit() {
                    digits.push(c);
                    continue;
                }
                let unit = match c {
                    'd' => 86_400,
                    'h' => 3_600,
                    'm' => 60,
                    's' => 1,
                    _ => return Err(invalid()),
                };
                let n: u64 = digits.parse().map_err(|_| invalid())?;
                digits.clear();
                total = n.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(invalid)?;
            }
            if !digits.is_empty() {
                // Plain digits, or digits after the last unit ("1m30"): seconds.
                let n: u64 = digits.parse().map_err(|_| invalid())?;
                total = total.checked_add(n).ok_or_else(invalid)?;
            }
            total
        }
        _ => return Err(invalid()),
    };
    if seconds == 0 {
        return Err(invalid());
    }
    Ok(Some(seconds))
}

/// The time a `starts_at` value names: an RFC 3339 time (`2024-05-01T09:00:00Z`, `2024-05-01T09:00:00+09:00`), an
/// ISO 8601 time without an offset (taken as UTC), or a delay from `now` written as whole numbers with the units `w`,
/// `d`, `h`, `m`, `s` (`1h30m`, `90s`, `2d`), as the official client's `--starts-at` documents.
pub fn parse_starts_at(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::Result<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDateTime, Utc};
    let value = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, format) {
            return Ok(t.and_utc());
        }
    }
    let invalid = || crate::Error::InvalidParams {
        msg: format!("invalid starts_at {value:?}: give an RFC 3339 time or a delay such as \"1h30m\""),
    };
    let mut seconds: i64 = 0;
    let mut digits = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let n: i64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        seconds = n.checked_mul(unit).and_then(|s| seconds.checked_add(s)).ok_or_else(invalid)?;
    }
    if !digits.is_empty() || value.is_empty() {
        return Err(invalid());
    }
    chrono::Duration::try_seconds(seconds).and_then(|d| now.checked_add_signed(d)).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_timeout_takes_positive_seconds_only() {
        use serde_json::json;
        let limit = |v: serde_json::Value| exec_timeout(&json!({ "exec_timeout": v }));
        assert_eq!(exec_timeout(&json!({})).unwrap(), None);
        assert_eq!(exec_timeout(&serde_json::Value::Null).unwrap(), None);
        assert_eq!(limit(json!(null)).unwrap(), None);
        assert_eq!(limit(json!(2)).unwrap(), Some(std::time::Duration::from_secs(2)));
        assert_eq!(limit(json!(0.5)).unwrap(), Some(std::time::Duration::from_millis(500)));
        assert_eq!(limit(json!("3")).unwrap(), Some(std::time::Duration::from_secs(3)));
        for bad in [json!(0), json!(-1), json!("soon"), json!(true), json!([1]), json!("0")] {
            let err = limit(bad.clone()).unwrap_err().to_string();
            assert!(err.contains("options.exec_timeout"), "{bad}: {err}");
        }
    }

    #[test]
    fn batch_timeout_takes_seconds_and_durations() {
        use serde_json::json;
        let secs = |v: serde_json::Value| parse_batch_timeout(&v);
        assert_eq!(secs(json!(null)).unwrap(), None);
        assert_eq!(secs(json!(30)).unwrap(), Some(30));
        assert_eq!(secs(json!("45")).unwrap(), Some(45));
        assert_eq!(secs(json!("30s")).unwrap(), Some(30));
        assert_eq!(secs(json!("10m")).unwrap(), Some(600));
        assert_eq!(secs(json!("2h")).unwrap(), Some(7_200));
        assert_eq!(secs(json!("1d")).unwrap(), Some(86_400));
        assert_eq!(secs(json!("1h30m")).unwrap(), Some(5_400));
        for bad in [json!(0), json!(-5), json!(1.5), json!(""), json!("0s"), json!("5x"), json!("soon"), json!(true)] {
            let err = secs(bad.clone()).unwrap_err().to_string();
            assert!(err.contains("batch_timeout"), "{bad}: {err}");
        }
    }

    #[test]
    fn starts_at_takes_rfc3339_naive_utc_and_delays() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z").unwrap().to_utc();
        let at = |v: &str| parse_starts_at(v, now).map(|t| t.to_rfc3339());
        assert_eq!(at("2024-05-01T09:00:00+09:00").unwrap(), "2024-05-01T00:00:00+00:00");
        assert_eq!(at("2024-05-02T01:02:03").unwrap(), "2024-05-02T01:02:03+00:00");
        assert_eq!(at("1h30m").unwrap(), "2024-05-01T01:30:00+00:00");
        assert_eq!(at("2d").unwrap(), "2024-05-03T00:00:00+00:00");
        for bad in ["", "soon", "1h30", "5x", "tomorrow 9am"] {
            assert!(at(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn accepts_what_the_official_client_sends() {
        let body = serde_json::json!({
            "tag": null, "name": "s1",
            "config": {"mounts": [], "environ": null, "resources": {"cpu": 1, "mem": "1g"}, "resource_opts": {},
                       "scalingGroup": null, "mount_map": {}, "preopen_ports": null},
            "dependencies": null, "callback_url": null, "architecture": "x86_64",
            "clusterSize": 1, "clusterMode": "single-node", "starts_at": null, "bootstrap_script": null,
            "owner_access_key": null, "domain": "default", "group": "default", "type": "interactive",
            "enqueueOnly": false, "maxWaitSeconds": 0, "reuseIfExists": true, "startupCommand": null,
            "image": "python:3.11"
        });
        let req: CreateSessionRequest = serde_json::from_value(body).unwrap();
        assert_eq!(req.image.as_deref(), Some("python:3.11"));
        assert_eq!(req.config.resources.get("mem"), rust_decimal::Decimal::from(1u64 << 30));
        assert_eq!(session_type_of(&req).unwrap(), SessionType::Interactive);
        let legacy: CreateSessionRequest =
            serde_json::from_value(serde_json::json!({"lang": "python", "clientSessionToken": "abcd"})).unwrap();
        assert_eq!((legacy.image.as_deref(), legacy.name.as_deref()), (Some("python"), Some("abcd")));
    }

    #[test]
    fn console_items_are_pairs() {
        let items = vec![ConsoleItem::Stdout("1\n".into()), ConsoleItem::Media("image/png".into(), "AAA".into())];
        let v = serde_json::to_value(&items).unwrap();
        assert_eq!(v, serde_json::json!([["stdout", "1\n"], ["media", ["image/png", "AAA"]]]));
        assert_eq!(serde_json::from_value::<Vec<ConsoleItem>>(v).unwrap(), items);
        let r: ExecuteRequest =
            serde_json::from_value(serde_json::json!({"mode": "query", "code": "x", "runId": null})).unwrap();
        assert_eq!(r.run_id, None);
    }
}
