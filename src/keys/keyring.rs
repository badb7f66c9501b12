//! Decrypted keys in memory: the signer, the verifier for our own endpoints, and the JWKS body.
//! Signing never touches the database.

use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwk::Jwk;
use josekit::jws::alg::rsassa::{RsassaJwsSigner, RsassaJwsVerifier};
use josekit::jws::{JwsSigner as _, JwsVerifier as _, RS256};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use crate::keys::kek::Kek;
use crate::keys::schedule::KeyState;
use crate::keys::schedule::{self, CLOCK_LEEWAY, KeyTimes};
use crate::keys::store::SigningKeyRow;

/// The largest token the verifier will look at (anything bigger is not ours).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A key as published: exactly these members, nothing private (RFC 7517 §4, RFC 7518 §6.3.1).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PublicJwk {
    /// Always `RSA`.
    pub kty: &'static str,
    /// Modulus, base64url.
    pub n: String,
    /// Exponent, base64url.
    pub e: String,
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// Always `RS256`.
    pub alg: &'static str,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
}

struct LoadedKey {
    times: KeyTimes,
    jwk: PublicJwk,
    signer: RsassaJwsSigner,
    verifier: RsassaJwsVerifier,
}

/// One consistent snapshot of the key set.
struct KeySet {
    version: i64,
    keys: Vec<LoadedKey>,
    times: Vec<KeyTimes>,
}

/// The JWKS document for a stretch of time in which it cannot change by schedule.
#[derive(Debug)]
pub struct JwksDocument {
    /// The serialised `{"keys":[...]}` (cheap to clone into every response).
    pub body: bytes::Bytes,
    /// Strong entity tag of the body.
    pub etag: String,
    /// When its contents next change by schedule, if ever.
    pub valid_until: Option<OffsetDateTime>,
    version: i64,
    computed_at: OffsetDateTime,
}

/// Why a key set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A stored key failed to decrypt or parse.
    #[error("signing key {kid} cannot be used: {message}")]
    Key {
        /// Which key.
        kid: String,
        /// What failed (never key bytes).
        message: String,
    },
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// No key may sign at this moment (the schedule is broken).
    #[error("no active signing key")]
    NoActiveKey,
    /// Serialising or signing failed.
    #[error("signing failed: {0}")]
    Crypto(String),
}

/// Why a token was rejected. Callers answer all of these the same way (`invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not three base64url JSON parts, or too large.
    #[error("malformed token")]
    Malformed,
    /// `alg` is not `RS256` (e.g. `none`, or `HS256` keyed with our public key), or `crit` is set.
    #[error("algorithm not accepted")]
    Algorithm,
    /// The `kid` names no published key.
    #[error("unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// `exp` is missing or past.
    #[error("expired or no exp")]
    Expired,
    /// `iat` is missing, or `nbf`/`iat` lie in the future.
    #[error("not yet valid or no iat")]
    NotYetValid,
    /// `iss` is missing or not ours.
    #[error("wrong issuer")]
    Issuer,
    /// The header's `typ` is not the kind of token asked for (an ID token as an access token).
    #[error("wrong token type")]
    Type,
    /// The claims lack a member the kind of token requires, or have the wrong types.
    #[error("claims of the wrong shape")]
    Claims,
}

/// A decoded JOSE header or claims set.
type JsonObject = Map<String, Value>;

/// Whether verification checks `exp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    Check,
    Ignore,
}

/// RFC 7519 §4.1.4-6: `exp` (unless ignored) and `iat` are required, `nbf` honoured, each with
/// [`CLOCK_LEEWAY`] for skewed clocks.
fn check_times(
    claims: &Map<String, Value>,
    now: OffsetDateTime,
    expiry: Expiry,
) -> Result<(), VerifyError> {
    let now_s = now.unix_timestamp();
    let leeway = CLOCK_LEEWAY.whole_seconds();
    match numeric_date(claims, "exp") {
        Some(exp) if expiry == Expiry::Ignore || now_s < exp.saturating_add(leeway) => {}
        _ => return Err(VerifyError::Expired),
    }
    match numeric_date(claims, "iat") {
        Some(iat) if iat <= now_s.saturating_add(leeway) => {}
        _ => return Err(VerifyError::NotYetValid),
    }
    if claims.contains_key("nbf")
        && numeric_date(claims, "nbf").is_none_or(|nbf| nbf > now_s.saturating_add(leeway))
    {
        return Err(VerifyError::NotYetValid);
    }
    Ok(())
}

