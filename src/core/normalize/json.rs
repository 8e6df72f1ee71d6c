//! Reading raw JSON values into tag text.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// The tag text of a raw value: strings as they are, numbers and booleans as their JSON text,
/// objects and arrays as compact JSON; `None` for `null` and for the empty values `""`, `{}`
/// and `[]` (change-model.md, "Empty values make no tag"). A string `"{}"` is not empty.
pub fn tag_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let first = *text.as_bytes().first()?;
    let value = match first {
        b'n' => return None,
        b'"' => serde_json::from_str::<Cow<'_, str>>(text).ok()?,
        b'{' | b'[' => Cow::Owned(compact(text)),
        _ => Cow::Borrowed(text),
    };
    match (first, value.as_ref()) {
        (b'"', "") | (b'{', "{}") | (b'[', "[]") => None,
        _ => Some(value),
    }
}

/// The members of a JSON object in source order, a key given twice keeping its first position
/// and its last value (as JSON readers that keep order do); `None` when `raw` is not an object.
pub fn members(raw: &RawValue) -> Option<Vec<(Cow<'_, str>, &RawValue)>> {
    let Members(list) = serde_json::from_str(raw.get()).ok()?;
    Some(dedup(list?))
}

/// The elements of a JSON array; `None` when `raw` is not an array.
pub fn elements(raw: &RawValue) -> Option<Vec<&RawValue>> {
    serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok()
}

fn dedup<'a>(list: Vec<(Cow<'a, str>, &'a RawValue)>) -> Vec<(Cow<'a, str>, &'a RawValue)> {
    if list.len() < 2 {
        return list;
    }
    let mut at: HashMap<Cow<'a, str>, usize> = HashMap::with_capacity(list.len());
    let mut out: Vec<(Cow<'a, str>, &'a RawValue)> = Vec::with_capacity(list.len());
    for (key, value) in list {
        match at.get(&key) {
            Some(&i) => out[i].1 = value,
            None => {
                at.insert(key.clone(), out.len());
                out.push((key, value));
            }
        }
    }
    out
}

/// An object's members in order, or `None` for any other value.
struct Members<'a>(Option<Vec<(Cow<'a, str>, &'a RawValue)>>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut list = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    list.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(Some(list)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Members(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Members(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Members(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Members(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Members(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Members(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Members(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Compact JSON text of a valid JSON value: whitespace between tokens removed, strings
/// re-escaped the one way serde_json writes them, numbers and key order as in the source.
/// The same value gives the same text whatever its source's whitespace and escapes.
pub fn compact(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\n' | b'\r' | b'\t' => i += 1,
            b'"' => {
                let end = string_end(bytes, i);
                let literal = &json[i..end];
                if literal.contains('\\') {
                    match serde_json::from_str::<String>(literal) {
                        Ok(s) => out.push_str(&serde_json::Value::String(s).to_string()),
                        Err(_) => out.push_str(literal),
                    }
                } else {
                    out.push_str(literal);
                }
                i = end;
            }
            _ => {
                let start = i;
                while i < bytes.len() && !matches!(bytes[i], b' ' | b'\n' | b'\r' | b'\t' | b'"') {
                    i += 1;
                }
                out.push_str(&json[start..i]);
            }
        }
    }
    out
}

/// The index just past the string literal that starts at `start` (a `"`).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}
