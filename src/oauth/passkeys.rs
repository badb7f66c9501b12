//! Passkeys (`WebAuthn` Level 3 through webauthn-rs): registering one from the account page,
//! proving one as the second step of a sign-in, and signing in with one alone (a discoverable
//! credential with user verification, two factors by itself). User verification is required
//! everywhere; the sign counter and backup flags are checked and kept (webauthn-rs refuses a
//! counter that went backwards); every challenge is spent once, on any instance.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel_async::AsyncConnection as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use time::{Duration, OffsetDateTime};
use url::Url;
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, DiscoverableAuthentication,
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    Webauthn, WebauthnBuilder,
};

use crate::audit::Actor;
use crate::auth_methods::Method;
use crate::db::{self, DbError, DbPool};
use crate::mail::letters::FactorChange;
use crate::oauth::second_factor::FactorChecks;
use crate::rate_limits::proof::spend_once;
use crate::users::passkeys::{self, StoredPasskey};
use crate::users::recovery_codes::{self, RecoveryCode};
use crate::users::{self, User, factors};

/// How long a challenge works: `WebAuthn`'s recommended ceremony timeout.
pub const CHALLENGE_TTL: Duration = Duration::minutes(5);

/// Why a passkey ceremony did not succeed. The messages are the person's to read.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// The challenge is gone: used, too old, or from another browser.
    #[error("That passkey request has expired. Try again.")]
    Expired,
    /// The browser's answer did not verify (wrong site, no user verification, a cloned key).
    #[error("That passkey could not be checked. Try again, or use another way to sign in.")]
    Refused,
    /// Not a passkey of this account (or of any, when signing in with one alone).
    #[error("That passkey is not registered here.")]
    Unknown,
    /// That passkey is registered already.
    #[error("That passkey is registered already.")]
    AlreadyRegistered,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for PasskeyError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

/// A ceremony's state as kept between its two requests: webauthn-rs's state, the challenge
/// (to spend it once), and when it ends.
#[derive(Clone, Serialize, Deserialize)]
pub struct Ceremony<S> {
    challenge: String,
    expires_at: i64,
    state: S,
}

impl<S> std::fmt::Debug for Ceremony<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ceremony(..)")
    }
}

impl<S: Serialize + DeserializeOwned> Ceremony<S> {
    fn new(challenge: &[u8], state: S, now: OffsetDateTime) -> Self {
        Self {
            challenge: URL_SAFE_NO_PAD.encode(challenge),
            expires_at: (now + CHALLENGE_TTL).unix_timestamp(),
            state,
        }
    }

    /// The state, once: refused when expired or spent before (by any instance).
    async fn spend(self, pool: &DbPool, now: OffsetDateTime) -> Result<S, PasskeyError> {
        if now.unix_timestamp() > self.expires_at {
            return Err(PasskeyError::Expired);
        }
        let expires = OffsetDateTime::from_unix_timestamp(self.expires_at)
            .map_err(|_| PasskeyError::Expired)?;
        let mut conn = db::connect(pool).await?;
        if spend_once(&mut conn, self.challenge.as_bytes(), expires).await? {
            Ok(self.state)
        } else {
            Err(PasskeyError::Expired)
        }
    }
}

/// The relying party: Keyward's issuer as `WebAuthn` sees it.
#[derive(Clone)]
pub struct Passkeys {
    webauthn: Arc<Webauthn>,
}

impl std::fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passkeys")
    }
}

impl Passkeys {
    /// The relying party of `issuer` (its host is the RP ID, its origin the only one allowed),
    /// named `product`; `None` when the host is an IP address, which `WebAuthn` does not accept as
    /// an RP ID (`localhost` works).
    #[must_use]
    pub fn new(issuer: &Url, product: &str) -> Option<Self> {
        let host = match issuer.host()? {
            url::Host::Domain(d) => d.to_owned(),
            url::Host::Ipv4(_) | url::Host::Ipv6(_) => return None,
        };
        let origin = Url::parse(&issuer.origin().ascii_serialization()).ok()?;
        let webauthn = WebauthnBuilder::new(&host, &origin)
            .ok()?
            .rp_name(product)
            .timeout(std::time::Duration::from_secs(
                u64::try_from(CHALLENGE_TTL.whole_seconds()).unwrap_or(300),
            ))
            .build()
            .inspect_err(|e| tracing::warn!(error = %e, "passkeys are off"))
            .ok()?;
        Some(Self {
            webauthn: Arc::new(webauthn),
        })
    }

