//! What every hosted HTML page shares: the error page, form extraction, CSRF checks and cookies.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use tower_sessions::Session;

use crate::error::{AppError, Failure};
use crate::sessions::{self, SessionError};
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

impl From<crate::users::sign_in::SignInError> for PageError {
    /// Only the failures that are not the person's own mistake reach here as errors.
    fn from(e: crate::users::sign_in::SignInError) -> Self {
        Self::App(AppError::from_sign_in(e).unwrap_or_else(|| {
            // Shown on the form by the handler; as an error they would be a bug.
            AppError::Internal(anyhow::anyhow!("sign-in refusal used as an error"))
        }))
    }
}

/// The page for a failure that is nobody's mistake on the page.
fn failure_page(failure: Failure) -> ErrorPage {
    match failure {
        Failure::Unavailable => ErrorPage {
            title: "Temporarily unavailable",
            message: "Keyward cannot reach its database right now. Nothing you did caused this; try again in a minute.",
            link_href: "/signin",
            link_text: "Try again",
        },
        Failure::Busy => ErrorPage {
            title: "Busy right now",
            message: "Many people are signing in at this moment. Wait a few seconds and try again.",
            link_href: "/signin",
            link_text: "Try again",
        },
        Failure::Internal => ErrorPage {
            title: "Something went wrong",
            message: "An unexpected error stopped this page. It has been logged; try again in a moment.",
            link_href: "/signin",
            link_text: "Back to sign in",
        },
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, page) = match self {
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                ErrorPage {
                    title: "This form has expired",
                    message: "For your security, forms stop working after a while or after you sign in or out elsewhere. Go back, reload the page and try again.",
                    link_href: "/signin",
                    link_text: "Back to sign in",
                },
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                ErrorPage {
                    title: "Page not found",
                    message: "There is nothing at this address.",
                    link_href: "/account",
                    link_text: "Go to your account",
                },
            ),
            Self::SignupDisabled => (
                StatusCode::NOT_FOUND,
                ErrorPage {
                    title: "Sign-up is closed",
                    message: "New accounts are created by an administrator here. If you already have one, sign in.",
                    link_href: "/signin",
                    link_text: "Sign in",
                },
            ),
            Self::Authorize(e) => (
                StatusCode::BAD_REQUEST,
                ErrorPage {
                    title: "This sign-in link is not valid",
                    message: match e {
                        crate::oauth::authorize::UnredirectableError::UnknownClient => {
                            "The application that sent you here is not registered with this sign-in service. Go back to the application and try again, or contact its developers."
                        }
                        crate::oauth::authorize::UnredirectableError::BadRedirectUri => {
                            "The application sent you here with a return address it has not registered, so you are not sent anywhere. Contact the application's developers."
                        }
                    },
                    link_href: "/account",
                    link_text: "Go to your account",
                },
            ),
            Self::BadLogoutRedirect => (
                StatusCode::BAD_REQUEST,
                ErrorPage {
                    title: "This sign-out link is not valid",
                    message: "The application asked to send you to an address it has not registered, so you are not sent anywhere.",
                    link_href: "/account",
                    link_text: "Go to your account",
                },
            ),
            Self::StaleRequest => (
                StatusCode::BAD_REQUEST,
                ErrorPage {
                    title: "This request has expired",
                    message: "The sign-in request you were answering is no longer open in this browser. Go back to the application and start again.",
                    link_href: "/account",
                    link_text: "Go to your account",
                },
            ),
            Self::BadForm => (
                StatusCode::BAD_REQUEST,
                ErrorPage {
                    title: "The form could not be read",
                    message: "Something went wrong sending the form. Reload the page and try again.",
                    link_href: "/signin",
                    link_text: "Back to sign in",
                },
            ),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorPage {
                    title: "That was too much text",
                    message: "The form you sent is larger than any real sign-in needs. Shorten what you typed and try again.",
                    link_href: "/signin",
                    link_text: "Back to sign in",
                },
            ),
            Self::App(e) => {
                let page = failure_page(e.failure());
                return e.respond(page);
            }
        };
        (status, page).into_response()
    }
}

/// Any path that matches no route.
pub async fn not_found() -> PageError {
    PageError::NotFound
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

/// A form that carries nothing but its CSRF token (sign-out confirmations).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    /// The token.
    #[serde(default)]
    pub csrf: String,
}

/// Fails with [`PageError::Csrf`] unless `presented` is the session's CSRF token.
pub async fn require_csrf(session: &Session, presented: &str) -> Result<(), PageError> {
    if sessions::is_valid_csrf(session, presented).await? {
        Ok(())
    } else {
        Err(PageError::Csrf)
    }
}

/// The session's CSRF token, written to the store now so a database failure shows as a page.
pub async fn csrf_for_form(session: &Session) -> Result<String, PageError> {
    let token = sessions::csrf_token(session).await?;
    if session.is_modified() {
        session.save().await?;
    }
    Ok(token)
}

/// A 303 See Other, the answer to a successful POST (RFC 9110 §15.4.4).
#[must_use]
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Reads one cookie's value from the request headers.
#[must_use]
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// A `Set-Cookie` value for an HttpOnly, SameSite=Lax cookie on `/`.
#[must_use]
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age: time::Duration,
    secure: bool,
) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        max_age.whole_seconds()
    ))
    .ok()
}
