//! "Forgot your password?": the request page (one answer whatever was typed) and the page that
//! sets a new password with the mailed code (whose link only fills it in).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::csrf;
use crate::http::page::{PageError, PageForm, see_other, wait_in_words, with_retry_after};
use crate::oauth::recovery::{self, RecoveryError, RequestError, Reset};
use crate::oauth::verification::prefill;
use crate::sessions::BrowserSession;

/// The request form.
#[derive(Template, WebTemplate)]
#[template(path = "forgot_password.html")]
pub struct ForgotPage {
    csrf: String,
    identifier: String,
    error: Option<String>,
}

/// The new-password form.
#[derive(Template, WebTemplate)]
#[template(path = "reset_password.html")]
pub struct ResetPage {
    csrf: String,
    identifier: String,
    code: String,
    error: Option<String>,
    error_on_code: bool,
    error_on_password: bool,
}

/// Fields of the request form.
#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    identifier: String,
}

/// Query of `GET /reset-password`: what the mail's link fills in.
#[derive(Deserialize)]
pub struct ResetQuery {
    user: Option<String>,
    code: Option<String>,
}

/// Fields of the new-password form.
#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    identifier: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

/// `GET /forgot-password`.
#[tracing::instrument(skip_all)]
pub async fn get_forgot(
    State(state): State<AppState>,
    session: BrowserSession,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let csrf = csrf::for_visitor(&state, &session, &headers).await?;
    let page = ForgotPage {
        csrf: csrf.token.clone(),
        identifier: String::new(),
        error: None,
    };
    Ok(csrf.attach(page.into_response()))
}

/// `POST /forgot-password`: the same answer whether or not an account matches.
#[tracing::instrument(skip_all)]
pub async fn submit_forgot(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PageForm(form): PageForm<ForgotForm>,
) -> Result<Response, PageError> {
    csrf::require_for_visitor(&state, &session, &headers, &form.csrf).await?;
    let now = state.clock.now();
    let identifier: String = form.identifier.trim().chars().take(254).collect();
    match recovery::request(&state.db, &state.limits, &identifier, ip, now).await {
        Ok(()) => {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("user", &identifier)
                .finish();
            Ok(see_other(&format!("/reset-password?{query}")))
        }
        Err(RequestError::RateLimited { retry_after }) => {
            let secs = retry_after.whole_seconds().max(1);
            let error = format!(
                "Too many codes were asked for. Try again in {}.",
                wait_in_words(secs)
            );
            let csrf = csrf::for_visitor(&state, &session, &headers).await?;
            let page = ForgotPage {
                csrf: csrf.token.clone(),
                identifier,
                error: Some(error),
            };
            let response = csrf.attach((StatusCode::TOO_MANY_REQUESTS, page).into_response());
            Ok(with_retry_after(response, Some(secs)))
        }
        Err(RequestError::Db(e)) => Err(e.into()),
    }
}

/// `GET /reset-password`.
#[tracing::instrument(skip_all)]
pub async fn get_reset(
    State(state): State<AppState>,
    session: BrowserSession,
    headers: HeaderMap,
    Query(query): Query<ResetQuery>,
) -> Result<Response, PageError> {
    let identifier: String = query.user.unwrap_or_default().chars().take(254).collect();
    let code = prefill(query.code.as_deref().unwrap_or_default());
    render_reset(&state, &session, &headers, (identifier, code), None).await
}

/// `POST /reset-password`: a new password for the code; then the person signs in with it.
#[tracing::instrument(skip_all)]
pub async fn submit_reset(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PageForm(form): PageForm<ResetForm>,
) -> Result<Response, PageError> {
    csrf::require_for_visitor(&state, &session, &headers, &form.csrf).await?;
    let now = state.clock.now();
    let reset = Reset {
        identifier: &form.identifier,
        code: &form.code,
        password: &form.password,
        password_confirm: &form.password_confirm,
    };
    let with = (&state.db, &state.hasher, state.account_mail());
    match recovery::reset(with, &reset, ip, now).await {
        Ok(user) => {
            tracing::info!(user_id = %user.id, "password reset");
            // This browser may hold a session of the account: the cut-off ended it already.
            Ok(see_other("/signin?reset=1"))
        }
        Err(e @ (RecoveryError::Code(_) | RecoveryError::Password(_))) => {
            let identifier: String = form.identifier.chars().take(254).collect();
            let filled = (identifier, prefill(&form.code));
            render_reset(&state, &session, &headers, filled, Some(e)).await
        }
        Err(RecoveryError::Hash(e)) => Err(e.into()),
        Err(RecoveryError::Db(e)) => Err(e.into()),
    }
}

async fn render_reset(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    (identifier, code): (String, String),
    error: Option<RecoveryError>,
) -> Result<Response, PageError> {
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let csrf = csrf::for_visitor(state, session, headers).await?;
    let page = ResetPage {
        csrf: csrf.token.clone(),
        identifier,
        code,
        error_on_code: matches!(error, Some(RecoveryError::Code(_))),
        error_on_password: matches!(error, Some(RecoveryError::Password(_))),
        error: error.map(|e| e.to_string()),
    };
    Ok(csrf.attach((status, page).into_response()))
}
