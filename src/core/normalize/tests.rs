use super::*;
use crate::core::records::Element;

fn change_with(json: &str, opts: Options) -> Change {
    let element: Element<'_> = serde_json::from_str(json).expect("test JSON");
    let Element::Record(record) = element else {
        panic!("an object")
    };
    normalize(
        &record,
        Origin {
            bucket: Some("trail-bucket"),
            key: "AWSLogs/1/CloudTrail/x.json.gz",
        },
        opts,
    )
    .expect("well formed")
}

fn change(json: &str) -> Change {
    change_with(json, Options::default())
}

fn tags_of(identity: &str) -> Vec<(String, String)> {
    let json = format!(
        r#"{{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","userIdentity":{identity}}}"#
    );
    change(&json)
        .tags
        .0
        .into_iter()
        .filter(|(k, _)| k.starts_with("user_"))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_record_maps_to_the_whole_change() {
    let c = change(
        r#"{"eventVersion":"1.08","eventID":"3c5f4c5e-8a54-4b52-9d3f-1e0c9b2b7a11","eventTime":"2023-07-10T12:40:00Z",
        "eventName":"AuthorizeSecurityGroupIngress","eventSource":"ec2.amazonaws.com","awsRegion":"eu-west-1",
        "recipientAccountId":"123456789012","sourceIPAddress":"203.0.113.7","requestID":"req-1",
        "userIdentity":{"type":"IAMUser","userName":"alice","arn":"arn:aws:iam::123456789012:user/alice"},
        "requestParameters":{"groupId":"sg-1","ipPermissions":{"items":[{"fromPort":22, "toPort":22}]},"dryRun":false},
        "resources":[{"ARN":"arn:aws:ec2:eu-west-1:123456789012:security-group/sg-1","accountId":"123456789012","type":"AWS::EC2::SecurityGroup"}]}"#,
    );
    let expected = serde_json::json!({
        "identifier": "3c5f4c5e-8a54-4b52-9d3f-1e0c9b2b7a11",
        "status": "Done",
        "summary": "AuthorizeSecurityGroupIngress",
        "start": 1_688_992_800,
        "end": 1_688_992_800,
        "ticket_url": "https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-west-1#/events/3c5f4c5e-8a54-4b52-9d3f-1e0c9b2b7a11",
        "tags": {
            "user_name": "alice", "user_type": "IAMUser", "user_arn": "arn:aws:iam::123456789012:user/alice",
            "event_source": "ec2.amazonaws.com", "aws_region": "eu-west-1", "aws_account_id": "123456789012",
            "source_ip": "203.0.113.7", "rp_groupId": "sg-1",
            "rp_ipPermissions": "{\"items\":[{\"fromPort\":22,\"toPort\":22}]}", "rp_dryRun": "false",
            "resources0_ARN": "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-1",
            "resources0_accountId": "123456789012", "resources0_type": "AWS::EC2::SecurityGroup"
        },
        "metadata": {"bucket": "trail-bucket", "key": "AWSLogs/1/CloudTrail/x.json.gz", "eventVersion": "1.08", "requestID": "req-1"}
    });
    assert_eq!(serde_json::to_value(&c).expect("serializes"), expected);
    let keys: Vec<&str> = c.tags.0.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        &keys[7..10],
        ["rp_groupId", "rp_ipPermissions", "rp_dryRun"],
        "rp_ tags keep the source order"
    );
}

#[test]
fn an_assumed_role_is_named_by_its_issuer_with_the_session_as_its_own_tag() {
    let tags = tags_of(
        r#"{"type":"AssumedRole","principalId":"AROAX:i-0abc","arn":"arn:aws:sts::1:assumed-role/deployer/i-0abc",
        "sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::1:role/ci/deployer","userName":"deployer"}}}"#,
    );
    assert_eq!(
        tags,
        pairs(&[
            ("user_name", "deployer"),
            ("user_type", "AssumedRole"),
            ("user_arn", "arn:aws:sts::1:assumed-role/deployer/i-0abc"),
            ("user_session", "i-0abc")
        ])
    );
}

