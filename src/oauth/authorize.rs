//! Authorization requests (RFC 6749 §4.1.1, RFC 7636, OIDC Core §3.1.2): parsing and validating
//! them, and taking a valid one through sign-in and consent to its code.

use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::audit::Actor;
use crate::auth_methods::acr_values_demand_mfa;
use crate::clients::Client;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::oauth::pkce::{CodeChallenge, PkceError};
use crate::oauth::second_factor::Policy as MfaPolicy;
use crate::scope::{self, Scopes};
use crate::sessions::{AskingApp, PendingRequest, SignedInSession};
use crate::tokens::codes::{self, NewCode};
use crate::tokens::opaque::PlainToken;
use crate::users;
use crate::users::consents;

/// The longest `state` / `nonce` we carry (they are echoed, so they are bounded).
const MAX_ECHOED_LEN: usize = 512;

/// A request that failed before the client and redirect URI were both verified: it must never
/// be redirected (RFC 6749 §4.1.2.1), so it is shown on an error page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnredirectableError {
    /// `client_id` is missing, repeated or unknown.
    #[error("The application that sent you here is not registered with this sign-in service.")]
    UnknownClient,
    /// `redirect_uri` is missing, repeated, or not registered exactly for this client.
    #[error("The application sent you here with a return address it has not registered.")]
    BadRedirectUri,
}

/// What the person asked for through `prompt` (OIDC Core §3.1.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// Show no page at all; fail instead.
    pub none: bool,
    /// Ask for the password again even if signed in.
    pub login: bool,
    /// Ask for consent again even if given before.
    pub consent: bool,
}

/// A validated authorization request, kept in the session while the person signs in or consents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    /// Random id of this pending request within the session.
    pub id: String,
    /// The client.
    pub client_id: String,
    /// The exact registered redirect URI.
    pub redirect_uri: String,
    /// Echoed back to the client.
    pub state: Option<String>,
    /// Requested scopes (a subset of the client's).
    pub scope: String,
    /// Echoed into the ID token.
    pub nonce: Option<String>,
    /// PKCE S256 challenge; `None` only for a client registered `--pkce optional` whose
    /// request carried a `nonce` and `openid` instead (RFC 9700 §2.1.1).
    #[serde(default)]
    pub code_challenge: Option<String>,
    /// `prompt` flags.
    pub prompt: Prompt,
    /// Maximum authentication age in seconds.
    pub max_age: Option<i64>,
    /// Username to prefill.
    pub login_hint: Option<String>,
    /// Audiences (RFC 8707 resources, or the client's defaults).
    pub audiences: Vec<String>,
    /// A second factor is demanded: by `acr_values` (OIDC Core §3.1.2.1, RFC 9470 step-up) or by
    /// the client's registration (`--require-mfa`).
    #[serde(default)]
    pub mfa: bool,
    /// `prompt=login` from a signed-in browser: the OIDC `sid` of that sign-in, which no longer
    /// counts for this request (going back to it without signing in again is not a sign-in;
    /// every sign-in has a new `sid`).
    #[serde(default)]
    pub stale_sid: Option<String>,
}

impl PendingRequest for AuthorizationRequest {
    fn pending_id(&self) -> &str {
        &self.id
    }
}

impl AuthorizationRequest {
    /// The requested scopes.
    #[must_use]
    pub fn scopes(&self) -> Scopes {
        Scopes::parse(&self.scope).unwrap_or_default()
    }

    /// Whether a sign-in at `auth_time` is fresh enough for this request (`max_age`, OIDC Core
    /// §3.1.2.1; `prompt=login` is [`Self::stale_sid`]).
    #[must_use]
    pub fn accepts_sign_in_at(&self, auth_time: OffsetDateTime, now: OffsetDateTime) -> bool {
        let age = now.unix_timestamp() - auth_time.unix_timestamp();
        self.max_age.is_none_or(|m| age <= m)
    }

