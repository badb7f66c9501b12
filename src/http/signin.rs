//! The hosted sign-in page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::IpAddr;

use tower_sessions::cookie::SameSite;

use crate::app::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::cookies::{cookie_value, set_cookie};
use crate::http::page::{PageError, PageForm, see_other, wait_in_words, with_retry_after};
use crate::http::{csrf, passkeys, second_factor};
use crate::oauth::sign_in::{Device, SignInError, extra_step, sign_in};
use crate::rate_limits::proof::{Challenge, Solution};
use crate::sessions::{AskingApp, BrowserSession};
use crate::tokens::opaque::TokenHash;
use crate::users::devices::DEVICE_TRUST_TTL;

/// The sign-in form.
#[derive(Template, WebTemplate)]
#[template(path = "signin.html")]
pub struct SignInPage {
    csrf: String,
    username: String,
    error: Option<String>,
    notice: Option<&'static str>,
    signup_enabled: bool,
    /// The app this sign-in is for, if one sent the person here.
    app: Option<AskingApp>,
    /// The proof of work asked of this browser, while its address is over the sign-in limit.
    proof: Option<Challenge>,
    /// "Username", "Email" or "Username or email".
    name_label: &'static str,
    /// The passkey sign-in's options (JSON), when the server can have passkeys.
    passkey_options: Option<String>,
}

/// What a sign-in page says besides its form.
struct Shown {
    username: String,
    error: Option<String>,
    notice: Option<&'static str>,
    proof: Option<Challenge>,
    status: StatusCode,
}