#[test]
fn an_assumed_role_without_issuer_name_takes_the_role_from_its_arn() {
    let tags = tags_of(
        r#"{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/ops-admin/jane@example.com"}"#,
    );
    assert_eq!(
        tags,
        pairs(&[
            ("user_name", "ops-admin"),
            ("user_type", "AssumedRole"),
            (
                "user_arn",
                "arn:aws:sts::1:assumed-role/ops-admin/jane@example.com"
            ),
            ("user_session", "jane@example.com")
        ])
    );
    let tags = tags_of(
        r#"{"type":"AssumedRole","principalId":"AROAX:sess","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:role/r"}}}"#,
    );
    assert_eq!(
        tags,
        pairs(&[
            ("user_name", "AROAX:sess"),
            ("user_type", "AssumedRole"),
            ("user_arn", "arn:aws:iam::1:role/r"),
            ("user_session", "sess")
        ]),
        "no name anywhere: principalId; the issuer ARN stands in for the ARN"
    );
}

#[test]
fn each_identity_type_names_its_user_as_the_change_model_says() {
    let name = |identity: &str| {
        tags_of(identity)
            .into_iter()
            .find(|(k, _)| k == "user_name")
            .map(|(_, v)| v)
    };
    let n = |s: &str| Some(s.to_owned());
    assert_eq!(
        name(r#"{"type":"IAMUser","userName":"bob","principalId":"AIDA"}"#),
        n("bob")
    );
    assert_eq!(
        name(r#"{"type":"Root","userName":"prod-account"}"#),
        n("prod-account")
    );
    assert_eq!(
        name(r#"{"type":"Root","principalId":"111122223333"}"#),
        n("root")
    );
    assert_eq!(
        name(r#"{"type":"FederatedUser","principalId":"123456789012:carol"}"#),
        n("carol")
    );
    assert_eq!(
        name(r#"{"type":"AWSService","invokedBy":"cloudformation.amazonaws.com"}"#),
        n("cloudformation.amazonaws.com")
    );
    assert_eq!(
        name(r#"{"type":"AWSAccount","accountId":"999988887777","principalId":"AROA:x"}"#),
        n("999988887777")
    );
    assert_eq!(
        name(
            r#"{"type":"IdentityCenterUser","onBehalfOf":{"userId":"9067-uuid","identityStoreArn":"arn:aws:identitystore::1:identitystore/d-1"}}"#
        ),
        n("9067-uuid")
    );
    assert_eq!(
        name(r#"{"type":"IdentityCenterUser","principalId":"p-1"}"#),
        n("p-1")
    );
    assert_eq!(
        name(r#"{"type":"WebIdentityUser","principalId":"oidc:sub","userName":"repo:x"}"#),
        n("oidc:sub")
    );
    assert_eq!(
        name(r#"{"accountId":"1","invokedBy":"AWS Internal"}"#),
        n("AWS Internal")
    );
    assert_eq!(
        name(r#"{"type":"Unknown","principalId":"internal-id","userName":"display"}"#),
        n("internal-id")
    );
    assert_eq!(name(r#"{}"#), n("unknown"));
    assert_eq!(name(r#""not an object""#), n("unknown"));
    assert_eq!(name("null"), n("unknown"));
}

#[test]
fn user_type_and_arn_are_left_out_when_cloudtrail_has_none() {
    assert_eq!(
        tags_of(r#"{"invokedBy":"ec2.amazonaws.com"}"#),
        pairs(&[("user_name", "ec2.amazonaws.com")])
    );
}

#[test]
fn tag_values_follow_the_json_rules() {
    let c = change(
        r#"{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","requestParameters":{
        "s":"text","n":1.50,"i":-3,"big":12345678901234567890,"t":true,"nothing":null,"empty":"",
        "o":{ "b" : 1, "a" : [ "x" , "\u00e9\/" ] },"arr":[],"esc":"line\nbreak"}}"#,
    );
    let rp: Vec<(String, String)> = c
        .tags
        .0
        .into_iter()
        .filter(|(k, _)| k.starts_with("rp_"))
        .collect();
    assert_eq!(
        rp,
        pairs(&[
            ("rp_s", "text"),
            ("rp_n", "1.50"),
            ("rp_i", "-3"),
            ("rp_big", "12345678901234567890"),
            ("rp_t", "true"),
            ("rp_o", r#"{"b":1,"a":["x","é/"]}"#),
            ("rp_esc", "line\nbreak"),
        ])
    );
}

#[test]
fn a_key_given_twice_keeps_its_first_place_and_last_value() {
    let c = change(
        r#"{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","requestParameters":{"a":"1","b":"2","a":"3","c":null,"c":"4","d":"5","d":null}}"#,
    );
    let rp: Vec<(String, String)> = c
        .tags
        .0
        .into_iter()
        .filter(|(k, _)| k.starts_with("rp_"))
        .collect();
    assert_eq!(rp, pairs(&[("rp_a", "3"), ("rp_b", "2"), ("rp_c", "4")]));
}

#[test]
fn empty_values_make_no_tag_anywhere() {
    let c = change(
        r#"{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","eventSource":"","awsRegion":"",
        "recipientAccountId":"","sourceIPAddress":"",
        "userIdentity":{"type":"IAMUser","userName":"bob","arn":""},
        "requestParameters":{"empty":"","obj":{},"spaced":{ },"arr":[],"arr2":[ ],"braces":"{}",
        "zero":0,"f":false,"nested":{"e":""},"kept":"x"},
        "resources":[{"ARN":"","type":"AWS::S3::Bucket","tags":{}},"",[],{}]}"#,
    );
    assert_eq!(
        c.tags.0,
        pairs(&[
            ("user_name", "bob"),
            ("user_type", "IAMUser"),
            ("rp_braces", "{}"),
            ("rp_zero", "0"),
            ("rp_f", "false"),
            ("rp_nested", r#"{"e":""}"#),
            ("rp_kept", "x"),
            ("resources0_type", "AWS::S3::Bucket"),
        ]),
        "a string \"{{}}\", 0, false and an object holding an empty value are not empty"
    );
    assert_eq!(c.ticket_url, None, "an empty region has no console");
}

#[test]
fn empty_strings_in_the_user_name_rules_fall_through_to_the_next_rule() {
    let name = |identity: &str| {
        tags_of(identity)
            .into_iter()
            .find(|(k, _)| k == "user_name")
            .map(|(_, v)| v)
    };
    let n = |s: &str| Some(s.to_owned());
    assert_eq!(
        name(r#"{"type":"IAMUser","userName":"","invokedBy":"svc","principalId":"AIDA"}"#),
        n("svc")
    );
    assert_eq!(
        name(r#"{"type":"IAMUser","userName":"","invokedBy":"","principalId":"AIDA"}"#),
        n("AIDA")
    );
    assert_eq!(
        name(r#"{"type":"IAMUser","userName":"","invokedBy":"","principalId":""}"#),
        n("unknown")
    );
    assert_eq!(name(r#"{"type":"Root","userName":""}"#), n("root"));
    assert_eq!(
        name(r#"{"type":"AWSService","invokedBy":"","principalId":"p"}"#),
        n("p")
    );
    assert_eq!(
        name(r#"{"type":"AWSAccount","accountId":"","principalId":"p"}"#),
        n("p")
    );
    assert_eq!(
        name(r#"{"type":"IdentityCenterUser","onBehalfOf":{"userId":""},"principalId":"p"}"#),
        n("p")
    );
    assert_eq!(
        name(
            r#"{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/s","sessionContext":{"sessionIssuer":{"userName":""}}}"#
        ),
        n("r")
    );
    // An Identity Center sign-in writes `arn: ""`: no user_arn tag; an empty type no user_type.
    assert_eq!(
        tags_of(r#"{"type":"","arn":"","principalId":"p"}"#),
        pairs(&[("user_name", "p")])
    );
    assert_eq!(
        tags_of(
            r#"{"type":"AssumedRole","arn":"","principalId":"AROA:s","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:role/r","userName":"r"}}}"#
        ),
        pairs(&[
            ("user_name", "r"),
            ("user_type", "AssumedRole"),
            ("user_arn", "arn:aws:iam::1:role/r"),
            ("user_session", "s")
        ]),
        "an empty arn is absent: the issuer's ARN stands in"
    );
}

#[test]
fn an_assumed_role_arn_without_a_session_names_the_role() {
    assert_eq!(
        tags_of(
            r#"{"type":"AssumedRole","principalId":"111111111111","arn":"arn:aws:sts::1:assumed-role/MakeStuffPublic"}"#
        ),
        pairs(&[
            ("user_name", "MakeStuffPublic"),
            ("user_type", "AssumedRole"),
            ("user_arn", "arn:aws:sts::1:assumed-role/MakeStuffPublic"),
        ]),
        "no session in the ARN and none in principalId: no user_session"
    );
    assert_eq!(
        tags_of(
            r#"{"type":"AssumedRole","principalId":"AROAX:ci-run","arn":"arn:aws:sts::1:assumed-role/Admin/"}"#
        ),
        pairs(&[
            ("user_name", "Admin"),
            ("user_type", "AssumedRole"),
            ("user_arn", "arn:aws:sts::1:assumed-role/Admin/"),
            ("user_session", "ci-run"),
        ]),
        "the session comes from principalId"
    );
    assert_eq!(
        tags_of(
            r#"{"type":"AssumedRole","principalId":"AROAX:x","arn":"arn:aws:sts::1:assumed-role/Admin","sessionContext":{"sessionIssuer":{"userName":"IssuerName"}}}"#
        )[0],
        ("user_name".to_owned(), "IssuerName".to_owned()),
        "the issuer's userName comes first"
    );
}

#[test]
fn request_parameters_that_are_not_an_object_are_one_rp_tag() {
    let rp = |value: &str| {
        let c = change(&format!(
            r#"{{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","requestParameters":{value}}}"#
        ));
        c.tags
            .0
            .into_iter()
            .filter(|(k, _)| k == "rp" || k.starts_with("rp_"))
            .collect::<Vec<_>>()
    };
    assert_eq!(rp(r#""text""#), pairs(&[("rp", "text")]));
    assert_eq!(rp(r#"[1, "a" ]"#), pairs(&[("rp", r#"[1,"a"]"#)]));
    assert_eq!(rp("5"), pairs(&[("rp", "5")]));
    assert_eq!(rp("true"), pairs(&[("rp", "true")]));
    for nothing in ["null", r#""""#, "[]", "{}"] {
        assert_eq!(rp(nothing), pairs(&[]), "{nothing}");
    }
    assert_eq!(rp(r#"{"a":1}"#), pairs(&[("rp_a", "1")]));
}

#[test]
fn resources_that_are_not_an_array_give_no_tags() {
    for res in ["null", r#""text""#, r#"{"ARN":"x"}"#, "5"] {
        let c = change(&format!(
            r#"{{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","resources":{res}}}"#
        ));
        assert!(
            c.tags.0.iter().all(|(k, _)| !k.starts_with("resources")),
            "{res}: {:?}",
            c.tags
        );
    }
}

#[test]
fn resources_are_tagged_by_index_and_key() {
    let c = change(
        r#"{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","resources":[
        {"ARN":"arn:1","type":"AWS::S3::Bucket"},{"accountId":"2","ARN":"arn:2","extra":{"k":[1]}},"odd",null]}"#,
    );
    let res: Vec<(String, String)> = c
        .tags
        .0
        .into_iter()
        .filter(|(k, _)| k.starts_with("resources"))
        .collect();
    assert_eq!(
        res,
        pairs(&[
            ("resources0_ARN", "arn:1"),
            ("resources0_type", "AWS::S3::Bucket"),
            ("resources1_accountId", "2"),
            ("resources1_ARN", "arn:2"),
            ("resources1_extra", r#"{"k":[1]}"#),
            ("resources2", "odd"),
        ])
    );
}

#[test]
fn long_values_are_cut_on_a_character_boundary_ending_in_an_ellipsis() {
    let exact = "é".repeat(1024);
    let long = format!("{exact}x");
    let c = change(&format!(
        r#"{{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","requestParameters":{{"exact":"{exact}","long":"{long}"}}}}"#
    ));
    assert_eq!(
        c.tags.get("rp_exact"),
        Some(exact.as_str()),
        "1024 characters are kept whole"
    );
    let cut_value = c.tags.get("rp_long").expect("tag");
    assert_eq!(cut_value.chars().count(), 1024);
    assert!(cut_value.ends_with("é…"));
    assert_eq!(cut(Cow::Borrowed("abcdef"), 4), "abc…");
    assert_eq!(cut(Cow::Borrowed("日本語テキスト"), 3), "日本…");
    assert_eq!(cut(Cow::Borrowed("abc"), 3), "abc");
    let small = change_with(
        r#"{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","userIdentity":{"type":"IAMUser","userName":"a-very-long-user-name"}}"#,
        Options {
            max_tag_value_chars: 16,
        },
    );
    assert_eq!(
        small.tags.get("user_name"),
        Some("a-very-long-use…"),
        "the limit applies to every tag"
    );
}

#[test]
fn non_ascii_text_is_kept_as_is() {
    let c = change(
        r#"{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","eventName":"PutBucketTagging","requestParameters":{"Tagging":{"TagSet":{"Tag":{"Key":"équipe","Value":"数据-🚀"}}}, "名前":"値"}}"#,
    );
    assert_eq!(
        c.tags.get("rp_Tagging"),
        Some(r#"{"TagSet":{"Tag":{"Key":"équipe","Value":"数据-🚀"}}}"#)
    );
    assert_eq!(c.tags.get("rp_名前"), Some("値"));
}

#[test]
fn the_ticket_url_needs_a_region_that_is_safe_in_a_host_name() {
    let no_region = change(r#"{"eventID":"e","eventTime":"2024-01-01T00:00:00Z"}"#);
    assert_eq!(no_region.ticket_url, None);
    let odd =
        change(r#"{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","awsRegion":"evil.com/x"}"#);
    assert_eq!(odd.ticket_url, None);
    assert_eq!(
        odd.tags.get("aws_region"),
        Some("evil.com/x"),
        "the tag keeps the value"
    );
    assert_eq!(
        ticket_url("eu-west-1", "a b#c").as_deref(),
        Some("https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-west-1#/events/a%20b%23c")
    );
}

#[test]
fn the_ticket_url_points_at_the_console_of_the_regions_partition() {
    let url = |region: &str| ticket_url(region, "id-1");
    assert_eq!(
        url("cn-north-1").as_deref(),
        Some("https://console.amazonaws.cn/cloudtrail/home?region=cn-north-1#/events/id-1")
    );
    assert_eq!(
        url("cn-northwest-1").as_deref(),
        Some("https://console.amazonaws.cn/cloudtrail/home?region=cn-northwest-1#/events/id-1")
    );
    assert_eq!(
        url("us-gov-west-1").as_deref(),
        Some("https://console.amazonaws-us-gov.com/cloudtrail/home?region=us-gov-west-1#/events/id-1")
    );
    assert_eq!(
        url("us-gov-east-1").as_deref(),
        Some("https://console.amazonaws-us-gov.com/cloudtrail/home?region=us-gov-east-1#/events/id-1")
    );
    for isolated in [
        "us-iso-east-1",
        "us-iso-west-1",
        "us-isob-east-1",
        "us-isof-south-1",
        "eu-isoe-west-1",
    ] {
        assert_eq!(url(isolated), None, "{isolated}");
    }
    for commercial in [
        "us-east-1",
        "ap-southeast-5",
        "il-central-1",
        "usgov-1",
        "cnx-1",
    ] {
        assert_eq!(
            url(commercial),
            Some(format!("https://{commercial}.console.aws.amazon.com/cloudtrailv2/home?region={commercial}#/events/id-1")),
            "{commercial}"
        );
    }
    let c = change(
        r#"{"eventID":"e","eventTime":"2024-01-01T00:00:00Z","awsRegion":"us-isob-east-1"}"#,
    );
    assert_eq!(
        (c.ticket_url, c.tags.get("aws_region")),
        (None, Some("us-isob-east-1")),
        "no link, the region tag stays"
    );
}

#[test]
fn start_and_end_come_from_event_time_in_any_accepted_form() {
    let c = change(r#"{"eventID":"e","eventTime":"2023-07-10 14:40:00.123+02:00"}"#);
    assert_eq!((c.start, c.end), (1_688_992_800, 1_688_992_800));
}

#[test]
fn a_record_without_event_id_cannot_be_normalized() {
    let element: Element<'_> =
        serde_json::from_str(r#"{"eventTime":"2024-01-01T00:00:00Z"}"#).expect("json");
    let Element::Record(record) = element else {
        panic!("object")
    };
    assert_eq!(
        normalize(
            &record,
            Origin {
                bucket: None,
                key: "k"
            },
            Options::default()
        ),
        Err(Malformed::MissingEventId)
    );
}

#[test]
fn compact_json_is_the_same_whatever_the_whitespace_and_escapes() {
    assert_eq!(
        compact("{ \"a\" : [ 1 , 2.0e3 , \"x y\" ] ,\n\t\"b\\u0041\" : { } }"),
        r#"{"a":[1,2.0e3,"x y"],"bA":{}}"#
    );
    assert_eq!(
        compact(r#"["\"quoted\" \\ back"]"#),
        r#"["\"quoted\" \\ back"]"#
    );
}
