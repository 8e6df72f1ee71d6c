//! Amazon Resource Names, `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`, split in one place
//! for every caller (queue ARNs, IAM role ARNs, STS assumed-role identities).

/// The six parts of an ARN; `resource` keeps any further `:` or `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// Splits `text`; `None` unless it starts with `arn:` and has all six parts.
    #[must_use]
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return None;
        };
        Some(Self {
            partition,
            service,
            region,
            account,
            resource,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Arn;

    #[test]
    fn the_six_parts_are_split_and_the_resource_keeps_its_separators() {
        let arn = Arn::parse("arn:aws-cn:sts::123456789012:assumed-role/a/b:c").expect("arn");
        assert_eq!(
            arn,
            Arn {
                partition: "aws-cn",
                service: "sts",
                region: "",
                account: "123456789012",
                resource: "assumed-role/a/b:c",
            }
        );
        assert_eq!(
            Arn::parse("arn:aws:sqs:us-east-1:1:q").map(|a| a.region),
            Some("us-east-1")
        );
    }

    #[test]
    fn anything_short_of_six_parts_or_without_the_arn_prefix_is_not_an_arn() {
        for text in [
            "",
            "arn",
            "arn:aws:sqs:us-east-1:1",
            "urn:aws:sqs:r:1:q",
            "ARN:aws:s3:::b",
        ] {
            assert_eq!(Arn::parse(text), None, "{text}");
        }
    }
}
