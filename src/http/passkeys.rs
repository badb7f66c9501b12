//! Passkey pages: the account page's list (add, rename, remove), the second step with a passkey,
//! and signing in with one alone. The browser's part is `/assets/passkeys.js`; each ceremony's
//! state is kept in the session (or, before anyone signs in, in a sealed cookie) and spent once.

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use tower_sessions::cookie::SameSite;
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, PasskeyAuthentication, PasskeyRegistration,
};

use crate::app::AppState;
use crate::auth_methods::AuthMethods;
use crate::crypto::Sealer;
use crate::http::client_ip::ClientIp;
use crate::http::cookies::{cookie_value, set_cookie};
use crate::http::csrf;
use crate::http::page::{PageError, PageForm, see_other};
use crate::http::second_factor::{self, Who, show_codes_then};
use crate::http::self_service::signed_in;
use crate::oauth::passkeys::{CHALLENGE_TTL, Ceremony, PasskeyError, Passkeys};
use crate::sessions::{BrowserSession, Proving};
use crate::users::passkeys::clean_name;

/// A sign-in this old is fresh enough to remove a passkey without signing in again.
const FRESH_FOR_REMOVAL: time::Duration = time::Duration::minutes(10);
/// What the sealed sign-in challenge is bound to.
const AAD: &[u8] = b"keyward passkey sign-in v1";

/// The account's passkeys.
#[derive(Template, WebTemplate)]
#[template(path = "passkeys.html")]
pub struct PasskeysPage {
    csrf: String,
    passkeys: Vec<PasskeyRow>,
    error: Option<String>,
    notice: Option<&'static str>,
}

/// One passkey as listed.
pub struct PasskeyRow {
    id: String,
    name: String,
    added: String,
    last_used: String,
}

/// Query of `GET /account/passkeys`: what just changed.
#[derive(Deserialize)]
pub struct PasskeysQuery {
    changed: Option<String>,
}

/// A form carrying the browser's answer (and, to add one, its name).
#[derive(Deserialize)]
pub struct CredentialForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    credential: String,
    #[serde(default)]
    name: String,
}

/// A form naming one passkey (and, to rename it, the new name).
#[derive(Deserialize)]
pub struct OneForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
}

/// The form asking for options: only its CSRF token matters.
#[derive(Deserialize)]
pub struct OptionsForm {
    #[serde(default)]
    csrf: String,
}

/// The relying party, or the plain 404 of a server whose issuer cannot have passkeys.
fn rp(state: &AppState) -> Result<&Passkeys, PageError> {
    state.passkeys.as_ref().ok_or(PageError::NotFound)
}

fn human(t: OffsetDateTime) -> String {
    crate::http::account::human_time(t)
}

fn answer<T: DeserializeOwned>(raw: &str) -> Result<T, PasskeyError> {
    serde_json::from_str(raw).map_err(|_| PasskeyError::Refused)
}

