//! The second step of signing in (a code from an authenticator app, or a recovery code), setting
//! an app up when one is required, and the account page's own: set up, remove, new recovery codes.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth_methods::AuthMethods;
use crate::http::client_ip::ClientIp;
use crate::http::page::{PageError, PageForm, see_other, wait_in_words, with_retry_after};
use crate::http::self_service::signed_in;
use crate::http::{csrf, verify};
use crate::oauth::second_factor::{self, FactorError, Next, Proof, SECOND_STEP_TTL};
use crate::oauth::{account, verification};
use crate::sessions::{BrowserSession, Proving, SignedInSession};
use crate::users::User;
use crate::users::recovery_codes::RecoveryCode;

/// The second step of signing in.
#[derive(Template, WebTemplate)]
#[template(path = "second_factor.html")]
pub struct SecondFactorPage {
    csrf: String,
    error: Option<String>,
    /// Whether the person is signed in already and an app asked for more (step-up).
    step_up: bool,
    /// Whether they have an authenticator app (else only passkeys and recovery codes).
    has_app: bool,
    /// Whether they have a passkey (the page offers it, with script).
    has_passkey: bool,
}

/// Setting up an authenticator app: the QR code, the secret to type instead, the code form.
#[derive(Template, WebTemplate)]
#[template(path = "authenticator_setup.html")]
pub struct SetUpPage {
    csrf: String,
    /// Where the form goes.
    action: &'static str,
    /// The QR code, as SVG markup made here (no external service, no script).
    qr: String,
    /// The secret in groups of four, for typing instead of scanning.
    secret: String,
    error: Option<String>,
    /// Whether this is part of signing in (required), not a choice on the account page.
    required: bool,
}

/// Recovery codes, shown once.
#[derive(Template, WebTemplate)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage {
    codes: Vec<String>,
    /// Where "Continue" goes.
    next: String,
}

/// A change on the account page that a fresh proof with the factor must confirm.
#[derive(Template, WebTemplate)]
#[template(path = "factor_confirm.html")]
pub struct ConfirmPage {
    csrf: String,
    title: &'static str,
    lead: &'static str,
    action: &'static str,
    button: &'static str,
    error: Option<String>,
}

/// Fields of the code forms.
#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    /// A code from the app.
    #[serde(default)]
    code: String,
    /// A recovery code instead.
    #[serde(default)]
    recovery_code: String,
}

impl CodeForm {
    fn proof(&self) -> Proof<'_> {
        if self.recovery_code.trim().is_empty() {
            Proof::Code(&self.code)
        } else {
            Proof::RecoveryCode(&self.recovery_code)
        }
    }
}

/// After a password was proven (sign-in or sign-up): the person is part-way signed in
/// ([`Proving`], under a new session id) and goes on to whatever else the sign-in needs.
pub async fn after_password(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    (user, ip): (&User, std::net::IpAddr),
    now: OffsetDateTime,
) -> Result<Response, PageError> {
    let proving = Proving {
        user_id: user.id,
        credential_version: user.credential_version,
        methods: AuthMethods::password(),
        since: now.unix_timestamp(),
    };
    after_first_step(state, session, headers, (user, proving, ip), now).await
}

/// After the first thing a sign-in proved (a password, or a passkey alone): the session takes
/// a new id and the sign-in goes on to whatever else it needs.
pub async fn after_first_step(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    who: (&User, Proving, std::net::IpAddr),
    now: OffsetDateTime,
) -> Result<Response, PageError> {
    step(state, session, headers, who, true, now).await
}

/// Takes a person part-way signed in to the next step: their second factor (or setting one
/// up), then proving their address when the policy wants it, then signed in.
pub async fn continue_sign_in(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    who: (&User, Proving, std::net::IpAddr),
    now: OffsetDateTime,
) -> Result<Response, PageError> {
    step(state, session, headers, who, false, now).await
}

/// The next step; `fresh` when the password was proven just now, so the session takes a new
/// id (once: signing in or waiting for the next step each cycle it).
async fn step(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    (user, proving, ip): (&User, Proving, std::net::IpAddr),
    fresh: bool,
    now: OffsetDateTime,
) -> Result<Response, PageError> {
    let policy = state.config.passwords.mfa;
    let next = {
        let mut conn = state.conn().await?;
        second_factor::next(&mut conn, policy, user.id, &proving.methods, false).await?
    };
    match next {
        Next::SecondFactor | Next::SetUp => {
            session.put_proving(&proving, fresh).await?;
            Ok(see_other("/signin/second-factor"))
        }
        Next::Done => {
            let who = (user, &proving, ip);
            verify::sign_in_or_verify_first(state, session, headers, who, fresh, now).await
        }
    }
}

