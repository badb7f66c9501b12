//! `/logout`: OpenID Connect RP-Initiated Logout 1.0, where an app sends a person to sign out of
//! Keyward. Not to be confused with `signout`, the hosted page a person uses themselves.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::clients;
use crate::http::csrf::{self, CsrfForm};
use crate::http::page::{PageError, PageForm, see_other};
use crate::oauth::account;
use crate::oauth::logout::{self, LogoutError, Understood};
use crate::oauth::params::Params;
use crate::sessions::{AskingApp, BrowserSession, PendingLogout};

/// The "sign out of Keyward?" page shown when the request cannot prove it comes from the app.
#[derive(Template, WebTemplate)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    csrf: String,
    username: String,
    /// The app that asked, when the request names a registered client.
    app: Option<AskingApp>,
}

impl From<LogoutError> for PageError {
    fn from(e: LogoutError) -> Self {
        match e {
            LogoutError::Bad(_) => Self::BadLogoutRedirect,
            LogoutError::Db(e) => e.into(),
        }
    }
}

fn where_to(pending: &PendingLogout) -> String {
    logout::destination(pending.redirect_uri.as_deref(), pending.state.as_deref())
}

async fn rp_logout(
    state: &AppState,
    session: &BrowserSession,
    params: &Params,
) -> Result<Response, PageError> {
    let issuer = state.config.server.issuer.as_str();
    let (keys, now) = (&state.keys.ring, state.clock.now());
    let Understood {
        request,
        client,
        redirect_uri,
    } = logout::understand(&state.db, keys, issuer, params, now).await?;
    let pending = PendingLogout {
        redirect_uri,
        state: request.state.clone(),
    };
    let Some(signed) = session.signed_in().await? else {
        return Ok(see_other(&where_to(&pending)));
    };
    let mut conn = state.conn().await?;
    let user = account::current_user(&mut conn, &signed).await?;
    drop(conn);
    if user
        .as_ref()
        .is_some_and(|u| request.is_confirmed_for(&u.sub()))
    {
        session.sign_out().await?;
        return Ok(see_other(&where_to(&pending)));
    }
    // Ask first, with a CSRF-protected POST.
    session.put_pending_logout(&pending).await?;
    let username = user.map(|u| u.username).unwrap_or_default();
    // Named only with a return address registered for it: anyone can write a link naming a
    // client, but this one sends the person back to that client's own page.
    let app = client
        .zip(pending.redirect_uri.as_deref())
        .map(|(c, uri)| AskingApp {
            origin: clients::origin_of_redirect_uri(uri).unwrap_or_default(),
            name: c.name,
        });
    Ok(LogoutPage {
        csrf: csrf::for_session(session).await?,
        username,
        app,
    }
    .into_response())
}

/// `GET /logout`.
#[tracing::instrument(skip_all)]
pub async fn get_rp_logout(
    State(state): State<AppState>,
    session: BrowserSession,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    rp_logout(&state, &session, &params).await
}

/// `POST /logout` (form-encoded, same parameters).
#[tracing::instrument(skip_all)]
pub async fn post_rp_logout(
    State(state): State<AppState>,
    session: BrowserSession,
    PageForm(pairs): PageForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    rp_logout(&state, &session, &Params::from_pairs(pairs)).await
}

/// `POST /logout/confirm`: the person said yes.
#[tracing::instrument(skip_all)]
pub async fn confirm_rp_logout(
    session: BrowserSession,
    PageForm(form): PageForm<CsrfForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let pending = session
        .take_pending_logout()
        .await?
        .unwrap_or(PendingLogout {
            redirect_uri: None,
            state: None,
        });
    session.sign_out().await?;
    Ok(see_other(&where_to(&pending)))
}
