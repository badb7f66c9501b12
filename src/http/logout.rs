//! `/logout`: OpenID Connect RP-Initiated Logout 1.0.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use tower_sessions::Session;

use crate::app::AppState;
use crate::clients;
use crate::db;
use crate::http::page::{PageError, PageForm, csrf_for_form, require_csrf, see_other};
use crate::oauth::authorize::redirect_with;
use crate::sessions::{self, PendingLogout};
use crate::tokens::jwt::ID_TOKEN_TYP;
use crate::users;

/// The "sign out of Keyward?" page shown when the request cannot prove it comes from the app.
#[derive(Template, WebTemplate)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    csrf: String,
    username: String,
}

fn where_to(logout: &PendingLogout) -> String {
    match &logout.redirect_uri {
        Some(uri) => {
            let params: Vec<(&str, &str)> =
                logout.state.iter().map(|s| ("state", s.as_str())).collect();
            redirect_with(uri, &params)
        }
        None => "/signin?signed_out=1".to_owned(),
    }
}

async fn logout(
    state: &AppState,
    session: &Session,
    params: &[(String, String)],
) -> Result<Response, PageError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let now = state.clock.now();
    // The hint may have expired (§2); its signature and issuer must still be ours.
    let hint = get("id_token_hint").and_then(|t| {
        state
            .keys
            .ring
            .verify_ignoring_expiry(t, state.config.server.issuer.as_str(), now)
            .ok()
            .filter(|v| v.typ.as_deref() == Some(ID_TOKEN_TYP))
    });
    let hint_client = hint
        .as_ref()
        .and_then(|h| h.claims.get("aud"))
        .and_then(Value::as_str);
    let client_id = match (get("client_id"), hint_client) {
        (Some(a), Some(b)) if a != b => return Err(PageError::BadLogoutRedirect),
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    let redirect_uri = match get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let Some(client_id) = client_id else {
                return Err(PageError::BadLogoutRedirect);
            };
            let mut conn = db::connect(&state.db).await?;
            let client = clients::find(&mut conn, client_id).await?;
            // Exactly as registered for this client, or we send nobody anywhere.
            if !client.is_some_and(|c| c.has_post_logout_redirect_uri(uri)) {
                return Err(PageError::BadLogoutRedirect);
            }
            Some(uri.to_owned())
        }
    };
    let pending = PendingLogout {
        redirect_uri,
        state: get("state").map(|s| s.chars().take(512).collect()),
    };

    let Some(signed) = sessions::signed_in(session).await? else {
        return Ok(see_other(&where_to(&pending)));
    };
    let hint_sub = hint
        .as_ref()
        .and_then(|h| h.claims.get("sub"))
        .and_then(Value::as_str);
    if hint_sub == Some(signed.user_id.to_string().as_str()) {
        // A valid hint for this very user: the request comes from an app they used. No question.
        sessions::sign_out(session).await?;
        return Ok(see_other(&where_to(&pending)));
    }
    // Otherwise any site could sign people out with a link: ask first (CSRF-protected POST).
    sessions::put_pending_logout(session, &pending).await?;
    let mut conn = db::connect(&state.db).await?;
    let username = users::find(&mut conn, signed.user_id)
        .await?
        .map(|u| u.username)
        .unwrap_or_default();
    drop(conn);
    Ok(LogoutPage {
        csrf: csrf_for_form(session).await?,
        username,
    }
    .into_response())
}

/// `GET /logout`.
pub async fn get_logout(
    State(state): State<AppState>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    logout(&state, &session, &params).await
}

/// `POST /logout` (form-encoded, same parameters).
pub async fn post_logout(
    State(state): State<AppState>,
    session: Session,
    PageForm(params): PageForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    logout(&state, &session, &params).await
}

/// Fields of the confirmation form.
#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout/confirm`: the person said yes.
pub async fn confirm_logout(
    session: Session,
    PageForm(form): PageForm<ConfirmForm>,
) -> Result<Response, PageError> {
    require_csrf(&session, &form.csrf).await?;
    let pending = sessions::take_pending_logout(&session)
        .await?
        .unwrap_or(PendingLogout {
            redirect_uri: None,
            state: None,
        });
    sessions::sign_out(&session).await?;
    Ok(see_other(&where_to(&pending)))
}