    /// The options for registering a new passkey of `user` (their others excluded), as JSON for
    /// the browser, and the ceremony to keep in their session.
    pub async fn start_registration(
        &self,
        pool: &DbPool,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<(serde_json::Value, Ceremony<PasskeyRegistration>), PasskeyError> {
        let existing = {
            let mut conn = db::connect(pool).await?;
            passkeys::list(&mut conn, user.id).await?
        };
        let exclude = existing
            .iter()
            .map(|p| p.passkey.cred_id().clone())
            .collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user.id, &user.username, &user.username, Some(exclude))
            .map_err(|_| PasskeyError::Refused)?;
        let ceremony = Ceremony::new(&options.public_key.challenge, state, now);
        Ok((discoverable(&options), ceremony))
    }

    /// Registers the passkey the browser made, named `name`; mails the owner. Returns the
    /// recovery codes to show once when the person had none (their first factor).
    pub async fn finish_registration(
        &self,
        checks: &FactorChecks<'_>,
        (user, name): (&User, &str),
        (credential, ceremony): (&RegisterPublicKeyCredential, Ceremony<PasskeyRegistration>),
        now: OffsetDateTime,
    ) -> Result<Option<Vec<RecoveryCode>>, PasskeyError> {
        let state = ceremony.spend(checks.pool, now).await?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(credential, &state)
            .map_err(|e| {
                tracing::info!(error = %e, "a passkey registration did not verify");
                PasskeyError::Refused
            })?;
        let by = Actor::user(user.id, Some(checks.ip.into()));
        let mut conn = db::connect(checks.pool).await?;
        let codes = conn
            .transaction(async |conn| {
                if !passkeys::insert(conn, (user.id, name, &passkey), &by, now).await? {
                    return Err(PasskeyError::AlreadyRegistered);
                }
                let codes = if recovery_codes::left(conn, user.id).await? == 0 {
                    Some(recovery_codes::replace(conn, user.id, &by, now).await?)
                } else {
                    None
                };
                let change = FactorChange::PasskeyAdded;
                crate::oauth::second_factor::notify(conn, checks.mail, user, change, now).await?;
                Ok(codes)
            })
            .await?;
        Ok(codes)
    }