    /// The request as first received from a browser signed in as `signed`: with `prompt=login`,
    /// that sign-in is stale for it.
    #[must_use]
    pub fn received_by(self, signed: Option<&SignedInSession>) -> Self {
        let stale_sid = match signed {
            Some(s) if self.prompt.login => Some(s.sid.clone()),
            _ => None,
        };
        Self { stale_sid, ..self }
    }

    /// The app asking, as the hosted pages name it: its registered name, and the origin of the
    /// redirect URI the person returns to.
    #[must_use]
    pub fn asking_app(&self, client: &Client) -> AskingApp {
        AskingApp {
            name: client.name.clone(),
            origin: crate::clients::origin_of_redirect_uri(&self.redirect_uri).unwrap_or_default(),
        }
    }

    /// The request once the person consented on the page: `prompt=consent` is satisfied.
    #[must_use]
    pub fn consent_given(self) -> Self {
        Self {
            prompt: Prompt {
                consent: false,
                ..self.prompt
            },
            ..self
        }
    }

    /// What the code for this request, approved by this sign-in, is bound to.
    #[must_use]
    pub fn new_code<'a>(&'a self, signed: &'a SignedInSession, scopes: &'a Scopes) -> NewCode<'a> {
        NewCode {
            client_id: &self.client_id,
            redirect_uri: &self.redirect_uri,
            code_challenge: self.code_challenge.as_deref(),
            nonce: self.nonce.as_deref(),
            scopes,
            audiences: &self.audiences,
            user_id: signed.user_id,
            auth_time: signed.auth_time,
            sid: &signed.sid,
            methods: &signed.methods,
        }
    }
}

/// Where a validated authorization request goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nobody (fresh enough) is signed in: the sign-in page.
    SignIn,
    /// A second factor is demanded and the sign-in has none: the second-step page.
    SecondFactor,
    /// `prompt=none` and nobody fresh is signed in.
    LoginRequired,
    /// The consent page.
    Consent,
    /// `prompt=none` and consent is missing.
    ConsentRequired,
    /// `prompt=none` and a second factor is missing (OIDC Core §3.1.2.6 `interaction_required`).
    InteractionRequired,
    /// Everything is in place: issue the code.
    IssueCode,
}

/// What the consent page asks: who, for which app, to share what (in words).
#[derive(Debug)]
pub struct ConsentQuestion {
    /// The signed-in person's username.
    pub username: String,
    /// The asking app.
    pub app: AskingApp,
    /// Each requested scope, described for people.
    pub scopes: Vec<String>,
}

/// The consent page's question for `request`, or `None` when the signed-in person no longer
/// exists.
pub async fn consent_question(
    conn: &mut AsyncPgConnection,
    client: &Client,
    request: &AuthorizationRequest,
    signed: &SignedInSession,
) -> diesel::QueryResult<Option<ConsentQuestion>> {
    let Some(user) = users::find(conn, signed.user_id).await? else {
        return Ok(None);
    };
    Ok(Some(ConsentQuestion {
        username: user.username,
        app: request.asking_app(client),
        scopes: request
            .scopes()
            .iter()
            .map(crate::scope::describe)
            .collect(),
    }))
}

/// Where [`proceed`] sends the person.
#[derive(Debug)]
pub enum Outcome {
    /// Everything is in place: back to the client with this code.
    Code(PlainToken),
    /// The consent page.
    Consent,
    /// The sign-in page.
    SignIn,
    /// The second-step page (step-up), then back here.
    SecondFactor,
    /// Back to the client with this error (`prompt=none` cannot be satisfied).
    Refused(OAuthError),
}