/// `GET /account/passkeys`.
#[tracing::instrument(skip_all)]
pub async fn get_passkeys(
    State(state): State<AppState>,
    session: BrowserSession,
    Query(query): Query<PasskeysQuery>,
) -> Result<Response, PageError> {
    rp(&state)?;
    let Some((_, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let notice = match query.changed.as_deref() {
        Some("added") => Some("Your passkey was added: it signs you in on its own."),
        Some("renamed") => Some("Your passkey was renamed."),
        Some("removed") => Some("That passkey was removed."),
        _ => None,
    };
    render(&state, &session, &user, (None, notice), StatusCode::OK).await
}

async fn render(
    state: &AppState,
    session: &BrowserSession,
    user: &crate::users::User,
    (error, notice): (Option<String>, Option<&'static str>),
    status: StatusCode,
) -> Result<Response, PageError> {
    let passkeys = Passkeys::list(&state.db, user).await?;
    let page = PasskeysPage {
        csrf: csrf::for_session(session).await?,
        passkeys: passkeys
            .into_iter()
            .map(|p| PasskeyRow {
                id: p.id.to_string(),
                name: p.name,
                added: human(p.created_at),
                last_used: p.last_used_at.map_or_else(|| "never".to_owned(), human),
            })
            .collect(),
        error,
        notice,
    };
    Ok((status, page).into_response())
}

/// `POST /account/passkeys/options`: the options to make a passkey (JSON for the script).
#[tracing::instrument(skip_all)]
pub async fn registration_options(
    State(state): State<AppState>,
    session: BrowserSession,
    PageForm(form): PageForm<OptionsForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let Some((_, user)) = signed_in(&state, &session).await? else {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    };
    let now = state.clock.now();
    let (options, ceremony) = match rp(&state)?.start_registration(&state.db, &user, now).await {
        Ok(started) => started,
        Err(PasskeyError::Db(e)) => return Err(e.into()),
        Err(_) => return Ok(StatusCode::UNPROCESSABLE_ENTITY.into_response()),
    };
    session.put_ceremony("register", &ceremony, now).await?;
    Ok(Json(options).into_response())
}

/// `POST /account/passkeys`: the browser's new passkey, named.
#[tracing::instrument(skip_all)]
pub async fn submit_passkey(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    PageForm(form): PageForm<CredentialForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let Some((_, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let rp = rp(&state)?;
    let now = state.clock.now();
    let name = clean_name(&form.name).unwrap_or_else(|| "Passkey".to_owned());
    let ceremony = session
        .take_ceremony::<Ceremony<PasskeyRegistration>>("register", CHALLENGE_TTL, now)
        .await?;
    let result = match (ceremony, answer(&form.credential)) {
        (None, _) => Err(PasskeyError::Expired),
        (_, Err(e)) => Err(e),
        (Some(ceremony), Ok(credential)) => {
            let checks = state.factor_checks(ip);
            let who = (&user, name.as_str());
            rp.finish_registration(&checks, who, (&credential, ceremony), now)
                .await
        }
    };
    match result {
        Ok(codes) => Ok(show_codes_then(
            codes,
            see_other("/account/passkeys?changed=added"),
        )),
        Err(PasskeyError::Db(e)) => Err(e.into()),
        Err(e) => {
            let error = Some(e.to_string());
            render(
                &state,
                &session,
                &user,
                (error, None),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

/// `POST /account/passkeys/rename`.
#[tracing::instrument(skip_all)]
pub async fn rename(
    State(state): State<AppState>,
    session: BrowserSession,
    PageForm(form): PageForm<OneForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    rp(&state)?;
    let Some((_, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let (Ok(id), Some(name)) = (Uuid::parse_str(&form.id), clean_name(&form.name)) else {
        let error = Some("Give the passkey a name.".to_owned());
        return render(
            &state,
            &session,
            &user,
            (error, None),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    match Passkeys::rename(&state.db, &user, (id, &name)).await {
        Ok(()) => Ok(see_other("/account/passkeys?changed=renamed")),
        Err(PasskeyError::Db(e)) => Err(e.into()),
        Err(e) => {
            let error = Some(e.to_string());
            render(
                &state,
                &session,
                &user,
                (error, None),
                StatusCode::NOT_FOUND,
            )
            .await
        }
    }
}

/// `POST /account/passkeys/remove`: only from a fresh sign-in; an older one signs in again
/// first and comes back here.
#[tracing::instrument(skip_all)]
pub async fn remove(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    PageForm(form): PageForm<OneForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    rp(&state)?;
    let Some((signed, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let now = state.clock.now();
    if now - signed.auth_time > FRESH_FOR_REMOVAL {
        session.require_sign_in(Some(&user.username), true).await?;
        session.set_return_to("/account/passkeys").await?;
        return Ok(see_other("/signin"));
    }
    let Ok(id) = Uuid::parse_str(&form.id) else {
        return Err(PageError::NotFound);
    };
    let checks = state.factor_checks(ip);
    match Passkeys::remove(&checks, &user, id, now).await {
        Ok(()) => Ok(see_other("/account/passkeys?changed=removed")),
        Err(PasskeyError::Db(e)) => Err(e.into()),
        Err(e) => {
            let error = Some(e.to_string());
            render(
                &state,
                &session,
                &user,
                (error, None),
                StatusCode::NOT_FOUND,
            )
            .await
        }
    }
}

/// `POST /signin/second-factor/passkey/options`: the options to prove one of the person's
/// passkeys (JSON for the script).
#[tracing::instrument(skip_all)]
pub async fn proof_options(
    State(state): State<AppState>,
    session: BrowserSession,
    PageForm(form): PageForm<OptionsForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let now = state.clock.now();
    let Some(who) = second_factor::who(&state, &session, now).await? else {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    };
    match rp(&state)?.start_proof(&state.db, who.user(), now).await {
        Ok(Some((options, ceremony))) => {
            session.put_ceremony("prove", &ceremony, now).await?;
            Ok(Json(options).into_response())
        }
        Ok(None) => Ok(StatusCode::NOT_FOUND.into_response()),
        Err(PasskeyError::Db(e)) => Err(e.into()),
        Err(_) => Ok(StatusCode::UNPROCESSABLE_ENTITY.into_response()),
    }
}

/// `POST /signin/second-factor/passkey`: the browser's answer with one of the person's passkeys.
#[tracing::instrument(skip_all)]
pub async fn submit_proof(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PageForm(form): PageForm<CredentialForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let rp = rp(&state)?;
    let now = state.clock.now();
    let Some(who) = second_factor::who(&state, &session, now).await? else {
        return Ok(see_other("/signin"));
    };
    let ceremony = session
        .take_ceremony::<Ceremony<PasskeyAuthentication>>("prove", CHALLENGE_TTL, now)
        .await?;
    let result = match (ceremony, answer(&form.credential)) {
        (None, _) => Err(PasskeyError::Expired),
        (_, Err(e)) => Err(e),
        (Some(ceremony), Ok(credential)) => {
            rp.finish_proof(&state.db, (who.user(), ip), (&credential, ceremony), now)
                .await
        }
    };
    match result {
        Ok(added) => second_factor::proven(&state, &session, &headers, who, &added, ip, now).await,
        Err(PasskeyError::Db(e)) => Err(e.into()),
        Err(e) => {
            let step_up = matches!(who, Who::SignedIn(..));
            let error = Some((StatusCode::UNAUTHORIZED, e.to_string()));
            second_factor::code_page(&state, &session, (who.user(), step_up), error).await
        }
    }
}

/// The passkey sign-in offered on the sign-in page: its options for the page, and the cookie
/// holding its sealed ceremony (bound to this browser, five minutes, spent once). `None` when
/// the server cannot have passkeys.
#[must_use]
pub fn sign_in_offer(
    state: &AppState,
    now: OffsetDateTime,
) -> Option<(String, axum::http::HeaderValue)> {
    let (options, ceremony) = rp(state).ok()?.start_sign_in(now).ok()?;
    let sealed =
        Sealer::new(state.keys.pending_secret()).seal(AAD, &serde_json::to_vec(&ceremony).ok()?);
    let cookie = set_cookie(
        state.cookies.passkey,
        &URL_SAFE_NO_PAD.encode(sealed),
        CHALLENGE_TTL,
        SameSite::Strict,
        state.cookies.secure,
    )?;
    Some((options.to_string(), cookie))
}

/// `POST /signin/passkey`: signs in whoever owns the passkey the browser answered with.
#[tracing::instrument(skip_all)]
pub async fn submit_sign_in(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PageForm(form): PageForm<CredentialForm>,
) -> Result<Response, PageError> {
    csrf::require_for_visitor(&state, &session, &headers, &form.csrf).await?;
    let rp = rp(&state)?;
    let now = state.clock.now();
    let ceremony = cookie_value(&headers, state.cookies.passkey)
        .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
        .and_then(|raw| Sealer::new(state.keys.pending_secret()).open(AAD, &raw))
        .and_then(|plain| {
            serde_json::from_slice::<Ceremony<DiscoverableAuthentication>>(&plain).ok()
        });
    let result = match (ceremony, answer(&form.credential)) {
        (None, _) => Err(PasskeyError::Expired),
        (_, Err(e)) => Err(e),
        (Some(ceremony), Ok(credential)) => {
            rp.finish_sign_in(&state.db, ip, (&credential, ceremony), now)
                .await
        }
    };
    match result {
        Ok((user, methods)) => {
            tracing::info!(user_id = %user.id, "passkey accepted");
            let proving = Proving {
                user_id: user.id,
                credential_version: user.credential_version,
                methods: AuthMethods::default().with(&methods),
                since: now.unix_timestamp(),
            };
            let who = (&user, proving, ip);
            let mut response =
                second_factor::after_first_step(&state, &session, &headers, who, now).await?;
            // Spent: the cookie goes too. (A refusal's page sets a new one instead.)
            let clear = set_cookie(
                state.cookies.passkey,
                "",
                time::Duration::ZERO,
                SameSite::Strict,
                state.cookies.secure,
            );
            if let Some(clear) = clear {
                response.headers_mut().append(header::SET_COOKIE, clear);
            }
            Ok(response)
        }
        Err(PasskeyError::Db(e)) => Err(e.into()),
        Err(e) => {
            let refusal = (ip, e.to_string());
            crate::http::signin::with_error(&state, &session, &headers, refusal).await
        }
    }
}
