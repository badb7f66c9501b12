//! `/authorize` (RFC 6749 §4.1, OIDC Core §3.1.2) and the consent page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::clients::{self, Client};
use crate::crypto::random_bytes;
use crate::http::client_ip::ClientIp;
use crate::http::csrf;
use crate::http::page::{PageError, PageForm, see_other};
use crate::oauth::authorize::{self, AuthorizationRequest, Outcome, redirect_with};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::sessions::BrowserSession;

/// The consent page.
#[derive(Template, WebTemplate)]
#[template(path = "consent.html")]
pub struct ConsentPage {
    csrf: String,
    request_id: String,
    client_name: String,
    /// Where the person goes back to.
    client_origin: String,
    username: String,
    scopes: Vec<String>,
}

/// `GET /authorize`.
#[tracing::instrument(skip_all)]
pub async fn get_authorize(
    State(state): State<AppState>,
    session: BrowserSession,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let visitor = Visitor {
        session: &session,
        headers: &headers,
    };
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    start(&state, visitor, &params).await
}

/// `POST /authorize` (form-encoded, OIDC Core §3.1.2.1).
#[tracing::instrument(skip_all)]
pub async fn post_authorize(
    State(state): State<AppState>,
    session: BrowserSession,
    headers: HeaderMap,
    PageForm(pairs): PageForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let visitor = Visitor {
        session: &session,
        headers: &headers,
    };
    start(&state, visitor, &Params::from_pairs(pairs)).await
}

fn error_redirect(
    state: &AppState,
    redirect_uri: &str,
    error: OAuthError,
    client_state: Option<&str>,
) -> Response {
    let mut params = vec![
        ("error", error.code.as_str()),
        ("error_description", error.description),
    ];
    if let Some(s) = client_state {
        params.push(("state", s));
    }
    // RFC 9207: say who answers, so a client talking to several servers cannot be mixed up.
    params.push(("iss", state.config.server.issuer.as_str()));
    see_other(&redirect_with(redirect_uri, &params))
}

/// The browser asking: its session, and its request headers (a visitor's sealed pending cookie).
#[derive(Clone, Copy)]
struct Visitor<'a> {
    session: &'a BrowserSession,
    headers: &'a HeaderMap,
}

async fn start(
    state: &AppState,
    visitor: Visitor<'_>,
    params: &Params,
) -> Result<Response, PageError> {
    let (client_id, redirect_uri) = authorize::client_and_redirect(params)?;
    let client = {
        let mut conn = state.conn().await?;
        clients::find(&mut conn, client_id).await?
    };
    let client = client.ok_or(authorize::UnredirectableError::UnknownClient)?;
    // RFC 6749 §4.1.2.1: with an unverified redirect URI, never redirect.
    if !client.has_redirect_uri(redirect_uri) {
        return Err(authorize::UnredirectableError::BadRedirectUri.into());
    }
    let id = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        random_bytes::<16>(),
    );
    match authorize::validate(params, &client, (redirect_uri, id)) {
        Ok(request) => {
            let signed = visitor.session.signed_in().await?;
            let request = request.received_by(signed.as_ref());
            proceed(state, visitor, &client, request).await
        }
        Err(error) => {
            let client_state = authorize::echoable_state(params);
            Ok(error_redirect(state, redirect_uri, error, client_state))
        }
    }
}

/// Takes a validated request as far as it can go: sign-in, consent, or the code.
#[tracing::instrument(skip_all, fields(client_id = %client.id))]
async fn proceed(
    state: &AppState,
    visitor: Visitor<'_>,
    client: &Client,
    request: AuthorizationRequest,
) -> Result<Response, PageError> {
    let signed = visitor.session.signed_in().await?;
    let now = state.clock.now();
    let mut conn = state.conn().await?;
    let policy = state.config.passwords.mfa;
    let outcome =
        authorize::proceed(&mut conn, (client, policy), &request, signed.as_ref(), now).await?;
    drop(conn);
    answer(state, visitor, client, request, outcome).await
}

/// Turns where the request goes next into the browser's next page.
async fn answer(
    state: &AppState,
    visitor: Visitor<'_>,
    client: &Client,
    request: AuthorizationRequest,
    outcome: Outcome,
) -> Result<Response, PageError> {
    let session = visitor.session;
    match outcome {
        Outcome::Code(code) => {
            session
                .remove_pending::<AuthorizationRequest>(&request.id)
                .await?;
            Ok(success_redirect(state, &request, code.expose()))
        }
        Outcome::Refused(error) => Ok(error_redirect(
            state,
            &request.redirect_uri,
            error,
            request.state.as_deref(),
        )),
        Outcome::Consent => {
            session.put_pending(&request).await?;
            Ok(see_other(&format!("/consent?request={}", request.id)))
        }
        Outcome::SignIn => send_to_sign_in(state, visitor, client, &request).await,
        Outcome::SecondFactor => {
            // Signed in, but the request demands more: the second step, then back here.
            session.put_pending(&request).await?;
            session.set_asking_app(&request.asking_app(client)).await?;
            let resume = format!("/authorize/resume?request={}", request.id);
            session.set_return_to(&resume).await?;
            Ok(see_other("/signin/second-factor"))
        }
    }
}