/// The shared, swappable key set.
#[derive(Clone)]
pub struct KeyRing {
    set: Arc<RwLock<Arc<KeySet>>>,
    jwks: Arc<RwLock<Option<Arc<JwksDocument>>>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

fn load_key(kek: &Kek, row: &SigningKeyRow) -> Result<LoadedKey, LoadError> {
    let fail = |message: String| LoadError::Key {
        kid: row.kid.clone(),
        message,
    };
    let der = kek
        .open(&row.kid, &row.seal_nonce, &row.sealed_private_key)
        .map_err(|e| fail(e.to_string()))?;
    let material = crate::keys::material::from_der(&der).map_err(|e| fail(e.to_string()))?;
    // The kid is the public key's thumbprint: a row whose private key does not match its
    // published public half is corrupt, and must not sign.
    if material.kid != row.kid || material.n != row.public_n || material.e != row.public_e {
        return Err(fail(
            "private key does not match the stored public key".into(),
        ));
    }
    let signer = RS256
        .signer_from_der(&der)
        .map_err(|e| fail(e.to_string()))?;
    let mut public = Jwk::new("RSA");
    for (name, value) in [("n", &row.public_n), ("e", &row.public_e)] {
        public
            .set_parameter(name, Some(Value::String(value.clone())))
            .map_err(|e| fail(e.to_string()))?;
    }
    let verifier = RS256
        .verifier_from_jwk(&public)
        .map_err(|e| fail(e.to_string()))?;
    Ok(LoadedKey {
        times: row.times(),
        jwk: PublicJwk {
            kty: "RSA",
            n: row.public_n.clone(),
            e: row.public_e.clone(),
            kid: row.kid.clone(),
            alg: "RS256",
            use_: "sig",
        },
        signer,
        verifier,
    })
}

fn build_set(
    version: i64,
    rows: &[SigningKeyRow],
    kek: &Kek,
    now: OffsetDateTime,
) -> Result<KeySet, LoadError> {
    // Only keys that are or will be published are decrypted: revoked and expired keys never
    // come back into memory.
    let keys = rows
        .iter()
        .filter(|r| r.revoked_at.is_none() && r.expires_at > now)
        .map(|r| load_key(kek, r))
        .collect::<Result<Vec<_>, _>>()?;
    let times = keys.iter().map(|k| k.times).collect();
    Ok(KeySet {
        version,
        keys,
        times,
    })
}

#[derive(Serialize)]
struct JwsHeader<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'a str,
}

#[derive(Serialize)]
struct Jwks<'a> {
    keys: Vec<&'a PublicJwk>,
}

fn b64_json(part: &str) -> Result<Map<String, Value>, VerifyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| VerifyError::Malformed)?;
    serde_json::from_slice::<UniqueObject>(&bytes)
        .map(|o| o.0)
        .map_err(|_| VerifyError::Malformed)
}

/// A JSON object whose members are all distinct. RFC 7515 §4: a header with a repeated member
/// is rejected, not read last-wins (which lets two parsers see two different `alg`s, RFC 8725
/// §3.1). `serde_json` keeps the last value silently, so the check is ours; claims get it too.
struct UniqueObject(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Map::new();
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    if out.insert(name, value).is_some() {
                        return Err(serde::de::Error::custom("a member appears twice"));
                    }
                }
                Ok(UniqueObject(out))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    claims.get(name).and_then(Value::as_i64)
}

