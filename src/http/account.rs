//! The account page: who is signed in, and the way out.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use time::macros::format_description;
use tower_sessions::Session;

use crate::app::AppState;
use crate::db;
use crate::http::page::{PageError, csrf_for_form, see_other};
use crate::sessions;
use crate::users;

/// The account page.
#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
pub struct AccountPage {
    csrf: String,
    username: String,
    email: Option<String>,
    member_since: String,
    signed_in_at: String,
}

fn human_time(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_default()
}

/// `GET /account` (and `/`): the signed-in person's details, else the sign-in page.
pub async fn get_account(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, PageError> {
    let Some(current) = sessions::signed_in(&session).await? else {
        sessions::set_return_to(&session, "/account").await?;
        return Ok(see_other("/signin"));
    };
    let mut conn = db::connect(&state.db).await?;
    let user = users::find(&mut conn, current.user_id).await?;
    drop(conn);
    // A user disabled or deleted since signing in loses the session on their next request.
    let Some(user) = user.filter(|u| !u.is_disabled()) else {
        sessions::sign_out(&session).await?;
        return Ok(see_other("/signin"));
    };
    Ok(AccountPage {
        csrf: csrf_for_form(&session).await?,
        username: user.username,
        email: user.email,
        member_since: human_time(user.created_at),
        signed_in_at: human_time(current.auth_time),
    }
    .into_response())
}
