//! The page that proves an email address: the code from the mail (whose link only fills it in:
//! mail scanners open links), and sending a new one.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::page::{PageError, PageForm, see_other, wait_in_words, with_retry_after};
use crate::http::{csrf, pending, second_factor};
use crate::oauth::verification::{self, VerifyError};
use crate::sessions::{BrowserSession, Proving};
use crate::users::User;

/// The code form.
#[derive(Template, WebTemplate)]
#[template(path = "verify_email.html")]
pub struct VerifyPage {
    csrf: String,
    email: String,
    code: String,
    error: Option<String>,
    notice: Option<&'static str>,
}

/// Query of `GET /verify-email`: the code from the mail's link, only to fill the form in.
#[derive(Deserialize)]
pub struct VerifyQuery {
    code: Option<String>,
}

/// Fields of the code form.
#[derive(Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// Fields of "send a new code".
#[derive(Deserialize)]
pub struct ResendForm {
    #[serde(default)]
    csrf: String,
}

/// Once every factor a sign-in needs is proven: signed in and on, or, when the policy wants
/// the address verified first, a code sent (unless one is live) and the code page (the person
/// stays part-way signed in: [`Proving`], under a new session id when `fresh`).
pub async fn sign_in_or_verify_first(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    (user, proving, ip): (&User, &Proving, std::net::IpAddr),
    fresh: bool,
    now: time::OffsetDateTime,
) -> Result<Response, PageError> {
    if !state.config.mail.verification.must_verify(user) {
        let who = ((user.id, user.credential_version), ip);
        let methods = &proving.methods;
        return pending::sign_in_and_continue(state, session, headers, who, methods, now).await;
    }
    session.put_proving(proving, fresh).await?;
    verification::ensure_code_sent(&state.db, state.account_mail(), user, now).await?;
    Ok(see_other("/verify-email"))
}

/// `GET /verify-email`.
#[tracing::instrument(skip_all)]
pub async fn get_verify(
    State(state): State<AppState>,
    session: BrowserSession,
    Query(query): Query<VerifyQuery>,
) -> Result<Response, PageError> {
    let Some((user, _)) = whose(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    if user.email.is_none() || user.email_verified() {
        return Ok(see_other("/account"));
    }
    let code = verification::prefill(query.code.as_deref().unwrap_or_default());
    render(&session, &user, code, None, None, StatusCode::OK).await
}

/// `POST /verify-email`: spends the code; a sign-in that waited for it goes on.
#[tracing::instrument(skip_all)]
pub async fn submit_verify(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PageForm(form): PageForm<VerifyForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let Some((user, waiting)) = whose(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let now = state.clock.now();
    match verification::confirm(&state.db, &state.codes, (user.id, ip), &form.code, now).await {
        // On with the sign-in that waited: whatever else it needs is checked again there.
        Ok(user) if waiting => {
            let Some(proving) = session.proving().await? else {
                return Ok(see_other("/signin"));
            };
            second_factor::continue_sign_in(&state, &session, &headers, (&user, proving, ip), now)
                .await
        }
        Ok(_) | Err(VerifyError::NothingToVerify) => Ok(see_other("/account")),
        Err(e) => refused(&session, &user, verification::prefill(&form.code), e).await,
    }
}

/// `POST /verify-email/resend`.
#[tracing::instrument(skip_all)]
pub async fn resend(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    PageForm(form): PageForm<ResendForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let Some((user, _)) = whose(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let now = state.clock.now();
    let (mail, limits) = (state.account_mail(), &state.limits);
    match verification::resend(&state.db, mail, limits, (user.id, ip), now).await {
        Ok(()) => {
            let sent = Some("We sent a new code. Codes sent before no longer work.");
            render(&session, &user, String::new(), None, sent, StatusCode::OK).await
        }
        Err(VerifyError::NothingToVerify) => Ok(see_other("/account")),
        Err(e) => refused(&session, &user, String::new(), e).await,
    }
}

async fn whose(
    state: &AppState,
    session: &BrowserSession,
) -> Result<Option<(User, bool)>, PageError> {
    let signed_in = session.signed_in().await?.map(|s| s.user_id);
    let waiting = session
        .proving()
        .await?
        .map(|p| (p.user_id, p.credential_version));
    Ok(verification::whose(&state.db, signed_in, waiting).await?)
}

/// The form again with the refusal in words.
async fn refused(
    session: &BrowserSession,
    user: &User,
    code: String,
    error: VerifyError,
) -> Result<Response, PageError> {
    let (status, message, retry_after) = match error {
        VerifyError::Code(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string(), None),
        VerifyError::Taken => (StatusCode::CONFLICT, VerifyError::Taken.to_string(), None),
        VerifyError::RateLimited { retry_after } => {
            let secs = retry_after.whole_seconds().max(1);
            let message = format!(
                "You asked for several codes already. Try again in {}.",
                wait_in_words(secs)
            );
            (StatusCode::TOO_MANY_REQUESTS, message, Some(secs))
        }
        VerifyError::NothingToVerify => return Ok(see_other("/account")),
        VerifyError::Db(e) => return Err(e.into()),
    };
    let page = render(session, user, code, Some(message), None, status).await?;
    Ok(with_retry_after(page, retry_after))
}

async fn render(
    session: &BrowserSession,
    user: &User,
    code: String,
    error: Option<String>,
    notice: Option<&'static str>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let page = VerifyPage {
        csrf: csrf::for_session(session).await?,
        email: user.email.clone().unwrap_or_default(),
        code,
        error,
        notice,
    };
    Ok((status, page).into_response())
}
