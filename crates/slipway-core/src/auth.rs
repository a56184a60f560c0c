//! Identity and access: users, global roles, per-resource permissions (MLflow's names), API
//! tokens, and the rule that decides whether a caller may take an action on a resource.
//!
//! The decision is one pure function, [`Principal::allows`], so the HTTP layer, the CLI and the
//! tests all share it.

use std::fmt;

use crate::{Error, Result};

/// A global role. Each person's role includes what the ones before it may do; `Replica` is a
/// machine's, outside that ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A serving replica (`slipway serve --deployment`): reads what it serves and reports its
    /// measurements, which decide rollouts, so no person's role may send them.
    Replica,
    /// Reads tracking data and the registry.
    Viewer,
    /// Also writes tracking data and the registry.
    Editor,
    /// A retraining worker (`slipway triggers worker`): writes as an editor does, and claims
    /// retrains and reports their progress, which no person's role may (a claim takes over a
    /// model's retraining). Not on the ladder above it: it approves nothing.
    Worker,
    /// Also decides promotions.
    Approver,
    /// Also manages users, roles, tokens, permissions and policies.
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Replica,
        Role::Viewer,
        Role::Editor,
        Role::Worker,
        Role::Approver,
        Role::Admin,
    ];

    pub fn parse(raw: &str) -> Result<Role> {
        match raw.to_ascii_lowercase().as_str() {
            "replica" => Ok(Role::Replica),
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "worker" => Ok(Role::Worker),
            "approver" => Ok(Role::Approver),
            "admin" => Ok(Role::Admin),
            _ => Err(Error::invalid(format!(
                "unknown role '{raw}': use one of viewer, editor, approver, admin, replica, worker"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Replica => "replica",
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Worker => "worker",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// The permission the role gives on every experiment and registered model that has no
    /// permission of its own for the user. Editors delete what they may write, as MLflow's
    /// creators do; an explicit `EDIT` takes that away on one resource.
    fn default_permission(self) -> Permission {
        match self {
            Role::Replica | Role::Viewer => Permission::Read,
            Role::Editor | Role::Worker | Role::Approver | Role::Admin => Permission::Manage,
        }
    }
}

impl Role {
    /// Whether the role alone (no per-resource permission) allows `action`.
    pub fn permits(self, action: Action) -> bool {
        match (self, action) {
            (Role::Admin, _) => true,
            (Role::Replica, Action::Read | Action::Report) => true,
            (Role::Replica, _) | (_, Action::Report) => false,
            (Role::Worker, Action::Work) => true,
            (_, Action::Work) => false,
            (role, action) => role >= action.least_role(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permission on one experiment or registered model, with MLflow's names and meanings:
/// `READ` reads, `EDIT` also writes, `MANAGE` also deletes; `NO_PERMISSIONS` hides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    NoPermissions,
    Read,
    Edit,
    Manage,
}

impl Permission {
    pub fn parse(raw: &str) -> Result<Permission> {
        match raw {
            "NO_PERMISSIONS" => Ok(Permission::NoPermissions),
            "READ" => Ok(Permission::Read),
            "EDIT" => Ok(Permission::Edit),
            "MANAGE" => Ok(Permission::Manage),
            _ => Err(Error::invalid(format!(
                "unknown permission '{raw}': use one of READ, EDIT, MANAGE, NO_PERMISSIONS"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::NoPermissions => "NO_PERMISSIONS",
            Permission::Read => "READ",
            Permission::Edit => "EDIT",
            Permission::Manage => "MANAGE",
        }
    }

    fn permits(self, action: Action) -> bool {
        match action {
            Action::Read => self >= Permission::Read,
            Action::Write => self >= Permission::Edit,
            Action::Delete => self >= Permission::Manage,
            // Deciding a promotion or reporting measurements needs the role; on the resource,
            // seeing it is enough.
            Action::Approve | Action::Report | Action::Work => self >= Permission::Read,
            Action::Admin => false,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request does, as far as access is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    /// Create or change tracking data or registry entries.
    Write,
    /// Delete an experiment, run, registered model or version.
    Delete,
    /// Approve or reject a promotion, roll an alias back.
    Approve,
    /// Users, roles, tokens, permissions, policies, the audit log.
    Admin,
    /// A replica's measurements and prediction log for a deployment.
    Report,
    /// A retraining worker's claim of a retrain and its progress reports.
    Work,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Approve => "approve",
            Action::Admin => "admin",
            Action::Report => "report",
            Action::Work => "work",
        }
    }

    /// The least role that may take this action where no per-resource permission applies.
    pub fn least_role(self) -> Role {
        match self {
            Action::Read => Role::Viewer,
            Action::Write | Action::Delete => Role::Editor,
            Action::Approve => Role::Approver,
            Action::Admin => Role::Admin,
            // Only replicas (and admins): see [`Role::permits`].
            Action::Report => Role::Replica,
            // Only workers (and admins).
            Action::Work => Role::Worker,
        }
    }
}

/// The kinds of resource that carry their own permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Experiment,
    RegisteredModel,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Experiment => "experiment",
            ResourceKind::RegisteredModel => "registered_model",
        }
    }

    pub fn parse(raw: &str) -> Result<ResourceKind> {
        match raw {
            "experiment" => Ok(ResourceKind::Experiment),
            "registered_model" => Ok(ResourceKind::RegisteredModel),
            _ => Err(Error::invalid(format!(
                "unknown resource type '{raw}': use experiment or registered_model"
            ))),
        }
    }
}

/// One experiment (by id) or registered model (by name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    pub kind: ResourceKind,
    pub id: String,
}

impl Resource {
    pub fn experiment(id: impl Into<String>) -> Resource {
        Resource {
            kind: ResourceKind::Experiment,
            id: id.into(),
        }
    }

    pub fn registered_model(name: impl Into<String>) -> Resource {
        Resource {
            kind: ResourceKind::RegisteredModel,
            id: name.into(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} '{}'", self.kind.as_str().replace('_', " "), self.id)
    }
}

/// A permission a user holds on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user_name: String,
    pub resource: Resource,
    pub permission: Permission,
}

/// A user as everyone but the credential check sees it: no secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A user with the stored argon2 hash of the password, for the credential check only.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: Option<String>,
}

/// An API token's public part. The secret is shown once at creation and stored as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub user_name: String,
    pub description: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl TokenInfo {
    pub fn is_usable(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now_ms)
    }
}

/// A token as stored, for the credential check only.
#[derive(Debug, Clone)]
pub struct TokenCredentials {
    pub info: TokenInfo,
    pub secret_hash: String,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// The user's per-resource permissions; usually none, and then the role decides alone.
    pub grants: Vec<(Resource, Permission)>,
}

impl Principal {
    /// The caller when authentication is off: allowed everything, recorded as `anonymous`.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".to_owned(),
            role: Role::Admin,
            grants: Vec::new(),
        }
    }

    /// Whether per-resource permissions can change a decision for this caller.
    pub fn has_grants(&self) -> bool {
        !self.grants.is_empty() && self.role != Role::Admin
    }

    /// The permission the caller has on `resource`: its own, or the role's default.
    pub fn permission_on(&self, resource: &Resource) -> Permission {
        if self.role == Role::Admin {
            return Permission::Manage;
        }
        self.grants
            .iter()
            .find(|(granted, _)| granted == resource)
            .map(|(_, permission)| *permission)
            .unwrap_or_else(|| self.role.default_permission())
    }

    /// The one access rule. The role must reach the action's least role, except that an
    /// explicit permission on the resource refines it both ways: `EDIT` on one experiment lets a
    /// viewer write there, `NO_PERMISSIONS` hides it from an editor. Admin actions and approvals
    /// always need the role.
    pub fn allows(&self, action: Action, resource: Option<&Resource>) -> bool {
        if self.role == Role::Admin {
            return true;
        }
        match (action, resource) {
            (Action::Admin, _) => false,
            (Action::Approve | Action::Report | Action::Work, resource) => {
                self.role.permits(action)
                    && resource.is_none_or(|r| self.permission_on(r).permits(action))
            }
            // A replica reads; a grant on one resource never makes it a writer.
            (action, _) if self.role == Role::Replica && action != Action::Read => false,
            (action, Some(resource)) => self.permission_on(resource).permits(action),
            (action, None) => self.role.permits(action),
        }
    }
}

/// Checks a user name: what fits in a URL path, a log line and a Basic credential.
pub fn validate_user_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid user name '{name}': use 1 to 64 letters, digits, '_', '-', '.' or '@'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, grants: Vec<(Resource, Permission)>) -> Principal {
        Principal {
            name: "u".into(),
            role,
            grants,
        }
    }

    #[test]
    fn roles_grow_in_order() {
        let expected = [
            // read, write, delete, approve, admin, report
            (Role::Replica, [true, false, false, false, false, true]),
            (Role::Viewer, [true, false, false, false, false, false]),
            (Role::Editor, [true, true, true, false, false, false]),
            (Role::Approver, [true, true, true, true, false, false]),
            (Role::Admin, [true, true, true, true, true, true]),
        ];
        let actions = [
            Action::Read,
            Action::Write,
            Action::Delete,
            Action::Approve,
            Action::Admin,
            Action::Report,
        ];
        for (role, allowed) in expected {
            for (action, allowed) in actions.into_iter().zip(allowed) {
                assert_eq!(
                    user(role, vec![]).allows(action, None),
                    allowed,
                    "{role} {action:?}"
                );
            }
        }
    }

    #[test]
    fn permissions_refine_roles_both_ways() {
        let exp = Resource::experiment("7");
        let other = Resource::experiment("8");
        let viewer = user(Role::Viewer, vec![(exp.clone(), Permission::Edit)]);
        assert!(viewer.allows(Action::Write, Some(&exp)));
        assert!(!viewer.allows(Action::Delete, Some(&exp)));
        assert!(!viewer.allows(Action::Write, Some(&other)));
        let editor = user(Role::Editor, vec![(exp.clone(), Permission::NoPermissions)]);
        assert!(!editor.allows(Action::Read, Some(&exp)));
        assert!(editor.allows(Action::Write, Some(&other)));
        assert!(editor.allows(Action::Delete, Some(&other)));
        let restricted = user(Role::Editor, vec![(exp.clone(), Permission::Edit)]);
        assert!(restricted.allows(Action::Write, Some(&exp)));
        assert!(!restricted.allows(Action::Delete, Some(&exp)));
        let approver = user(
            Role::Approver,
            vec![(exp.clone(), Permission::NoPermissions)],
        );
        assert!(!approver.allows(Action::Approve, Some(&exp)));
        assert!(approver.allows(Action::Approve, Some(&other)));
        // A replica reads and reports; an EDIT grant does not make it a writer.
        let replica = user(Role::Replica, vec![(exp.clone(), Permission::Edit)]);
        assert!(replica.allows(Action::Read, Some(&other)));
        assert!(replica.allows(Action::Report, Some(&other)));
        assert!(!replica.allows(Action::Write, Some(&exp)));
        let hidden = user(
            Role::Replica,
            vec![(exp.clone(), Permission::NoPermissions)],
        );
        assert!(!hidden.allows(Action::Report, Some(&exp)));
        assert!(!user(Role::Editor, vec![]).allows(Action::Report, Some(&other)));
        let admin = user(Role::Admin, vec![(exp.clone(), Permission::NoPermissions)]);
        assert!(admin.allows(Action::Read, Some(&exp)));
    }

    #[test]
    fn names_and_values_parse() {
        assert_eq!(Role::parse("Editor").unwrap(), Role::Editor);
        assert!(Role::parse("root").is_err());
        assert_eq!(
            Permission::parse("NO_PERMISSIONS").unwrap(),
            Permission::NoPermissions
        );
        assert!(Permission::parse("read").is_err());
        assert!(validate_user_name("alice@example.com").is_ok());
        assert!(validate_user_name("a:b").is_err());
        assert!(validate_user_name("").is_err());
    }

    #[test]
    fn only_workers_and_admins_claim_retrains_and_workers_approve_nothing() {
        for role in Role::ALL {
            assert_eq!(
                user(role, vec![]).allows(Action::Work, None),
                matches!(role, Role::Worker | Role::Admin),
                "{role}"
            );
        }
        let worker = user(Role::Worker, vec![]);
        assert!(worker.allows(Action::Write, None));
        assert!(worker.allows(Action::Read, None));
        assert!(!worker.allows(Action::Approve, None));
        assert!(!worker.allows(Action::Admin, None));
        assert!(!worker.allows(Action::Report, None));
        assert_eq!(Role::parse("worker").unwrap(), Role::Worker);
    }
}
