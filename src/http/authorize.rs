//! `/authorize` (RFC 6749 §4.1, OIDC Core §3.1.2) and the consent page.

use std::net::IpAddr;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_sessions::Session;

use crate::app::AppState;
use crate::audit::Actor;
use crate::clients::{self, Client};
use crate::crypto::random_bytes;
use crate::db;
use crate::http::client_ip::ClientIp;
use crate::http::page::{PageError, PageForm, csrf_for_form, require_csrf, see_other};
use crate::oauth::authorize::{self, AuthorizationRequest, Next, redirect_with};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::rate_limits::{Key, Limit};
use crate::scope;
use crate::sessions::{self, AskingApp, SignedInSession};
use crate::tokens::codes;
use crate::users;
use crate::users::consents;

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
    session: Session,
    ClientIp(ip): ClientIp,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let visitor = Visitor {
        session: &session,
        ip,
    };
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    start(&state, visitor, &params).await
}

/// `POST /authorize` (form-encoded, OIDC Core §3.1.2.1).
#[tracing::instrument(skip_all)]
pub async fn post_authorize(
    State(state): State<AppState>,
    session: Session,
    ClientIp(ip): ClientIp,
    PageForm(pairs): PageForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let visitor = Visitor {
        session: &session,
        ip,
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

/// The browser asking: its session, and its address (new sessions are counted per address).
#[derive(Clone, Copy)]
struct Visitor<'a> {
    session: &'a Session,
    ip: IpAddr,
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
    match authorize::validate(params, &client, redirect_uri, id) {
        Ok(request) => proceed(state, visitor, &client, request).await,
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
    let session = visitor.session;
    let now = state.clock.now();
    let redirect_error = |code, description| {
        Ok(error_redirect(
            state,
            &request.redirect_uri,
            OAuthError::new(code, description),
            request.state.as_deref(),
        ))
    };
    let mut conn = state.conn().await?;
    let signed = signed_in_active(&mut conn, session).await?;
    let consent = match &signed {
        Some(s) if client.needs_consent() => {
            consents::find(&mut conn, s.user_id, &client.id).await?
        }
        _ => None,
    };
    let decision = authorize::decide(
        &request,
        client.needs_consent(),
        signed.as_ref().map(|s| s.auth_time),
        consent.as_ref(),
        now,
    );
    match (decision, signed) {
        (Next::IssueCode, Some(signed)) => {
            let scopes = request.scopes();
            let new = request.new_code(signed.user_id, signed.auth_time, &signed.sid, &scopes);
            let code = codes::insert(&mut conn, &new, now).await?;
            drop(conn);
            sessions::remove_pending::<AuthorizationRequest>(session, &request.id).await?;
            Ok(success_redirect(state, &request, code.expose()))
        }
        (Next::LoginRequired, _) => {
            redirect_error(ErrorCode::LoginRequired, "the user is not signed in")
        }
        (Next::ConsentRequired, _) => {
            redirect_error(ErrorCode::ConsentRequired, "the user has not consented")
        }
        (Next::Consent, _) => {
            drop(conn);
            sessions::put_pending(session, &request).await?;
            Ok(see_other(&format!("/consent?request={}", request.id)))
        }
        (Next::SignIn | Next::IssueCode, _) => {
            drop(conn);
            send_to_sign_in(state, visitor, client, &request).await
        }
    }
}

/// The session's sign-in, if its user still exists and is not disabled.
async fn signed_in_active(
    conn: &mut db::PooledConn,
    session: &Session,
) -> Result<Option<SignedInSession>, PageError> {
    let Some(signed) = sessions::signed_in(session).await? else {
        return Ok(None);
    };
    let active = users::find(conn, signed.user_id)
        .await?
        .is_some_and(|u| !u.is_disabled());
    Ok(active.then_some(signed))
}

/// The app and where it returns the person, as the hosted pages name it.
fn asking_app(client_name: &str, redirect_uri: &str) -> AskingApp {
    AskingApp {
        name: client_name.to_owned(),
        origin: url::Url::parse(redirect_uri)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default(),
    }
}

/// Keeps the request and sends the person to the sign-in page, which comes back to resume it.
///
/// A browser without a session gets one here, its first state worth keeping: such new sessions
/// are counted per address (`KEYWARD_LIMIT_PENDING_PER_IP`), so one client cannot fill the table.
async fn send_to_sign_in(
    state: &AppState,
    visitor: Visitor<'_>,
    client: &Client,
    request: &AuthorizationRequest,
) -> Result<Response, PageError> {
    let session = visitor.session;
    if session.id().is_none() {
        let now = state.clock.now();
        let mut conn = state.conn().await?;
        let key = Key::ip(visitor.ip);
        if let Err(blocked) = state
            .limits
            .take(&mut conn, Limit::PendingPerIp, &key, now)
            .await?
        {
            return Err(PageError::TooManyPending {
                retry_after: blocked.retry_after,
            });
        }
    }
    sessions::put_pending(session, request).await?;
    sessions::set_asking_app(session, &asking_app(&client.name, &request.redirect_uri)).await?;
    let reauth = request.prompt.login || request.max_age.is_some();
    sessions::require_sign_in(session, request.login_hint.as_deref(), reauth).await?;
    sessions::set_return_to(
        session,
        &format!("/authorize/resume?request={}", request.id),
    )
    .await?;
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
    session: &Session,
    id: &str,
) -> Result<(AuthorizationRequest, Client), PageError> {
    let request: AuthorizationRequest = sessions::find_pending(session, id)
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
    session: Session,
    ClientIp(ip): ClientIp,
    Query(q): Query<RequestQuery>,
) -> Result<Response, PageError> {
    let (request, client) = pending(&state, &session, &q.request).await?;
    // Signing in again does not satisfy prompt=login forever: only once, for this request.
    let request = AuthorizationRequest {
        prompt: authorize::Prompt {
            login: false,
            ..request.prompt
        },
        ..request
    };
    let visitor = Visitor {
        session: &session,
        ip,
    };
    proceed(&state, visitor, &client, request).await
}

/// `GET /consent`.
#[tracing::instrument(skip_all)]
pub async fn get_consent(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<RequestQuery>,
) -> Result<Response, PageError> {
    let Some(signed) = sessions::signed_in(&session).await? else {
        return Ok(see_other("/signin"));
    };
    let (request, client) = pending(&state, &session, &q.request).await?;
    let mut conn = state.conn().await?;
    let user = users::find(&mut conn, signed.user_id)
        .await?
        .ok_or(PageError::StaleRequest)?;
    drop(conn);
    Ok(ConsentPage {
        csrf: csrf_for_form(&session).await?,
        request_id: request.id.clone(),
        client_origin: asking_app(&client.name, &request.redirect_uri).origin,
        client_name: client.name,
        username: user.username,
        scopes: request.scopes().iter().map(scope::describe).collect(),
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
    session: Session,
    ClientIp(ip): ClientIp,
    PageForm(form): PageForm<ConsentForm>,
) -> Result<Response, PageError> {
    require_csrf(&session, &form.csrf).await?;
    let Some(signed) = sessions::signed_in(&session).await? else {
        return Ok(see_other("/signin"));
    };
    let (request, client) = pending(&state, &session, &form.request).await?;
    let now = state.clock.now();
    if form.decision != "allow" {
        sessions::remove_pending::<AuthorizationRequest>(&session, &request.id).await?;
        return Ok(error_redirect(
            &state,
            &request.redirect_uri,
            OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
            request.state.as_deref(),
        ));
    }
    let mut conn = state.conn().await?;
    let by = Actor::user(signed.user_id, Some(ip.into()));
    let scopes = request.scopes();
    consents::grant(&mut conn, signed.user_id, &client.id, &scopes, &by, now).await?;
    drop(conn);
    // Consent was just given: prompt=consent is satisfied.
    let request = AuthorizationRequest {
        prompt: authorize::Prompt {
            consent: false,
            ..request.prompt
        },
        ..request
    };
    let visitor = Visitor {
        session: &session,
        ip,
    };
    proceed(&state, visitor, &client, request).await
}
