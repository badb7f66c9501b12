//! The account page: who is signed in, the apps they consented to (and withdrawing that), and
//! the way out.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use time::macros::format_description;

use serde::Deserialize;

use crate::app::AppState;
use crate::audit::Actor;
use crate::http::client_ip::ClientIp;
use crate::http::csrf;
use crate::http::page::{PageError, PageForm, see_other};
use crate::oauth::{account, consent};
use crate::sessions::BrowserSession;
use crate::sessions::store::Which;

/// The account page.
#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
pub struct AccountPage {
    csrf: String,
    username: String,
    email: Option<String>,
    /// The address is not proven and the policy asks for proof.
    email_unconfirmed: bool,
    member_since: String,
    signed_in_at: String,
    consents: Vec<ConsentRow>,
    /// What was just changed, in words.
    notice: Option<&'static str>,
    /// Where the person is signed in.
    sessions: Vec<SessionRow>,
    /// Whether an authenticator app is set up.
    has_app: bool,
    /// Unused recovery codes.
    recovery_left: i64,
    /// Whether this server can have passkeys (its issuer is a domain name).
    passkeys_on: bool,
    /// How many passkeys the person has.
    passkeys: i64,
    /// How this browser signed in, in words.
    signed_in_with: &'static str,
}

/// One signed-in browser, as listed on the account page.
pub struct SessionRow {
    handle: String,
    device: String,
    ip: String,
    signed_in: String,
    last_seen: String,
    this_browser: bool,
}

/// Query of `GET /account`: which change just happened, to say so.
#[derive(Deserialize)]
pub struct AccountQuery {
    changed: Option<String>,
}

/// One app the person allowed, as listed on the account page.
pub struct ConsentRow {
    client_id: String,
    client_name: String,
    scopes: String,
}

/// How this browser signed in, in words.
fn signed_in_with(methods: &crate::auth_methods::AuthMethods) -> &'static str {
    use crate::auth_methods::Method;
    if !methods.contains(Method::Pwd) {
        "a passkey"
    } else if methods.is_multi_factor() {
        "your password and a second step"
    } else {
        "your password"
    }
}

/// A time as the account pages show it, to the minute.
pub(crate) fn human_time(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_default()
}

/// `GET /account` (and `/`): the signed-in person's details, else the sign-in page.
#[tracing::instrument(skip_all)]
pub async fn get_account(
    State(state): State<AppState>,
    session: BrowserSession,
    Query(query): Query<AccountQuery>,
) -> Result<Response, PageError> {
    let Some(current) = session.signed_in().await? else {
        // A session may still name an abandoned app request to return to: replace it. Without
        // a session there is nothing to keep (the sign-in page goes to /account by default).
        if session.exists() {
            session.set_return_to("/account").await?;
        }
        return Ok(see_other("/signin"));
    };
    let mut conn = state.conn().await?;
    let overview = account::overview(&mut conn, &current, state.clock.now()).await?;
    drop(conn);
    // A user disabled or deleted since signing in loses the session on their next request.
    let Some(account::Overview {
        user,
        consents: granted,
        sessions,
        factors,
    }) = overview
    else {
        session.sign_out().await?;
        return Ok(see_other("/signin"));
    };
    let email_unconfirmed = state.config.mail.verification
        != crate::oauth::verification::Policy::Off
        && user.email.is_some()
        && !user.email_verified();
    Ok(AccountPage {
        csrf: csrf::for_session(&session).await?,
        username: user.username,
        email_unconfirmed,
        email: user.email,
        member_since: human_time(user.created_at),
        signed_in_at: human_time(current.auth_time),
        has_app: factors.totp,
        recovery_left: factors.recovery_left,
        passkeys_on: state.passkeys.is_some(),
        passkeys: factors.passkeys,
        signed_in_with: signed_in_with(&current.methods),
        consents: granted
            .into_iter()
            .map(|c| ConsentRow {
                client_id: c.client_id,
                client_name: c.client_name,
                scopes: c.scopes.join(" "),
            })
            .collect(),
        sessions: {
            let this = session.handle();
            sessions
                .into_iter()
                .map(|v| SessionRow {
                    this_browser: this.as_deref() == Some(v.handle.as_str()),
                    device: v.device.unwrap_or_else(|| "unknown browser".to_owned()),
                    ip: v.ip.unwrap_or_default(),
                    signed_in: v.signed_in_at.map(human_time).unwrap_or_default(),
                    last_seen: v.last_seen_at.map(human_time).unwrap_or_default(),
                    handle: v.handle,
                })
                .collect()
        },
        notice: match query.changed.as_deref() {
            Some("password") => {
                Some("Your password was changed. Every other browser and app was signed out.")
            }
            Some("email") => Some("Your email address was changed."),
            Some("sessions") => Some("Those browsers were signed out."),
            Some("authenticator") => {
                Some("Two-step sign-in is on: signing in now also takes a code from your app.")
            }
            Some("authenticator-removed") => {
                Some("Your authenticator app was removed: signing in takes only your password.")
            }
            Some("recovery-codes") => {
                Some("You have new recovery codes. The old ones no longer work.")
            }
            _ => None,
        },
    }
    .into_response())
}

/// Fields of the "revoke" button.
#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    client_id: String,
}

/// `POST /account/consents/revoke`: the app must ask again next time.
#[tracing::instrument(skip_all)]
pub async fn revoke_consent(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    PageForm(form): PageForm<RevokeForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let Some(current) = session.signed_in().await? else {
        return Ok(see_other("/signin"));
    };
    let now = state.clock.now();
    let mut conn = state.conn().await?;
    // The client's address as every other handler sees it: behind a proxy, the forwarded one.
    let by = Actor::user(current.user_id, Some(ip.into()));
    consent::withdraw(&mut conn, current.user_id, &form.client_id, &by, now).await?;
    Ok(see_other("/account"))
}

/// Fields of the "sign out" buttons of the sessions list.
#[derive(Deserialize)]
pub struct EndSessionForm {
    #[serde(default)]
    csrf: String,
    /// The session's handle; absent: every other browser.
    session: Option<String>,
}

/// `POST /account/sessions/end`: signs one other browser, or every other, out.
#[tracing::instrument(skip_all)]
pub async fn end_sessions(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    PageForm(form): PageForm<EndSessionForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let (Some(current), Some(this)) = (session.signed_in().await?, session.handle()) else {
        return Ok(see_other("/signin"));
    };
    let which = match form.session.as_deref() {
        // Never this browser: signing out here is the sign-out button's job.
        Some(handle) if handle != this => Which::Only(handle),
        Some(_) => return Ok(see_other("/account")),
        None => Which::AllBut(&this),
    };
    let mut conn = state.conn().await?;
    account::sign_out_browsers(&mut conn, &current, which, ip, state.clock.now()).await?;
    Ok(see_other("/account?changed=sessions"))
}
