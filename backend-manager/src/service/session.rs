//! The session service: create (validate, record, wait), start (place kernels on agents), execute, interrupt,
//! restart and destroy, the main kernel's files, and the lifecycle events each status change publishes. Its
//! operations are [`Manager`] methods; those on an existing session take the owner's access key
//! ([`crate::service::context::acting_for`]).

use crate::service::context::{Acting, RequestContext};
use crate::Manager;
use backend_agent::files::FileEntry;
use backend_core::api::{
    parse_batch_timeout, parse_starts_at, session_type_of, CreateSessionRequest, CreateSessionResponse,
    DestroyResponse, ExecuteMode, ExecuteRequest, ExecutionResult, RunStatus, SessionInfo,
};
use backend_core::error::{Error, Result};
use backend_core::events::Event;
use backend_core::ids::{AccessKey, AgentId, KernelId, SessionId};
use backend_core::model::{KernelRecord, KeyPair, SessionRecord, SessionResult, SessionType};
use backend_core::runtime::{resolve_image, KernelHandle, KernelSpec};
use backend_core::scheduler::{could_ever_fit, AgentSnapshot, PendingSession};
use backend_core::status::{KernelStatus, SessionStatus, StatusHistory};
use backend_core::store::{Allocated, KernelChange, SessionChange, SessionFilter};
use chrono::Utc;
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

fn valid_name(name: &str) -> bool {
    (4..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with(['-', '.'])
}

/// The Backend.AI event name of a kernel status, if it has one.
fn kernel_event(s: KernelStatus) -> Option<&'static str> {
    Some(match s {
        KernelStatus::Preparing => "kernel_preparing",
        KernelStatus::Pulling => "kernel_pulling",
        KernelStatus::Creating => "kernel_creating",
        KernelStatus::Running => "kernel_started",
        KernelStatus::Terminating => "kernel_terminating",
        KernelStatus::Terminated | KernelStatus::Error | KernelStatus::Cancelled => "kernel_terminated",
        _ => return None,
    })
}

/// The Backend.AI event name of a session status, for the statuses that have one (PREPARING stands for the whole
/// preparation, so PULLING and CREATING publish nothing of their own).
fn session_event(s: SessionStatus) -> Option<&'static str> {
    Some(match s {
        SessionStatus::Pending => "session_enqueued",
        SessionStatus::Scheduled => "session_scheduled",
        SessionStatus::Preparing => "session_preparing",
        SessionStatus::Running | SessionStatus::RunningDegraded => "session_started",
        SessionStatus::Terminating => "session_terminating",
        SessionStatus::Terminated => "session_terminated",
        SessionStatus::Cancelled => "session_cancelled",
        SessionStatus::Error => "session_failure",
        SessionStatus::Pulling | SessionStatus::Creating | SessionStatus::Restarting => return None,
    })
}

/// Kernels being created on agents at once by one start (and the most creations recorded in one store call).
const CREATIONS_AT_ONCE: usize = 256;

/// The session's lifecycle event for entering `status`, if it has one.
pub(crate) fn session_lifecycle(id: SessionId, status: SessionStatus, reason: Option<String>) -> Option<Event> {
    Some(Event::SessionLifecycle {
        event: session_event(status)?.into(),
        session_id: id,
        kernel_id: None,
        status: status.to_string(),
        reason,
        exit_code: None,
    })
}

impl Manager {
    pub(crate) async fn publish_lifecycle(&self, id: SessionId, status: SessionStatus, reason: Option<String>) {
        if let Some(event) = session_lifecycle(id, status, reason) {
            if let Err(e) = self.bus.publish(event).await {
                tracing::warn!(session = %id, error = %e, "could not publish a session event");
            }
        }
        if status.is_dead() {
            // Freed resources may let pending sessions in.
            self.wake_scheduler.notify_one();
        }
    }

    /// Changes a kernel through the store and publishes the kernel's and, when it changed, the session's event.
    pub async fn change_kernel(&self, kernel: KernelId, change: KernelChange) -> Result<KernelRecord> {
        let mut answers = self.change_kernels(&[(kernel, change)]).await?;
        answers.pop().unwrap_or_else(|| Err(Error::internal("update_kernels answered nothing")))
    }

