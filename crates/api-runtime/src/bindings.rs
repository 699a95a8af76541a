//! Access bindings on one resource (an image, …): the roles this server honours, what
//! `SetAccessBindings` and `UpdateAccessBindings` do to a resource's bindings, whether they
//! grant a caller a role there, and the pages of `ListAccessBindings`. Every service with
//! these three RPCs uses these, so that they behave the same everywhere.
//!
//! ```
//! use yc_api_runtime::bindings::{self, binding};
//! use yc_api_runtime::{Access, Caller, Principal, Role};
//!
//! let mut held = Vec::new();
//! let added = bindings::set(&mut held, vec![binding("viewer", "userAccount", "ajebob")]);
//! assert_eq!(added.len(), 1);
//! let bob = Caller::of(Principal::new("ajebob", Access::roles(Default::default())), None);
//! assert_eq!(bindings::granted(&held, &bob), Some(Role::Viewer));
//! ```

use sha2::{Digest, Sha256};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::access::{
    AccessBinding, AccessBindingAction, AccessBindingDelta, ListAccessBindingsResponse, Subject,
};

use crate::list::{QueryKey, page_size};
use crate::{Caller, Role};

/// The most bindings one resource holds.
pub const MAX_BINDINGS: usize = 1000;

/// The roles a binding on a resource may grant, and what each allows there: reading it (and,
/// for an image, using it as a source), changing it, and also changing its bindings.
pub const ROLES: &[(&str, Role)] = &[
    ("viewer", Role::Viewer),
    ("compute.viewer", Role::Viewer),
    ("compute.images.user", Role::Viewer),
    ("editor", Role::Editor),
    ("compute.editor", Role::Editor),
    ("admin", Role::Admin),
    ("compute.admin", Role::Admin),
];

/// The subject types a binding may name.
pub const SUBJECT_TYPES: &[&str] = &["userAccount", "serviceAccount", "federatedUser", "system"];

/// Every caller, authenticated or not.
pub const ALL_USERS: &str = "allUsers";
/// Every caller with a token.
pub const ALL_AUTHENTICATED_USERS: &str = "allAuthenticatedUsers";

/// A binding of `role_id` to the subject `subject_id` of `subject_type`.
pub fn binding(role_id: &str, subject_type: &str, subject_id: &str) -> AccessBinding {
    AccessBinding {
        role_id: role_id.to_owned(),
        subject: Some(Subject {
            id: subject_id.to_owned(),
            r#type: subject_type.to_owned(),
        }),
    }
}

/// The role `role_id` grants, if this server honours it.
pub fn role(role_id: &str) -> Option<Role> {
    ROLES
        .iter()
        .find(|(name, _)| *name == role_id)
        .map(|(_, role)| *role)
}

