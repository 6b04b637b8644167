//! The fields filters and orders see in the records of the GraphQL lists: sessions, agents and folders (as one
//! caller sees them). Keypairs show theirs where the manager wraps them.

use super::{Attrs, Val};
use crate::model::{AgentInfo, SessionRecord};
use crate::vfolder::{VFolder, VFolderAccess, VFolderOwner};

impl Attrs for SessionRecord {
    fn attr(&self, name: &str) -> Option<Val> {
        Some(match name {
            "id" | "session_id" => self.id.to_string().into(),
            "name" | "session_name" => self.name.as_str().into(),
            "type" | "session_type" => self.session_type.as_str().into(),
            "image" => self.image.as_str().into(),
            "status" => self.status.as_str().into(),
            "status_info" => self.status_info.clone().into(),
            "status_changed" => self.status_history.0.last().map(|c| c.at).into(),
            "access_key" => self.access_key.as_str().into(),
            "domain_name" => self.domain.as_str().into(),
            "group_name" => self.group.as_str().into(),
            "tag" => self.tag.clone().into(),
            "result" => self.result.as_str().into(),
            "scaling_group" | "scaling_group_name" => self.scaling_group.as_str().into(),
            "cluster_size" => f64::from(self.cluster_size).into(),
            "startup_command" => self.startup_command.clone().into(),
            "created_at" => self.created_at.into(),
            "terminated_at" => self.terminated_at.into(),
            _ => return None,
        })
    }
}

impl Attrs for AgentInfo {
    fn attr(&self, name: &str) -> Option<Val> {
        Some(match name {
            "id" => self.id.to_string().into(),
            "status" => self.status.as_str().into(),
            "scaling_group" => self.scaling_group.as_str().into(),
            "architecture" => self.architecture.as_str().into(),
            "addr" => self.addr.as_str().into(),
            "region" => Val::Null,
            "schedulable" => self.schedulable.into(),
            "first_contact" => self.first_contact.into(),
            "lost_at" => self.lost_at.into(),
            _ => return None,
        })
    }
}

impl Attrs for VFolderAccess {
    fn attr(&self, name: &str) -> Option<Val> {
        let f = &self.folder;
        let (email, group) = match &f.owner {
            VFolderOwner::User { email } => (Some(email.clone()), None),
            VFolderOwner::Group { name, .. } => (None, Some(name.clone())),
        };
        Some(match name {
            "id" => f.id.to_string().into(),
            "host" => f.host.as_str().into(),
            "name" => f.name.as_str().into(),
            "user_email" => email.into(),
            "group_name" => group.into(),
            "creator" => f.creator.as_str().into(),
            "status" => "ready".into(),
            "usage_mode" => f.usage_mode.as_str().into(),
            "permission" => self.permission.as_str().into(),
            "ownership_type" => ownership_type(f).into(),
            "max_size" => f.max_size.map(|b| (b >> 20) as f64).into(),
            "created_at" | "last_used" => f.created_at.into(),
            "cloneable" => f.cloneable.into(),
            _ => return None,
        })
    }
}

/// `user` or `group`: who owns a folder, as the GraphQL `ownership_type` says.
pub fn ownership_type(f: &VFolder) -> &'static str {
    match f.owner {
        VFolderOwner::User { .. } => "user",
        VFolderOwner::Group { .. } => "group",
    }
}
