//! `onboard`: the plan as text for people (`--format text`).

use super::*;

/// `text` as one shell word: bare when it holds only safe characters, else single-quoted.
#[must_use]
pub fn shell_quote(text: &str) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b);
    if !text.is_empty() && text.bytes().all(safe) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

pub(super) fn pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A heredoc writing `value` as JSON to `file`.
pub(super) fn heredoc<T: Serialize>(file: &str, value: &T) -> String {
    format!("cat > {file} <<'EOF'\n{}\nEOF\n", pretty(value))
}

pub(super) fn section(title: &str) -> String {
    let rule = "-".repeat(90_usize.saturating_sub(title.len() + 7));
    format!("\n# --- {title} {rule}\n")
}

/// The set-up as a commented shell script: our side, the role (CloudFormation or by hand), the
/// notification, the subscribe request. Pure.
#[must_use]
pub fn render_text(plan: &Plan) -> String {
    let mut s = String::new();
    let notification_prefix = plan
        .notification_configuration
        .topic_configurations
        .first()
        .and_then(|c| c.filter.key.filter_rules.first())
        .map_or("", |r| r.value.as_str());
    let topic_arn = plan
        .topic_policy_statement
        .resource
        .as_deref()
        .unwrap_or_default();
    let source = match plan.our_account_source {
        AccountSource::Sts => "STS GetCallerIdentity",
        AccountSource::TopicArn => "from notifications.topic_arn: STS could not be reached",
    };
    let generated = if plan.external_id_generated {
        " (generated: the role and the subscribe request must carry this one)"
    } else {
        ""
    };
    let _ = write!(
        s,
        "# BigPanda CloudTrail changes: onboarding bucket {} (account {}, region {})\n\
         # our account:  {} ({source})\n\
         # external ID:  {}{generated}\n\
         # role:         {}\n\
         # notification: {} -> {topic_arn}, keys {notification_prefix}*{LOG_SUFFIX}\n",
        plan.bucket,
        plan.account,
        plan.bucket_region,
        plan.our_account,
        plan.external_id,
        plan.role_arn,
        NOTIFICATION_EVENT,
    );
    s += &our_side(plan, topic_arn);
    s += &role_steps(plan);
    s += &notification_step(plan);
    s += &subscribe_step(plan);
    s
}

pub(super) fn our_side(plan: &Plan, topic_arn: &str) -> String {
    format!(
        "{}# Add this statement to the access policy of {topic_arn}\n\
         # (aws sns get-topic-attributes / set-topic-attributes --attribute-name Policy), before\n\
         # step 3: S3 checks that it may publish when the notification is saved.\n{}",
        section("1. Our side (operator, our account): let the bucket publish to our topic."),
        heredoc("topic-policy-statement.json", &plan.topic_policy_statement)
    )
}

pub(super) fn role_steps(plan: &Plan) -> String {
    let cf = &plan.cloudformation;
    let kms = serde_json::to_string(&plan.kms_decrypt_statement).unwrap_or_default();
    format!(
        "{}# Either deploy the CloudFormation template ({}) in the bucket's\n\
         # account and region: it creates the role, its policy and the notification (merged with\n\
         # the bucket's existing ones); then go on with step 4:\n\
         {}\n\
         # or create them by hand (steps 2 and 3):\n\
         {}{}\
         aws iam create-role --role-name {} --assume-role-policy-document file://trust-policy.json\n\
         aws iam put-role-policy --role-name {} --policy-name {POLICY_NAME} --policy-document file://permission-policy.json\n\
         # SSE-KMS: if the bucket's objects are encrypted with a KMS key, the role also needs this\n\
         # statement (the key's ARN in place of the placeholder), and the key policy must let the\n\
         # role use the key:\n\
         #   {kms}\n",
        section(&format!("2. Customer: the IAM role {}.", plan.role_name)),
        cf.template,
        cf.deploy_command,
        heredoc("trust-policy.json", &plan.trust_policy),
        heredoc("permission-policy.json", &plan.permission_policy),
        plan.role_name,
        plan.role_name,
    )
}

pub(super) fn notification_step(plan: &Plan) -> String {
    let bucket = shell_quote(&plan.bucket);
    format!(
        "{}# put-bucket-notification-configuration replaces the bucket's whole notification\n\
         # configuration: if `aws s3api get-bucket-notification-configuration --bucket {bucket}`\n\
         # shows any, add this TopicConfiguration to them instead.\n\
         {}aws s3api put-bucket-notification-configuration --bucket {bucket} --notification-configuration file://notification.json\n",
        section("3. Customer: the bucket notification."),
        heredoc("notification.json", &plan.notification_configuration),
    )
}

pub(super) fn subscribe_step(plan: &Plan) -> String {
    let mut s = section("4. Customer: subscribe the bucket with their BigPanda API and app keys.");
    let _ = writeln!(
        s,
        "# The URL is api.listen on this host: give customers the URL they reach the API at."
    );
    for note in plan.notes.iter().filter(|n| n.starts_with("Organization")) {
        let _ = writeln!(s, "# {note}");
    }
    let _ = writeln!(s, "{}", plan.subscribe_request.curl);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::onboard::fixtures::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("abc-1.2:/=@,+"), "abc-1.2:/=@,+");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn text_holds_every_document_and_command() {
        let c = customer("team");
        let plan = plan(
            &c,
            &topic(),
            "123456789012",
            AccountSource::Sts,
            "http://h:1",
        );
        let text = render_text(&plan);
        for needle in [
            "cat > trust-policy.json <<'EOF'",
            "cat > permission-policy.json <<'EOF'",
            "cat > notification.json <<'EOF'",
            "cat > topic-policy-statement.json <<'EOF'",
            "aws iam create-role --role-name BigPandaCloudTrailReader",
            "aws s3api put-bucket-notification-configuration --bucket acme-trail",
            "aws cloudformation deploy --region us-east-1",
            "TrailPrefix=team/",
            "#   {\"Sid\":\"AllowBigPandaDecrypt\"",
            &plan.subscribe_request.curl,
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        // Every heredoc holds the JSON printed in json mode.
        assert!(text.contains(&pretty(&plan.trust_policy)));
    }
}