/// Takes a validated request as far as it can go for the browser's sign-in `signed`: a user
/// disabled or deleted since counts as signed out; their consent is looked up when the client
/// needs it; [`decide`] chooses; and the code is issued when everything is in place.
pub async fn proceed(
    conn: &mut AsyncPgConnection,
    (client, policy): (&Client, MfaPolicy),
    request: &AuthorizationRequest,
    signed: Option<&SignedInSession>,
    now: OffsetDateTime,
) -> diesel::QueryResult<Outcome> {
    let signed = match signed {
        Some(s)
            if users::find(conn, s.user_id)
                .await?
                .is_some_and(|u| !u.is_disabled()) =>
        {
            Some(s)
        }
        _ => None,
    };
    let consent = match signed {
        Some(s) if client.needs_consent() => consents::find(conn, s.user_id, &client.id).await?,
        _ => None,
    };
    let demanded = request.mfa || policy == MfaPolicy::Required;
    let signed_in = signed.map(|s| SignedIn {
        at: s.auth_time,
        stale: request.stale_sid.as_deref() == Some(s.sid.as_str()),
        lacks_second_factor: demanded && !s.methods.is_multi_factor(),
    });
    let next = decide(
        request,
        client.needs_consent(),
        signed_in,
        consent.as_ref(),
        now,
    );
    Ok(match (next, signed) {
        (Next::IssueCode, Some(s)) => {
            let scopes = request.scopes();
            let new = request.new_code(s, &scopes);
            Outcome::Code(codes::insert(conn, &new, now).await?)
        }
        (Next::InteractionRequired, _) => Outcome::Refused(OAuthError::new(
            ErrorCode::InteractionRequired,
            "a second factor is required and the user has not proven one",
        )),
        (Next::SecondFactor, _) => Outcome::SecondFactor,
        (Next::LoginRequired, _) => Outcome::Refused(OAuthError::new(
            ErrorCode::LoginRequired,
            "the user is not signed in",
        )),
        (Next::ConsentRequired, _) => Outcome::Refused(OAuthError::new(
            ErrorCode::ConsentRequired,
            "the user has not consented",
        )),
        (Next::Consent, _) => Outcome::Consent,
        (Next::SignIn | Next::IssueCode, _) => Outcome::SignIn,
    })
}

/// The person allowed `request` (already [`AuthorizationRequest::consent_given`]) on the consent
/// page: records their consent (`consent.granted`, by them from `ip`), then [`proceed`]s, on one
/// connection.
pub async fn consent_and_proceed(
    conn: &mut AsyncPgConnection,
    (client, policy): (&Client, MfaPolicy),
    request: &AuthorizationRequest,
    signed: &SignedInSession,
    ip: Option<ipnet::IpNet>,
    now: OffsetDateTime,
) -> diesel::QueryResult<Outcome> {
    let by = Actor::user(signed.user_id, ip);
    let scopes = request.scopes();
    consents::grant(conn, signed.user_id, &client.id, &scopes, &by, now).await?;
    proceed(conn, (client, policy), request, Some(signed), now).await
}

/// An active signed-in user, as [`decide`] needs them.
#[derive(Clone, Copy, Debug)]
pub struct SignedIn {
    /// When they authenticated.
    pub at: OffsetDateTime,
    /// The request asked for another sign-in than this one (`prompt=login`).
    pub stale: bool,
    /// A second factor is demanded and their sign-in did not prove one.
    pub lacks_second_factor: bool,
}

/// Decides the next step: `signed_in` is the active signed-in user, and `consented` the scopes
/// that user granted this client before (when it needs consent).
#[must_use]
pub fn decide(
    request: &AuthorizationRequest,
    needs_consent: bool,
    signed_in: Option<SignedIn>,
    consented: Option<&Scopes>,
    now: OffsetDateTime,
) -> Next {
    let fresh = signed_in.filter(|s| !s.stale && request.accepts_sign_in_at(s.at, now));
    let Some(fresh) = fresh else {
        return if request.prompt.none {
            Next::LoginRequired
        } else {
            Next::SignIn
        };
    };
    if fresh.lacks_second_factor {
        return if request.prompt.none {
            Next::InteractionRequired
        } else {
            Next::SecondFactor
        };
    }
    let covered = !request.prompt.consent
        && consented.is_some_and(|granted| request.scopes().is_subset(granted));
    match (needs_consent && !covered, request.prompt.none) {
        (false, _) => Next::IssueCode,
        (true, true) => Next::ConsentRequired,
        (true, false) => Next::Consent,
    }
}

