//! `cloudtrail-changes onboard` and the customer's CloudFormation template
//! (`config/cloudformation/customer-integration.yaml`).
//!
//! - `onboard` runs as the built binary with STS unreachable (our account then comes from
//!   `notifications.topic_arn`), or against moto (from STS GetCallerIdentity); its JSON is
//!   parsed and every document checked: the trust policy, a permission policy of exactly one
//!   `s3:GetObject` on the prefix, the notification, the subscribe request (through the API's
//!   own validation). The documents are also applied to moto (IAM, SNS, S3), which refuses
//!   malformed policies and notification configurations.
//! - The template passes `cfn-lint`; parsed (cfn-lint's own decoder), its role grants only
//!   `s3:GetObject` on the prefix and requires the external ID, and, evaluated with the
//!   parameters `onboard` prints, yields the same ARNs and prefix as `onboard`. Its inline
//!   notification function runs against moto: it adds ours beside the bucket's other
//!   notifications, replaces it on update and takes only ours out on delete.
//!
//! Tools come from the project's venv (`target/moto-venv`, or `CTC_MOTO_VENV`): `moto_server`
//! (`scripts/moto.sh install`) and `cfn-lint` (`target/moto-venv/bin/python -m pip install
//! cfn-lint==1.58.0`). A missing tool fails the test with that command.

use cloudtrail_changes::commands::onboard::{NOTIFICATION_ID, POLICY_NAME, ROLE_NAME};
use cloudtrail_changes::subscriptions::validate::{self, ExternalId};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:cloudtrail-changes";
const TOPIC_ACCOUNT: &str = "123456789012";
const CUSTOMER: &str = "111122223333";
const BUCKET: &str = "acme-trail";
const TEMPLATE: &str = "config/cloudformation/customer-integration.yaml";
const CFN_LINT_PIN: &str = "cfn-lint==1.58.0";
/// The account moto answers as.
const MOTO_ACCOUNT: &str = "210987654321";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Tools of the venv

fn venv() -> PathBuf {
    std::env::var_os("CTC_MOTO_VENV").map_or_else(|| repo().join("target/moto-venv"), PathBuf::from)
}

/// A program of the venv; panics with the command that installs it.
fn tool(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `scripts/moto.sh install` and then `{}/bin/python -m pip install {CFN_LINT_PIN}`",
        path.display(),
        venv().display()
    );
    path
}