impl KeyRing {
    /// Decrypts `rows` into a new key ring.
    pub fn load(
        version: i64,
        rows: &[SigningKeyRow],
        kek: &Kek,
        now: OffsetDateTime,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            set: Arc::new(RwLock::new(Arc::new(build_set(version, rows, kek, now)?))),
            jwks: Arc::new(RwLock::new(None)),
        })
    }

    /// Replaces the key set (after the database version changed).
    pub fn replace(
        &self,
        version: i64,
        rows: &[SigningKeyRow],
        kek: &Kek,
        now: OffsetDateTime,
    ) -> Result<(), LoadError> {
        let set = Arc::new(build_set(version, rows, kek, now)?);
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = set;
        *self.jwks.write().unwrap_or_else(PoisonError::into_inner) = None;
        Ok(())
    }

    fn snapshot(&self) -> Arc<KeySet> {
        Arc::clone(&self.set.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The database version this ring was loaded from.
    #[must_use]
    pub fn version(&self) -> i64 {
        self.snapshot().version
    }

    /// Whether the schedule needs writes at `now`, judged from the keys held in memory (the
    /// plan only looks at published or pending keys, which are exactly the ones loaded).
    #[must_use]
    pub fn has_schedule_work(
        &self,
        now: OffsetDateTime,
        policy: &schedule::SchedulePolicy,
    ) -> bool {
        !schedule::plan(&self.snapshot().times, now, policy).is_empty()
    }

    /// How many loaded keys are `next`, `active` and `retired` at `now` (the metrics' gauge).
    #[must_use]
    pub fn count_by_state(&self, now: OffsetDateTime) -> Vec<(&'static str, i64)> {
        let times = &self.snapshot().times;
        [KeyState::Next, KeyState::Active, KeyState::Retired]
            .into_iter()
            .map(|wanted| {
                let n = (0..times.len())
                    .filter(|&i| schedule::state(times, i, now) == wanted)
                    .count();
                (wanted.as_str(), i64::try_from(n).unwrap_or(i64::MAX))
            })
            .collect()
    }

    /// The kid that signs at `now`.
    #[must_use]
    pub fn active_kid(&self, now: OffsetDateTime) -> Option<String> {
        let set = self.snapshot();
        schedule::active_index(&set.times, now).map(|i| set.keys[i].jwk.kid.clone())
    }

    /// Fails as [`Self::sign`] would for want of a key at `now`: for a caller that commits
    /// something before it signs.
    pub fn can_sign(&self, now: OffsetDateTime) -> Result<(), SignError> {
        schedule::active_index(&self.snapshot().times, now)
            .map(|_| ())
            .ok_or(SignError::NoActiveKey)
    }

    /// Signs `claims` as a compact JWS with header `alg: RS256`, the active `kid`, and `typ`.
    pub fn sign(
        &self,
        typ: &str,
        claims: &impl Serialize,
        now: OffsetDateTime,
    ) -> Result<String, SignError> {
        let set = self.snapshot();
        let key = schedule::active_index(&set.times, now)
            .map(|i| &set.keys[i])
            .ok_or(SignError::NoActiveKey)?;
        let header = serde_json::to_vec(&JwsHeader {
            alg: "RS256",
            kid: &key.jwk.kid,
            typ,
        })
        .map_err(|e| SignError::Crypto(e.to_string()))?;
        let payload = serde_json::to_vec(claims).map_err(|e| SignError::Crypto(e.to_string()))?;
        let mut token = String::with_capacity(512 + payload.len() * 4 / 3);
        URL_SAFE_NO_PAD.encode_string(&header, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = key
            .signer
            .sign(token.as_bytes())
            .map_err(|e| SignError::Crypto(e.to_string()))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }

    /// Verifies a token signed by one of our published keys, of type `typ`, and checks `exp`,
    /// `iat`, `nbf` and `iss` (josekit checks none of them by itself), allowing
    /// [`CLOCK_LEEWAY`] of skew; then reads the claims as `C`.
    pub fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        issuer: &str,
        now: OffsetDateTime,
    ) -> Result<C, VerifyError> {
        self.verify_inner(token, typ, issuer, now, Expiry::Check)
    }

    /// Like [`KeyRing::verify`] but accepts an expired token: for `id_token_hint` at logout, which
    /// OIDC RP-Initiated Logout §2 says may have expired. Signature and issuer still must hold.
    pub fn verify_ignoring_expiry<C: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        issuer: &str,
        now: OffsetDateTime,
    ) -> Result<C, VerifyError> {
        self.verify_inner(token, typ, issuer, now, Expiry::Ignore)
    }

    fn verify_inner<C: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        issuer: &str,
        now: OffsetDateTime,
        expiry: Expiry,
    ) -> Result<C, VerifyError> {
        let (header, claims) = self.check_signature(token, now)?;
        check_times(&claims, now, expiry)?;
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(VerifyError::Issuer);
        }
        // RFC 8725 §3.11: the type keeps one kind of token from passing for another.
        if header.get("typ").and_then(Value::as_str) != Some(typ) {
            return Err(VerifyError::Type);
        }
        serde_json::from_value(Value::Object(claims)).map_err(|_| VerifyError::Claims)
    }

    /// The header and claims of `token`, if one of our published keys signed it with RS256.
    fn check_signature(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(JsonObject, JsonObject), VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed);
        };
        let header = b64_json(h)?;
        // RFC 8725 §3.1: accept exactly the algorithm we sign with, whatever the token says.
        if header.get("alg").and_then(Value::as_str) != Some("RS256") || header.contains_key("crit")
        {
            return Err(VerifyError::Algorithm);
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(VerifyError::UnknownKey)?;
        let set = self.snapshot();
        let key = set
            .keys
            .iter()
            .find(|k| k.jwk.kid == kid && k.times.is_published(now))
            .ok_or(VerifyError::UnknownKey)?;
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| VerifyError::Malformed)?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        key.verifier
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| VerifyError::Signature)?;
        Ok((header, b64_json(p)?))
    }

    /// The JWKS at `now`, serialised once per schedule stretch and shared by every request.
    #[must_use]
    pub fn jwks(&self, now: OffsetDateTime) -> Arc<JwksDocument> {
        let set = self.snapshot();
        if let Some(doc) = self
            .jwks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            && doc.version == set.version
            && doc.computed_at <= now
            && doc.valid_until.is_none_or(|t| now < t)
        {
            return Arc::clone(doc);
        }
        let published: Vec<&PublicJwk> = set
            .keys
            .iter()
            .filter(|k| k.times.is_published(now))
            .map(|k| &k.jwk)
            .collect();
        let body = serde_json::to_vec(&Jwks { keys: published })
            .unwrap_or_else(|_| unreachable!("plain strings always serialise"));
        let digest = ring::digest::digest(&ring::digest::SHA256, &body);
        let doc = Arc::new(JwksDocument {
            etag: format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])),
            body: body.into(),
            valid_until: schedule::next_change(&set.times, now),
            version: set.version,
            computed_at: now,
        });
        *self.jwks.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&doc));
        doc
    }
}

