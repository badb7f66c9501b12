//! What every hosted HTML page shares: the error page, form and session extraction, redirects.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use tower_sessions::Session;

use crate::error::{AppError, Failure};
use crate::sessions::{BrowserSession, SessionError};
use crate::users::password::HashError;

/// The error page.
#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// Heading.
    pub title: &'static str,
    /// One or two sentences for the person reading.
    pub message: &'static str,
    /// Where the link leads.
    pub link_href: &'static str,
    /// The link's text.
    pub link_text: &'static str,
}

/// A failure on an HTML page, shown as a page that says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The form's CSRF token is missing, wrong, or from a session that has ended.
    #[error("CSRF check failed")]
    Csrf,
    /// No such page.
    #[error("not found")]
    NotFound,
    /// Sign-up is switched off by configuration.
    #[error("sign-up disabled")]
    SignupDisabled,
    /// The form body could not be read.
    #[error("unreadable form")]
    BadForm,
    /// The body is larger than the form limit.
    #[error("form too large")]
    TooLarge,
    /// An authorization request that must not be redirected (RFC 6749 §4.1.2.1).
    #[error(transparent)]
    Authorize(#[from] crate::oauth::authorize::UnredirectableError),
    /// A sign-out request naming a return address that is not registered.
    #[error("unregistered post-logout redirect")]
    BadLogoutRedirect,
    /// A consent or resume link for a request this browser no longer has.
    #[error("no such pending request")]
    StaleRequest,
    /// Anything unexpected, including the database being down.
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<SessionError> for PageError {
    fn from(e: SessionError) -> Self {
        Self::App(e.into())
    }
}

impl From<HashError> for PageError {
    fn from(e: HashError) -> Self {
        Self::App(e.into())
    }
}

impl From<crate::db::DbError> for PageError {
    fn from(e: crate::db::DbError) -> Self {
        Self::App(e.into())
    }
}

impl From<diesel::result::Error> for PageError {
    fn from(e: diesel::result::Error) -> Self {
        Self::App(e.into())
    }
}

impl From<crate::oauth::sign_in::SignInError> for PageError {
    /// Only the failures that are not the person's own mistake reach here as errors.
    fn from(e: crate::oauth::sign_in::SignInError) -> Self {
        Self::App(AppError::from_sign_in(e).unwrap_or_else(|| {
            // Shown on the form by the handler; as an error they would be a bug.
            AppError::Internal(anyhow::anyhow!("sign-in refusal used as an error"))
        }))
    }
}

// The words of each error page, in one place.
const CSRF: ErrorPage = page(
    "This form has expired",
    "For your security, forms stop working after a while or after you sign in or out elsewhere. Go back, reload the page and try again.",
    BACK_TO_SIGN_IN,
);
const NOT_FOUND: ErrorPage = page(
    "Page not found",
    "There is nothing at this address.",
    TO_ACCOUNT,
);
const SIGNUP_DISABLED: ErrorPage = page(
    "Sign-up is closed",
    "New accounts are created by an administrator here. If you already have one, sign in.",
    ("/signin", "Sign in"),
);
const AUTHORIZE_UNKNOWN_CLIENT: ErrorPage = page(
    "This sign-in link is not valid",
    "The application that sent you here is not registered with this sign-in service. Go back to the application and try again, or contact its developers.",
    TO_ACCOUNT,
);
const AUTHORIZE_BAD_REDIRECT_URI: ErrorPage = page(
    "This sign-in link is not valid",
    "The application sent you here with a return address it has not registered, so you are not sent anywhere. Contact the application's developers.",
    TO_ACCOUNT,
);
const BAD_LOGOUT_REDIRECT: ErrorPage = page(
    "This sign-out link is not valid",
    "The application asked to send you to an address it has not registered, so you are not sent anywhere.",
    TO_ACCOUNT,
);
const STALE_REQUEST: ErrorPage = page(
    "This request has expired",
    "The sign-in request you were answering is no longer open in this browser. Go back to the application and start again.",
    TO_ACCOUNT,
);
const BAD_FORM: ErrorPage = page(
    "The form could not be read",
    "Something went wrong sending the form. Reload the page and try again.",
    BACK_TO_SIGN_IN,
);
const TOO_LARGE: ErrorPage = page(
    "That was too much text",
    "The form you sent is larger than any real sign-in needs. Shorten what you typed and try again.",
    BACK_TO_SIGN_IN,
);

/// The page for a failure that is nobody's mistake on the page.
fn failure_page(failure: Failure) -> ErrorPage {
    match failure {
        Failure::Unavailable => page(
            "Temporarily unavailable",
            "Keyward cannot reach its database right now. Nothing you did caused this; try again in a minute.",
            TRY_AGAIN,
        ),
        Failure::Busy => page(
            "Busy right now",
            "Many people are signing in at this moment. Wait a few seconds and try again.",
            TRY_AGAIN,
        ),
        Failure::Internal => page(
            "Something went wrong",
            "An unexpected error stopped this page. It has been logged; try again in a moment.",
            BACK_TO_SIGN_IN,
        ),
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        use crate::oauth::authorize::UnredirectableError;
        let (status, page) = match self {
            Self::Csrf => (StatusCode::FORBIDDEN, CSRF),
            Self::NotFound => (StatusCode::NOT_FOUND, NOT_FOUND),
            Self::SignupDisabled => (StatusCode::NOT_FOUND, SIGNUP_DISABLED),
            Self::Authorize(UnredirectableError::UnknownClient) => {
                (StatusCode::BAD_REQUEST, AUTHORIZE_UNKNOWN_CLIENT)
            }
            Self::Authorize(UnredirectableError::BadRedirectUri) => {
                (StatusCode::BAD_REQUEST, AUTHORIZE_BAD_REDIRECT_URI)
            }
            Self::BadLogoutRedirect => (StatusCode::BAD_REQUEST, BAD_LOGOUT_REDIRECT),
            Self::StaleRequest => (StatusCode::BAD_REQUEST, STALE_REQUEST),
            Self::BadForm => (StatusCode::BAD_REQUEST, BAD_FORM),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE),
            Self::App(e) => {
                let page = failure_page(e.failure());
                return e.respond(page);
            }
        };
        (status, page).into_response()
    }
}

