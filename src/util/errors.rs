//! An error with its causes, on one line, for logs and operator output.

/// The error and each cause below it, joined with `: `, on one line. A cause whose text an
/// earlier part already holds is left out: many errors repeat their source in their own
/// message, and the line should say each thing once.
#[must_use]
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Layer {
        text: &'static str,
        source: Option<Box<Layer>>,
    }

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.text)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.source.as_deref().map(|e| e as _)
        }
    }

    fn chain(texts: &[&'static str]) -> Layer {
        let mut layer: Option<Box<Layer>> = None;
        for text in texts.iter().rev() {
            layer = Some(Box::new(Layer {
                text,
                source: layer,
            }));
        }
        *layer.expect("at least one text")
    }

    #[test]
    fn every_cause_is_joined_on_one_line() {
        let error = chain(&["dispatch failure", "io error", "connection\nrefused"]);
        assert_eq!(
            error_chain(&error),
            "dispatch failure: io error: connection refused"
        );
    }

    #[test]
    fn a_cause_already_said_is_said_once() {
        let error = chain(&["service error: timed out", "timed out", "deadline"]);
        assert_eq!(error_chain(&error), "service error: timed out: deadline");
    }
}