/// Seconds a JWKS fetched at `now` may be cached: at most `cap`, and never past its next change.
#[must_use]
pub fn jwks_max_age(doc: &JwksDocument, now: OffsetDateTime, cap: Duration) -> i64 {
    let until_change = doc.valid_until.map_or(cap, |t| t - now);
    until_change.min(cap).whole_seconds().max(0)
}

#[cfg(test)]
mod tests {
    //! The verifier against forgeries: no server needed, one freshly generated key.
    use super::*;
    use crate::keys::material;
    use serde_json::json;

    const ISSUER: &str = "https://id.example";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time")
    }

    /// A ring holding one active key, sealed and loaded as a running server would.
    fn ring() -> KeyRing {
        let kek = Kek::from_bytes(&[9; 32]);
        let key = material::generate(2048).expect("a key");
        let sealed = kek.seal(&key.kid, &key.pkcs8_der);
        let start = now() - Duration::hours(1);
        let row = SigningKeyRow {
            kid: key.kid.clone(),
            algorithm: "RS256".into(),
            bits: 2048,
            origin: "generated".into(),
            public_n: key.n.clone(),
            public_e: key.e.clone(),
            sealed_private_key: sealed.ciphertext,
            seal_nonce: sealed.nonce.to_vec(),
            kek_id: kek.id().to_owned(),
            created_at: start,
            published_at: start,
            activates_at: start,
            retires_at: start + Duration::days(30),
            expires_at: start + Duration::days(31),
            revoked_at: None,
            revoked_reason: None,
        };
        KeyRing::load(1, &[row], &kek, now()).expect("loads")
    }

    fn claims(lifetime: Duration) -> Value {
        json!({
            "iss": ISSUER,
            "sub": "someone",
            "iat": now().unix_timestamp(),
            "exp": (now() + lifetime).unix_timestamp(),
        })
    }

    fn verify(ring: &KeyRing, token: &str, at: OffsetDateTime) -> Result<Value, VerifyError> {
        ring.verify(token, "at+jwt", ISSUER, at)
    }

    /// A token we signed, valid for ten minutes.
    fn good_token(ring: &KeyRing) -> String {
        ring.sign("at+jwt", &claims(Duration::minutes(10)), now())
            .expect("signs")
    }

    fn enc(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn a_token_we_signed_verifies_with_its_claims_and_only_as_its_type() {
        let ring = ring();
        let good = good_token(&ring);
        assert_eq!(
            verify(&ring, &good, now()).expect("valid")["sub"],
            "someone"
        );
        assert_eq!(
            ring.verify::<Value>(&good, "JWT", ISSUER, now())
                .expect_err("an access token"),
            VerifyError::Type
        );
        assert_eq!(
            ring.verify::<Value>(&good, "at+jwt", "https://evil.example", now())
                .expect_err("not our issuer"),
            VerifyError::Issuer
        );
    }

    #[test]
    fn alg_none_and_hs256_keyed_with_the_public_key_are_refused() {
        let ring = ring();
        let good = good_token(&ring);
        let parts: Vec<&str> = good.split('.').collect();
        let kid = ring.active_kid(now()).expect("an active key");
        let none = format!("{}.{}.", enc(&json!({"alg": "none", "kid": kid})), parts[1]);
        assert_eq!(verify(&ring, &none, now()), Err(VerifyError::Algorithm));
        // The classic algorithm-confusion forgery: HMAC keyed with the published JWK.
        let jwks: Value = serde_json::from_slice(&ring.jwks(now()).body).expect("JSON");
        let jwk = jwks["keys"][0].to_string();
        let input = format!(
            "{}.{}",
            enc(&json!({"alg": "HS256", "kid": kid, "typ": "at+jwt"})),
            parts[1]
        );
        let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, jwk.as_bytes());
        let mac = ring::hmac::sign(&mac_key, input.as_bytes());
        let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
        assert_eq!(verify(&ring, &hs, now()), Err(VerifyError::Algorithm));
    }

    #[test]
    fn an_unknown_kid_or_a_tampered_payload_is_refused() {
        let ring = ring();
        let good = good_token(&ring);
        let parts: Vec<&str> = good.split('.').collect();
        let other = enc(&json!({"alg": "RS256", "kid": "x".repeat(43), "typ": "at+jwt"}));
        let unknown = format!("{other}.{}.{}", parts[1], parts[2]);
        assert_eq!(verify(&ring, &unknown, now()), Err(VerifyError::UnknownKey));
        let mut c = claims(Duration::minutes(10));
        c["sub"] = json!("admin");
        let tampered = format!("{}.{}.{}", parts[0], enc(&c), parts[2]);
        assert_eq!(verify(&ring, &tampered, now()), Err(VerifyError::Signature));
    }

    #[test]
    fn signed_tokens_without_exp_iat_or_iss_or_not_yet_valid_are_refused() {
        let ring = ring();
        let without = |name: &str| {
            let mut c = claims(Duration::minutes(10));
            c.as_object_mut().expect("object").remove(name);
            c
        };
        let mut future = claims(Duration::minutes(10));
        future["nbf"] = json!(now().unix_timestamp() + 600);
        for (payload, expected) in [
            (without("exp"), VerifyError::Expired),
            (without("iat"), VerifyError::NotYetValid),
            (without("iss"), VerifyError::Issuer),
            (future, VerifyError::NotYetValid),
        ] {
            let token = ring.sign("at+jwt", &payload, now()).expect("signs");
            assert_eq!(verify(&ring, &token, now()), Err(expected), "{payload}");
        }
    }

    #[test]
    fn expiry_allows_the_leeway_for_clock_skew_and_not_a_second_more() {
        let ring = ring();
        let good = good_token(&ring);
        let exp = now() + Duration::minutes(10);
        assert!(verify(&ring, &good, exp + Duration::seconds(59)).is_ok());
        assert_eq!(
            verify(&ring, &good, exp + Duration::seconds(60)),
            Err(VerifyError::Expired)
        );
        assert!(
            ring.verify_ignoring_expiry::<Value>(&good, "at+jwt", ISSUER, exp + Duration::days(1))
                .is_ok()
        );
    }

    #[test]
    fn a_repeated_header_or_claim_member_is_malformed() {
        let ring = ring();
        let good = good_token(&ring);
        let parts: Vec<&str> = good.split('.').collect();
        let kid = ring.active_kid(now()).expect("an active key");
        // Two `alg`s: last-wins parsing would see RS256, another parser `none`.
        let header = format!(r#"{{"alg":"none","kid":"{kid}","typ":"at+jwt","alg":"RS256"}}"#);
        let twice = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            parts[1],
            parts[2]
        );
        assert_eq!(verify(&ring, &twice, now()), Err(VerifyError::Malformed));
        // A signed payload naming `sub` twice is refused too, although its signature is fine.
        let payload = format!(
            r#"{{"iss":"{ISSUER}","sub":"someone","sub":"admin","iat":{},"exp":{}}}"#,
            now().unix_timestamp(),
            (now() + Duration::minutes(5)).unix_timestamp()
        );
        let input = format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload));
        let set = ring.snapshot();
        let signature = set.keys[0].signer.sign(input.as_bytes()).expect("signs");
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
        assert_eq!(verify(&ring, &token, now()), Err(VerifyError::Malformed));
    }

    #[test]
    fn junk_is_malformed() {
        let ring = ring();
        for junk in ["", "a.b", "a.b.c.d", "!!!.???.***"] {
            assert_eq!(
                verify(&ring, junk, now()),
                Err(VerifyError::Malformed),
                "{junk}"
            );
        }
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(verify(&ring, &huge, now()), Err(VerifyError::Malformed));
    }

    #[test]
    fn claims_of_the_wrong_shape_are_refused() {
        #[derive(serde::Deserialize, Debug)]
        struct NeedsJti {
            #[expect(dead_code, reason = "only its presence matters")]
            jti: String,
        }
        let ring = ring();
        let good = good_token(&ring);
        assert_eq!(
            ring.verify::<NeedsJti>(&good, "at+jwt", ISSUER, now())
                .expect_err("no jti"),
            VerifyError::Claims
        );
    }

    /// One ring for every generated case: RSA key generation dominates otherwise.
    fn shared_ring() -> &'static KeyRing {
        static RING: std::sync::OnceLock<KeyRing> = std::sync::OnceLock::new();
        RING.get_or_init(ring)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever arrives as a bearer token, the verifier answers with an error, never a panic.
        #[test]
        fn arbitrary_text_never_verifies_and_never_panics(token in "\\PC{0,400}") {
            proptest::prop_assert!(verify(shared_ring(), &token, now()).is_err());
        }

        /// Three dot-separated segments of arbitrary base64url (headers and claims that are not
        /// JSON, JSON that is not an object, huge numbers...) are refused too.
        #[test]
        fn arbitrary_segments_never_verify(
            header in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..128),
            signature in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let token = [&header, &payload, &signature]
                .map(|p| URL_SAFE_NO_PAD.encode(p))
                .join(".");
            proptest::prop_assert!(verify(shared_ring(), &token, now()).is_err());
        }

        /// Changing any one character of a valid token makes it invalid.
        #[test]
        fn any_one_changed_character_breaks_a_valid_token(at in 0usize..10_000, by in 1u8..64) {
            let ring = shared_ring();
            let good = good_token(ring);
            let mut bytes = good.into_bytes();
            let i = at % bytes.len();
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
            let from = alphabet.iter().position(|c| *c == bytes[i]).unwrap_or(0);
            bytes[i] = alphabet[(from + usize::from(by)) % alphabet.len()];
            let changed = String::from_utf8(bytes).expect("ascii");
            // The last character of the base64url signature may carry unused bits: a change
            // there can decode to the same signature, which is not a forgery.
            let same_signature = verify(ring, &changed, now()).is_ok() && i == changed.len() - 1;
            proptest::prop_assert!(same_signature || verify(ring, &changed, now()).is_err());
        }
    }
}