/// Where an error page's one link leads, and its words.
type Link = (&'static str, &'static str);
const BACK_TO_SIGN_IN: Link = ("/signin", "Back to sign in");
const TO_ACCOUNT: Link = ("/account", "Go to your account");
const TRY_AGAIN: Link = ("/signin", "Try again");

const fn page(
    title: &'static str,
    message: &'static str,
    (link_href, link_text): Link,
) -> ErrorPage {
    ErrorPage {
        title,
        message,
        link_href,
        link_text,
    }
}

/// Any path that matches no route.
pub async fn not_found() -> PageError {
    PageError::NotFound
}

/// The browser's session, as an extractor: tower-sessions' `Session`, typed.
impl<S: Send + Sync> FromRequestParts<S> for BrowserSession {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Session::from_request_parts(parts, state).await {
            Ok(session) => Ok(Self::from(session)),
            // Only without the session layer, which every route has: a bug, not the visitor's.
            Err((_, why)) => Err(PageError::App(AppError::Internal(anyhow::anyhow!(why)))),
        }
    }
}

/// `axum::Form`, with its rejections shown as pages instead of plain-text statuses.
pub struct PageForm<T>(pub T);

impl<S, T> FromRequest<S> for PageForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Self(v)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(PageError::TooLarge)
            }
            Err(_) => Err(PageError::BadForm),
        }
    }
}

/// "a minute", "3 minutes": how long to wait, rounded up to whole minutes, for a page to say.
#[must_use]
pub fn wait_in_words(secs: i64) -> String {
    let minutes = (secs + 59) / 60;
    if minutes <= 1 {
        "a minute".to_owned()
    } else {
        format!("{minutes} minutes")
    }
}

/// `response` with `Retry-After: secs` (RFC 9110 §10.2.3), when there is a wait to announce.
#[must_use]
pub fn with_retry_after(mut response: Response, secs: Option<i64>) -> Response {
    if let Some(secs) = secs
        && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
    {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    response
}

/// A 303 See Other, the answer to a successful POST (RFC 9110 §15.4.4).
#[must_use]
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}