/// The sign-in page: its form, the app asking, and the passkey sign-in (its sealed challenge set
/// as a cookie); CSRF for a visitor or the session.
async fn page(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    shown: Shown,
) -> Result<Response, PageError> {
    let now = state.clock.now();
    let csrf = csrf::for_visitor(state, session, headers).await?;
    let offer = passkeys::sign_in_offer(state, now);
    let page = SignInPage {
        csrf: csrf.token.clone(),
        username: shown.username,
        error: shown.error,
        notice: shown.notice,
        signup_enabled: state.config.server.signup_enabled,
        app: state.pending.asking_app(session, headers, now).await?,
        proof: shown.proof,
        name_label: state.config.passwords.sign_in_identifier.label(),
        passkey_options: offer.as_ref().map(|(options, _)| options.clone()),
    };
    let mut response = csrf.attach((shown.status, page).into_response());
    if let Some((_, cookie)) = offer {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The sign-in page again with `message` (a passkey that did not sign anyone in).
pub async fn with_error(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    (ip, message): (IpAddr, String),
) -> Result<Response, PageError> {
    let now = state.clock.now();
    let shown = Shown {
        username: String::new(),
        error: Some(message),
        notice: None,
        proof: extra_step(&state.limits, &state.proofs, ip, now),
        status: StatusCode::UNAUTHORIZED,
    };
    page(state, session, headers, shown).await
}

/// Query of `GET /signin`: only flags that choose a notice; nothing here is ever a destination.
#[derive(Deserialize)]
pub struct SignInQuery {
    signed_out: Option<String>,
    reset: Option<String>,
    deleted: Option<String>,
}

/// Fields of the sign-in form.
#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// The challenge the page was given, when it was asked for a proof of work.
    #[serde(default)]
    proof_challenge: String,
    /// The page's solution to it.
    #[serde(default)]
    proof: String,
}

/// `GET /signin`: the form, or straight on if already signed in.
#[tracing::instrument(skip_all)]
pub async fn get_signin(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    Query(query): Query<SignInQuery>,
) -> Result<Response, PageError> {
    let (reauth, login_hint) = session.sign_in_requirements().await?;
    let now = state.clock.now();
    // A visitor without a session brings its pending sign-in in a cookie.
    let visitor = state.pending.read(&headers, now);
    let login_hint = login_hint.or_else(|| visitor.as_ref().and_then(|p| p.login_hint.clone()));
    // An app asking for a fresh sign-in (prompt=login, max_age) gets the form even if signed in.
    if !reauth && session.signed_in().await?.is_some() {
        let to = session.take_return_to().await?;
        return Ok(see_other(to.as_deref().unwrap_or("/account")));
    }
    let notice = if query.deleted.is_some() {
        Some("Your account was deleted.")
    } else if query.reset.is_some() {
        Some("Your password was changed and every device was signed out. Sign in with the new one.")
    } else {
        query.signed_out.is_some().then_some("You have signed out.")
    };
    let shown = Shown {
        username: login_hint.unwrap_or_default(),
        error: None,
        notice,
        proof: extra_step(&state.limits, &state.proofs, client_ip, now),
        status: StatusCode::OK,
    };
    page(&state, &session, &headers, shown).await
}

/// `POST /signin`: checks the credentials and signs the browser in.
#[tracing::instrument(skip_all)]
pub async fn submit_signin(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    PageForm(form): PageForm<SignInForm>,
) -> Result<Response, PageError> {
    csrf::require_for_visitor(&state, &session, &headers, &form.csrf).await?;
    let device_cookie = state.cookies.device;
    let device = cookie_value(&headers, device_cookie).map(|v| TokenHash::of(&v));
    let now = state.clock.now();
    let proof = (!form.proof_challenge.is_empty()).then_some(Solution {
        challenge: &form.proof_challenge,
        counter: &form.proof,
    });
    let from = Device::Browser {
        device: device.as_ref(),
        proof,
    };
    let checks = state.sign_in_checks(client_ip);
    let result = sign_in(&checks, &form.username, &form.password, from, now).await;
    let signed_in = match result {
        Ok(s) => s,
        Err(e) => {
            let refused = Refused {
                username: form.username,
                ip: client_ip,
            };
            return signin_failed(&state, &session, &headers, refused, e).await;
        }
    };

    let user = &signed_in.user;
    let mut response =
        second_factor::after_password(&state, &session, &headers, (user, client_ip), now).await?;
    tracing::info!(user_id = %signed_in.user.id, "password accepted");
    if let Some(token) = signed_in.new_device_token
        && let Some(v) = set_cookie(
            device_cookie,
            token.expose(),
            DEVICE_TRUST_TTL,
            SameSite::Lax,
            state.cookies.secure,
        )
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// Who was refused: the name they typed and where they are.
struct Refused {
    username: String,
    ip: IpAddr,
}

async fn signin_failed(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    refused: Refused,
    error: SignInError,
) -> Result<Response, PageError> {
    let now = state.clock.now();
    // Asked again after any refusal: a wrong guess may be the one that reached the limit.
    let proof = extra_step(&state.limits, &state.proofs, refused.ip, now);
    let Some((status, message, retry_after)) = refusal(&error, proof.is_some()) else {
        return Err(error.into());
    };
    tracing::info!(reason = ?status, "sign-in refused");
    // The username is shown again (escaped by the template), the password never is.
    let shown = Shown {
        username: refused.username.chars().take(254).collect(),
        error: Some(message),
        notice: None,
        proof,
        status,
    };
    let page = page(state, session, headers, shown).await?;
    Ok(with_retry_after(page, retry_after))
}

/// What the page says to a refusal the person can act on: status, sentence, `Retry-After`
/// seconds. `None` for failures of ours (an error page).
fn refusal(error: &SignInError, proof_asked: bool) -> Option<(StatusCode, String, Option<i64>)> {
    let too_many = |retry_after: &time::Duration, message: &dyn Fn(&str) -> String| {
        let secs = retry_after.whole_seconds().max(1);
        let message = message(&wait_in_words(secs));
        Some((StatusCode::TOO_MANY_REQUESTS, message, Some(secs)))
    };
    match error {
        // A disabled account gets the wrong-password answer: a distinct one would confirm to
        // whoever typed it that the password is right. The audit trail records the difference.
        SignInError::WrongCredentials | SignInError::Disabled => Some((
            StatusCode::UNAUTHORIZED,
            SignInError::WrongCredentials.to_string(),
            None,
        )),
        SignInError::Locked { retry_after } => too_many(retry_after, &|wait| {
            format!("Too many failed attempts. Try again in {wait}.")
        }),
        // The way on is the proof of work, not the wait; without script only the wait is.
        SignInError::RateLimited { retry_after } if proof_asked => too_many(retry_after, &|_| {
            "Too many failed sign-ins from your network. Enter your password again: your \
             browser first solves a short puzzle that shows it is not an attack."
                .to_owned()
        }),
        SignInError::RateLimited { retry_after } => too_many(retry_after, &|wait| {
            format!("Too many failed sign-ins from your network. Try again in {wait}.")
        }),
        SignInError::Busy | SignInError::Db(_) | SignInError::Internal(_) => None,
    }
}
