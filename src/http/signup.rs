//! The hosted sign-up page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::page::{PageError, PageForm, see_other, wait_in_words, with_retry_after};
use crate::http::{csrf, second_factor};
use crate::oauth::sign_up::{Application, SignUpError, sign_up};
use crate::sessions::{AskingApp, BrowserSession};

/// The sign-up form.
#[derive(Template, WebTemplate)]
#[template(path = "signup.html")]
pub struct SignUpPage {
    csrf: String,
    username: String,
    email: String,
    error: Option<FormError>,
    /// The app this sign-up is for, if one sent the person here.
    app: Option<AskingApp>,
    /// Whether an address is needed (`KEYWARD_EMAIL_VERIFICATION=required`).
    email_required: bool,
}

/// A refusal in words, tied to the field it is about (WCAG 3.3.1: `aria-invalid` and
/// `aria-describedby` point the field at its message), or to the whole form.
pub struct FormError {
    /// `username`, `email`, `password`, `password_confirm`, or `None` for the whole form.
    field: Option<&'static str>,
    message: String,
}

impl FormError {
    fn on(field: &'static str, message: &impl ToString) -> Self {
        Self {
            field: Some(field),
            message: message.to_string(),
        }
    }

    fn form(message: String) -> Self {
        Self {
            field: None,
            message,
        }
    }

    fn is_on(&self, field: &str) -> bool {
        self.field == Some(field)
    }
}

/// What the template asks of the error for each field.
impl SignUpPage {
    /// The message for `field`, shown under it.
    fn error_on(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|e| e.is_on(field))
            .map(|e| e.message.as_str())
    }

    /// The message for the whole form, shown above it.
    fn form_error(&self) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|e| e.field.is_none())
            .map(|e| e.message.as_str())
    }

    /// `aria-describedby` of `field`: its error (if any), then its hint (if any).
    fn described_by(&self, field: &str, hint: &str) -> String {
        let error = self.error_on(field).map(|_| format!("{field}-error"));
        error
            .into_iter()
            .chain((!hint.is_empty()).then(|| hint.to_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Fields of the sign-up form.
#[derive(Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

/// `GET /signup`.
#[tracing::instrument(skip_all)]
pub async fn get_signup(
    State(state): State<AppState>,
    session: BrowserSession,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if !state.config.server.signup_enabled {
        return Err(PageError::SignupDisabled);
    }
    if session.signed_in().await?.is_some() {
        return Ok(see_other("/account"));
    }
    let csrf = csrf::for_visitor(&state, &session, &headers).await?;
    let page = SignUpPage {
        csrf: csrf.token.clone(),
        username: String::new(),
        email: String::new(),
        error: None,
        email_required: state.config.mail.verification
            == crate::oauth::verification::Policy::Required,
        app: state
            .pending
            .asking_app(&session, &headers, state.clock.now())
            .await?,
    };
    Ok(csrf.attach(page.into_response()))
}

/// `POST /signup`: creates the account and signs it in.
#[tracing::instrument(skip_all)]
pub async fn submit_signup(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PageForm(form): PageForm<SignUpForm>,
) -> Result<Response, PageError> {
    if !state.config.server.signup_enabled {
        return Err(PageError::SignupDisabled);
    }
    csrf::require_for_visitor(&state, &session, &headers, &form.csrf).await?;
    let application = Application {
        username: &form.username,
        email: &form.email,
        password: &form.password,
        password_confirm: &form.password_confirm,
    };
    let now = state.clock.now();
    let user = match sign_up(&state.sign_up_context(), &application, ip, now).await {
        Ok(user) => user,
        Err(refusal) => return refused(&state, &session, &headers, &form, refusal).await,
    };
    tracing::info!(user_id = %user.id, "user signed up");
    second_factor::after_password(&state, &session, &headers, (&user, ip), now).await
}

/// The form again, with what was typed (never the password) and the refusal in words.
async fn refused(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    form: &SignUpForm,
    refusal: SignUpError,
) -> Result<Response, PageError> {
    let (status, error, retry_after) = match refusal {
        SignUpError::Invalid { field, message } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            FormError::on(field.name(), &message),
            None,
        ),
        SignUpError::Taken { field, message } => (
            StatusCode::CONFLICT,
            FormError::on(field.name(), &message),
            None,
        ),
        SignUpError::RateLimited { retry_after } => {
            let secs = retry_after.whole_seconds().max(1);
            let message = format!(
                "Too many new accounts from your network. Try again in {}.",
                wait_in_words(secs)
            );
            (
                StatusCode::TOO_MANY_REQUESTS,
                FormError::form(message),
                Some(secs),
            )
        }
        SignUpError::Hash(e) => return Err(e.into()),
        SignUpError::Db(e) => return Err(e.into()),
    };
    let csrf = csrf::for_visitor(state, session, headers).await?;
    let page = SignUpPage {
        csrf: csrf.token.clone(),
        username: form.username.chars().take(64).collect(),
        email: form.email.chars().take(254).collect(),
        error: Some(error),
        email_required: state.config.mail.verification
            == crate::oauth::verification::Policy::Required,
        app: state
            .pending
            .asking_app(session, headers, state.clock.now())
            .await?,
    };
    Ok(with_retry_after(
        csrf.attach((status, page).into_response()),
        retry_after,
    ))
}
