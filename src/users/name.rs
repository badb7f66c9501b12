//! Usernames and email addresses, parsed once at the boundary.

use std::fmt;

/// A valid username: 3 to 32 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
///
/// Case is kept for display; uniqueness and look-ups ignore it.
#[derive(Clone, PartialEq, Eq)]
pub struct Username(String);

/// Why a username or email was refused, in words fit for the person who typed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The username breaks the character or length rule.
    #[error(
        "Usernames are 3 to 32 characters: letters, digits, '.', '_' or '-', starting with a letter or digit."
    )]
    InvalidUsername,
    /// The email address is not of the form `name@domain`.
    #[error("Enter an email address like name@example.com, or leave it empty.")]
    InvalidEmail,
}

/// A role carried into access tokens: 1 to 64 visible ASCII characters (no spaces, so roles
/// survive any space-separated listing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role(String);

/// Why a role was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role '{0}' must be 1-64 visible ASCII characters")]
pub struct RoleError(pub String);

impl Role {
    /// Parses one role as given.
    pub fn parse(raw: &str) -> Result<Self, RoleError> {
        if raw.is_empty() || raw.len() > 64 || !raw.chars().all(|c| c.is_ascii_graphic()) {
            return Err(RoleError(raw.chars().take(64).collect()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Parses every role of a list, refusing the list at the first bad one.
    pub fn parse_all<S: AsRef<str>>(raw: &[S]) -> Result<Vec<Self>, RoleError> {
        raw.iter().map(|r| Self::parse(r.as_ref())).collect()
    }

    /// The role.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Username {
    /// Parses a username, trimming surrounding white space.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let s = raw.trim();
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if first_ok && rest_ok && (3..=32).contains(&s.len()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::InvalidUsername)
        }
    }

    /// The username as typed at sign-up.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded key used for uniqueness, look-ups and throttling.
    #[must_use]
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({})", self.0)
    }
}

/// An email address: one `@`, no white space, at most 254 bytes (RFC 5321 §4.5.3.1.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an optional email: empty input means none.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, NameError> {
        let s = raw.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(NameError::InvalidEmail);
        };
        let ok = !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(Some(Self(s.to_owned())))
        } else {
            Err(NameError::InvalidEmail)
        }
    }

    /// The address as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The `sub` a user is known by (OIDC Core §2: at most 255 ASCII characters, never reassigned):
/// their id, or the id they had in the system they were imported from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A UUID: it is the account's id.
    Id(uuid::Uuid),
    /// Anything else apps already key on (a `MongoDB` `ObjectId`, a number), kept beside the id.
    Kept(String),
}

impl Subject {
    /// Parses a supplied `sub`: a UUID in its canonical form, or 1 to 255 of `A-Z a-z 0-9 . _
    /// ~ -` that is no UUID in any other spelling (so one `sub` never names two accounts).
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if let Ok(id) = uuid::Uuid::parse_str(raw) {
            return if raw == id.to_string() {
                Ok(Self::Id(id))
            } else {
                Err("a UUID is kept in its canonical form (lower case, with hyphens)")
            };
        }
        let fits = (1..=255).contains(&raw.len())
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'));
        if fits {
            Ok(Self::Kept(raw.to_owned()))
        } else {
            Err("a sub is 1 to 255 of A-Z a-z 0-9 . _ ~ -")
        }
    }
}

/// What people may type to name their account at sign-in (`KEYWARD_SIGN_IN_IDENTIFIER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identifiers {
    /// Their username.
    Username,
    /// Their email address.
    Email,
    /// Either.
    Either,
}

impl Identifiers {
    /// Parses the setting's value.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "username" => Ok(Self::Username),
            "email" => Ok(Self::Email),
            "either" => Ok(Self::Either),
            other => Err(format!("'{other}' is not username, email or either")),
        }
    }

    /// The sign-in field's label.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Username => "Username",
            Self::Email => "Email",
            Self::Either => "Username or email",
        }
    }
}

/// The name a person typed at sign-in, as one of the accepted kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignInName {
    /// A username.
    Username(Username),
    /// An email address.
    Email(Email),
}

impl SignInName {
    /// What `typed` names under `accepted`; `None` if it can name no account (no username has an
    /// `@`, so the two never overlap).
    #[must_use]
    pub fn parse(typed: &str, accepted: Identifiers) -> Option<Self> {
        let email_allowed = accepted != Identifiers::Username;
        let username_allowed = accepted != Identifiers::Email;
        if typed.contains('@') {
            let email = Email::parse_optional(typed).ok().flatten()?;
            return email_allowed.then_some(Self::Email(email));
        }
        let username = Username::parse(typed).ok()?;
        username_allowed.then_some(Self::Username(username))
    }

    /// What lockouts and limits count under: what was typed, lower-cased.
    #[must_use]
    pub fn key(&self) -> String {
        match self {
            Self::Username(u) => u.key(),
            Self::Email(e) => e.as_str().to_lowercase(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_character_and_length_rule() {
        for ok in [
            "bob",
            "Alice.Smith",
            "a_b-c",
            "x1234567890123456789012345678901",
        ] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ab",
            ".bob",
            "bob smith",
            "bob@x",
            "émile",
            &"a".repeat(33),
        ] {
            assert_eq!(
                Username::parse(bad),
                Err(NameError::InvalidUsername),
                "{bad}"
            );
        }
    }

    #[test]
    fn username_key_ignores_case() {
        let a = Username::parse("Alice").expect("valid");
        let b = Username::parse("aLICE").expect("valid");
        assert_eq!(a.key(), b.key());
        assert_eq!(a.as_str(), "Alice");
    }

    #[test]
    fn email_is_optional_but_checked_when_given() {
        assert_eq!(Email::parse_optional("  "), Ok(None));
        assert!(
            Email::parse_optional("a@example.com")
                .expect("valid")
                .is_some()
        );
        for bad in ["nope", "a@", "@b", "a@b@c", "a b@c", "a@.com"] {
            assert_eq!(
                Email::parse_optional(bad),
                Err(NameError::InvalidEmail),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_sign_in_name_is_what_the_setting_accepts() {
        use super::{Identifiers, SignInName};
        let name = |t, a| SignInName::parse(t, a).map(|n| n.key());
        assert_eq!(name("Alice", Identifiers::Username), Some("alice".into()));
        assert_eq!(name("Alice@Example.com", Identifiers::Username), None);
        assert_eq!(name("Alice", Identifiers::Email), None);
        assert_eq!(
            name("Alice@Example.com", Identifiers::Email),
            Some("alice@example.com".into())
        );
        assert_eq!(name("Alice", Identifiers::Either), Some("alice".into()));
        assert_eq!(name("a@b.c", Identifiers::Either), Some("a@b.c".into()));
        assert_eq!(name("a@", Identifiers::Either), None);
        assert_eq!(name("", Identifiers::Either), None);
        assert!(Identifiers::parse("phone").is_err());
    }
}
