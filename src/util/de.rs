//! Deserializers for list settings that may arrive from environment variables.

use serde::Deserialize;

/// A list setting: a sequence, or one bare value (an environment variable without a comma
/// arrives as a scalar, not a one-element list).
///
/// # Errors
/// When the value is neither a list nor a single element.
pub fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(v) => vec![v],
    })
}

/// A list of numbers: as [`one_or_many`], and also the strings a comma-separated environment
/// variable gives (`"2,5,10"` arrives as `["2", "5", "10"]`).
///
/// # Errors
/// When an element is neither a number nor a string holding one.
pub fn numbers<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number<T> {
        Plain(T),
        Text(String),
    }
    one_or_many::<D, Number<T>>(deserializer)?
        .into_iter()
        .map(|n| match n {
            Number::Plain(v) => Ok(v),
            Number::Text(t) => t
                .trim()
                .parse()
                .map_err(|e| serde::de::Error::custom(format!("`{t}` is not a number: {e}"))),
        })
        .collect()
}
