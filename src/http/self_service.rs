//! The account page's own changes: password, email address, and deleting the account; each a
//! form for the signed-in person.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::csrf;
use crate::http::page::{PageError, PageForm, see_other, wait_in_words, with_retry_after};
use crate::oauth::account;
use crate::oauth::self_service::{self, ChangeError};
use crate::sessions::{BrowserSession, SignedInSession};
use crate::users::User;

/// The password form.
#[derive(Template, WebTemplate)]
#[template(path = "account_password.html")]
pub struct PasswordPage {
    csrf: String,
    error: Option<String>,
}

/// The new-address form.
#[derive(Template, WebTemplate)]
#[template(path = "account_email.html")]
pub struct EmailPage {
    csrf: String,
    current: Option<String>,
    email: String,
    error: Option<String>,
}

/// The code form of an address change.
#[derive(Template, WebTemplate)]
#[template(path = "account_email_confirm.html")]
pub struct EmailConfirmPage {
    csrf: String,
    error: Option<String>,
}

/// The deletion form.
#[derive(Template, WebTemplate)]
#[template(path = "account_delete.html")]
pub struct DeletePage {
    csrf: String,
    username: String,
    error: Option<String>,
}

/// Fields of the password form.
#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

/// Fields of the new-address form.
#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    current: String,
}

/// Fields of the code form.
#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// Fields of the deletion form.
#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
}

/// The signed-in person as they are now; `None` sends the browser to sign in.
/// The signed-in person as they are now (`None`: nobody, or disabled or deleted since).
pub(crate) async fn signed_in(
    state: &AppState,
    session: &BrowserSession,
) -> Result<Option<(SignedInSession, User)>, PageError> {
    let Some(signed) = session.signed_in().await? else {
        return Ok(None);
    };
    let mut conn = state.conn().await?;
    Ok(account::current_user(&mut conn, &signed)
        .await?
        .map(|user| (signed, user)))
}

/// A refusal in words, its status and `Retry-After`; failures of ours are errors.
fn refusal(error: ChangeError) -> Result<(StatusCode, String, Option<i64>), PageError> {
    match error {
        ChangeError::WrongPassword => Ok((StatusCode::UNAUTHORIZED, error.to_string(), None)),
        ChangeError::TooManyAttempts { retry_after } => {
            let secs = retry_after.whole_seconds().max(1);
            let message = format!(
                "Too many failed attempts. Try again in {}.",
                wait_in_words(secs)
            );
            Ok((StatusCode::TOO_MANY_REQUESTS, message, Some(secs)))
        }
        ChangeError::Invalid(_) | ChangeError::Code(_) => {
            Ok((StatusCode::UNPROCESSABLE_ENTITY, error.to_string(), None))
        }
        ChangeError::Taken => Ok((StatusCode::CONFLICT, error.to_string(), None)),
        // Disabled or deleted between loading the page and sending it.
        ChangeError::Gone => Ok((
            StatusCode::GONE,
            "This account can no longer be changed.".to_owned(),
            None,
        )),
        ChangeError::Hash(e) => Err(e.into()),
        ChangeError::Db(e) => Err(e.into()),
    }
}

/// The form again, built by `page` from a fresh CSRF token and the refusal in words, with the
/// refusal's status and `Retry-After`.
async fn refused<P: IntoResponse>(
    session: &BrowserSession,
    error: ChangeError,
    page: impl FnOnce(String, String) -> P,
) -> Result<Response, PageError> {
    let (status, message, retry_after) = refusal(error)?;
    let csrf = csrf::for_session(session).await?;
    let response = (status, page(csrf, message)).into_response();
    Ok(with_retry_after(response, retry_after))
}