/// Who is at the second-step page.
pub(crate) enum Who {
    /// Part-way through signing in.
    Proving(User, Proving),
    /// Signed in, and asked for more by an app (step-up).
    SignedIn(User, SignedInSession),
}

impl Who {
    /// The person.
    pub(crate) fn user(&self) -> &User {
        match self {
            Self::Proving(u, _) | Self::SignedIn(u, _) => u,
        }
    }
}

/// Who is at the second step: part-way signed in (first), or signed in (a step-up).
pub(crate) async fn who(
    state: &AppState,
    session: &BrowserSession,
    now: OffsetDateTime,
) -> Result<Option<Who>, PageError> {
    if let Some(proving) = session.proving().await? {
        if now.unix_timestamp() - proving.since > SECOND_STEP_TTL.whole_seconds() {
            session.forget_proving().await?;
            return Ok(None);
        }
        let waiting = Some((proving.user_id, proving.credential_version));
        return Ok(verification::whose(&state.db, None, waiting)
            .await?
            .map(|(user, _)| Who::Proving(user, proving)));
    }
    let Some(signed) = session.signed_in().await? else {
        return Ok(None);
    };
    let mut conn = state.conn().await?;
    let user = account::current_user(&mut conn, &signed).await?;
    Ok(user.map(|u| Who::SignedIn(u, signed)))
}

