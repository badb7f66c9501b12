//! Scopes (RFC 6749 §3.3): parsing, subsets, and the words shown on the consent page.

use std::collections::BTreeSet;
use std::fmt;

/// The scopes OpenID Connect defines and Keyward understands.
pub const OPENID: &str = "openid";
/// `profile`: `preferred_username`, `name`.
pub const PROFILE: &str = "profile";
/// `email`: `email`, `email_verified`.
pub const EMAIL: &str = "email";
/// `offline_access`: a refresh token (OIDC Core §11).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// The management API's scopes (`/admin/v1/`): granted only to confidential clients registered
/// for them, through `client_credentials`, never through a person's consent.
pub const ADMIN_SCOPES: [&str; 5] = [
    "admin:users.read",
    "admin:users.write",
    "admin:clients.read",
    "admin:clients.write",
    "admin:audit.read",
];

/// The prefix every management scope has (and no other scope may).
pub const ADMIN_PREFIX: &str = "admin:";

/// Where a management scope is valid: the `aud` of tokens carrying one, relative to the issuer.
pub const ADMIN_AUDIENCE_PATH: &str = "/admin/v1";

/// The `aud` of management tokens issued by `issuer`: the management API's base URL.
#[must_use]
pub fn admin_audience(issuer: &str) -> String {
    format!("{}{ADMIN_AUDIENCE_PATH}", issuer.trim_end_matches('/'))
}

/// A set of scope tokens, kept sorted so the same set always prints the same way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

/// A scope string that breaks RFC 6749 §3.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed scope")]
pub struct ScopeSyntaxError;

fn is_scope_char(c: char) -> bool {
    // scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    matches!(c, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

impl Scopes {
    /// Parses a space-delimited scope string; empty input is the empty set.
    pub fn parse(raw: &str) -> Result<Self, ScopeSyntaxError> {
        let mut set = BTreeSet::new();
        for token in raw.split(' ') {
            if token.is_empty() {
                continue;
            }
            if token.len() > 128 || !token.chars().all(is_scope_char) {
                return Err(ScopeSyntaxError);
            }
            set.insert(token.to_owned());
        }
        if set.len() > 64 {
            return Err(ScopeSyntaxError);
        }
        Ok(Self(set))
    }

    /// A set from stored tokens (already validated when written).
    #[must_use]
    pub fn from_stored(tokens: &[String]) -> Self {
        Self(tokens.iter().cloned().collect())
    }

    /// Whether `scope` is in the set.
    #[must_use]
    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// Whether every scope here is also in `other`.
    #[must_use]
    pub fn is_subset(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tokens, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The tokens as owned strings, for storage.
    #[must_use]
    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }

    /// Whether any scope here is a management scope (`admin:...`).
    #[must_use]
    pub fn has_admin(&self) -> bool {
        self.0.iter().any(|s| s.starts_with(ADMIN_PREFIX))
    }

    /// The union of two sets.
    #[must_use]
    pub fn union(&self, other: &Self) -> Self {
        Self(self.0.union(&other.0).cloned().collect())
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

/// What granting `scope` means, in words for the person on the consent page.
#[must_use]
pub fn describe(scope: &str) -> String {
    match scope {
        OPENID => "Confirm who you are (your Keyward account identifier)".into(),
        PROFILE => "See your username".into(),
        EMAIL => "See your email address".into(),
        "offline_access" => "Stay connected when you are not using it".into(),
        other => format!("Access: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_dedupe_and_print_sorted() {
        let s = Scopes::parse("openid  email openid profile").expect("valid");
        assert_eq!(s.to_string(), "email openid profile");
        assert!(s.contains(OPENID));
        assert_eq!(Scopes::parse("").expect("valid"), Scopes::default());
    }

    #[test]
    fn characters_outside_rfc_6749_are_refused() {
        for bad in ["a\"b", "a\\b", "é", "a\tb"] {
            assert_eq!(Scopes::parse(bad), Err(ScopeSyntaxError), "{bad:?}");
        }
        assert!(Scopes::parse("invoices:read api/write").is_ok());
    }

    #[test]
    fn subsets_are_checked() {
        let allowed = Scopes::parse("openid profile email").expect("valid");
        assert!(
            Scopes::parse("openid email")
                .expect("valid")
                .is_subset(&allowed)
        );
        assert!(
            !Scopes::parse("openid admin")
                .expect("valid")
                .is_subset(&allowed)
        );
    }
}