/// Refuses bindings this server could not honour, naming the field (`field` is the path of
/// each binding, given its index): a role it does not know, a subject type that does not
/// exist, a `system` subject that is not one of the system groups.
pub fn check<'a>(
    bindings: impl IntoIterator<Item = &'a AccessBinding>,
    field: impl Fn(usize) -> String,
) -> Result<(), Status> {
    for (i, binding) in bindings.into_iter().enumerate() {
        if role(&binding.role_id).is_none() {
            let names: Vec<&str> = ROLES.iter().map(|(name, _)| *name).collect();
            return Err(yc_proto_types::validation_error(
                &format!("{}.role_id", field(i)),
                &format!(
                    "{} is not a role this server grants on a resource; the roles are {}",
                    yc_proto_types::quote(&binding.role_id),
                    names.join(", ")
                ),
            ));
        }
        let subject = binding.subject.clone().unwrap_or_default();
        if !SUBJECT_TYPES.contains(&subject.r#type.as_str()) {
            return Err(yc_proto_types::validation_error(
                &format!("{}.subject.type", field(i)),
                &format!(
                    "{} is not a subject type; the types are {}",
                    yc_proto_types::quote(&subject.r#type),
                    SUBJECT_TYPES.join(", ")
                ),
            ));
        }
        if subject.r#type == "system"
            && ![ALL_USERS, ALL_AUTHENTICATED_USERS].contains(&subject.id.as_str())
            && !subject.id.starts_with("group:")
        {
            return Err(yc_proto_types::validation_error(
                &format!("{}.subject.id", field(i)),
                &format!(
                    "{} is not a system subject; they are {ALL_USERS}, \
                     {ALL_AUTHENTICATED_USERS} and group:…",
                    yc_proto_types::quote(&subject.id)
                ),
            ));
        }
    }
    Ok(())
}

fn delta(action: AccessBindingAction, binding: &AccessBinding) -> AccessBindingDelta {
    AccessBindingDelta {
        action: action as i32,
        access_binding: Some(binding.clone()),
    }
}

fn too_many() -> Status {
    Status::new(
        tonic::Code::FailedPrecondition,
        format!("A resource may have at most {MAX_BINDINGS} access bindings"),
    )
}

/// `SetAccessBindings`: `held` becomes `wanted` (each binding once); the deltas that took
/// effect, removals first.
pub fn set(held: &mut Vec<AccessBinding>, wanted: Vec<AccessBinding>) -> Vec<AccessBindingDelta> {
    let mut next: Vec<AccessBinding> = Vec::with_capacity(wanted.len());
    for binding in wanted {
        if !next.contains(&binding) {
            next.push(binding);
        }
    }
    let mut deltas: Vec<AccessBindingDelta> = held
        .iter()
        .filter(|b| !next.contains(b))
        .map(|b| delta(AccessBindingAction::Remove, b))
        .collect();
    deltas.extend(
        next.iter()
            .filter(|n| !held.contains(n))
            .map(|n| delta(AccessBindingAction::Add, n)),
    );
    *held = next;
    deltas
}

/// `UpdateAccessBindings`: each delta in turn, an ADD of a binding `held` lacks and a REMOVE
/// of one it has taking effect; the deltas that did. `FAILED_PRECONDITION` (and `held` as it
/// was) when the bindings would pass [`MAX_BINDINGS`].
pub fn update(
    held: &mut Vec<AccessBinding>,
    deltas: &[AccessBindingDelta],
) -> Result<Vec<AccessBindingDelta>, Status> {
    let mut next = held.clone();
    let mut effective = Vec::new();
    for (i, change) in deltas.iter().enumerate() {
        let binding = change.access_binding.clone().unwrap_or_default();
        let at = next.iter().position(|b| *b == binding);
        match (AccessBindingAction::try_from(change.action), at) {
            (Ok(AccessBindingAction::Add), None) => {
                next.push(binding);
                effective.push(change.clone());
            }
            (Ok(AccessBindingAction::Remove), Some(at)) => {
                next.remove(at);
                effective.push(change.clone());
            }
            (Ok(AccessBindingAction::Add | AccessBindingAction::Remove), _) => {}
            _ => {
                return Err(yc_proto_types::validation_error(
                    &format!("access_binding_deltas[{i}].action"),
                    "must be ADD or REMOVE",
                ));
            }
        }
    }
    if next.len() > MAX_BINDINGS {
        return Err(too_many());
    }
    *held = next;
    Ok(effective)
}

/// Whether `binding` is for `caller`: its subject by id (of any type but `system`),
/// `allAuthenticatedUsers` for a caller with a subject, `allUsers` for anyone. Groups are
/// not known here and match no one.
fn for_caller(binding: &AccessBinding, caller: &Caller) -> bool {
    let Some(subject) = &binding.subject else {
        return false;
    };
    if subject.r#type == "system" {
        return subject.id == ALL_USERS
            || (subject.id == ALL_AUTHENTICATED_USERS && !caller.subject.is_empty());
    }
    !caller.subject.is_empty() && subject.id == caller.subject
}

/// The strongest role `bindings` grant `caller`.
pub fn granted(bindings: &[AccessBinding], caller: &Caller) -> Option<Role> {
    bindings
        .iter()
        .filter(|b| for_caller(b, caller))
        .filter_map(|b| role(&b.role_id))
        .max()
}

