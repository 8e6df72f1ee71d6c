//! `userIdentity` -> the `user_name`, `user_type`, `user_arn` and `user_session` tags.

use super::TagBuilder;
use crate::core::records::Lenient;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;

/// The parts of `userIdentity` the tags use; odd-typed fields read as absent.
#[derive(Debug, Default)]
struct UserIdentity<'a> {
    kind: Lenient<'a>,
    principal_id: Lenient<'a>,
    arn: Lenient<'a>,
    account_id: Lenient<'a>,
    user_name: Lenient<'a>,
    invoked_by: Lenient<'a>,
    session_context: Option<SessionContext<'a>>,
    on_behalf_of: Option<OnBehalfOf<'a>>,
}

#[derive(Debug, Default)]
struct SessionContext<'a> {
    session_issuer: Option<SessionIssuer<'a>>,
}

#[derive(Debug, Default)]
struct SessionIssuer<'a> {
    arn: Lenient<'a>,
    user_name: Lenient<'a>,
}

#[derive(Debug, Default)]
struct OnBehalfOf<'a> {
    user_id: Lenient<'a>,
}

/// An object's members, values kept raw. Reading through raw values makes each member
/// independent: a repeated key keeps its last value, and a member that cannot be read (a number
/// out of range, a wrong type) is absent without losing its siblings.
type Members<'a> = HashMap<Cow<'a, str>, &'a RawValue>;

fn members(raw: &RawValue) -> Option<Members<'_>> {
    serde_json::from_str(raw.get()).ok()
}

/// A text member; an empty string counts as absent, so the next `user_name` rule applies.
fn text<'a>(members: &Members<'a>, name: &str) -> Lenient<'a> {
    let value: Lenient<'a> = members
        .get(name)
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    Lenient(value.0.filter(|s| !s.is_empty()))
}

fn object<'a>(members: &Members<'a>, name: &str) -> Option<Members<'a>> {
    members.get(name).and_then(|raw| members_of(raw))
}

fn members_of<'a>(raw: &&'a RawValue) -> Option<Members<'a>> {
    serde_json::from_str(raw.get()).ok()
}

impl<'a> UserIdentity<'a> {
    fn read(raw: &'a RawValue) -> Self {
        let Some(m) = members(raw) else {
            return Self::default();
        };
        let session_context = object(&m, "sessionContext").map(|c| SessionContext {
            session_issuer: object(&c, "sessionIssuer").map(|i| SessionIssuer {
                arn: text(&i, "arn"),
                user_name: text(&i, "userName"),
            }),
        });
        Self {
            kind: text(&m, "type"),
            principal_id: text(&m, "principalId"),
            arn: text(&m, "arn"),
            account_id: text(&m, "accountId"),
            user_name: text(&m, "userName"),
            invoked_by: text(&m, "invokedBy"),
            session_context,
            on_behalf_of: object(&m, "onBehalfOf").map(|o| OnBehalfOf {
                user_id: text(&o, "userId"),
            }),
        }
    }
}

/// Adds the user tags of `raw` (absent or unreadable identities give `user_name: unknown`).
pub(super) fn user_tags(raw: Option<&RawValue>, tags: &mut TagBuilder) {
    let id = raw.map(UserIdentity::read).unwrap_or_default();
    let issuer = id
        .session_context
        .as_ref()
        .and_then(|c| c.session_issuer.as_ref());
    let kind = id.kind.0.as_deref();
    let (name, session) = match kind {
        Some("AssumedRole" | "Role") => assumed_role(&id, issuer),
        Some("IAMUser") => (id.user_name.0.as_deref(), None),
        Some("Root") => (id.user_name.0.as_deref().or(Some("root")), None),
        Some("FederatedUser") => (after_colon(id.principal_id.0.as_deref()), None),
        Some("AWSService") => (id.invoked_by.0.as_deref(), None),
        Some("AWSAccount") => (id.account_id.0.as_deref(), None),
        Some("IdentityCenterUser") => (
            id.on_behalf_of
                .as_ref()
                .and_then(|o| o.user_id.0.as_deref()),
            None,
        ),
        _ => (None, None),
    };
    let name = name
        .or(id.invoked_by.0.as_deref())
        .or(id.principal_id.0.as_deref())
        .unwrap_or("unknown");
    let arn = id
        .arn
        .0
        .as_deref()
        .or(issuer.and_then(|i| i.arn.0.as_deref()));
    tags.text("user_name", Some(name));
    tags.text("user_type", kind);
    tags.text("user_arn", arn);
    tags.text("user_session", session);
}

/// An assumed role's name (the issuer's `userName`, else the role segment of the ARN) and its
/// session name (the last ARN segment, else what follows `:` in `principalId`).
fn assumed_role<'i>(
    id: &'i UserIdentity<'_>,
    issuer: Option<&'i SessionIssuer<'_>>,
) -> (Option<&'i str>, Option<&'i str>) {
    let arn_parts = id.arn.0.as_deref().and_then(assumed_role_arn);
    let name = issuer
        .and_then(|i| i.user_name.0.as_deref())
        .or(arn_parts.map(|(role, _)| role));
    let session = arn_parts
        .and_then(|(_, s)| s)
        .or(after_colon(id.principal_id.0.as_deref()));
    (name, session)
}

/// `arn:aws:sts::123456789012:assumed-role/<role>/<session>` -> (role, session); an ARN without
/// a session part (`.../assumed-role/<role>`) gives the role alone.
fn assumed_role_arn(arn: &str) -> Option<(&str, Option<&str>)> {
    let path = crate::util::arn::Arn::parse(arn)?
        .resource
        .strip_prefix("assumed-role/")?;
    let (role, session) = match path.rsplit_once('/') {
        Some((role, session)) => (role, Some(session).filter(|s| !s.is_empty())),
        None => (path, None),
    };
    (!role.is_empty()).then_some((role, session))
}

fn after_colon(s: Option<&str>) -> Option<&str> {
    s.and_then(|s| s.split_once(':'))
        .map(|(_, rest)| rest)
        .filter(|rest| !rest.is_empty())
}