/// `GET /signin/second-factor`.
#[tracing::instrument(skip_all)]
pub async fn get_second_factor(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, PageError> {
    let now = state.clock.now();
    let Some(who) = who(&state, &session, now).await? else {
        return Ok(see_other("/signin"));
    };
    let step_up = matches!(who, Who::SignedIn(..));
    if second_factor::has_factor(&state.db, who.user().id).await? {
        return code_page(&state, &session, (who.user(), step_up), None).await;
    }
    set_up_page(
        &state,
        &session,
        who.user(),
        "/signin/second-factor/set-up",
        None,
    )
    .await
}

/// `POST /signin/second-factor`: a code or a recovery code.
#[tracing::instrument(skip_all)]
pub async fn submit_second_factor(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PageForm(form): PageForm<CodeForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let now = state.clock.now();
    let Some(who) = who(&state, &session, now).await? else {
        return Ok(see_other("/signin"));
    };
    let checks = state.factor_checks(ip);
    match second_factor::prove(&checks, who.user(), form.proof(), now).await {
        Ok(added) => proven(&state, &session, &headers, who, &added, ip, now).await,
        Err(e) => {
            let step_up = matches!(who, Who::SignedIn(..));
            let (status, message, retry_after) = refusal(e)?;
            let page = code_page(
                &state,
                &session,
                (who.user(), step_up),
                Some((status, message)),
            )
            .await?;
            Ok(with_retry_after(page, retry_after))
        }
    }
}

/// On after a factor was proven: a sign-in goes to its next step, a step-up back to the app.
pub(crate) async fn proven(
    state: &AppState,
    session: &BrowserSession,
    headers: &HeaderMap,
    who: Who,
    added: &[crate::auth_methods::Method],
    ip: std::net::IpAddr,
    now: OffsetDateTime,
) -> Result<Response, PageError> {
    match who {
        Who::Proving(user, mut proving) => {
            proving.methods = proving.methods.with(added);
            session.put_proving(&proving, false).await?;
            tracing::info!(user_id = %user.id, "second factor proven");
            continue_sign_in(state, session, headers, (&user, proving, ip), now).await
        }
        Who::SignedIn(user, signed) => {
            session.step_up(&signed.methods.with(added), now).await?;
            tracing::info!(user_id = %user.id, "stepped up");
            let to = session.take_return_to().await?;
            Ok(see_other(to.as_deref().unwrap_or("/account")))
        }
    }
}

/// `POST /signin/second-factor/set-up`: the first code of an app set up while signing in.
#[tracing::instrument(skip_all)]
pub async fn submit_sign_in_set_up(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PageForm(form): PageForm<CodeForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let now = state.clock.now();
    let Some(who) = who(&state, &session, now).await? else {
        return Ok(see_other("/signin"));
    };
    let checks = state.factor_checks(ip);
    let codes = match second_factor::confirm_app(&checks, who.user(), &form.code, now).await {
        Ok(codes) => codes,
        Err(e) => {
            let action = "/signin/second-factor/set-up";
            return set_up_refused(&state, &session, who.user(), action, e).await;
        }
    };
    let added = [crate::auth_methods::Method::Otp];
    let next = proven(&state, &session, &headers, who, &added, ip, now).await?;
    Ok(show_codes_then(codes, next))
}

/// The recovery codes page, whose "Continue" goes where `next` redirects (its cookies kept);
/// just `next` when there are no new codes to show.
pub(crate) fn show_codes_then(codes: Option<Vec<RecoveryCode>>, next: Response) -> Response {
    let Some(codes) = codes else {
        return next;
    };
    let to = next
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("/account")
        .to_owned();
    let mut page = RecoveryCodesPage {
        codes: codes.iter().map(|c| c.expose().to_owned()).collect(),
        next: to,
    }
    .into_response();
    for cookie in next.headers().get_all(header::SET_COOKIE) {
        page.headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    // Shown once: never from a cache or the back button.
    page.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    page
}

/// `GET /account/authenticator`: set up an app from the account page.
#[tracing::instrument(skip_all)]
pub async fn get_account_set_up(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, PageError> {
    let Some((_, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    set_up_page(&state, &session, &user, "/account/authenticator", None).await
}

/// `POST /account/authenticator`: the first code of the app being set up.
#[tracing::instrument(skip_all)]
pub async fn submit_account_set_up(
    State(state): State<AppState>,
    session: BrowserSession,
    ClientIp(ip): ClientIp,
    PageForm(form): PageForm<CodeForm>,
) -> Result<Response, PageError> {
    csrf::require_for_session(&session, &form.csrf).await?;
    let Some((signed, user)) = signed_in(&state, &session).await? else {
        return Ok(see_other("/signin"));
    };
    let now = state.clock.now();
    let checks = state.factor_checks(ip);
    match second_factor::confirm_app(&checks, &user, &form.code, now).await {
        Ok(codes) => {
            // The code just typed proves the app: this browser's sign-in now has two factors.
            let methods = signed.methods.with(&[crate::auth_methods::Method::Otp]);
            session.step_up(&methods, now).await?;
            let next = see_other("/account?changed=authenticator");
            Ok(show_codes_then(codes, next))
        }
        Err(e) => {
            let action = "/account/authenticator";
            set_up_refused(&state, &session, &user, action, e).await
        }
    }
}

const REMOVE: (&str, &str, &str, &str) = (
    "Remove your authenticator app",
    "Type a code from the app (or a recovery code) to remove it. Signing in will then take only \
     your password, and your recovery codes stop working.",
    "/account/authenticator/remove",
    "Remove the app",
);
const NEW_CODES: (&str, &str, &str, &str) = (
    "New recovery codes",
    "Type a code from your authenticator app (or a recovery code) to make ten new recovery \
     codes. The ones you have now stop working.",
    "/account/recovery-codes",
    "Make new codes",
);

/// `GET /account/authenticator/remove`.
#[tracing::instrument(skip_all)]
pub async fn get_remove(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, PageError> {
    confirm_form(&state, &session, REMOVE).await
}

/// `GET /account/recovery-codes`.
#[tracing::instrument(skip_all)]
pub async fn get_new_codes(
    State(state): State<AppState>,
    session: BrowserSession,
) -> Result<Response, PageError> {
    confirm_form(&state, &session, NEW_CODES).await
}

async fn confirm_form(
    state: &AppState,
    session: &BrowserSession,
    what: (&'static str, &'static str, &'static str, &'static str),
) -> Result<Response, PageError> {
    let Some((_, user)) = signed_in(state, session).await? else {
        return Ok(see_other("/signin"));
    };
    if !second_factor::has_factor(&state.db, user.id).await? {
        return Ok(see_other("/account"));
    }
    confirm_page(session, what, None, StatusCode::OK).await
}

/// `POST /account/authenticator/remove`.
#[tracing::instrument(skip_all)]
pub async fn submit_remove(
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
    let checks = state.factor_checks(ip);
    match second_factor::remove_app(&checks, &user, form.proof(), now).await {
        Ok(()) => Ok(see_other("/account?changed=authenticator-removed")),
        Err(e) => confirm_refused(&session, REMOVE, e).await,
    }
}

/// `POST /account/recovery-codes`.
#[tracing::instrument(skip_all)]
pub async fn submit_new_codes(
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
    let checks = state.factor_checks(ip);
    match second_factor::replace_recovery_codes(&checks, &user, form.proof(), now).await {
        Ok(codes) => Ok(show_codes_then(
            Some(codes),
            see_other("/account?changed=recovery-codes"),
        )),
        Err(e) => confirm_refused(&session, NEW_CODES, e).await,
    }
}

/// A refusal in words, its status and `Retry-After`; failures of ours are errors.
fn refusal(error: FactorError) -> Result<(StatusCode, String, Option<i64>), PageError> {
    Ok(match error {
        FactorError::Locked { retry_after } => {
            let secs = retry_after.whole_seconds().max(1);
            let message = format!(
                "Too many wrong codes. Try again in {}.",
                wait_in_words(secs)
            );
            (StatusCode::TOO_MANY_REQUESTS, message, Some(secs))
        }
        FactorError::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many attempts at once. Try again in a moment.".to_owned(),
            Some(1),
        ),
        e @ (FactorError::Code(_) | FactorError::WrongRecoveryCode) => {
            (StatusCode::UNAUTHORIZED, e.to_string(), None)
        }
        FactorError::Db(e) => return Err(e.into()),
    })
}

/// The second-step page for `user`, offering what they have; with a refusal's status and words.
pub(crate) async fn code_page(
    state: &AppState,
    session: &BrowserSession,
    (user, step_up): (&User, bool),
    error: Option<(StatusCode, String)>,
) -> Result<Response, PageError> {
    let factors = second_factor::factors_of(&state.db, user.id).await?;
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let page = SecondFactorPage {
        csrf: csrf::for_session(session).await?,
        error,
        step_up,
        has_app: factors.totp,
        has_passkey: factors.passkeys > 0 && state.passkeys.is_some(),
    };
    Ok((status, page).into_response())
}

async fn set_up_page(
    state: &AppState,
    session: &BrowserSession,
    user: &User,
    action: &'static str,
    error: Option<(StatusCode, String)>,
) -> Result<Response, PageError> {
    let now = state.clock.now();
    let product = &state.letterhead.product;
    let kek = state.keys.kek();
    let Some(enrolment) = second_factor::begin_app(&state.db, kek, user, product, now).await?
    else {
        // Already set up: nothing to do here.
        return Ok(see_other("/account"));
    };
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let page = SetUpPage {
        csrf: csrf::for_session(session).await?,
        action,
        qr: qr_svg(&enrolment.uri),
        secret: enrolment.secret.clone(),
        error,
        required: action.starts_with("/signin"),
    };
    let mut response = (status, page).into_response();
    // The page carries the secret: never from a cache.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

async fn set_up_refused(
    state: &AppState,
    session: &BrowserSession,
    user: &User,
    action: &'static str,
    error: FactorError,
) -> Result<Response, PageError> {
    let (status, message, retry_after) = refusal(error)?;
    let page = set_up_page(state, session, user, action, Some((status, message))).await?;
    Ok(with_retry_after(page, retry_after))
}

async fn confirm_page(
    session: &BrowserSession,
    (title, lead, action, button): (&'static str, &'static str, &'static str, &'static str),
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let page = ConfirmPage {
        csrf: csrf::for_session(session).await?,
        title,
        lead,
        action,
        button,
        error,
    };
    Ok((status, page).into_response())
}

async fn confirm_refused(
    session: &BrowserSession,
    what: (&'static str, &'static str, &'static str, &'static str),
    error: FactorError,
) -> Result<Response, PageError> {
    let (status, message, retry_after) = refusal(error)?;
    let page = confirm_page(session, what, Some(message), status).await?;
    Ok(with_retry_after(page, retry_after))
}

/// The `otpauth://` URI as an inline SVG QR code (made here, so the secret goes to no other
/// service, and inline, so the page's CSP needs no exception).
fn qr_svg(uri: &str) -> String {
    let Ok(code) = qrcode::QrCode::with_error_correction_level(uri, qrcode::EcLevel::M) else {
        // Too long to encode (a very long product name): the typed secret still works.
        return String::new();
    };
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    let svg = svg
        .split_once("?>")
        .map_or(svg.as_str(), |(_, rest)| rest)
        .to_owned();
    svg.replacen(
        "<svg ",
        "<svg role=\"img\" aria-label=\"QR code to scan with your authenticator app\" ",
        1,
    )
}