/// Reads `client_id` and `redirect_uri`, the two values that decide whether errors may redirect;
/// missing, empty or repeated, neither can be trusted.
pub fn client_and_redirect(params: &Params) -> Result<(&str, &str), UnredirectableError> {
    let client_id = params
        .get("client_id")
        .ok_or(UnredirectableError::UnknownClient)?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or(UnredirectableError::BadRedirectUri)?;
    Ok((client_id, redirect_uri))
}

/// The client's `state`, to echo with an error, if it can be echoed at all.
#[must_use]
pub fn echoable_state(params: &Params) -> Option<&str> {
    params.get("state").filter(|s| s.len() <= MAX_ECHOED_LEN)
}

fn invalid(description: &'static str) -> OAuthError {
    OAuthError::invalid_request(description)
}

/// Validates everything else, once the client and redirect URI are known good. Errors from here
/// on are sent back to the client's redirect URI.
pub fn validate(
    params: &Params,
    client: &Client,
    (redirect_uri, id): (&str, String),
) -> Result<AuthorizationRequest, OAuthError> {
    // Every parameter but `resource` (RFC 8707 §2) must appear at most once (RFC 6749 §3.1).
    params.reject_repeated(&["resource"])?;
    let state = bounded(params, "state", "state is too long")?;
    check_response_kind(params, client)?;
    let scopes = requested_scopes(params, client)?;
    let nonce = bounded(params, "nonce", "nonce is too long")?;
    let challenge = code_challenge(params, client, &scopes, nonce.as_deref())?;
    let prompt = parse_prompt(params.get("prompt"))?;
    let acr_values = bounded(params, "acr_values", "acr_values is too long")?;
    Ok(AuthorizationRequest {
        id,
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        state,
        scope: scopes.to_string(),
        nonce,
        code_challenge: challenge.map(|c| c.as_str().to_owned()),
        prompt,
        max_age: max_age(params)?,
        login_hint: params
            .get("login_hint")
            .map(|h| h.chars().take(64).collect()),
        audiences: audiences_for(params, client)?,
        mfa: client.require_mfa || acr_values.as_deref().is_some_and(acr_values_demand_mfa),
        stale_sid: None,
    })
}

/// A value we echo back (`state`, `nonce`), so bounded.
fn bounded(
    params: &Params,
    name: &str,
    too_long: &'static str,
) -> Result<Option<String>, OAuthError> {
    match params.get(name) {
        Some(v) if v.len() > MAX_ECHOED_LEN => Err(invalid(too_long)),
        v => Ok(v.map(str::to_owned)),
    }
}

/// Only the code flow, with query responses, and no request objects (OIDC Core §6).
fn check_response_kind(params: &Params, client: &Client) -> Result<(), OAuthError> {
    if params.get("request").is_some() {
        return Err(OAuthError::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        ));
    }
    if params.get("request_uri").is_some() {
        return Err(OAuthError::new(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        ));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => return Err(invalid("response_type is required")),
        Some(_) => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    if !client.allows_grant(crate::clients::GrantType::AuthorizationCode) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the authorization code flow",
        ));
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(invalid("only response_mode=query is supported"));
    }
    Ok(())
}

