//! Request parameters as a client sent them, read once from a form body or a query string, with
//! the two rules RFC 6749 §3.1 and §3.2 set for every endpoint: an empty value counts as absent,
//! and a parameter may not be sent twice.

use crate::oauth::error::OAuthError;

/// The parameters of one request, in the order sent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values carry codes, tokens and secrets: show only the names.
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Params {
    /// Decodes `application/x-www-form-urlencoded` bytes (a body, or a query string).
    #[must_use]
    pub fn parse(raw: &[u8]) -> Self {
        Self {
            pairs: url::form_urlencoded::parse(raw).into_owned().collect(),
        }
    }

    /// Parameters from name-value pairs (tests, and forms already decoded).
    #[must_use]
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` when it was sent exactly once and is not empty.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_even_empty(name).filter(|v| !v.is_empty())
    }

    /// The value of `name` when it was sent exactly once, even empty: for the `token` of
    /// introspection and revocation, where an empty token is simply one we do not know.
    #[must_use]
    pub fn get_even_empty(&self, name: &str) -> Option<&str> {
        let mut found = None;
        for (k, v) in &self.pairs {
            if k == name {
                if found.is_some() {
                    return None;
                }
                found = Some(v.as_str());
            }
        }
        found
    }

    /// Every non-empty value of a parameter that may repeat (RFC 8707 `resource`).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values(name).filter(|v| !v.is_empty())
    }

    /// The value of `name`, or `invalid_request` with `description`.
    pub fn require(&self, name: &str, description: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or(OAuthError::invalid_request(description))
    }

    /// Refuses a request that sent a parameter more than once, except those in `repeatable`.
    pub fn reject_repeated(&self, repeatable: &[&str]) -> Result<(), OAuthError> {
        let mut seen = std::collections::HashSet::new();
        let repeated = self
            .pairs
            .iter()
            .any(|(k, _)| !repeatable.contains(&k.as_str()) && !seen.insert(k.as_str()));
        if repeated {
            return Err(OAuthError::invalid_request(
                "a parameter was sent more than once",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_value_counts_as_absent() {
        let p = Params::parse(b"a=1&b=&c=x%20y");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("x y"));
        assert_eq!(p.get("d"), None);
        assert_eq!(
            p.require("b", "b is required")
                .expect_err("empty")
                .description,
            "b is required"
        );
    }

    #[test]
    fn a_repeated_parameter_has_no_single_value_and_is_refused() {
        let p = Params::parse(b"scope=a&scope=b&resource=x&resource=y");
        assert_eq!(p.get("scope"), None);
        assert!(p.reject_repeated(&["resource", "scope"]).is_ok());
        assert!(p.reject_repeated(&["resource"]).is_err());
        assert_eq!(p.all("resource").collect::<Vec<_>>(), ["x", "y"]);
    }

    #[test]
    fn debug_shows_names_but_never_values() {
        let p = Params::parse(b"client_secret=hunter2&code=abc");
        let shown = format!("{p:?}");
        assert!(shown.contains("client_secret"));
        assert!(!shown.contains("hunter2") && !shown.contains("abc"));
    }

    proptest::proptest! {
        /// Any bytes parse (invalid UTF-8 and stray `%` decode lossily); nothing panics.
        #[test]
        fn any_body_parses_without_panicking(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let p = Params::parse(&raw);
            let _ = p.reject_repeated(&["scope"]);
            let _ = p.get("client_id");
        }

        /// What a client form-encodes, we read back exactly, whatever the characters.
        #[test]
        fn encoded_pairs_read_back_exactly(
            pairs in proptest::collection::btree_map("\\PC{1,12}", "\\PC{1,40}", 0..8),
        ) {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            let p = Params::parse(body.as_bytes());
            proptest::prop_assert!(p.reject_repeated(&[]).is_ok());
            for (name, value) in &pairs {
                proptest::prop_assert_eq!(p.get(name), Some(value.as_str()));
            }
        }
    }
}
