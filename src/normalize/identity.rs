//! `userIdentity` -> the `user_name`, `user_type`, `user_arn` and `user_session` tags.

use super::TagBuilder;
use crate::records::Lenient;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The parts of `userIdentity` the tags use; odd-typed fields read as absent.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UserIdentity<'a> {
    #[serde(rename = "type", borrow)]
    kind: Lenient<'a>,
    #[serde(rename = "principalId", borrow)]
    principal_id: Lenient<'a>,
    #[serde(borrow)]
    arn: Lenient<'a>,
    #[serde(rename = "accountId", borrow)]
    account_id: Lenient<'a>,
    #[serde(rename = "userName", borrow)]
    user_name: Lenient<'a>,
    #[serde(rename = "invokedBy", borrow)]
    invoked_by: Lenient<'a>,
    #[serde(rename = "sessionContext", borrow)]
    session_context: Option<SessionContext<'a>>,
    #[serde(rename = "onBehalfOf", borrow)]
    on_behalf_of: Option<OnBehalfOf<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SessionContext<'a> {
    #[serde(rename = "sessionIssuer", borrow)]
    session_issuer: Option<SessionIssuer<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SessionIssuer<'a> {
    #[serde(borrow)]
    arn: Lenient<'a>,
    #[serde(rename = "userName", borrow)]
    user_name: Lenient<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OnBehalfOf<'a> {
    #[serde(rename = "userId", borrow)]
    user_id: Lenient<'a>,
}

/// Adds the user tags of `raw` (absent or unreadable identities give `user_name: unknown`).
pub(super) fn user_tags(raw: Option<&RawValue>, tags: &mut TagBuilder) {
    let id: UserIdentity<'_> = raw
        .and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or_default();
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
        .map(|(_, s)| s)
        .or(after_colon(id.principal_id.0.as_deref()));
    (name, session)
}

/// `arn:aws:sts::123456789012:assumed-role/<role>/<session>` -> (role, session).
fn assumed_role_arn(arn: &str) -> Option<(&str, &str)> {
    let (_, path) = arn.split_once(":assumed-role/")?;
    let (role, session) = path.rsplit_once('/')?;
    (!role.is_empty() && !session.is_empty()).then_some((role, session))
}

fn after_colon(s: Option<&str>) -> Option<&str> {
    s.and_then(|s| s.split_once(':'))
        .map(|(_, rest)| rest)
        .filter(|rest| !rest.is_empty())
}
