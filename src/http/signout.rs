//! The hosted sign-out page (`/signout`), where a person ends their Keyward session themselves.
//! Not to be confused with `rp_logout`, the OIDC logout an app sends people to.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http::csrf::{self, CsrfForm};
use crate::http::page::{PageError, PageForm, see_other};
use crate::oauth::account;
use crate::sessions::BrowserSession;

/// The "sign out?" confirmation.
#[derive(Template, WebTemplate)]
#[template(path = "signout.html")]
pub struct SignOutPage {
    csrf: String,
    username: String,
}

/// `GET /signout`: asks before signing out (a GET must not change state).
#[tracing::instrument(skip_all)]
pub async fn get_signout(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, PageError> {
    let Some(current) = session.signed_in().await? else {
        return Ok(see_other("/signin"));
    };
    let mut conn = state.conn().await?;
    let Some(user) = account::current_user(&mut conn, &current).await? else {
        session.sign_out().await?;
        return Ok(see_other("/signin"));
    };
    Ok(SignOutPage {
        csrf: csrf::for_session(&session).await?,
        username: user.username,
    }
    .into_response())
}

/// `POST /signout`: ends the session (its record is deleted, so the id cannot be reused).
#[tracing::instrument(skip_all)]
pub async fn submit_signout(
    session: BrowserSession,
    PageForm(form): PageForm<CsrfForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    session.sign_out().await?;
    Ok(see_other("/signin?signed_out=1"))
}