/// OAuth 2.1 §4.1.1: PKCE with S256 is required of every client, but one registered `--pkce
/// optional` (confidential, for libraries that send none): RFC 9700 §2.1.1 lets such an OpenID
/// Connect client rely on the `nonce` instead, so a request without a challenge must carry one
/// and ask for `openid` (the ID token's `nonce` then binds the code to the client's session).
fn code_challenge(
    params: &Params,
    client: &Client,
    scopes: &Scopes,
    nonce: Option<&str>,
) -> Result<Option<CodeChallenge>, OAuthError> {
    let without_pkce = params.get("code_challenge").is_none()
        && params.get("code_challenge_method").is_none()
        && !client.pkce_required;
    if without_pkce {
        if nonce.is_none() || !scopes.contains(scope::OPENID) {
            return Err(invalid(
                "without PKCE, the request must carry a nonce and ask for openid (RFC 9700 §2.1.1)",
            ));
        }
        return Ok(None);
    }
    CodeChallenge::parse(
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    )
    .map(Some)
    .map_err(|e| {
        invalid(match e {
            PkceError::MissingChallenge => "code_challenge is required (PKCE with S256)",
            PkceError::MethodNotS256 => "code_challenge_method must be S256",
            _ => "code_challenge is malformed",
        })
    })
}

/// The requested scopes: at least one, all of them allowed for the client.
fn requested_scopes(params: &Params, client: &Client) -> Result<Scopes, OAuthError> {
    let scopes = Scopes::parse(params.get("scope").unwrap_or(""))
        .map_err(|_| OAuthError::invalid_scope("scope is malformed"))?;
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("scope is required"));
    }
    if !scopes.is_subset(&client.allowed_scopes()) {
        return Err(OAuthError::invalid_scope(
            "scope includes values this client may not request",
        ));
    }
    Ok(scopes)
}

/// OIDC Core §3.1.2.1 `max_age`, in seconds.
fn max_age(params: &Params) -> Result<Option<i64>, OAuthError> {
    params
        .get("max_age")
        .map(|raw| {
            raw.parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .ok_or_else(|| invalid("max_age must be a non-negative integer"))
        })
        .transpose()
}

/// RFC 8707 resources, each an absolute URI without fragment that the client may target; none
/// means the client's configured audiences.
fn audiences_for(params: &Params, client: &Client) -> Result<Vec<String>, OAuthError> {
    let resources: Vec<&str> = params.all("resource").collect();
    if resources.is_empty() {
        return Ok(client.audiences.clone());
    }
    for r in &resources {
        let ok = Url::parse(r).is_ok_and(|u| u.fragment().is_none())
            && client.audiences.iter().any(|a| a == r);
        if !ok {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource is not an audience this client may request",
            ));
        }
    }
    Ok(resources.iter().map(|r| (*r).to_owned()).collect())
}

fn parse_prompt(raw: Option<&str>) -> Result<Prompt, OAuthError> {
    let mut prompt = Prompt::default();
    for value in raw.unwrap_or("").split(' ').filter(|v| !v.is_empty()) {
        match value {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            _ => return Err(invalid("prompt has an unsupported value")),
        }
    }
    // OIDC Core §3.1.2.1: none with any other value is an error.
    if prompt.none && (prompt.login || prompt.consent) {
        return Err(invalid("prompt=none cannot be combined with other values"));
    }
    Ok(prompt)
}

