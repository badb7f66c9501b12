//! How a person authenticated (RFC 8176 `amr`) and the authentication context class that
//! follows from it (OIDC Core §2 `acr`): kept with the browser session, the codes and refresh
//! families it leads to, and put into ID and access tokens.

use serde::{Deserialize, Serialize};

/// `acr` of a sign-in with one factor (a password).
pub const ACR_ONE_FACTOR: &str = "urn:keyward:acr:1fa";
/// `acr` of a sign-in with a second factor (or a passkey with user verification).
pub const ACR_MFA: &str = "urn:keyward:acr:mfa";
/// What discovery lists as `acr_values_supported`, weakest first.
pub const ACR_VALUES_SUPPORTED: [&str; 2] = [ACR_ONE_FACTOR, ACR_MFA];

/// One way of proving who you are (RFC 8176 §2 names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A password.
    Pwd,
    /// A one-time code: an authenticator app's (RFC 6238) or a recovery code.
    Otp,
    /// Proof of possession of a hardware-bound key (a passkey on a security key or device).
    Hwk,
    /// Proof of possession of a software key (a synced passkey).
    Swk,
    /// A PIN or biometric that unlocked the key (`WebAuthn` user verification).
    Pin,
}

impl Method {
    /// The RFC 8176 name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pwd => "pwd",
            Self::Otp => "otp",
            Self::Hwk => "hwk",
            Self::Swk => "swk",
            Self::Pin => "pin",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pwd" => Self::Pwd,
            "otp" => Self::Otp,
            "hwk" => Self::Hwk,
            "swk" => Self::Swk,
            "pin" => Self::Pin,
            _ => return None,
        })
    }

    /// The NIST SP 800-63B factor kind: something you know, have, or are.
    fn factor(self) -> Factor {
        match self {
            Self::Pwd | Self::Pin => Factor::Know,
            Self::Otp | Self::Hwk | Self::Swk => Factor::Have,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Factor {
    Know,
    Have,
}

/// The methods of one sign-in, without repeats, in a fixed order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct AuthMethods(Vec<Method>);

impl AuthMethods {
    /// A sign-in with a password alone.
    #[must_use]
    pub fn password() -> Self {
        Self(vec![Method::Pwd])
    }

    /// These methods and `more`.
    #[must_use]
    pub fn with(mut self, more: &[Method]) -> Self {
        self.0.extend_from_slice(more);
        self.0.sort_unstable();
        self.0.dedup();
        self
    }

    /// Whether `method` was used.
    #[must_use]
    pub fn contains(&self, method: Method) -> bool {
        self.0.contains(&method)
    }

    /// Whether two different kinds of factor were proven (RFC 8176 `mfa`): something known and
    /// something held.
    #[must_use]
    pub fn is_multi_factor(&self) -> bool {
        let has = |f: Factor| self.0.iter().any(|m| m.factor() == f);
        has(Factor::Know) && has(Factor::Have)
    }

    /// The `amr` claim: each method's name, and `mfa` when it is multi-factor.
    #[must_use]
    pub fn amr(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.iter().map(|m| m.as_str().to_owned()).collect();
        if self.is_multi_factor() {
            names.push("mfa".to_owned());
        }
        names
    }

    /// The `acr` claim.
    #[must_use]
    pub fn acr(&self) -> &'static str {
        if self.is_multi_factor() {
            ACR_MFA
        } else {
            ACR_ONE_FACTOR
        }
    }

    /// Methods read back from stored `amr` names (`mfa` is recomputed): unknown names are dropped, and nothing known reads as a
    /// password (every sign-in before methods were recorded was one).
    #[must_use]
    pub fn from_stored(names: &[String]) -> Self {
        let methods: Vec<Method> = names.iter().filter_map(|n| Method::parse(n)).collect();
        if methods.is_empty() {
            return Self::password();
        }
        Self::default().with(&methods)
    }
}

impl From<Vec<String>> for AuthMethods {
    fn from(names: Vec<String>) -> Self {
        Self::from_stored(&names)
    }
}

impl From<AuthMethods> for Vec<String> {
    fn from(methods: AuthMethods) -> Self {
        methods.amr()
    }
}

/// Whether an authorization request's `acr_values` (OIDC Core §3.1.2.1, space-separated, in
/// order of preference) demand a second factor: when every value Keyward knows in it is
/// [`ACR_MFA`]. A list that also accepts [`ACR_ONE_FACTOR`] is a preference, met as well as the
/// session allows; unknown values are ignored, as voluntary claims may be (§5.5.1.1).
#[must_use]
pub fn acr_values_demand_mfa(acr_values: &str) -> bool {
    let known: Vec<&str> = acr_values
        .split(' ')
        .filter(|v| ACR_VALUES_SUPPORTED.contains(v))
        .collect();
    !known.is_empty() && known.iter().all(|v| *v == ACR_MFA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_alone_is_one_factor_and_with_a_code_it_is_mfa() {
        let pwd = AuthMethods::password();
        assert_eq!(pwd.amr(), ["pwd"]);
        assert_eq!(pwd.acr(), ACR_ONE_FACTOR);
        let both = pwd.with(&[Method::Otp, Method::Otp]);
        assert_eq!(both.amr(), ["pwd", "otp", "mfa"]);
        assert_eq!(both.acr(), ACR_MFA);
        let key_and_pin = AuthMethods::default().with(&[Method::Hwk, Method::Pin]);
        assert!(key_and_pin.is_multi_factor());
        let key_alone = AuthMethods::default().with(&[Method::Swk]);
        assert!(!key_alone.is_multi_factor());
    }

    #[test]
    fn stored_methods_round_trip_and_nothing_known_reads_as_a_password() {
        let both = AuthMethods::password().with(&[Method::Otp]);
        assert_eq!(AuthMethods::from_stored(&both.amr()), both);
        assert_eq!(AuthMethods::from_stored(&[]), AuthMethods::password());
        assert_eq!(
            AuthMethods::from_stored(&["mfa".to_owned(), "bogus".to_owned()]),
            AuthMethods::password()
        );
        let json = serde_json::to_string(&both).expect("serialises");
        assert_eq!(json, r#"["pwd","otp","mfa"]"#);
        let back: AuthMethods = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, both);
    }

    #[test]
    fn only_acr_values_that_accept_nothing_less_demand_mfa() {
        assert!(acr_values_demand_mfa(ACR_MFA));
        assert!(acr_values_demand_mfa(&format!("urn:other {ACR_MFA}")));
        assert!(!acr_values_demand_mfa(&format!(
            "{ACR_MFA} {ACR_ONE_FACTOR}"
        )));
        assert!(!acr_values_demand_mfa(ACR_ONE_FACTOR));
        assert!(!acr_values_demand_mfa("urn:other"));
        assert!(!acr_values_demand_mfa(""));
    }
}
