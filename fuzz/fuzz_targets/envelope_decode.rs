//! `envelope::decode` on arbitrary message bodies: it must never panic, every object it hands
//! on must be a CloudTrail log file, every bucket it names a valid bucket name, and what it says
//! about the body stays bounded in size.

#![no_main]

use cloudtrail_changes::core::envelope::{self, Decoded};
use libfuzzer_sys::fuzz_target;

/// An error or skip detail quotes at most 200 characters per message-supplied string (each
/// escaped to at most 10 bytes) and lists at most 10 keys: anything near this is an echo.
const MAX_MESSAGE: usize = 32 * 1024;

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(body) => check(body),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});

fn check(body: &str) {
    match envelope::decode(body) {
        Ok(decoded) => check_decoded(&decoded),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.len() <= MAX_MESSAGE,
                "error of {} bytes",
                message.len()
            );
        }
    }
}

fn check_decoded(decoded: &Decoded) {
    for object in &decoded.objects {
        assert!(
            envelope::classify_key(&object.key).is_ok(),
            "handed on a key that is not a log file: {object}"
        );
    }
    let named = decoded.objects.iter();
    let named = named.chain(decoded.skipped.iter().filter_map(|s| s.object.as_ref()));
    for object in named {
        let bucket = object.bucket.as_bytes();
        assert!(
            (1..=255).contains(&bucket.len())
                && bucket
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b)),
            "not a bucket name: {:?}",
            object.bucket
        );
    }
    for skipped in &decoded.skipped {
        assert!(
            skipped.detail.len() <= MAX_MESSAGE,
            "skip detail of {} bytes",
            skipped.detail.len()
        );
    }
    let _ = decoded.format.as_str();
}
