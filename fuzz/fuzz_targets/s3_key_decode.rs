//! `envelope::decode_s3_key` on arbitrary keys: it must never panic, and encoding a key the way
//! S3 event notifications do (form-URL-encoding, `+` for a space) then decoding gives the key.

#![no_main]

use cloudtrail_changes::core::envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As raw (encoded) input: any outcome but a panic is fine; a decoded key re-encodes to
    // something that decodes to it again.
    if let Ok(decoded) = envelope::decode_s3_key(text) {
        let again = envelope::decode_s3_key(&s3_encode(&decoded, false));
        assert_eq!(again.as_deref(), Ok(decoded.as_str()));
    }
    // As a key: encoding then decoding gives it back, whatever the hex digits' case.
    for lower in [false, true] {
        let encoded = s3_encode(text, lower);
        assert_eq!(
            envelope::decode_s3_key(&encoded).as_deref(),
            Ok(text),
            "{encoded}"
        );
    }
});

/// S3's encoding of a key in an event notification: unreserved bytes and `/` as they are, a
/// space as `+`, everything else `%XX` per UTF-8 byte.
fn s3_encode(key: &str, lower_hex: bool) -> String {
    let mut out = String::with_capacity(key.len() * 3);
    for &b in key.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' | b'/' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ if lower_hex => out.push_str(&format!("%{b:02x}")),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