    /// Changes several kernels in one store call ([`MetadataStore::update_kernels`]) and publishes the events of
    /// the changes made together. One answer per change, in order; `Err` when the store failed and nothing changed.
    ///
    /// [`MetadataStore::update_kernels`]: backend_core::store::MetadataStore::update_kernels
    pub async fn change_kernels(&self, changes: &[(KernelId, KernelChange)]) -> Result<Vec<Result<KernelRecord>>> {
        let answers = self.store.update_kernels(changes, Utc::now()).await?;
        let mut events = Vec::new();
        let mut freed = false;
        let mut out = Vec::with_capacity(answers.len());
        for ((_, change), answer) in changes.iter().zip(answers) {
            match answer {
                Ok(t) => {
                    if let Some(name) = kernel_event(change.status) {
                        events.push(Event::SessionLifecycle {
                            event: name.into(),
                            session_id: t.kernel.session_id,
                            kernel_id: Some(t.kernel.id),
                            status: change.status.to_string(),
                            reason: change.status_info.clone(),
                            exit_code: change.exit_code,
                        });
                    }
                    if let Some((_, to)) = t.session {
                        events.extend(session_lifecycle(t.kernel.session_id, to, change.status_info.clone()));
                        freed |= to.is_dead();
                    }
                    out.push(Ok(t.kernel));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if let Err(e) = self.bus.publish_all(events).await {
            tracing::warn!(error = %e, "could not publish kernel events");
        }
        if freed {
            // Freed resources may let pending sessions in.
            self.wake_scheduler.notify_one();
        }
        Ok(out)
    }

    /// The keypair resource policy's refusals at enqueue time: more kernels than `max_containers_per_session`, a
    /// request larger than `total_resource_slots` (it could never run), and `max_pending_session_count` sessions
    /// already waiting. Limits on what runs at once (`max_concurrent_sessions`, the slots in use) are the
    /// scheduler's: such a session waits instead.
    pub async fn check_policy_at_enqueue(
        &self,
        ctx: &RequestContext,
        cluster_size: u32,
        total: &backend_core::ResourceSlots,
    ) -> Result<()> {
        let Some(policy) = &ctx.policy else { return Ok(()) };
        if policy.max_containers_per_session > 0 && cluster_size > policy.max_containers_per_session {
            return Err(Error::QuotaExceeded {
                msg: format!(
                    "{cluster_size} kernels asked, the resource policy allows {} per session",
                    policy.max_containers_per_session
                ),
            });
        }
        if let Some((slot, limit)) = policy.total_resource_slots.iter().find(|(slot, limit)| total.get(slot) > *limit) {
            return Err(Error::QuotaExceeded {
                msg: format!(
                    "the session asks for {slot}={} but the keypair may use at most {}",
                    total.get(slot).normalize(),
                    limit.normalize()
                ),
            });
        }
        if let Some(limit) = policy.max_pending_session_count {
            let waiting = self.count_pending_sessions(ctx.acting.owner_key()).await?;
            if waiting >= limit as usize {
                return Err(Error::QuotaExceeded {
                    msg: format!("{waiting} sessions already pending; the resource policy allows {limit}"),
                });
            }
        }
        Ok(())
    }

    /// How many sessions of `owner` are PENDING.
    async fn count_pending_sessions(&self, owner: &AccessKey) -> Result<usize> {
        let filter = SessionFilter {
            access_key: Some(owner.clone()),
            statuses: Some(vec![SessionStatus::Pending]),
            limit: None,
        };
        self.store.count_sessions(&filter).await
    }

    /// Validates and records a new session, then waits as the request asks. The owner's keypair, user, resource
    /// policy, domain and group are each read once ([`RequestContext`], [`SessionScope`](crate::service::context::SessionScope)) and handed to the checks.
    pub async fn create_session(&self, caller: &KeyPair, req: CreateSessionRequest) -> Result<Creation> {
        let acting = Acting::resolve(self, caller, req.owner_access_key.as_deref()).await?;
        let owner = acting.owner_key().clone();
        let image_ref = req
            .image
            .clone()
            .filter(|i| !i.trim().is_empty())
            .ok_or_else(|| Error::InvalidParams { msg: "`image` is required".into() })?;
        let name = match &req.name {
            Some(n) if valid_name(n) => n.clone(),
            Some(n) => {
                return Err(Error::InvalidParams {
                    msg: format!("invalid session name {n:?}: 4 to 64 letters, digits, '-', '_' or '.'"),
                })
            }
            None => format!("sess-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        };
        let session_type = session_type_of(&req)?;
        let cluster_size = req.cluster_size.or(req.config.cluster_size).unwrap_or(1);
        if cluster_size == 0 || cluster_size > self.config.max_cluster_size {
            return Err(Error::InvalidParams {
                msg: format!("clusterSize must be between 1 and {}", self.config.max_cluster_size),
            });
        }
        match req.cluster_mode.as_deref() {
            None | Some("single-node") | Some("multi-node") => {}
            Some(other) => return Err(Error::InvalidParams { msg: format!("unknown clusterMode {other:?}") }),
        }
        refuse_unsupported(&req)?;
        let batch_timeout = req.batch_timeout.as_ref().map(parse_batch_timeout).transpose()?.flatten();
        if batch_timeout.is_some() && session_type != SessionType::Batch {
            return Err(Error::InvalidParams {
                msg: "batch_timeout limits a batch session's startup command; this session is not `type: batch`".into(),
            });
        }
        if session_type == SessionType::Batch && req.startup_command.as_deref().is_none_or(|c| c.trim().is_empty()) {
            return Err(Error::InvalidParams { msg: "batch sessions need a startupCommand".into() });
        }
        let mut slots = self.config.default_resources.clone();
        for (k, v) in req.config.resources.iter() {
            slots.set(k, v);
        }
        if slots.get("cpu").is_zero() {
            return Err(Error::InvalidParams { msg: "cpu must be more than 0".into() });
        }

        if let Some(existing) = self.store.find_session(&owner, &name).await? {
            if !existing.status.is_dead() {
                if req.reuse_if_exists.unwrap_or(true) {
                    return Ok(Creation::Reused(response(&existing, false)));
                }
                return Err(Error::AlreadyExists { msg: format!("session {name:?} exists") });
            }
        }

        let ctx = RequestContext::load(self, acting).await?;
        let scope = ctx.session_scope(self, req.domain.as_deref(), req.group.as_deref()).await?;
        let scaling_group = req.config.scaling_group.clone().unwrap_or_else(|| "default".into());
        let all_agents = self.store.list_agents().await?;
        let architecture = req.architecture.clone().filter(|a| !a.trim().is_empty());
        if let Some(arch) = architecture.as_deref() {
            if !all_agents.iter().any(|a| a.architecture == arch) {
                return Err(Error::InvalidParams { msg: format!("no agent has the architecture {arch:?}") });
            }
        }
        let designated_agents = designated_agents(caller, &req)?;
        if let Some(id) = designated_agents.iter().find(|id| !all_agents.iter().any(|a| a.id == **id)) {
            return Err(Error::AgentNotFound { id: id.to_string() });
        }
        let starts_at = match req.starts_at.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(value) => Some(parse_starts_at(value, Utc::now())?),
            None => None,
        };
        let mut dependencies: Vec<SessionId> = Vec::new();
        for dep in req.dependencies.iter().flatten().map(|d| d.trim()).filter(|d| !d.is_empty()) {
            let found = self.store.find_session(&owner, dep).await?;
            let found =
                found.ok_or_else(|| Error::SessionNotFound { name: format!("{dep} (named in dependencies)") })?;
            if !dependencies.contains(&found.id) {
                dependencies.push(found.id);
            }
        }
        let vfolder_mounts = if req.config.mounts.is_empty() && req.config.mount_map.is_empty() {
            Vec::new()
        } else {
            // Folders are the owner's: an admin acting for a keypair mounts what that keypair's user may use.
            self.resolve_mounts(&ctx, &req.config.mounts, &req.config.mount_map).await?
        };
        let agents = AgentSnapshot::schedulable(&all_agents);
        let image = agents
            .iter()
            .filter(|a| a.scaling_group == scaling_group)
            .find_map(|a| resolve_image(&a.images, &image_ref))
            .ok_or_else(|| Error::ImageNotFound { image: image_ref.clone() })?
            .clone();
        // Image minimums: a slot the request leaves to the defaults is raised to the image's minimum; a slot the
        // request names below it is refused, so nobody gets less than they asked for silently.
        for (k, v) in image.min_slots.iter() {
            if slots.get(k) < v {
                if req.config.resources.names().any(|n| n == k) {
                    return Err(Error::InvalidParams {
                        msg: format!("image {} needs at least {k}={}", image.name, v.normalize()),
                    });
                }
                slots.set(k, v);
            }
        }
        let shmem = shmem_of(&req, &slots)?;
        self.check_policy_at_enqueue(&ctx, cluster_size, &slots.scaled(cluster_size)).await?;
        scope.refuse_over_quota(&slots.scaled(cluster_size))?;

        let now = Utc::now();
        let session_id = SessionId::new();
        let kernels: Vec<KernelRecord> = (0..cluster_size)
            .map(|i| {
                let (role, idx) = if i == 0 { ("main", 1) } else { ("sub", i) };
                KernelRecord {
                    id: KernelId::new(),
                    session_id,
                    access_key: owner.clone(),
                    cluster_role: role.into(),
                    cluster_idx: idx,
                    cluster_hostname: format!("{role}{idx}"),
                    image: image.name.clone(),
                    agent_id: None,
                    agent_addr: None,
                    container_id: None,
                    status: KernelStatus::Pending,
                    status_info: None,
                    status_history: StatusHistory::starting(KernelStatus::Pending, now),
                    requested_slots: slots.clone(),
                    occupied_slots: Default::default(),
                    exit_code: None,
                    created_at: now,
                    terminated_at: None,
                }
            })
            .collect();
        let session = SessionRecord {
            id: session_id,
            name: name.clone(),
            access_key: owner.clone(),
            domain: scope.domain,
            group: scope.group,
            session_type,
            image: image.name.clone(),
            cluster_size,
            status: SessionStatus::Pending,
            status_info: None,
            status_history: StatusHistory::starting(SessionStatus::Pending, now),
            requested_slots: slots.scaled(cluster_size),
            environ: req.config.environ.clone(),
            tag: req.tag.clone(),
            scaling_group,
            priority: req.priority.unwrap_or(0),
            startup_command: req.startup_command.clone(),
            result: SessionResult::Undefined,
            created_at: now,
            terminated_at: None,
            starts_at,
            dependencies,
            designated_agents,
            architecture,
            bootstrap_script: req.bootstrap_script.clone().filter(|s| !s.trim().is_empty()),
            batch_timeout,
            shmem,
            vfolder_mounts,
        };
        let pending = PendingSession::from_records(&session, &kernels);
        if !could_ever_fit(&pending, &agents) {
            let served = |slot: &str| agents.iter().any(|a| !a.available.get(slot).is_zero());
            if let Some(slot) = slots.iter().filter(|(_, v)| !v.is_zero()).map(|(k, _)| k).find(|k| !served(k)) {
                return Err(Error::InvalidParams { msg: format!("no agent provides the resource slot {slot:?}") });
            }
            return Err(Error::InvalidParams {
                msg: format!(
                    "no agent in scaling group {:?} could ever provide {slots} per kernel for image {}",
                    session.scaling_group, image.name
                ),
            });
        }

        // Subscribe before the session exists so its start cannot be missed.
        let mut events = self.bus.subscribe().await?;
        self.store.insert_session(&session, &kernels).await?;
        self.publish_lifecycle(session_id, SessionStatus::Pending, None).await;
        self.wake_scheduler.notify_one();
        // A session that waits for a time or for other sessions answers PENDING at once: its wait has no bound a
        // request could sit through.
        let deferred = session.starts_at.is_some_and(|t| t > now) || !session.dependencies.is_empty();
        if req.enqueue_only.unwrap_or(false) || deferred {
            return Ok(Creation::New(response(&session, true)));
        }
        let settled = |s: SessionStatus| s == SessionStatus::Running || s.is_dead();
        let wait = async {
            while let Some(ev) = events.next().await {
                if let Event::SessionLifecycle { session_id: id, kernel_id: None, status, .. } = &ev {
                    if *id == session_id && status.parse().is_ok_and(settled) {
                        return;
                    }
                }
            }
        };
        match req.max_wait_seconds.filter(|s| *s > 0) {
            Some(secs) => {
                let _ = tokio::time::timeout(Duration::from_secs(secs), wait).await;
            }
            None => wait.await,
        }
        let now = self.store.session(session_id).await?.ok_or(Error::SessionNotFound { name })?;
        Ok(Creation::New(response(&now, true)))
    }

    /// Places the kernels of a freshly SCHEDULED session on their agents and brings them to RUNNING. A kernel that
    /// cannot be created ends in ERROR and the session's other kernels are destroyed, so nothing is left running.
    pub async fn start_session(self: &Arc<Self>, session_id: SessionId) {
        let Ok(Some(session)) = self.store.session(session_id).await else { return };
        let Ok(kernels) = self.store.kernels(session_id).await else { return };
        self.start_sessions(vec![(session, kernels)]).await;
    }

    /// Starts allocated sessions: every kernel of the batch moves to PREPARING, then to CREATING, in one store
    /// call per step for the whole batch; then each kernel is created on its agent and becomes RUNNING. A session
    /// a step failed for is destroyed (`kernel-creation-failed`), which gives its slots back; a batch session runs
    /// its startup command once RUNNING.
    pub async fn start_sessions(self: &Arc<Self>, sessions: Vec<Allocated>) {
        let mut failed: HashSet<SessionId> = HashSet::new();
        for step in [KernelStatus::Preparing, KernelStatus::Creating] {
            let changes: Vec<(KernelId, KernelChange)> = sessions
                .iter()
                .filter(|(s, _)| !failed.contains(&s.id))
                .flat_map(|(_, ks)| ks.iter().map(|k| (k.id, KernelChange::status(step, None))))
                .collect();
            if changes.is_empty() {
                break;
            }
            match self.change_kernels(&changes).await {
                Ok(answers) => {
                    for ((id, _), answer) in changes.iter().zip(answers) {
                        if let Err(e) = answer {
                            tracing::info!(kernel = %id, error = %e, "kernel start abandoned");
                            failed
                                .extend(sessions.iter().find(|(_, ks)| ks.iter().any(|k| k.id == *id)).map(|s| s.0.id));
                        }
                    }
                }
                Err(e) => {
                    tracing::info!(error = %e, sessions = sessions.len(), "kernel starts abandoned");
                    failed.extend(sessions.iter().map(|(s, _)| s.id));
                }
            }
        }
        for (session, _) in sessions.iter().filter(|(s, _)| failed.contains(&s.id)) {
            let _ = self.destroy_kernels(session.id, true, "kernel-creation-failed").await;
        }
        let sessions: Vec<Allocated> = sessions.into_iter().filter(|(s, _)| !failed.contains(&s.id)).collect();

        // The agents create the kernels, CREATIONS_AT_ONCE at a time; the creations that finished together are
        // recorded RUNNING (or ERROR) in one store call.
        {
            let work: Vec<(Arc<SessionRecord>, KernelRecord)> = sessions
                .iter()
                .flat_map(|(s, ks)| {
                    let s = Arc::new(s.clone());
                    ks.iter().map(move |k| (s.clone(), k.clone()))
                })
                .collect();
            let creations = futures::stream::iter(work)
                .map(|(session, k)| async move {
                    let created = self.create_on_agent(&session, &k).await;
                    (session.id, k, created)
                })
                .buffer_unordered(CREATIONS_AT_ONCE)
                .ready_chunks(CREATIONS_AT_ONCE);
            futures::pin_mut!(creations);
            while let Some(done) = creations.next().await {
                let changes: Vec<(KernelId, KernelChange)> = done
                    .iter()
                    .map(|(_, k, created)| match created {
                        Ok(handle) => (
                            k.id,
                            KernelChange {
                                status: KernelStatus::Running,
                                status_info: None,
                                container_id: Some(handle.container_id.clone()),
                                exit_code: None,
                            },
                        ),
                        Err(e) => {
                            tracing::warn!(kernel = %k.id, error = %e, "kernel creation failed");
                            (k.id, KernelChange::status(KernelStatus::Error, format!("kernel-creation-failed: {e}")))
                        }
                    })
                    .collect();
                let answers = match self.change_kernels(&changes).await {
                    Ok(answers) => answers,
                    Err(e) => {
                        tracing::warn!(error = %e, kernels = changes.len(), "could not record created kernels");
                        changes.iter().map(|_| Err(Error::internal(format!("recording the kernel: {e}")))).collect()
                    }
                };
                for ((session_id, k, created), answer) in done.into_iter().zip(answers) {
                    match (created, answer) {
                        (Ok(_), Ok(_)) => {}
                        (Ok(_), Err(e)) => {
                            // Destroyed while it was being created (or the store failed): take the new kernel down again.
                            tracing::info!(kernel = %k.id, error = %e, "kernel started after its session ended");
                            if let Some(addr) = &k.agent_addr {
                                let _ = self.agents.destroy_kernel(addr, k.id, true).await;
                            }
                            failed.insert(session_id);
                        }
                        (Err(_), _) => {
                            failed.insert(session_id);
                        }
                    }
                }
            }
        }
        for (session, _) in sessions {
            if failed.contains(&session.id) {
                let _ = self.destroy_kernels(session.id, true, "kernel-creation-failed").await;
            } else if session.session_type == SessionType::Batch {
                tokio::spawn(self.clone().run_batch(session));
            }
        }
    }

    /// Asks a kernel's agent to create it.
    async fn create_on_agent(&self, session: &SessionRecord, k: &KernelRecord) -> Result<KernelHandle> {
        let addr = k.agent_addr.as_deref().ok_or_else(|| Error::internal(format!("kernel {} has no agent", k.id)))?;
        self.agents.create_kernel(addr, &self.kernel_spec(session, k)).await
    }

    fn kernel_spec(&self, session: &SessionRecord, k: &KernelRecord) -> KernelSpec {
        KernelSpec {
            kernel_id: k.id,
            session_id: session.id,
            owner: session.access_key.clone(),
            image: k.image.clone(),
            slots: k.requested_slots.clone(),
            environ: session.environ.clone(),
            cluster_role: k.cluster_role.clone(),
            cluster_idx: k.cluster_idx,
            cluster_hostname: k.cluster_hostname.clone(),
            cluster_size: session.cluster_size,
            mounts: session.vfolder_mounts.clone(),
            bootstrap_script: session.bootstrap_script.clone(),
            shmem: session.shmem,
            container_args: vec![],
        }
    }

    /// Runs a batch session's startup command to its end, records success or failure, and terminates it. The
    /// session's `batch_timeout` limits the command (as the run's `exec_timeout`): a command that passes it fails
    /// the session, with `batch-timeout` as the failure's and the termination's reason.
    async fn run_batch(self: Arc<Self>, session: SessionRecord) {
        let Ok(kernels) = self.store.kernels(session.id).await else { return };
        let Some(main) = kernels.into_iter().find(KernelRecord::is_main) else { return };
        let Some(addr) = main.agent_addr.clone() else { return };
        let command = session.startup_command.clone().unwrap_or_default();
        let mut options = serde_json::json!({ "exec": command });
        if let Some(seconds) = session.batch_timeout {
            options["exec_timeout"] = seconds.into();
        }
        let mut req =
            ExecuteRequest { mode: backend_core::api::ExecuteMode::Batch, code: String::new(), run_id: None, options };
        let (exit_code, timed_out) = loop {
            match self.agents.execute(&addr, main.id, &req).await {
                Ok(r) if r.status == RunStatus::Finished => break (r.exit_code.unwrap_or(-1), false),
                Ok(r) if r.status == RunStatus::ExecTimeout => {
                    break (r.exit_code.filter(|c| *c != 0).unwrap_or(-1), true)
                }
                Ok(r) => {
                    req = ExecuteRequest {
                        mode: backend_core::api::ExecuteMode::Continue,
                        code: String::new(),
                        run_id: Some(r.run_id),
                        options: serde_json::Value::Null,
                    };
                }
                Err(_) => break (-1, false),
            }
        };
        let success = exit_code == 0 && !timed_out;
        let result = if success { SessionResult::Success } else { SessionResult::Failure };
        let change = SessionChange { status: SessionStatus::Running, status_info: None, result: Some(result) };
        let _ = self.store.update_session(session.id, change, Utc::now()).await;
        let event = if success { "session_success" } else { "session_failure" };
        let reason = if timed_out { "batch-timeout".to_owned() } else { format!("exit code {exit_code}") };
        let _ = self
            .bus
            .publish(Event::SessionLifecycle {
                event: event.into(),
                session_id: session.id,
                kernel_id: None,
                status: "RUNNING".into(),
                reason: Some(reason),
                exit_code: Some(exit_code),
            })
            .await;
        let end = if timed_out { "batch-timeout" } else { "batch-finished" };
        let _ = self.destroy_kernels(session.id, false, end).await;
    }

    /// The caller's session by name or id.
    pub async fn find_session(&self, owner: &AccessKey, name: &str) -> Result<SessionRecord> {
        self.store.find_session(owner, name).await?.ok_or_else(|| Error::SessionNotFound { name: name.to_owned() })
    }

    /// `GET /session`: the owner's sessions (the newest thousand).
    pub async fn sessions_of(&self, owner: &AccessKey) -> Result<Vec<SessionRecord>> {
        let filter = SessionFilter { access_key: Some(owner.clone()), statuses: None, limit: Some(1000) };
        self.store.list_sessions(&filter).await
    }

    /// `GET /session/{name}`: a session of the owner with its kernels.
    pub async fn session_info(&self, owner: &AccessKey, name: &str) -> Result<SessionInfo> {
        let s = self.find_session(owner, name).await?;
        let kernels = self.store.kernels(s.id).await?;
        Ok(SessionInfo::from_records(&s, &kernels, Utc::now()))
    }

    /// A session by id, whoever owns it (`None`: no such session).
    pub async fn session_by_id(&self, id: SessionId) -> Result<Option<SessionRecord>> {
        self.store.session(id).await
    }

    /// A kernel by id, whoever owns it (`None`: no such kernel).
    pub async fn kernel_by_id(&self, id: KernelId) -> Result<Option<KernelRecord>> {
        self.store.kernel(id).await
    }

    /// Destroys a session: a pending one is cancelled; a live one has its kernels stopped and becomes TERMINATED.
    pub async fn destroy_session(&self, owner: &AccessKey, name: &str, forced: bool) -> Result<DestroyResponse> {
        let session = self.find_session(owner, name).await?;
        if session.status.is_final() {
            return Err(Error::SessionNotFound { name: name.to_owned() });
        }
        if session.status == SessionStatus::Pending {
            let change = SessionChange {
                status: SessionStatus::Cancelled,
                status_info: Some("user-requested".into()),
                result: None,
            };
            if let Some((_, to)) = self.store.update_session(session.id, change, Utc::now()).await? {
                self.publish_lifecycle(session.id, to, Some("user-requested".into())).await;
            }
            return Ok(DestroyResponse { stats: Default::default() });
        }
        let reason = if forced { "force-terminated" } else { "user-requested" };
        self.destroy_kernels(session.id, forced, reason).await
    }

    /// Stops every kernel of a session that is not dead yet and records each end.
    pub async fn destroy_kernels(&self, session_id: SessionId, forced: bool, reason: &str) -> Result<DestroyResponse> {
        let kernels = self.store.kernels(session_id).await?;
        let stops = kernels.into_iter().filter(|k| !k.status.is_dead()).map(|k| async move {
            let mut exit_code = None;
            if k.status.can_transition_to(KernelStatus::Terminating) {
                let _ =
                    self.change_kernel(k.id, KernelChange::status(KernelStatus::Terminating, reason.to_owned())).await;
                if let Some(addr) = &k.agent_addr {
                    match self.agents.destroy_kernel(addr, k.id, forced).await {
                        Ok(exit) => exit_code = exit.exit_code,
                        Err(e) => tracing::warn!(kernel = %k.id, error = %e, "agent could not destroy the kernel"),
                    }
                }
            }
            let end = if k.status == KernelStatus::Creating { KernelStatus::Error } else { KernelStatus::Terminated };
            let change =
                KernelChange { status: end, status_info: Some(reason.to_owned()), container_id: None, exit_code };
            let _ = self.change_kernel(k.id, change).await;
            (k.id.to_string(), serde_json::json!({ "exitCode": exit_code }))
        });
        let stats = futures::future::join_all(stops).await.into_iter().collect();
        Ok(DestroyResponse { stats })
    }

    /// The main kernel of the owner's RUNNING session `name` (409 when the session or that kernel is not running).
    pub async fn main_kernel_of_running(&self, owner: &AccessKey, name: &str) -> Result<KernelRecord> {
        let session = self.find_session(owner, name).await?;
        if !matches!(session.status, SessionStatus::Running | SessionStatus::RunningDegraded) {
            return Err(Error::Conflict { msg: format!("session {name:?} is {}, not RUNNING", session.status) });
        }
        let kernels = self.store.kernels(session.id).await?;
        kernels
            .into_iter()
            .find(|k| k.is_main() && k.status == KernelStatus::Running)
            .ok_or_else(|| Error::Conflict { msg: format!("the main kernel of {name:?} is not running") })
    }

    /// The main kernel of the owner's RUNNING session `name` and the agent it runs on, for the file operations.
    pub async fn running_main_kernel(&self, owner: &AccessKey, name: &str) -> Result<MainKernel> {
        let main = self.main_kernel_of_running(owner, name).await?;
        let agent_addr = main.agent_addr.ok_or_else(|| Error::internal("running kernel without agent"))?;
        Ok(MainKernel { id: main.id, agent_addr })
    }

    /// Writes a file into a main kernel's work directory (`path` relative to it).
    pub async fn put_kernel_file(&self, main: &MainKernel, path: &str, content: bytes::Bytes) -> Result<()> {
        self.agents.put_file(&main.agent_addr, main.id, path, content).await.map(drop)
    }

    /// Reads a file of a main kernel's work directory (`path` relative to it).
    pub async fn kernel_file(&self, main: &MainKernel, path: &str) -> Result<bytes::Bytes> {
        self.agents.get_file(&main.agent_addr, main.id, path).await
    }

    /// Lists a directory of a main kernel's work directory (`path` relative to it).
    pub async fn list_kernel_files(&self, main: &MainKernel, path: &str) -> Result<Vec<FileEntry>> {
        self.agents.list_files(&main.agent_addr, main.id, path).await
    }

    /// One execute call on the session's main kernel. A query or batch call's `options.exec_timeout` is checked
    /// here (400 unless a positive number of seconds) before any kernel is asked; the agent enforces it.
    pub async fn execute(&self, owner: &AccessKey, name: &str, req: ExecuteRequest) -> Result<ExecutionResult> {
        if matches!(req.mode, ExecuteMode::Query | ExecuteMode::Batch) {
            backend_core::api::exec_timeout(&req.options)?;
        }
        let main = self.main_kernel_of_running(owner, name).await?;
        let addr = main.agent_addr.as_deref().ok_or_else(|| Error::internal("running kernel without agent"))?;
        self.agents.execute(addr, main.id, &req).await
    }

    /// Restarts a running session: each kernel's processes are replaced by fresh ones on the same agent
    /// (RUNNING → RESTARTING → RUNNING); interpreter state is lost, the work directory is kept where the runtime can.
    pub async fn restart_session(&self, owner: &AccessKey, name: &str) -> Result<()> {
        let session = self.find_session(owner, name).await?;
        if !matches!(session.status, SessionStatus::Running | SessionStatus::RunningDegraded) {
            return Err(Error::Conflict { msg: format!("session {name:?} is {}, not RUNNING", session.status) });
        }
        let kernels = self.store.kernels(session.id).await?;
        for k in kernels.into_iter().filter(|k| k.status == KernelStatus::Running) {
            let Some(addr) = k.agent_addr.clone() else { continue };
            self.change_kernel(k.id, KernelChange::status(KernelStatus::Restarting, "user-requested".to_owned()))
                .await?;
            let spec = self.kernel_spec(&session, &k);
            match self.agents.restart_kernel(&addr, &spec).await {
                Ok(handle) => {
                    let change = KernelChange {
                        status: KernelStatus::Running,
                        status_info: Some("restarted".into()),
                        container_id: Some(handle.container_id),
                        exit_code: None,
                    };
                    self.change_kernel(k.id, change).await?;
                }
                Err(e) => {
                    let info = format!("restart-failed: {e}");
                    self.change_kernel(k.id, KernelChange::status(KernelStatus::Error, info)).await?;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Renames a session that is not final.
    pub async fn rename_session(&self, owner: &AccessKey, name: &str, new_name: &str) -> Result<()> {
        if !valid_name(new_name) {
            return Err(Error::InvalidParams {
                msg: format!("invalid session name {new_name:?}: 4 to 64 letters, digits, '-', '_' or '.'"),
            });
        }
        let session = self.find_session(owner, name).await?;
        self.store.rename_session(session.id, new_name).await
    }

    /// Interrupts the code running in the session.
    pub async fn interrupt(&self, owner: &AccessKey, name: &str) -> Result<()> {
        let main = self.main_kernel_of_running(owner, name).await?;
        let addr = main.agent_addr.as_deref().ok_or_else(|| Error::internal("running kernel without agent"))?;
        self.agents.interrupt(addr, main.id).await
    }

    /// The main kernel's logs.
    pub async fn logs(&self, owner: &AccessKey, name: &str) -> Result<String> {
        let session = self.find_session(owner, name).await?;
        let kernels = self.store.kernels(session.id).await?;
        let main = kernels.into_iter().find(KernelRecord::is_main).ok_or_else(|| Error::internal("no main kernel"))?;
        match (&main.agent_addr, main.status.is_dead()) {
            (Some(addr), false) => self.agents.logs(addr, main.id).await,
            _ => Err(Error::Conflict { msg: format!("session {name:?} has no live kernel to read logs from") }),
        }
    }
}

/// Refuses the create parameters this server does not honour yet, so that none is silently ignored when ignoring
/// it would change what the user gets.
fn refuse_unsupported(req: &CreateSessionRequest) -> Result<()> {
    let refuse = |what: &str, why: &str| Err(Error::InvalidParams { msg: format!("`{what}` is not supported: {why}") });
    let set = |s: &Option<String>| s.as_deref().is_some_and(|v| !v.trim().is_empty());
    if !req.config.preopen_ports.is_empty() {
        return refuse("config.preopen_ports", "service ports are not available on this server yet");
    }
    if set(&req.callback_url) {
        return refuse("callback_url", "status callbacks are not available yet; use GET /events/session");
    }
    if let Some(key) = req.config.resource_opts.keys().find(|k| k.as_str() != "shmem") {
        return refuse(&format!("config.resource_opts.{key}"), "only `shmem` is accepted");
    }
    Ok(())
}

/// The `/dev/shm` size a create request asks for (`config.resource_opts.shmem`, a byte size written like `mem`:
/// `"64m"`, `1073741824`), checked against each kernel's memory: it lives in that memory, so more than `mem` is
/// refused (400), as are sizes that do not parse and zero.
fn shmem_of(req: &CreateSessionRequest, slots: &backend_core::ResourceSlots) -> Result<Option<u64>> {
    let Some(value) = req.config.resource_opts.get("shmem").filter(|v| !v.is_null()) else { return Ok(None) };
    let invalid = |why: String| Error::InvalidParams { msg: format!("config.resource_opts.shmem {value}: {why}") };
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(invalid("a byte size such as \"64m\" or a number of bytes is expected".into())),
    };
    let amount = backend_core::slots::parse_amount(&text).map_err(|e| invalid(e.to_string()))?;
    let bytes = amount.trunc().normalize().to_string().parse::<u64>().ok().filter(|b| *b > 0);
    let bytes = bytes.ok_or_else(|| invalid("must be a whole number of bytes, more than 0".into()))?;
    let mem = slots.get("mem");
    if !mem.is_zero() && amount > mem {
        return Err(invalid(format!("more than the kernel's memory (mem={})", mem.normalize())));
    }
    Ok(Some(bytes))
}

/// The agents a create request designates (`agent_list`, at the top level or in `config`). Only admins may choose
/// agents, as in Backend.AI: anyone else gets 403 Forbidden. A session runs on one designated agent, so a list naming
/// more than one distinct agent is refused (400).
fn designated_agents(caller: &KeyPair, req: &CreateSessionRequest) -> Result<Vec<AgentId>> {
    let mut agents: Vec<AgentId> = Vec::new();
    let named = req.agent_list.iter().chain(req.config.agent_list.iter()).flatten();
    for id in named.map(|a| a.trim()).filter(|a| !a.is_empty()) {
        let id = AgentId::from(id);
        if !agents.contains(&id) {
            agents.push(id);
        }
    }
    if agents.is_empty() {
        return Ok(agents);
    }
    if !caller.role.is_admin() {
        return Err(Error::Forbidden { msg: "only admins may designate agents (agent_list)".into() });
    }
    if agents.len() > 1 {
        return Err(Error::InvalidParams {
            msg: format!("agent_list names {} agents; a session runs on one designated agent", agents.len()),
        });
    }
    Ok(agents)
}

/// The main kernel of a RUNNING session, where the file routes read and write.
#[derive(Debug, Clone)]
pub struct MainKernel {
    /// The kernel.
    pub id: KernelId,
    /// The address of the agent it runs on.
    pub agent_addr: String,
}

/// What `create_session` did: created a session, or answered an existing live one of the same name
/// (`reuse_if_exists`).
#[derive(Debug, Clone)]
pub enum Creation {
    /// A new session was recorded (HTTP 201).
    New(CreateSessionResponse),
    /// A live session of that name was reused (HTTP 200).
    Reused(CreateSessionResponse),
}

impl Creation {
    /// True when a new session was recorded.
    pub fn is_new(&self) -> bool {
        matches!(self, Self::New(_))
    }

    /// The response body.
    pub fn response(&self) -> &CreateSessionResponse {
        match self {
            Self::New(r) | Self::Reused(r) => r,
        }
    }

    /// The response body, owned.
    pub fn into_response(self) -> CreateSessionResponse {
        match self {
            Self::New(r) | Self::Reused(r) => r,
        }
    }
}

fn response(s: &SessionRecord, created: bool) -> CreateSessionResponse {
    CreateSessionResponse {
        session_id: s.id.to_string(),
        session_name: s.name.clone(),
        status: s.status.to_string(),
        service_ports: vec![],
        created,
    }
}
