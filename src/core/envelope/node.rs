//! A JSON object with its path, so every error of the envelope decoder says where it happened.

use super::*;

/// A JSON object together with its path, so that every error can say where it happened.
pub(super) struct Node<'a> {
    pub(super) map: &'a Map<String, Value>,
    pub(super) path: String,
}

impl<'a> Node<'a> {
    /// The root object of a document found at `path` (`$` for the body, `Message` inside SNS).
    pub(super) fn root(value: &'a Value, path: &str) -> Result<Self, EnvelopeError> {
        let map = value
            .as_object()
            .ok_or_else(|| invalid_type(path.to_owned(), "a JSON object", value))?;
        Ok(Node {
            map,
            path: path.to_owned(),
        })
    }

    pub(super) fn at(&self, field: &str) -> String {
        match self.path.as_str() {
            "$" => field.to_owned(),
            path => format!("{path}.{field}"),
        }
    }

    pub(super) fn invalid(&self, field: &str, detail: String) -> EnvelopeError {
        EnvelopeError::Invalid {
            path: self.at(field),
            detail,
        }
    }

    pub(super) fn unknown_shape(&self) -> EnvelopeError {
        let mut keys: Vec<String> = self
            .map
            .keys()
            .take(MAX_KEYS_SHOWN)
            .map(|k| quote(k))
            .collect();
        if self.map.len() > MAX_KEYS_SHOWN {
            keys.push("…".to_owned());
        }
        let keys = if keys.is_empty() {
            "none".to_owned()
        } else {
            keys.join(", ")
        };
        EnvelopeError::UnknownShape {
            path: self.path.clone(),
            keys,
        }
    }

    /// A required field that `pick` accepts; `expected` says what `pick` accepts.
    pub(super) fn req<T>(
        &self,
        field: &str,
        expected: &str,
        pick: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<T, EnvelopeError> {
        // A null field is as good as missing.
        match self.map.get(field).filter(|v| !v.is_null()) {
            Some(value) => pick(value).ok_or_else(|| invalid_type(self.at(field), expected, value)),
            None => Err(self.invalid(field, "missing".to_owned())),
        }
    }

    /// An optional field (missing or null is `None`) that `pick` accepts.
    pub(super) fn opt<T>(
        &self,
        field: &str,
        expected: &str,
        pick: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, EnvelopeError> {
        match self.map.get(field).filter(|v| !v.is_null()) {
            Some(_) => self.req(field, expected, pick).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn object(&self, field: &str) -> Result<Node<'a>, EnvelopeError> {
        let map = self.req(field, "an object", Value::as_object)?;
        Ok(Node {
            map,
            path: self.at(field),
        })
    }

    /// A required, non-empty string.
    pub(super) fn string(&self, field: &str) -> Result<&'a str, EnvelopeError> {
        self.req(field, "a non-empty string", |v| {
            v.as_str().filter(|s| !s.is_empty())
        })
    }

    pub(super) fn opt_string(&self, field: &str) -> Result<Option<String>, EnvelopeError> {
        self.opt(field, "a string", |v| v.as_str().map(str::to_owned))
    }

    pub(super) fn opt_u64(&self, field: &str) -> Result<Option<u64>, EnvelopeError> {
        self.opt(field, "a non-negative integer", Value::as_u64)
    }

    /// The items of a required, non-empty array that `pick` accepts, each with its path.
    pub(super) fn items<T>(
        &self,
        field: &str,
        expected: &str,
        pick: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Vec<(String, T)>, EnvelopeError> {
        let array = self.req(field, "a non-empty array", |v| {
            v.as_array().filter(|a| !a.is_empty())
        })?;
        let base = self.at(field);
        let item = |(i, value)| {
            let path = format!("{base}[{i}]");
            match pick(value) {
                Some(picked) => Ok((path, picked)),
                None => Err(invalid_type(path, expected, value)),
            }
        };
        array.iter().enumerate().map(item).collect()
    }

    /// A required, non-empty array of objects.
    pub(super) fn objects(&self, field: &str) -> Result<Vec<Node<'a>>, EnvelopeError> {
        let items = self.items(field, "an object", Value::as_object)?;
        Ok(items
            .into_iter()
            .map(|(path, map)| Node { map, path })
            .collect())
    }

    /// A required string, or a required non-empty array of strings; each with its path.
    pub(super) fn strings(&self, field: &str) -> Result<Vec<(String, &'a str)>, EnvelopeError> {
        match self.map.get(field) {
            Some(Value::String(key)) => Ok(vec![(self.at(field), key.as_str())]),
            _ => self.items(field, "a string", Value::as_str),
        }
    }
}
