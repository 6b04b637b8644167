//! The queries the two SQL stores run alike, written once: [`record_queries!`] emits them in a store module for its
//! connection type, as `async fn`s awaited (PostgreSQL) or plain ones (SQLite). What differs between the stores, the
//! locks, the transactions and the statements that write several rows at once, stays in each store.

/// Emits the shared queries in the store module it is invoked in, after [`record_rows!`]: `backend` and `conn` are
/// the diesel backend and its connection type, `uuid` the type of id columns, `async`/`await` are empty for a
/// synchronous connection and `async`/`.await` for an asynchronous one, `seq` the column that orders rows created in
/// the same microsecond by insertion.
macro_rules! record_queries {
    (
        backend: $backend:ty,
        conn: $conn:ty,
        uuid: $uuid:ty,
        async: [$($async:tt)*],
        await: [$($aw:tt)*],
        seq: $seq:ident
    ) => {
        use $crate::vfolder::{InvitationState, VFolderAccess, VFolderPermission};

        /// The rows of a new session and its kernels. `InvalidParams` when a kernel belongs to another session.
        fn new_session_rows(
            session: &SessionRecord,
            kernels: &[KernelRecord],
        ) -> $crate::Result<(SessionRow, Vec<KernelRow>)> {
            if let Some(k) = kernels.iter().find(|k| k.session_id != session.id) {
                return Err(Error::InvalidParams {
                    msg: format!("kernel {} belongs to session {}, not {}", k.id, k.session_id, session.id),
                });
            }
            let row = SessionRow::from_model(session).map_err(store_error)?;
            let kernel_rows = kernels.iter().map(KernelRow::from_model).collect::<Tx<Vec<_>>>().map_err(store_error)?;
            Ok((row, kernel_rows))
        }

        /// The owner's session by full id, or else by name (the newest that is not final, or else the newest).
        $($async)* fn find_session_in(conn: &mut $conn, owner: &str, key: &str) -> Tx<Option<SessionRecord>> {
            if let Ok(id) = uuid::Uuid::parse_str(key) {
                let by_id = sessions::table
                    .find(uuid_col(id))
                    .filter(sessions::access_key.eq(owner))
                    .select(SessionRow::as_select())
                    .first(conn)
                    $($aw)*
                    .optional()?;
                if let Some(row) = by_id {
                    return row.into_model().map(Some);
                }
            }
            let named = || {
                sessions::table
                    .filter(sessions::access_key.eq(owner.to_owned()))
                    .filter(sessions::name.eq(key.to_owned()))
                    .order((sessions::created_at.desc(), sessions::$seq.desc()))
                    .select(SessionRow::as_select())
                    .into_boxed()
            };
            let finals = $crate::store::rows::final_session_statuses();
            let live = named().filter(sessions::status.ne_all(finals)).first(conn) $($aw)* .optional()?;
            let row = match live {
                Some(live) => Some(live),
                None => named().first(conn) $($aw)* .optional()?,
            };
            row.map(SessionRow::into_model).transpose()
        }

        /// PENDING sessions with their kernels, oldest first.
        $($async)* fn pending_sessions_in(conn: &mut $conn) -> Tx<Vec<(SessionRecord, Vec<KernelRecord>)>> {
            let pending = $crate::status::SessionStatus::Pending.as_str();
            let sessions = sessions::table
                .filter(sessions::status.eq(pending))
                .order((sessions::created_at.asc(), sessions::$seq.asc()))
                .select(SessionRow::as_select())
                .load(conn)
                $($aw)*?;
            let kernel_rows = kernels::table
                .inner_join(sessions::table)
                .filter(sessions::status.eq(pending))
                .select(KernelRow::as_select())
                .load(conn)
                $($aw)*?;
            let sessions = sessions.into_iter().map(SessionRow::into_model).collect::<Tx<Vec<_>>>()?;
            let kernels = kernel_rows.into_iter().map(KernelRow::into_model).collect::<Tx<Vec<_>>>()?;
            Ok($crate::store::rows::with_kernels(sessions, kernels))
        }

        /// The sessions of the filter's owner and statuses (its limit and order are the caller's).
        fn sessions_matching<'a>(
            filter: &$crate::store::SessionFilter,
        ) -> sessions::BoxedQuery<'a, $backend> {
            let mut query = sessions::table.into_boxed();
            if let Some(owner) = &filter.access_key {
                query = query.filter(sessions::access_key.eq(owner.0.clone()));
            }
            if let Some(statuses) = &filter.statuses {
                query = query.filter(sessions::status.eq_any(statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>()));
            }
            query
        }

        /// Folders with their owners resolved: every folder, or those with the given ids.
        $($async)* fn owned_folders(conn: &mut $conn, ids: Option<Vec<$uuid>>) -> Tx<Vec<VFolder>> {
            use diesel::NullableExpressionMethods;
            let mut query = vfolders::table
                .left_join(users::table)
                .left_join(groups::table)
                .select((
                    FolderRow::as_select(),
                    users::email.nullable(),
                    groups::domain_name.nullable(),
                    groups::name.nullable(),
                ))
                .into_boxed();
            if let Some(ids) = ids {
                query = query.filter(vfolders::id.eq_any(ids));
            }
            let rows: Vec<OwnedRow> = query.load(conn) $($aw)*?;
            let mut folders = rows
                .into_iter()
                .map(|(row, email, domain, group)| row.into_model(email, domain, group))
                .collect::<Tx<Vec<_>>>()?;
            $crate::store::rows::sort_folders(&mut folders);
            Ok(folders)
        }

        $($async)* fn user_uuid(conn: &mut $conn, email: &str) -> Tx<Option<$uuid>> {
            Ok(users::table.filter(users::email.eq(email)).select(users::uuid).first(conn) $($aw)* .optional()?)
        }

        /// The owner's `(user, group)` columns. `NotFound` when the user or group is unknown.
        $($async)* fn owner_columns(conn: &mut $conn, owner: &VFolderOwner) -> Tx<(Option<$uuid>, Option<$uuid>)> {
            use $crate::store::rows::not_found;
            match owner {
                VFolderOwner::User { email } => {
                    let uuid = user_uuid(conn, email) $($aw)*?.ok_or_else(|| not_found(format!("user {email}")))?;
                    Ok((Some(uuid), None))
                }
                VFolderOwner::Group { domain, name } => {
                    let id = groups::table
                        .filter(groups::domain_name.eq(domain))
                        .filter(groups::name.eq(name))
                        .select(groups::id)
                        .first::<$uuid>(conn)
                        $($aw)*
                        .optional()?
                        .ok_or_else(|| not_found(format!("group {name} in domain {domain}")))?;
                    Ok((None, Some(id)))
                }
            }
        }

        /// How many folders other than `except` the owner of `(user, group)` has under `name`.
        $($async)* fn named_like(
            conn: &mut $conn,
            owner: (&Option<$uuid>, &Option<$uuid>),
            name: &str,
            except: Option<&$uuid>,
        ) -> Tx<i64> {
            let mut query = vfolders::table.filter(vfolders::name.eq(name.to_owned())).into_boxed();
            query = match owner {
                (Some(user), _) => query.filter(vfolders::user_id.eq(user.clone())),
                (None, Some(group)) => query.filter(vfolders::group_id.eq(group.clone())),
                (None, None) => return Ok(0),
            };
            if let Some(id) = except {
                query = query.filter(vfolders::id.ne(id.clone()));
            }
            Ok(query.count().get_result(conn) $($aw)*?)
        }

        /// The folders `email` may use (see [`crate::store::VFolderStore::accessible_vfolders`]).
        $($async)* fn accessible_folders(conn: &mut $conn, email: &str) -> Tx<Vec<VFolderAccess>> {
            let Some(uuid) = user_uuid(conn, email) $($aw)*? else { return Ok(vec![]) };
            let mut access = $crate::store::rows::AccessSet::default();
            let own: Vec<$uuid> =
                vfolders::table.filter(vfolders::user_id.eq(&uuid)).select(vfolders::id).load(conn) $($aw)*?;
            for id in own {
                access.grant(VFolderId(uuid_of("vfolder id", id)?), VFolderPermission::ReadWriteDelete, true);
            }
            let group_ids: Vec<$uuid> = association_groups_users::table
                .filter(association_groups_users::user_id.eq(&uuid))
                .select(association_groups_users::group_id)
                .load(conn)
                $($aw)*?;
            let of_groups: Vec<($uuid, String)> = vfolders::table
                .filter(vfolders::group_id.eq_any(group_ids))
                .select((vfolders::id, vfolders::permission))
                .load(conn)
                $($aw)*?;
            let shared: Vec<($uuid, String)> = vfolder_permissions::table
                .filter(vfolder_permissions::user_id.eq(&uuid))
                .select((vfolder_permissions::vfolder, vfolder_permissions::permission))
                .load(conn)
                $($aw)*?;
            for (id, permission) in of_groups.into_iter().chain(shared) {
                access.grant(VFolderId(uuid_of("vfolder id", id)?), parse("vfolder permission", &permission)?, false);
            }
            let folders = owned_folders(conn, Some(access.ids().iter().map(|id| uuid_col(id.0)).collect())) $($aw)*?;
            Ok(access.resolve(folders))
        }

        /// The users a folder is shared with and their permissions, by e-mail.
        $($async)* fn folder_shares(conn: &mut $conn, id: VFolderId) -> Tx<Vec<(String, VFolderPermission)>> {
            let rows: Vec<(String, String)> = vfolder_permissions::table
                .inner_join(users::table)
                .filter(vfolder_permissions::vfolder.eq(uuid_col(id.0)))
                .order(users::email.asc())
                .select((users::email, vfolder_permissions::permission))
                .load(conn)
                $($aw)*?;
            rows.into_iter().map(|(email, p)| Ok((email, parse("vfolder permission", &p)?))).collect()
        }

        /// Adds an invitation. `AlreadyExists` when the invitee has a pending invitation to the folder (the
        /// folder's existence is the caller's check).
        $($async)* fn insert_invitation_in(conn: &mut $conn, i: &VFolderInvitation) -> Tx<()> {
            let row = InvitationRow::from_model(i);
            let already = || format!("a pending invitation of {} to virtual folder {}", i.invitee, i.vfolder);
            let pending: i64 = vfolder_invitations::table
                .filter(vfolder_invitations::vfolder.eq(&row.vfolder))
                .filter(vfolder_invitations::invitee.eq(&row.invitee))
                .filter(vfolder_invitations::state.eq(InvitationState::Pending.as_str()))
                .count()
                .get_result(conn)
                $($aw)*?;
            if pending > 0 && i.state == InvitationState::Pending {
                return Err(Error::AlreadyExists { msg: already() }.into());
            }
            diesel::insert_into(vfolder_invitations::table)
                .values(&row)
                .execute(conn)
                $($aw)*
                .map_err($crate::store::rows::taken(already))?;
            Ok(())
        }

        /// The pending invitations sent to a user, oldest first.
        $($async)* fn pending_invitations_of(conn: &mut $conn, invitee: &str) -> Tx<Vec<VFolderInvitation>> {
            vfolder_invitations::table
                .filter(vfolder_invitations::invitee.eq(invitee))
                .filter(vfolder_invitations::state.eq(InvitationState::Pending.as_str()))
                .order((vfolder_invitations::created_at.asc(), vfolder_invitations::$seq.asc()))
                .select(InvitationRow::as_select())
                .load(conn)
                $($aw)*?
                .into_iter()
                .map(InvitationRow::into_model)
                .collect()
        }
    };
}