/// The venv's Python running `script` with `args`, `stdin` fed in; its stdout, or a panic
/// with its stderr.
fn python(script: &str, args: &[&str], stdin: &str) -> String {
    tool("cfn-lint");
    let mut child = Command::new(tool("python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("python ran");
    assert!(
        out.status.success(),
        "python failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The last stdout line of [`python`], as JSON.
fn python_json(script: &str, args: &[&str], stdin: &str) -> Value {
    let out = python(script, args, stdin);
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("python printed no JSON ({e}):\n{out}"))
}

/// A moto server on a free port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let server = tool("moto_server");
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ACCOUNT_ID", MOTO_ACCOUNT)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !moto.ready() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited with {status}");
            }
            assert!(Instant::now() < deadline, "moto not ready after 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    fn ready(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let request = "GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        let mut answer = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.")
            && answer.contains(" 200 ")
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// onboard

/// `cloudtrail-changes onboard ARGS` with only `env` set over fake credentials, our topic and an
/// AWS endpoint nothing listens on (STS fails at once).
fn onboard_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudtrail-changes"));
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs([
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("CTC__AWS__ENDPOINT_URL", "http://127.0.0.1:1"),
        ("CTC__NOTIFICATIONS__TOPIC_ARN", TOPIC),
    ]);
    cmd.envs(env.iter().copied());
    cmd.arg("onboard").args(args);
    cmd.output().expect("run cloudtrail-changes onboard")
}

fn onboard(args: &[&str]) -> Output {
    onboard_with(args, &[])
}

/// `onboard --bucket BUCKET --account CUSTOMER ARGS --format json`, parsed.
fn onboard_json(args: &[&str]) -> Value {
    let mut all = vec![
        "--bucket",
        BUCKET,
        "--account",
        CUSTOMER,
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let out = onboard(&all);
    assert!(
        out.status.success(),
        "onboard {all:?} failed: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("onboard printed no JSON ({e}):\n{}", text(&out.stdout)))
}

/// The only statement of a policy document, checked to be alone.
fn only_statement(policy: &Value) -> &Value {
    assert_eq!(policy["Version"], "2012-10-17", "{policy:#}");
    let statements = policy["Statement"].as_array().expect("Statement is a list");
    assert_eq!(statements.len(), 1, "exactly one statement: {policy:#}");
    &statements[0]
}

fn assert_trust_policy(plan: &Value, our_account: &str) {
    let statement = only_statement(&plan["trust_policy"]);
    let external_id = plan["external_id"].as_str().expect("external_id");
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Action"], "sts:AssumeRole");
    assert_eq!(
        statement["Principal"],
        json!({"AWS": format!("arn:aws:iam::{our_account}:root")})
    );
    assert_eq!(
        statement["Condition"],
        json!({"StringEquals": {"sts:ExternalId": external_id}})
    );
    assert!(ExternalId::parse(external_id).is_ok(), "{external_id}");
    assert_eq!(
        plan["role_arn"],
        format!("arn:aws:iam::{CUSTOMER}:role/{ROLE_NAME}")
    );
}

fn assert_permission_policy(plan: &Value, prefix: &str) {
    let statement = only_statement(&plan["permission_policy"]);
    let keys: Vec<&str> = statement
        .as_object()
        .expect("statement object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["Action", "Effect", "Resource", "Sid"],
        "{statement:#}"
    );
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Action"], "s3:GetObject");
    assert_eq!(
        statement["Resource"],
        format!("arn:aws:s3:::{BUCKET}/{prefix}*")
    );
}

fn assert_notification(plan: &Value, prefix: &str) {
    let config = &plan["notification_configuration"];
    assert_eq!(
        config.as_object().map(|o| o.len()),
        Some(1),
        "only TopicConfigurations: {config:#}"
    );
    let topics = config["TopicConfigurations"].as_array().expect("a list");
    assert_eq!(topics.len(), 1, "{config:#}");
    let topic = &topics[0];
    assert_eq!(topic["TopicArn"], TOPIC);
    assert_eq!(topic["Id"], NOTIFICATION_ID);
    assert_eq!(topic["Events"], json!(["s3:ObjectCreated:*"]));
    assert_eq!(
        topic["Filter"]["Key"]["FilterRules"],
        json!([
            {"Name": "prefix", "Value": prefix},
            {"Name": "suffix", "Value": ".json.gz"}
        ])
    );
}

fn assert_topic_statement(plan: &Value) {
    let statement = &plan["topic_policy_statement"];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(
        statement["Principal"],
        json!({"Service": "s3.amazonaws.com"})
    );
    assert_eq!(statement["Action"], "SNS:Publish");
    assert_eq!(statement["Resource"], TOPIC);
    assert_eq!(
        statement["Condition"],
        json!({
            "StringEquals": {"aws:SourceAccount": CUSTOMER},
            "ArnLike": {"aws:SourceArn": format!("arn:aws:s3:::{BUCKET}")}
        })
    );
}

/// The subscribe body passes the API's validation once the key placeholders are filled in,
/// and the curl line carries exactly that body.
fn assert_subscribe_request(plan: &Value) {
    let request = &plan["subscribe_request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["url"], "http://127.0.0.1:8080/v1/subscriptions");
    let body = &request["body"];
    assert_eq!(body["apiKey"], "<BigPanda API key>");
    let mut filled = body.clone();
    filled["apiKey"] = json!("0123456789abcdef");
    filled["appKey"] = json!("fedcba9876543210");
    let parsed = validate::subscribe_request(&filled)
        .unwrap_or_else(|e| panic!("subscribe body refused: {e:?}\n{body:#}"));
    assert_eq!(parsed.bucket_name.as_str(), BUCKET);
    assert_eq!(parsed.bucket_region.as_str(), "us-east-1");
    assert_eq!(parsed.iam_role_arn.as_str(), plan["role_arn"]);
    assert_eq!(parsed.iam_role_external_id.as_str(), plan["external_id"]);
    let curl = request["curl"].as_str().expect("curl");
    let sent = curl
        .split_once(" -d '")
        .and_then(|(_, rest)| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no -d '...' in {curl}"));
    assert_eq!(
        serde_json::from_str::<Value>(sent).ok().as_ref(),
        Some(body)
    );
    assert!(curl.starts_with("curl -sS -X POST http://127.0.0.1:8080/v1/subscriptions "));
}

#[test]
fn json_output_holds_valid_documents_for_a_bucket_without_prefix() {
    let started = Instant::now();
    let plan = onboard_json(&[]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the STS fallback took {:?}",
        started.elapsed()
    );
    assert_eq!(plan["our_account"], TOPIC_ACCOUNT);
    assert_eq!(plan["our_account_source"], "topic_arn");
    assert_trust_policy(&plan, TOPIC_ACCOUNT);
    assert_permission_policy(&plan, "");
    assert_notification(&plan, &format!("AWSLogs/{CUSTOMER}/CloudTrail/"));
    assert_topic_statement(&plan);
    assert_subscribe_request(&plan);
    assert_eq!(plan["kms_decrypt_statement"]["Action"], "kms:Decrypt");
    assert_eq!(plan["external_id_generated"], true);
    assert_eq!(plan["cloudformation"]["template"], TEMPLATE);
}

#[test]
fn a_prefix_narrows_the_resource_and_the_notification() {
    for given in ["team/", "team"] {
        let plan = onboard_json(&["--prefix", given]);
        assert_eq!(plan["prefix"], "team/");
        assert_permission_policy(&plan, "team/");
        assert_notification(&plan, &format!("team/AWSLogs/{CUSTOMER}/CloudTrail/"));
        assert_subscribe_request(&plan);
    }
}

#[test]
fn an_organization_trail_prefix_covers_the_organization() {
    let plan = onboard_json(&["--prefix", "logs/AWSLogs/o-abc123defg"]);
    assert_permission_policy(&plan, "logs/AWSLogs/o-abc123defg/");
    assert_notification(&plan, "logs/AWSLogs/o-abc123defg/");
    let parameters = &plan["cloudformation"]["parameters"];
    assert_eq!(parameters["TrailPrefix"], "logs/");
    assert_eq!(parameters["OrganizationId"], "o-abc123defg");
}

#[test]
fn external_ids_are_random_unless_given() {
    let first = onboard_json(&[]);
    let second = onboard_json(&[]);
    assert_ne!(first["external_id"], second["external_id"]);
    for plan in [&first, &second] {
        let id = plan["external_id"].as_str().expect("external_id");
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
    }
    let given = onboard_json(&["--external-id", "acme:trail-2024"]);
    assert_eq!(given["external_id"], "acme:trail-2024");
    assert_eq!(given["external_id_generated"], false);
    assert_trust_policy(&given, TOPIC_ACCOUNT);
}

#[test]
fn text_output_is_a_script_with_the_curl_line() {
    let out = onboard(&[
        "--bucket",
        BUCKET,
        "--account",
        CUSTOMER,
        "--prefix",
        "team",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let curl = stdout
        .lines()
        .find(|l| l.starts_with("curl -sS -X POST http://127.0.0.1:8080/v1/subscriptions "))
        .unwrap_or_else(|| panic!("no curl line in:\n{stdout}"));
    assert!(
        curl.contains(&format!("\"bucket_name\":\"{BUCKET}\"")),
        "{curl}"
    );
    for needle in [
        "\"Resource\": \"arn:aws:s3:::acme-trail/team/*\"",
        "\"Value\": \"team/AWSLogs/111122223333/CloudTrail/\"",
        "aws iam create-role --role-name BigPandaCloudTrailReader",
        "aws cloudformation deploy --region us-east-1",
        "kms:Decrypt",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("notifications.topic_arn"),
        "no note about the fallback: {stderr}"
    );
}

#[test]
fn bad_arguments_exit_1_naming_the_argument() {
    let cases: [(&[&str], &str); 6] = [
        (&["--bucket", BUCKET, "--account", "12345"], "--account"),
        (
            &["--bucket", BUCKET, "--account", "11112222333a"],
            "--account",
        ),
        (
            &["--bucket", "Bad_Bucket", "--account", CUSTOMER],
            "--bucket",
        ),
        (
            &[
                "--bucket",
                BUCKET,
                "--account",
                CUSTOMER,
                "--region",
                "moon",
            ],
            "--region",
        ),
        (
            &["--bucket", BUCKET, "--account", CUSTOMER, "--prefix", "a/*"],
            "--prefix",
        ),
        (
            &[
                "--bucket",
                BUCKET,
                "--account",
                CUSTOMER,
                "--external-id",
                "a b",
            ],
            "--external-id",
        ),
    ];
    for (args, name) in cases {
        let out = onboard(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(name), "{args:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn our_topic_must_be_configured_and_in_the_buckets_region() {
    let args = [
        "--bucket",
        BUCKET,
        "--account",
        CUSTOMER,
        "--format",
        "json",
    ];
    let out = onboard_with(&args, &[("CTC__NOTIFICATIONS__TOPIC_ARN", "")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("notifications.topic_arn is not set"),
        "{}",
        text(&out.stderr)
    );
    let mut elsewhere = args.to_vec();
    elsewhere.extend(["--region", "eu-west-1"]);
    let out = onboard(&elsewhere);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--region") && stderr.contains("own region"),
        "{stderr}"
    );
}

#[test]
fn our_account_comes_from_sts_when_it_answers() {
    let moto = Moto::start();
    let endpoint = moto.endpoint();
    let args = [
        "--bucket",
        BUCKET,
        "--account",
        CUSTOMER,
        "--format",
        "json",
    ];
    let out = onboard_with(&args, &[("CTC__AWS__ENDPOINT_URL", &endpoint)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(plan["our_account"], MOTO_ACCOUNT);
    assert_eq!(plan["our_account_source"], "sts");
    assert_trust_policy(&plan, MOTO_ACCOUNT);
    assert!(
        text(&out.stderr).contains("is not the account of notifications.topic_arn"),
        "{}",
        text(&out.stderr)
    );
}

/// Creates the role (trust and permission policies, with the KMS statement too), the topic
/// with our statement in its policy, the bucket and its notification; prints what moto kept.
const APPLY_TO_MOTO: &str = r#"
import json, sys
import boto3
plan = json.load(sys.stdin)
kw = dict(endpoint_url=sys.argv[1], region_name=plan["bucket_region"],
          aws_access_key_id="test", aws_secret_access_key="test")
iam, s3, sns = (boto3.client(n, **kw) for n in ("iam", "s3", "sns"))
role = iam.create_role(RoleName=plan["role_name"],
                       AssumeRolePolicyDocument=json.dumps(plan["trust_policy"]))["Role"]
iam.put_role_policy(RoleName=plan["role_name"], PolicyName="read",
                    PolicyDocument=json.dumps(plan["permission_policy"]))
kms = json.loads(json.dumps(plan["kms_decrypt_statement"]).replace(
    "<key-id>", "1234abcd-12ab-34cd-56ef-1234567890ab"))
with_kms = dict(plan["permission_policy"], Statement=plan["permission_policy"]["Statement"] + [kms])
iam.put_role_policy(RoleName=plan["role_name"], PolicyName="read-kms",
                    PolicyDocument=json.dumps(with_kms))
topic = sns.create_topic(Name=plan["topic_policy_statement"]["Resource"].split(":")[-1])["TopicArn"]
sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(
    {"Version": "2012-10-17", "Statement": [plan["topic_policy_statement"]]}))
s3.create_bucket(Bucket=plan["bucket"])
s3.put_bucket_notification_configuration(
    Bucket=plan["bucket"], NotificationConfiguration=plan["notification_configuration"])
kept = s3.get_bucket_notification_configuration(Bucket=plan["bucket"])
kept.pop("ResponseMetadata", None)
policy = iam.get_role_policy(RoleName=plan["role_name"], PolicyName="read")["PolicyDocument"]
print(json.dumps({"role_arn": role["Arn"], "notification": kept, "policy": policy}))
"#;

#[test]
fn aws_accepts_the_documents() {
    let moto = Moto::start();
    let plan = onboard_json(&["--prefix", "team"]);
    let applied = python_json(APPLY_TO_MOTO, &[&moto.endpoint()], &plan.to_string());
    assert_eq!(
        applied["role_arn"],
        format!("arn:aws:iam::{MOTO_ACCOUNT}:role/{ROLE_NAME}")
    );
    assert_eq!(applied["notification"], plan["notification_configuration"]);
    assert_eq!(applied["policy"], plan["permission_policy"]);
}

// ---------------------------------------------------------------------------------------------
// The CloudFormation template

/// The template as cfn-lint decodes it (tags as `{"Ref": ...}`, `{"Fn::Sub": ...}`).
fn template() -> Value {
    const DECODE: &str = r"
import json, sys
from cfnlint.decode import decode
template, matches = decode(sys.argv[1])
assert not matches, [str(m) for m in matches]
print(json.dumps(template))
";
    python_json(DECODE, &[TEMPLATE], "")
}

#[test]
fn template_passes_cfn_lint() {
    let out = Command::new(tool("cfn-lint"))
        .arg("--")
        .arg(TEMPLATE)
        .current_dir(repo())
        .output()
        .expect("run cfn-lint");
    assert!(
        out.status.success(),
        "cfn-lint {TEMPLATE} ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn statements(document: &Value) -> &Vec<Value> {
    assert_eq!(document["Version"], "2012-10-17");
    document["Statement"].as_array().expect("Statement list")
}

#[test]
fn template_role_reads_only_the_trail_and_requires_the_external_id() {
    let t = template();
    let resources = t["Resources"].as_object().expect("Resources");
    let kinds: BTreeMap<&str, &str> = resources
        .iter()
        .map(|(name, r)| (name.as_str(), r["Type"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("BucketNotification", "Custom::BucketNotification"),
            ("NotificationFunction", "AWS::Lambda::Function"),
            ("NotificationFunctionRole", "AWS::IAM::Role"),
            ("ReaderKmsPolicy", "AWS::IAM::RolePolicy"),
            ("ReaderRole", "AWS::IAM::Role"),
        ])
    );
    let role = &t["Resources"]["ReaderRole"]["Properties"];
    assert_eq!(role["RoleName"], json!({"Ref": "RoleName"}));
    assert_eq!(t["Parameters"]["RoleName"]["Default"], ROLE_NAME);
    let trust = statements(&role["AssumeRolePolicyDocument"]);
    assert_eq!(trust.len(), 1);
    assert_eq!(trust[0]["Effect"], "Allow");
    assert_eq!(trust[0]["Action"], "sts:AssumeRole");
    assert_eq!(
        trust[0]["Principal"],
        json!({"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${OurAccountId}:root"}})
    );
    assert_eq!(
        trust[0]["Condition"],
        json!({"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}})
    );
    let policies = role["Policies"].as_array().expect("Policies");
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0]["PolicyName"], POLICY_NAME);
    let grants = statements(&policies[0]["PolicyDocument"]);
    assert_eq!(grants.len(), 1);
    let keys: Vec<&str> = grants[0]
        .as_object()
        .expect("statement")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["Action", "Effect", "Resource", "Sid"]);
    assert_eq!(grants[0]["Effect"], "Allow");
    assert_eq!(grants[0]["Action"], "s3:GetObject");
    assert_eq!(
        grants[0]["Resource"],
        json!({"Fn::If": [
            "IsOrganizationTrail",
            {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/${TrailPrefix}AWSLogs/${OrganizationId}/*"},
            {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/${TrailPrefix}*"}
        ]})
    );
    // The only other grant to the role: kms:Decrypt, and only when a key is given.
    let kms = &t["Resources"]["ReaderKmsPolicy"];
    assert_eq!(kms["Condition"], "HasKmsKey");
    assert_eq!(kms["Properties"]["RoleName"], json!({"Ref": "ReaderRole"}));
    let kms_grants = statements(&kms["Properties"]["PolicyDocument"]);
    assert_eq!(kms_grants.len(), 1);
    assert_eq!(kms_grants[0]["Action"], "kms:Decrypt");
    assert_eq!(kms_grants[0]["Resource"], json!({"Ref": "KmsKeyArn"}));
    // The function's own role: the bucket's notification configuration, nothing else.
    let function_role = &t["Resources"]["NotificationFunctionRole"]["Properties"];
    for policy in function_role["Policies"].as_array().expect("Policies") {
        for statement in statements(&policy["PolicyDocument"]) {
            assert_eq!(
                statement["Resource"],
                json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"})
            );
            for action in statement["Action"].as_array().expect("actions") {
                let action = action.as_str().unwrap_or_default();
                assert!(
                    [
                        "s3:GetBucketNotification",
                        "s3:PutBucketNotification",
                        "s3:GetBucketLocation"
                    ]
                    .contains(&action),
                    "{action}"
                );
            }
        }
    }
    let notification = &t["Resources"]["BucketNotification"]["Properties"];
    assert_eq!(notification["NotificationId"], NOTIFICATION_ID);
    assert_eq!(notification["TopicArn"], json!({"Ref": "TopicArn"}));
    for output in [
        "RoleArn",
        "ExternalId",
        "BucketName",
        "BucketRegion",
        "SubscribeRequest",
    ] {
        assert!(t["Outputs"][output]["Value"].is_object(), "output {output}");
    }
}

/// `${Name}` replaced by `vars[Name]` (every one must be known).
fn substitute(template: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing }") + start;
        let name = &rest[start + 2..end];
        out.push_str(
            vars.get(name)
                .unwrap_or_else(|| panic!("unknown ${{{name}}}")),
        );
        rest = &rest[end + 1..];
    }
    out + rest
}

/// A value of the template, evaluated: `Fn::Sub`, `Ref` to a parameter, `Fn::If` on
/// `IsOrganizationTrail`, `Fn::GetAtt ReaderRole.Arn`.
fn evaluate(value: &Value, vars: &BTreeMap<String, String>) -> String {
    if let Some(s) = value.as_str() {
        return s.to_owned();
    }
    if let Some(s) = value["Fn::Sub"].as_str() {
        return substitute(s, vars);
    }
    if let Some(name) = value["Ref"].as_str() {
        return vars[name].clone();
    }
    if let Some([condition, then, otherwise]) = value["Fn::If"].as_array().map(Vec::as_slice) {
        assert_eq!(condition, "IsOrganizationTrail");
        let org = !vars["OrganizationId"].is_empty();
        return evaluate(if org { then } else { otherwise }, vars);
    }
    panic!("cannot evaluate {value}");
}

/// Checks every parameter value against the template's AllowedPattern and lengths; prints
/// the problems.
const CHECK_PARAMETERS: &str = r#"
import json, re, sys
from cfnlint.decode import decode
template, _ = decode(sys.argv[1])
given = json.load(sys.stdin)
problems = []
for name, value in given.items():
    spec = template["Parameters"].get(name)
    if spec is None:
        problems.append(name + ": not a parameter of the template")
        continue
    if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
        problems.append(name + ": " + repr(value) + " does not match " + spec["AllowedPattern"])
    if not int(spec.get("MinLength", 0)) <= len(value) <= int(spec.get("MaxLength", 4096)):
        problems.append(name + ": length")
for name, spec in template["Parameters"].items():
    if name not in given and "Default" not in spec:
        problems.append(name + ": required but not given")
print(json.dumps(problems))
"#;

#[test]
fn template_and_onboard_agree() {
    let t = template();
    let cases = [
        (vec![], ""),
        (vec!["--prefix", "team"], "team/"),
        (
            vec!["--prefix", "a/b/AWSLogs/o-abc123defg/"],
            "a/b/AWSLogs/o-abc123defg/",
        ),
    ];
    for (args, prefix) in cases {
        let plan = onboard_json(&args);
        let parameters = &plan["cloudformation"]["parameters"];
        let problems = python_json(CHECK_PARAMETERS, &[TEMPLATE], &parameters.to_string());
        assert_eq!(problems, json!([]), "{parameters:#}");
        let mut vars: BTreeMap<String, String> = t["Parameters"]
            .as_object()
            .expect("Parameters")
            .iter()
            .filter_map(|(k, p)| Some((k.clone(), p["Default"].as_str()?.to_owned())))
            .collect();
        for (k, v) in parameters.as_object().expect("parameters") {
            vars.insert(k.clone(), v.as_str().expect("string").to_owned());
        }
        vars.insert("AWS::Partition".into(), "aws".into());
        vars.insert("AWS::AccountId".into(), CUSTOMER.into());
        vars.insert("AWS::Region".into(), "us-east-1".into());
        vars.insert(
            "ReaderRole.Arn".into(),
            plan["role_arn"].as_str().expect("role").into(),
        );

        let role = &t["Resources"]["ReaderRole"]["Properties"];
        let trust = &role["AssumeRolePolicyDocument"]["Statement"][0];
        let plan_trust = &plan["trust_policy"]["Statement"][0];
        assert_eq!(
            evaluate(&trust["Principal"]["AWS"], &vars),
            plan_trust["Principal"]["AWS"]
        );
        assert_eq!(
            evaluate(&trust["Condition"]["StringEquals"]["sts:ExternalId"], &vars),
            plan["external_id"]
        );
        let grant = &role["Policies"][0]["PolicyDocument"]["Statement"][0];
        assert_eq!(
            evaluate(&grant["Resource"], &vars),
            plan["permission_policy"]["Statement"][0]["Resource"]
        );
        assert_eq!(
            plan["permission_policy"]["Statement"][0]["Resource"],
            format!("arn:aws:s3:::{BUCKET}/{prefix}*")
        );
        let notification = &t["Resources"]["BucketNotification"]["Properties"];
        let rules = &plan["notification_configuration"]["TopicConfigurations"][0]["Filter"]["Key"]
            ["FilterRules"];
        assert_eq!(evaluate(&notification["Prefix"], &vars), rules[0]["Value"]);
        assert_eq!(evaluate(&notification["TopicArn"], &vars), TOPIC);

        // The SubscribeRequest output is the body onboard prints.
        let output = evaluate(&t["Outputs"]["SubscribeRequest"]["Value"], &vars);
        let body: Value = serde_json::from_str(&output)
            .unwrap_or_else(|e| panic!("SubscribeRequest output is not JSON ({e}): {output}"));
        assert_eq!(body, plan["subscribe_request"]["body"]);
    }
}

/// Runs the template's inline function with a stand-in `cfnresponse` against moto: create
/// beside another notification, update (new prefix), create in the wrong region, delete,
/// delete again, delete on a missing bucket. Prints every response and the bucket's topic
/// configurations after each step.
const RUN_FUNCTION: &str = r#"
import json, os, sys, types
from cfnlint.decode import decode
template, _ = decode(sys.argv[1])
code = template["Resources"]["NotificationFunction"]["Properties"]["Code"]["ZipFile"]
os.environ.update(AWS_ENDPOINT_URL=sys.argv[2], AWS_REGION="us-east-1",
                  AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="test",
                  AWS_SECRET_ACCESS_KEY="test")
sent = []
cfnresponse = types.ModuleType("cfnresponse")
cfnresponse.SUCCESS, cfnresponse.FAILED = "SUCCESS", "FAILED"
def send(event, context, status, data, physical_id=None, noEcho=False, reason=None):
    sent.append({"status": status, "data": data, "physical_id": physical_id, "reason": reason})
cfnresponse.send = send
sys.modules["cfnresponse"] = cfnresponse
function = types.ModuleType("index")
exec(compile(code, "index.py", "exec"), function.__dict__)

import boto3
s3 = boto3.client("s3", region_name="us-east-1")
sns = boto3.client("sns", region_name="us-east-1")
ours = sns.create_topic(Name="cloudtrail-changes")["TopicArn"]
theirs = sns.create_topic(Name="theirs")["TopicArn"]
s3.create_bucket(Bucket="acme-trail")
s3.put_bucket_notification_configuration(Bucket="acme-trail", NotificationConfiguration={
    "TopicConfigurations": [{"Id": "theirs", "TopicArn": theirs, "Events": ["s3:ObjectRemoved:*"]}]})

def call(request_type, **props):
    base = {"BucketName": "acme-trail", "TopicArn": ours, "NotificationId": sys.argv[3],
            "Prefix": "AWSLogs/111122223333/CloudTrail/"}
    base.update(props)
    function.handler({"RequestType": request_type, "ResourceProperties": base}, None)
    return sent[-1]

def topics():
    got = s3.get_bucket_notification_configuration(Bucket="acme-trail")
    return {c["Id"]: c for c in got.get("TopicConfigurations", [])}

steps = {"topic": ours}
steps["create"] = call("Create")
steps["after_create"] = topics()
steps["update"] = call("Update", Prefix="team/AWSLogs/111122223333/CloudTrail/")
steps["after_update"] = topics()
steps["wrong_region"] = call("Create", TopicArn="arn:aws:sns:eu-west-1:123456789012:x")
steps["delete"] = call("Delete")
steps["after_delete"] = topics()
steps["delete_again"] = call("Delete")
steps["delete_missing_bucket"] = call("Delete", BucketName="no-such-bucket-here")
print(json.dumps(steps))
"#;

#[test]
fn template_function_merges_replaces_and_removes_our_notification() {
    let moto = Moto::start();
    let steps = python_json(
        RUN_FUNCTION,
        &[TEMPLATE, &moto.endpoint(), NOTIFICATION_ID],
        "",
    );
    let ours = |prefix: &str| {
        json!({
            "Id": NOTIFICATION_ID,
            "TopicArn": steps["topic"],
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [
                {"Name": "prefix", "Value": prefix},
                {"Name": "suffix", "Value": ".json.gz"}
            ]}}
        })
    };
    let physical_id = format!("{BUCKET}/{NOTIFICATION_ID}");
    for step in [
        "create",
        "update",
        "delete",
        "delete_again",
        "delete_missing_bucket",
    ] {
        assert_eq!(
            steps[step]["status"], "SUCCESS",
            "{step}: {:#}",
            steps[step]
        );
    }
    assert_eq!(steps["create"]["physical_id"], physical_id);
    let theirs = &steps["after_create"]["theirs"];
    assert_eq!(theirs["Events"], json!(["s3:ObjectRemoved:*"]));
    assert_eq!(
        steps["after_create"][NOTIFICATION_ID],
        ours("AWSLogs/111122223333/CloudTrail/")
    );
    assert_eq!(steps["after_update"].as_object().map(|o| o.len()), Some(2));
    assert_eq!(
        steps["after_update"][NOTIFICATION_ID],
        ours("team/AWSLogs/111122223333/CloudTrail/")
    );
    assert_eq!(steps["after_update"]["theirs"], *theirs);
    assert_eq!(steps["wrong_region"]["status"], "FAILED");
    let reason = steps["wrong_region"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("eu-west-1") && reason.contains("region"),
        "{reason}"
    );
    assert_eq!(steps["after_delete"], json!({"theirs": theirs}));
}