/// The redirect URI with `params` added to its query (RFC 6749 §4.1.2: keep existing ones).
#[must_use]
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    match Url::parse(redirect_uri) {
        // Exactly as registered when there is nothing to add (no stray `?`).
        Ok(_) if params.is_empty() => redirect_uri.to_owned(),
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        // Registered URIs always parse; never redirect somewhere we did not validate.
        Err(_) => String::from("/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_with_nothing_to_add_is_the_registered_uri_exactly() {
        assert_eq!(
            redirect_with("http://localhost:3000/", &[]),
            "http://localhost:3000/"
        );
        assert_eq!(
            redirect_with("https://app.example/cb?x=1", &[("state", "a b")]),
            "https://app.example/cb?x=1&state=a+b"
        );
    }

    fn client() -> Client {
        Client {
            id: "app".into(),
            name: "App".into(),
            secret_hash: None,
            is_public: true,
            is_first_party: false,
            redirect_uris: vec!["https://app.example/cb".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec!["authorization_code".into()],
            scopes: vec!["openid".into(), "profile".into()],
            audiences: vec!["https://api.example".into()],
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            allowed_origins: vec![],
            require_mfa: false,
            pkce_required: true,
        }
    }

    fn params(extra: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs(extra))
    }

    fn pairs(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = [
            ("client_id", "app"),
            ("redirect_uri", "https://app.example/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            p.retain(|(key, _)| key != k);
            if !v.is_empty() {
                p.push(((*k).to_owned(), (*v).to_owned()));
            }
        }
        p
    }

    fn check(extra: &[(&str, &str)]) -> Result<AuthorizationRequest, OAuthError> {
        validate(
            &params(extra),
            &client(),
            ("https://app.example/cb", "id".into()),
        )
    }

    #[test]
    fn a_good_request_validates() {
        let r = check(&[("state", "xyz"), ("nonce", "n")]).expect("valid");
        assert_eq!(r.scope, "openid");
        assert_eq!(r.state.as_deref(), Some("xyz"));
        assert_eq!(r.audiences, ["https://api.example"]);
    }

    #[test]
    fn each_refusal_has_its_rfc_code() {
        let cases: &[(&[(&str, &str)], ErrorCode)] = &[
            (
                &[("response_type", "token")],
                ErrorCode::UnsupportedResponseType,
            ),
            (&[("response_type", "")], ErrorCode::InvalidRequest),
            (&[("code_challenge", "")], ErrorCode::InvalidRequest),
            (
                &[("code_challenge_method", "plain")],
                ErrorCode::InvalidRequest,
            ),
            (&[("code_challenge_method", "")], ErrorCode::InvalidRequest),
            (&[("scope", "openid admin")], ErrorCode::InvalidScope),
            (&[("scope", "")], ErrorCode::InvalidScope),
            (&[("prompt", "none login")], ErrorCode::InvalidRequest),
            (&[("prompt", "select_account")], ErrorCode::InvalidRequest),
            (&[("max_age", "-1")], ErrorCode::InvalidRequest),
            (
                &[("resource", "https://other.example")],
                ErrorCode::InvalidTarget,
            ),
            (&[("request", "eyJ...")], ErrorCode::RequestNotSupported),
        ];
        for (extra, code) in cases {
            assert_eq!(check(extra).expect_err("refused").code, *code, "{extra:?}");
        }
    }

    #[test]
    fn duplicate_parameters_are_refused() {
        let mut p = pairs(&[]);
        p.push(("scope".into(), "profile".into()));
        let err = validate(
            &Params::from_pairs(p),
            &client(),
            ("https://app.example/cb", "id".into()),
        )
        .expect_err("dup");
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        let mut p = pairs(&[]);
        p.push(("client_id".into(), "other".into()));
        assert_eq!(
            client_and_redirect(&Params::from_pairs(p)),
            Err(UnredirectableError::UnknownClient)
        );
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    fn signed_at(seconds: i64) -> SignedIn {
        SignedIn {
            at: at(seconds),
            stale: false,
            lacks_second_factor: false,
        }
    }

    #[test]
    fn prompt_login_wants_another_sign_in_and_a_missing_second_factor_is_asked_for() {
        let was = SignedInSession {
            user_id: uuid::Uuid::nil(),
            auth_time: at(0),
            sid: "first".into(),
            methods: crate::auth_methods::AuthMethods::password(),
        };
        let login = check(&[("prompt", "login")])
            .expect("valid")
            .received_by(Some(&was));
        assert_eq!(login.stale_sid.as_deref(), Some("first"));
        let stale = SignedIn {
            stale: true,
            ..signed_at(0)
        };
        assert_eq!(
            decide(&login, false, Some(stale), None, at(20)),
            Next::SignIn
        );
        assert_eq!(
            decide(&login, false, Some(signed_at(0)), None, at(20)),
            Next::IssueCode
        );
        let plain = check(&[]).expect("valid").received_by(Some(&was));
        assert_eq!(plain.stale_sid, None, "only prompt=login makes it stale");
        let request = check(&[]).expect("valid");
        let lacking = Some(SignedIn {
            lacks_second_factor: true,
            ..signed_at(0)
        });
        assert_eq!(
            decide(&request, false, lacking, None, at(1)),
            Next::SecondFactor
        );
        let silent = check(&[("prompt", "none")]).expect("valid");
        assert_eq!(
            decide(&silent, false, lacking, None, at(1)),
            Next::InteractionRequired
        );
    }

    #[test]
    fn acr_values_or_the_client_demand_a_second_factor() {
        use crate::auth_methods::{ACR_MFA, ACR_ONE_FACTOR};
        assert!(!check(&[]).expect("valid").mfa);
        assert!(check(&[("acr_values", ACR_MFA)]).expect("valid").mfa);
        let either = format!("{ACR_MFA} {ACR_ONE_FACTOR}");
        assert!(!check(&[("acr_values", &either)]).expect("valid").mfa);
        let strict = Client {
            require_mfa: true,
            ..client()
        };
        let request = validate(
            &params(&[]),
            &strict,
            ("https://app.example/cb", "id".into()),
        );
        assert!(request.expect("valid").mfa);
    }

    #[test]
    fn nobody_signed_in_goes_to_sign_in_or_login_required_with_prompt_none() {
        let request = check(&[]).expect("valid");
        assert_eq!(decide(&request, true, None, None, at(100)), Next::SignIn);
        let silent = check(&[("prompt", "none")]).expect("valid");
        assert_eq!(
            decide(&silent, true, None, None, at(100)),
            Next::LoginRequired
        );
    }

    #[test]
    fn a_sign_in_older_than_max_age_is_not_fresh() {
        let request = check(&[("max_age", "60")]).expect("valid");
        let granted = request.scopes();
        let decide_at = |now| decide(&request, true, Some(signed_at(0)), Some(&granted), at(now));
        assert_eq!(decide_at(60), Next::IssueCode);
        assert_eq!(decide_at(61), Next::SignIn);
    }

    #[test]
    fn consent_is_needed_unless_it_covers_the_scopes_or_the_client_is_first_party() {
        let request = check(&[("scope", "openid profile")]).expect("valid");
        let narrow = Scopes::parse("openid").expect("valid");
        let wide = Scopes::parse("openid profile").expect("valid");
        let signed = Some(signed_at(0));
        assert_eq!(decide(&request, true, signed, None, at(1)), Next::Consent);
        assert_eq!(
            decide(&request, true, signed, Some(&narrow), at(1)),
            Next::Consent
        );
        assert_eq!(
            decide(&request, true, signed, Some(&wide), at(1)),
            Next::IssueCode
        );
        assert_eq!(
            decide(&request, false, signed, None, at(1)),
            Next::IssueCode
        );
        let again = check(&[("scope", "openid profile"), ("prompt", "consent")]).expect("valid");
        assert_eq!(
            decide(&again, true, signed, Some(&wide), at(1)),
            Next::Consent
        );
        let silent = check(&[("scope", "openid profile"), ("prompt", "none")]).expect("valid");
        assert_eq!(
            decide(&silent, true, signed, Some(&narrow), at(1)),
            Next::ConsentRequired
        );
    }

    #[test]
    fn error_parameters_are_appended_to_an_existing_query() {
        let to = redirect_with(
            "https://app.example/cb?x=1",
            &[("error", "access_denied"), ("state", "a b")],
        );
        assert_eq!(
            to,
            "https://app.example/cb?x=1&error=access_denied&state=a+b"
        );
    }
}
