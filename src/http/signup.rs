//! The hosted sign-up page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_sessions::Session;

use crate::app::AppState;
use crate::audit::Actor;
use crate::http::client_ip::ClientIp;
use crate::http::csrf;
use crate::http::page::{PageError, PageForm, see_other, wait_in_words};
use crate::rate_limits::{Key, Limit};
use crate::sessions::{self, AskingApp};
use crate::users::name::{Email, Username};
use crate::users::password::check_new_password;
use crate::users::{self, CreateUserError, NewUser};

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
    session: Session,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if !state.config.server.signup_enabled {
        return Err(PageError::SignupDisabled);
    }
    if sessions::signed_in(&session).await?.is_some() {
        return Ok(see_other("/account"));
    }
    let csrf = csrf::for_visitor(&state, &session, &headers).await?;
    let page = SignUpPage {
        csrf: csrf.token.clone(),
        username: String::new(),
        email: String::new(),
        error: None,
        app: sessions::asking_app(&session).await?,
    };
    Ok(csrf.attach(page.into_response()))
}

/// The form's name, address and password, each checked; the first problem in words for the person.
fn check_form(form: &SignUpForm) -> Result<(Username, Option<Email>), FormError> {
    let username = Username::parse(&form.username).map_err(|e| FormError::on("username", &e))?;
    let email = Email::parse_optional(&form.email).map_err(|e| FormError::on("email", &e))?;
    check_new_password(&form.password, &username).map_err(|e| FormError::on("password", &e))?;
    if form.password != form.password_confirm {
        return Err(FormError::on(
            "password_confirm",
            &"The two passwords are different. Type the same password twice.",
        ));
    }
    Ok((username, email))
}

/// `POST /signup`: creates the account and signs it in.
#[tracing::instrument(skip_all)]
pub async fn submit_signup(
    State(state): State<AppState>,
    session: Session,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PageForm(form): PageForm<SignUpForm>,
) -> Result<Response, PageError> {
    if !state.config.server.signup_enabled {
        return Err(PageError::SignupDisabled);
    }
    csrf::require_for_visitor(&state, &session, &headers, &form.csrf).await?;

    let refuse = async |status: StatusCode, error: FormError| -> Result<Response, PageError> {
        let csrf = csrf::for_visitor(&state, &session, &headers).await?;
        let page = SignUpPage {
            csrf: csrf.token.clone(),
            username: form.username.chars().take(64).collect(),
            email: form.email.chars().take(254).collect(),
            error: Some(error),
            app: sessions::asking_app(&session).await?,
        };
        Ok(csrf.attach((status, page).into_response()))
    };

    let (username, email) = match check_form(&form) {
        Ok(valid) => valid,
        Err(error) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, error).await,
    };

    let now = state.clock.now();
    // Counted before the hash and whatever the outcome: a taken name is a probe too.
    let taken = {
        let mut conn = state.conn().await?;
        state
            .limits
            .take(&mut conn, Limit::SignUpPerIp, &Key::ip(ip), now)
            .await?
    };
    if let Err(blocked) = taken {
        let secs = blocked.retry_after.whole_seconds().max(1);
        let message = format!(
            "Too many new accounts from your network. Try again in {}.",
            wait_in_words(secs)
        );
        let mut response = refuse(StatusCode::TOO_MANY_REQUESTS, FormError::form(message)).await?;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(response);
    }
    let hash = state.hasher.hash(&form.password).await?;
    let user = {
        let mut conn = state.conn().await?;
        let new = NewUser::new(&username, email.as_ref(), &hash, now);
        match users::create(&mut conn, &new, &Actor::system(Some(ip.into()))).await {
            Ok(user) => user,
            Err(e @ CreateUserError::UsernameTaken) => {
                return refuse(StatusCode::CONFLICT, FormError::on("username", &e)).await;
            }
            Err(e @ CreateUserError::EmailTaken) => {
                return refuse(StatusCode::CONFLICT, FormError::on("email", &e)).await;
            }
            Err(CreateUserError::Db(e)) => return Err(e.into()),
        }
    };
    tracing::info!(user_id = %user.id, "user signed up");

    let to = sessions::take_return_to(&session).await?;
    sessions::sign_in(&session, user.id, user.credential_version, now).await?;
    Ok(see_other(to.as_deref().unwrap_or("/account")))
}