/// Keeps the request and sends the person to the sign-in page, which comes back to resume it.
///
/// A browser without a session keeps it in a sealed cookie (`http::pending`), not in a row: a
/// crowd behind one address can all start signing in, and anonymous visitors cost no storage.
async fn send_to_sign_in(
    state: &AppState,
    visitor: Visitor<'_>,
    client: &Client,
    request: &AuthorizationRequest,
) -> Result<Response, PageError> {
    let session = visitor.session;
    let resume = format!("/authorize/resume?request={}", request.id);
    if !session.exists() {
        // No session yet: nothing is stored for this browser until someone signs in.
        let now = state.clock.now();
        let seal = &state.pending;
        let mut pending = seal.read(visitor.headers, now).unwrap_or_default();
        pending.push(request.clone());
        pending.asking_app = Some(request.asking_app(client));
        pending.login_hint.clone_from(&request.login_hint);
        pending.return_to = Some(resume);
        let mut response = see_other("/signin");
        if let Some(cookie) = seal.write(pending, now) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        return Ok(response);
    }
    session.put_pending(request).await?;
    session.set_asking_app(&request.asking_app(client)).await?;
    let reauth = request.prompt.login || request.max_age.is_some();
    session
        .require_sign_in(request.login_hint.as_deref(), reauth)
        .await?;
    session.set_return_to(&resume).await?;
    Ok(see_other("/signin"))
}

fn success_redirect(state: &AppState, request: &AuthorizationRequest, code: &str) -> Response {
    let mut params = vec![("code", code)];
    if let Some(s) = &request.state {
        params.push(("state", s));
    }
    params.push(("iss", state.config.server.issuer.as_str()));
    see_other(&redirect_with(&request.redirect_uri, &params))
}

/// Query naming a pending request.
#[derive(Deserialize)]
pub struct RequestQuery {
    #[serde(default)]
    request: String,
}

async fn pending(
    state: &AppState,
    session: &BrowserSession,
    id: &str,
) -> Result<(AuthorizationRequest, Client), PageError> {
    let request: AuthorizationRequest = session
        .find_pending(id)
        .await?
        .ok_or(PageError::StaleRequest)?;
    let mut conn = state.conn().await?;
    let client = clients::find(&mut conn, &request.client_id)
        .await?
        .filter(|c| c.has_redirect_uri(&request.redirect_uri))
        .ok_or(PageError::StaleRequest)?;
    Ok((request, client))
}

/// `GET /authorize/resume`: back from the sign-in page.
#[tracing::instrument(skip_all)]
pub async fn resume_authorize(
    State(state): State<AppState>,
    session: BrowserSession,
    headers: HeaderMap,
    Query(q): Query<RequestQuery>,
) -> Result<Response, PageError> {
    let (request, client) = pending(&state, &session, &q.request).await?;
    let visitor = Visitor {
        session: &session,
        headers: &headers,
    };
    proceed(&state, visitor, &client, request).await
}

/// `GET /consent`.
#[tracing::instrument(skip_all)]
pub async fn get_consent(
    State(state): State<AppState>,
    session: BrowserSession,
    Query(q): Query<RequestQuery>,
) -> Result<Response, PageError> {
    let Some(signed) = session.signed_in().await? else {
        return Ok(see_other("/signin"));
    };
    let (request, client) = pending(&state, &session, &q.request).await?;
    let mut conn = state.conn().await?;
    let question = authorize::consent_question(&mut conn, &client, &request, &signed)
        .await?
        .ok_or(PageError::StaleRequest)?;
    drop(conn);
    Ok(ConsentPage {
        csrf: csrf::for_session(&session).await?,
        request_id: request.id.clone(),
        client_origin: question.app.origin,
        client_name: question.app.name,
        username: question.username,
        scopes: question.scopes,
    }
    .into_response())
}

/// Fields of the consent form.
#[derive(Deserialize)]
pub struct ConsentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    request: String,
    #[serde(default)]
    decision: String,
}

/// `POST /consent`: Allow issues the code, Deny answers `access_denied`.
#[tracing::instrument(skip_all)]
pub async fn submit_consent(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PageForm(form): PageForm<ConsentForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let Some(signed) = session.signed_in().await? else {
        return Ok(see_other("/signin"));
    };
    let (request, client) = pending(&state, &session, &form.request).await?;
    let now = state.clock.now();
    if form.decision != "allow" {
        session
            .remove_pending::<AuthorizationRequest>(&request.id)
            .await?;
        return Ok(error_redirect(
            &state,
            &request.redirect_uri,
            OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
            request.state.as_deref(),
        ));
    }
    let request = request.consent_given();
    let mut conn = state.conn().await?;
    let by_ip = Some(ip.into());
    let with = (&client, state.config.passwords.mfa);
    let outcome =
        authorize::consent_and_proceed(&mut conn, with, &request, &signed, by_ip, now).await?;
    drop(conn);
    let visitor = Visitor {
        session: &session,
        headers: &headers,
    };
    answer(&state, visitor, &client, request, outcome).await
}