    /// The options for proving one of `user`'s passkeys (the second step of a sign-in, or a
    /// step-up), and the ceremony to keep; `None` when they have none.
    pub async fn start_proof(
        &self,
        pool: &DbPool,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<Option<(serde_json::Value, Ceremony<PasskeyAuthentication>)>, PasskeyError> {
        let stored = {
            let mut conn = db::connect(pool).await?;
            passkeys::list(&mut conn, user.id).await?
        };
        if stored.is_empty() {
            return Ok(None);
        }
        let keys: Vec<_> = stored.into_iter().map(|s| s.passkey).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(|_| PasskeyError::Refused)?;
        let ceremony = Ceremony::new(&options.public_key.challenge, state, now);
        Ok(Some((json(&options), ceremony)))
    }

    /// Checks the browser's answer with one of `user`'s passkeys; records the use
    /// (`mfa.verified`). Returns the methods it proved.
    pub async fn finish_proof(
        &self,
        pool: &DbPool,
        (user, ip): (&User, std::net::IpAddr),
        (credential, ceremony): (&PublicKeyCredential, Ceremony<PasskeyAuthentication>),
        now: OffsetDateTime,
    ) -> Result<Vec<Method>, PasskeyError> {
        let state = ceremony.spend(pool, now).await?;
        let result = self
            .webauthn
            .finish_passkey_authentication(credential, &state)
            .map_err(|e| {
                tracing::info!(error = %e, "a passkey did not verify");
                PasskeyError::Refused
            })?;
        let mut conn = db::connect(pool).await?;
        let stored = passkeys::list(&mut conn, user.id).await?;
        let key = of(&stored, &result).ok_or(PasskeyError::Unknown)?;
        conn.transaction(async |conn| {
            passkeys::record_use(conn, key, &result, now).await?;
            let by = Actor::user(user.id, Some(ip.into()));
            let details = serde_json::json!({ "factor": "passkey", "passkey": key.name });
            let event = by.event("mfa.verified", now).user(user.id).details(details);
            crate::audit::insert(conn, &event).await
        })
        .await?;
        Ok(methods_of(&result))
    }

    /// The options for signing in with a passkey alone (the browser offers the passkeys it has
    /// for this site, in the username field's autofill or in its own dialog), and the ceremony,
    /// which the caller keeps in the browser (no session exists yet).
    pub fn start_sign_in(
        &self,
        now: OffsetDateTime,
    ) -> Result<(serde_json::Value, Ceremony<DiscoverableAuthentication>), PasskeyError> {
        let (options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(|_| PasskeyError::Refused)?;
        let ceremony = Ceremony::new(&options.public_key.challenge, state, now);
        Ok((json(&options), ceremony))
    }

    /// Signs in whoever owns the passkey the browser answered with: an active account, the
    /// passkey one of theirs, user verification done. Recorded as `signin.succeeded`. Returns
    /// the account and the methods proven.
    pub async fn finish_sign_in(
        &self,
        pool: &DbPool,
        ip: std::net::IpAddr,
        (credential, ceremony): (&PublicKeyCredential, Ceremony<DiscoverableAuthentication>),
        now: OffsetDateTime,
    ) -> Result<(User, Vec<Method>), PasskeyError> {
        let state = ceremony.spend(pool, now).await?;
        let (user_id, _) = self
            .webauthn
            .identify_discoverable_authentication(credential)
            .map_err(|_| PasskeyError::Unknown)?;
        let mut conn = db::connect(pool).await?;
        let user = users::find(&mut conn, user_id)
            .await?
            .filter(|u| !u.is_disabled())
            .ok_or(PasskeyError::Unknown)?;
        let stored = passkeys::list(&mut conn, user.id).await?;
        let presented = credential.get_credential_id();
        let key = stored
            .iter()
            .find(|s| AsRef::<[u8]>::as_ref(s.passkey.cred_id()) == presented)
            .ok_or(PasskeyError::Unknown)?;
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(credential, state, &key.passkey)
            .map_err(|e| {
                tracing::info!(error = %e, "a passkey sign-in did not verify");
                PasskeyError::Refused
            })?;
        conn.transaction(async |conn| {
            passkeys::record_use(conn, key, &result, now).await?;
            let by = Actor::user(user.id, Some(ip.into()));
            let details = serde_json::json!({ "method": "passkey", "passkey": key.name });
            let event = by
                .event("signin.succeeded", now)
                .user(user.id)
                .details(details);
            crate::audit::insert(conn, &event).await
        })
        .await?;
        Ok((user, methods_of(&result)))
    }

    /// The passkeys of `user`, for the account page.
    pub async fn list(pool: &DbPool, user: &User) -> Result<Vec<StoredPasskey>, DbError> {
        let mut conn = db::connect(pool).await?;
        Ok(passkeys::list(&mut conn, user.id).await?)
    }

    /// Renames one of `user`'s passkeys; `Unknown` when they have no such passkey.
    pub async fn rename(
        pool: &DbPool,
        user: &User,
        (id, name): (Uuid, &str),
    ) -> Result<(), PasskeyError> {
        let mut conn = db::connect(pool).await?;
        if passkeys::rename(&mut conn, (user.id, id, name)).await? {
            Ok(())
        } else {
            Err(PasskeyError::Unknown)
        }
    }

    /// Removes one of `user`'s passkeys (the caller checked the sign-in is fresh); with no factor
    /// left the recovery codes go too. Mailed to the owner.
    pub async fn remove(
        checks: &FactorChecks<'_>,
        user: &User,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(), PasskeyError> {
        let by = Actor::user(user.id, Some(checks.ip.into()));
        let mut conn = db::connect(checks.pool).await?;
        conn.transaction(async |conn| {
            if passkeys::remove(conn, (user.id, id), &by, now)
                .await?
                .is_none()
            {
                return Err(PasskeyError::Unknown);
            }
            if !factors::has_any(conn, user.id).await? {
                recovery_codes::delete_all(conn, user.id).await?;
            }
            let change = FactorChange::PasskeyRemoved;
            crate::oauth::second_factor::notify(conn, checks.mail, user, change, now).await?;
            Ok(())
        })
        .await
    }
}

/// The stored passkey `result` was made with.
fn of<'a>(stored: &'a [StoredPasskey], result: &AuthenticationResult) -> Option<&'a StoredPasskey> {
    stored
        .iter()
        .find(|s| s.passkey.cred_id() == result.cred_id())
}

/// RFC 8176: a key that can be backed up (synced) is a software key, one that cannot is
/// hardware-bound; user verification (required, so always done) is a PIN or biometric.
fn methods_of(result: &AuthenticationResult) -> Vec<Method> {
    let key = if result.backup_eligible() {
        Method::Swk
    } else {
        Method::Hwk
    };
    if result.user_verified() {
        vec![key, Method::Pin]
    } else {
        vec![key]
    }
}

fn json(options: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(options).unwrap_or_else(|e| unreachable!("options serialise: {e}"))
}

/// Registration options asking for a discoverable credential (a passkey that can sign in alone,
/// from the username field's autofill); webauthn-rs leaves that to the authenticator.
fn discoverable(options: &CreationChallengeResponse) -> serde_json::Value {
    let mut value = json(options);
    if let Some(selection) = value
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(serde_json::Value::as_object_mut)
    {
        selection.insert("residentKey".into(), "required".into());
        selection.insert("requireResidentKey".into(), true.into());
    }
    value
}