/// `GET /account/password`.
#[tracing::instrument(skip_all)]
pub async fn get_password(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, PageError> {
    if signed_in(&state, &session).await?.is_none() {
        return Ok(see_other("/signin"));
    }
    let csrf = csrf::for_session(&session).await?;
    Ok(PasswordPage { csrf, error: None }.into_response())
}

/// `POST /account/password`: every other browser and app is signed out; this one stays, under a
/// new session id.
#[tracing::instrument(skip_all)]
pub async fn submit_password(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    headers: axum::http::HeaderMap,
    PageForm(form): PageForm<PasswordForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let Some((signed, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let now = state.clock.now();
    let with = (&state.sign_in_checks(ip), state.account_mail());
    let passwords = (
        form.current.as_str(),
        form.password.as_str(),
        form.password_confirm.as_str(),
    );
    match self_service::change_password(with, user.id, passwords, now).await {
        Ok(user) => {
            let from = crate::http::pending::seen_from(&headers, ip);
            let who = (user.id, user.credential_version);
            // The password was proven again; the factors proven at sign-in still hold.
            session.sign_in(who, &signed.methods, &from, now).await?;
            Ok(see_other("/account?changed=password"))
        }
        Err(e) => {
            refused(&session, e, |csrf, message| PasswordPage {
                csrf,
                error: Some(message),
            })
            .await
        }
    }
}

/// `GET /account/email`.
#[tracing::instrument(skip_all)]
pub async fn get_email(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, PageError> {
    let Some((_, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let page = EmailPage {
        csrf: csrf::for_session(&session).await?,
        current: user.email,
        email: String::new(),
        error: None,
    };
    Ok(page.into_response())
}

/// `POST /account/email`: a code to the new address, a notice to the old one.
#[tracing::instrument(skip_all)]
pub async fn submit_email(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    PageForm(form): PageForm<EmailForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let Some((_, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let now = state.clock.now();
    let with = (&state.sign_in_checks(ip), state.account_mail());
    let asked = (form.email.as_str(), form.current.as_str());
    match self_service::request_email_change(with, user.id, asked, now).await {
        Ok(()) => Ok(see_other("/account/email/confirm")),
        Err(e) => {
            let email = form.email.chars().take(254).collect();
            refused(&session, e, |csrf, message| EmailPage {
                csrf,
                current: user.email,
                email,
                error: Some(message),
            })
            .await
        }
    }
}

/// `GET /account/email/confirm`.
#[tracing::instrument(skip_all)]
pub async fn get_email_confirm(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, PageError> {
    if signed_in(&state, &session).await?.is_none() {
        return Ok(see_other("/signin"));
    }
    let csrf = csrf::for_session(&session).await?;
    Ok(EmailConfirmPage { csrf, error: None }.into_response())
}

/// `POST /account/email/confirm`: the account takes the new address.
#[tracing::instrument(skip_all)]
pub async fn submit_email_confirm(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    PageForm(form): PageForm<CodeForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let Some((_, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let now = state.clock.now();
    let mail = state.account_mail();
    match self_service::confirm_email_change(&state.db, mail, (user.id, ip), &form.code, now).await
    {
        Ok(()) => Ok(see_other("/account?changed=email")),
        Err(e) => {
            refused(&session, e, |csrf, message| EmailConfirmPage {
                csrf,
                error: Some(message),
            })
            .await
        }
    }
}

/// `GET /account/delete`.
#[tracing::instrument(skip_all)]
pub async fn get_delete(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, PageError> {
    let Some((_, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let page = DeletePage {
        csrf: csrf::for_session(&session).await?,
        username: user.username,
        error: None,
    };
    Ok(page.into_response())
}

/// `POST /account/delete`: the account is gone, and this browser signed out.
#[tracing::instrument(skip_all)]
pub async fn submit_delete(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    PageForm(form): PageForm<DeleteForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let Some((_, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let now = state.clock.now();
    let checks = state.sign_in_checks(ip);
    match self_service::delete_own_account(&checks, user.id, &form.current, now).await {
        Ok(()) => {
            session.sign_out().await?;
            Ok(see_other("/signin?deleted=1"))
        }
        Err(e) => {
            refused(&session, e, |csrf, message| DeletePage {
                csrf,
                username: user.username,
                error: Some(message),
            })
            .await
        }
    }
}