/// Where a binding sits in a listing: a digest of what it is, short enough for a page token,
/// and stable while the binding exists.
fn sort_key(binding: &AccessBinding) -> String {
    let subject = binding.subject.clone().unwrap_or_default();
    let mut hasher = Sha256::new();
    for part in [&binding.role_id, &subject.r#type, &subject.id] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One page of `ListAccessBindings` over all of a resource's bindings: `key` binds its
/// tokens to the listing. A token continues after the binding it names even when bindings
/// change between pages.
pub fn page(
    held: Vec<AccessBinding>,
    key: &QueryKey,
    page_token: &str,
    requested_size: i64,
) -> Result<ListAccessBindingsResponse, Status> {
    let after = key.resume_after(page_token)?;
    let mut keyed: Vec<(String, AccessBinding)> =
        held.into_iter().map(|b| (sort_key(&b), b)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(after) = &after {
        keyed.retain(|(k, _)| k > after);
    }
    let limit = page_size(requested_size);
    let next_page_token = key.finish_page(&mut keyed, limit, |(k, _)| k);
    Ok(ListAccessBindingsResponse {
        access_bindings: keyed.into_iter().map(|(_, b)| b).collect(),
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::TokenKeys;
    use crate::{Access, Principal};

    fn caller(subject: &str) -> Caller {
        Caller::of(
            Principal::new(subject, Access::roles(Default::default())),
            None,
        )
    }

    #[test]
    fn set_replaces_and_reports_what_changed() {
        let mut held = vec![binding("viewer", "userAccount", "a")];
        let deltas = set(
            &mut held,
            vec![
                binding("editor", "userAccount", "b"),
                binding("editor", "userAccount", "b"),
            ],
        );
        assert_eq!(held, vec![binding("editor", "userAccount", "b")]);
        assert_eq!(
            deltas,
            vec![
                delta(
                    AccessBindingAction::Remove,
                    &binding("viewer", "userAccount", "a")
                ),
                delta(
                    AccessBindingAction::Add,
                    &binding("editor", "userAccount", "b")
                ),
            ]
        );
        assert!(set(&mut held, vec![binding("editor", "userAccount", "b")]).is_empty());
    }

    #[test]
    fn update_applies_deltas_in_order_and_reports_the_effective_ones() {
        let mut held = vec![binding("viewer", "userAccount", "a")];
        let add_a = delta(
            AccessBindingAction::Add,
            &binding("viewer", "userAccount", "a"),
        );
        let add_b = delta(
            AccessBindingAction::Add,
            &binding("viewer", "userAccount", "b"),
        );
        let remove_a = delta(
            AccessBindingAction::Remove,
            &binding("viewer", "userAccount", "a"),
        );
        let effective = update(&mut held, &[add_a, add_b.clone(), remove_a.clone()]).unwrap();
        assert_eq!(effective, vec![add_b, remove_a]);
        assert_eq!(held, vec![binding("viewer", "userAccount", "b")]);

        let many: Vec<AccessBindingDelta> = (0..=MAX_BINDINGS)
            .map(|i| {
                delta(
                    AccessBindingAction::Add,
                    &binding("viewer", "userAccount", &i.to_string()),
                )
            })
            .collect();
        let refused = update(&mut held, &many).unwrap_err();
        assert_eq!(refused.grpc_code(), tonic::Code::FailedPrecondition);
        assert_eq!(held, vec![binding("viewer", "userAccount", "b")]);
    }

    #[test]
    fn bindings_grant_their_subjects_and_the_system_groups() {
        let held = vec![
            binding("viewer", "userAccount", "bob"),
            binding("admin", "serviceAccount", "ci"),
            binding("editor", "system", "group:organization:o:users"),
        ];
        assert_eq!(granted(&held, &caller("bob")), Some(Role::Viewer));
        assert_eq!(granted(&held, &caller("ci")), Some(Role::Admin));
        assert_eq!(granted(&held, &caller("eve")), None);
        assert_eq!(granted(&held, &caller("")), None);
        let public = vec![binding("viewer", "system", ALL_AUTHENTICATED_USERS)];
        assert_eq!(granted(&public, &caller("eve")), Some(Role::Viewer));
        assert_eq!(granted(&public, &caller("")), None);
        let everyone = vec![binding("viewer", "system", ALL_USERS)];
        assert_eq!(granted(&everyone, &caller("")), Some(Role::Viewer));
    }

    #[test]
    fn unknown_roles_and_subjects_are_refused_by_field() {
        let at = |i: usize| format!("access_bindings[{i}]");
        let refused = check(
            &[
                binding("viewer", "userAccount", "a"),
                binding("owner", "userAccount", "a"),
            ],
            at,
        )
        .unwrap_err();
        assert!(
            refused
                .message
                .starts_with("Request validation error: access_bindings[1].role_id: \"owner\""),
            "{}",
            refused.message
        );
        let refused = check(&[binding("viewer", "robot", "a")], at).unwrap_err();
        assert!(refused.message.contains("access_bindings[0].subject.type"));
        let refused = check(&[binding("viewer", "system", "everyone")], at).unwrap_err();
        assert!(refused.message.contains("access_bindings[0].subject.id"));
        assert!(check(&[binding("viewer", "system", ALL_USERS)], at).is_ok());
    }

    #[test]
    fn pages_cover_every_binding_once_even_when_bindings_change_between_pages() {
        let keys = TokenKeys::ephemeral();
        let key = QueryKey::new(&keys, "test.ListAccessBindings", &["r1"]);
        let mut held: Vec<AccessBinding> = (0..25)
            .map(|i| binding("viewer", "userAccount", &format!("aje{i}")))
            .collect();
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = page(held.clone(), &key, &token, 10).unwrap();
            assert!(page.access_bindings.len() <= 10);
            assert!(page.next_page_token.len() <= 100);
            seen.extend(page.access_bindings.iter().cloned());
            if page.next_page_token.is_empty() {
                break;
            }
            // The binding the token names goes away: the listing still continues after it.
            let last = page.access_bindings.last().unwrap().clone();
            held.retain(|b| *b != last);
            token = page.next_page_token;
        }
        assert_eq!(seen.len(), 25);
        let other = QueryKey::new(&keys, "test.ListAccessBindings", &["r2"]);
        let first = page(held, &key, "", 10).unwrap();
        assert!(page(vec![], &other, &first.next_page_token, 10).is_err());
    }
}
