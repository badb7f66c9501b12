//! `/admin/v1/users`: create (once per `Idempotency-Key`), import in batches, list by cursor,
//! read and change (under `If-Match`), and the account actions, each one call into the domain.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use diesel_async::AsyncPgConnection;
use serde::Deserialize;
use uuid::Uuid;

use super::problem::Problem;
use super::{admit, json_body};
use crate::app::AppState;
use crate::clients::idempotency::IdempotencyKey;
use crate::http::client_ip::ClientIp;
use crate::oauth::admin::{self, Creation, Once, Operation, UpdateError, UserPatch, UserView};
use crate::oauth::import::Imported;
use crate::users::name::{Email, Role, Subject, Username};
use crate::users::{self, User};

const fn read(name: &'static str) -> Operation {
    Operation {
        scope: "admin:users.read",
        name,
    }
}

const fn write(name: &'static str) -> Operation {
    Operation {
        scope: "admin:users.write",
        name,
    }
}

/// Most records in one import batch (the body limit bounds it too).
pub const IMPORT_BATCH_MAX: usize = 500;

/// A user with their entity tag (RFC 9110 §8.8.3), for a later `If-Match`.
fn user_response(status: StatusCode, user: &User) -> Response {
    let mut response = (status, Json(UserView::of(user))).into_response();
    if let Ok(tag) = HeaderValue::from_str(&user.entity_tag()) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

fn user_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| Problem::not_found("user"))
}

async fn find_user(conn: &mut AsyncPgConnection, id: Uuid) -> Result<User, Problem> {
    users::find(conn, id)
        .await?
        .ok_or_else(|| Problem::not_found("user"))
}

/// The filters and position of a listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    sub: Option<String>,
    username: Option<String>,
    email: Option<String>,
    role: Option<String>,
    disabled: Option<bool>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /admin/v1/users`: a page, oldest first, and `next_cursor` while there may be more.
#[tracing::instrument(skip_all)]
pub async fn list_users(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    admit(&state, &headers, ip, &read("users.list")).await?;
    let Query(q) = query.map_err(|e| Problem::client(StatusCode::BAD_REQUEST, e.body_text()))?;
    let after = match q.cursor.as_deref() {
        None => None,
        Some(raw) => Some(admin::decode_cursor(raw).ok_or_else(|| {
            Problem::client(StatusCode::BAD_REQUEST, "cursor is not one this API gave")
        })?),
    };
    // Filters are parsed as the values they match, so nothing unstorable reaches a query.
    let bad = |field: &str, e: &dyn std::fmt::Display| {
        Problem::client(StatusCode::BAD_REQUEST, format!("{field}: {e}"))
    };
    let filter = users::Filter {
        sub: match q.sub.as_deref() {
            None => None,
            Some(raw) => Some(Subject::parse(raw).map_err(|e| bad("sub", &e))?),
        },
        username: match q.username.as_deref() {
            None => None,
            Some(raw) => Some(Username::parse(raw).map_err(|e| bad("username", &e))?),
        },
        email: match q.email.as_deref() {
            None => None,
            Some(raw) => Email::parse_optional(raw).map_err(|e| bad("email", &e))?,
        },
        role: match q.role.as_deref() {
            None => None,
            Some(raw) => Some(Role::parse(raw).map_err(|e| bad("role", &e))?),
        },
        disabled: q.disabled,
    };
    let limit = q.limit.unwrap_or(admin::PAGE_DEFAULT);
    let mut conn = state.conn().await?;
    let (page, next) = admin::page_of_users(&mut conn, &filter, after, limit).await?;
    let users: Vec<UserView> = page.iter().map(UserView::of).collect();
    Ok(Json(serde_json::json!({ "users": users, "next_cursor": next })).into_response())
}

/// `POST /admin/v1/users`: one user from an import record or a plain `password`; with an
/// `Idempotency-Key`, a retry gets the first answer.
#[tracing::instrument(skip_all)]
pub async fn create_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let caller = admit(&state, &headers, ip, &write("users.create")).await?;
    let record = json_body(&headers, &body)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(IdempotencyKey::parse)
                .ok_or_else(|| {
                    Problem::client(
                        StatusCode::BAD_REQUEST,
                        "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    )
                })?,
        ),
    };
    let once = key.as_ref().map(|key| Once {
        client_id: &caller.client_id,
        key,
        fingerprint: fingerprint(&body),
    });
    let by = caller.actor(Some(ip.into()));
    let mut conn = state.conn().await?;
    let now = state.clock.now();
    match admin::create_user(&mut conn, &state.hasher, record, once, &by, now).await? {
        Creation::KeyReused => Err(Problem::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this Idempotency-Key was used for a different request",
        )),
        Creation::Done(Imported::Created { id, .. }) => {
            let user = users::find(&mut conn, id)
                .await?
                .ok_or_else(|| Problem::not_found("user (deleted since it was created)"))?;
            let mut response = user_response(StatusCode::CREATED, &user);
            if let Ok(at) = HeaderValue::from_str(&format!("/admin/v1/users/{id}")) {
                response.headers_mut().insert(header::LOCATION, at);
            }
            Ok(response)
        }
        Creation::Done(Imported::Skipped { reason, .. }) => {
            Err(Problem::client(StatusCode::CONFLICT, reason))
        }
        Creation::Done(Imported::Refused { reason }) => {
            Err(Problem::client(StatusCode::UNPROCESSABLE_ENTITY, reason))
        }
    }
}

/// SHA-256 of a creation's body: the same key with another body is a different request.
fn fingerprint(body: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `POST /admin/v1/users:import`: `{"users": [record, ...]}`, each created, skipped (already
/// here) or refused with the reason, in order; a re-run changes nothing.
#[tracing::instrument(skip_all)]
pub async fn import_users(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let caller = admit(&state, &headers, ip, &write("users.import")).await?;
    let body = json_body(&headers, &body)?;
    let Some(records) = body.get("users").and_then(serde_json::Value::as_array) else {
        return Err(Problem::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body must be {\"users\": [...]}",
        ));
    };
    if records.len() > IMPORT_BATCH_MAX {
        return Err(Problem::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("at most {IMPORT_BATCH_MAX} users per batch"),
        ));
    }
    let by = caller.actor(Some(ip.into()));
    let mut conn = state.conn().await?;
    let mut results = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let outcome = crate::oauth::import::import_value(
            &mut conn,
            &state.hasher,
            record.clone(),
            &by,
            state.clock.now(),
        )
        .await?;
        let mut line = serde_json::to_value(&outcome).unwrap_or_default();
        line["index"] = index.into();
        results.push(line);
    }
    Ok(Json(serde_json::json!({ "results": results })).into_response())
}

/// `GET /admin/v1/users/{id}`.
#[tracing::instrument(skip_all)]
pub async fn get_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(target): Path<String>,
) -> Result<Response, Problem> {
    admit(&state, &headers, ip, &read("users.get")).await?;
    let mut conn = state.conn().await?;
    let user = find_user(&mut conn, user_id(&target)?).await?;
    Ok(user_response(StatusCode::OK, &user))
}

/// `PATCH /admin/v1/users/{id}`: `username`, `email` (null removes), `email_verified`,
/// `roles`; with `If-Match`, only if nobody changed the user since (412 otherwise).
#[tracing::instrument(skip_all)]
pub async fn update_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(target): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let caller = admit(&state, &headers, ip, &write("users.update")).await?;
    let id = user_id(&target)?;
    let patch: UserPatch = serde_json::from_value(json_body(&headers, &body)?)
        .map_err(|e| Problem::client(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    let by = caller.actor(Some(ip.into()));
    let mut conn = state.conn().await?;
    let now = state.clock.now();
    match admin::update_user(&mut conn, id, if_match, &patch, &by, now).await {
        Ok(user) => Ok(user_response(StatusCode::OK, &user)),
        Err(UpdateError::NotFound) => Err(Problem::not_found("user")),
        Err(e @ UpdateError::Stale) => Err(Problem::client(
            StatusCode::PRECONDITION_FAILED,
            e.to_string(),
        )),
        Err(UpdateError::Invalid(m)) => Err(Problem::client(StatusCode::UNPROCESSABLE_ENTITY, m)),
        Err(UpdateError::Conflict(m)) => Err(Problem::client(StatusCode::CONFLICT, m)),
        Err(UpdateError::App(e)) => Err(Problem::App(e)),
    }
}

/// `DELETE /admin/v1/users/{id}`: the cut-off, then the account (the trail keeps the id).
#[tracing::instrument(skip_all)]
pub async fn delete_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(target): Path<String>,
) -> Result<Response, Problem> {
    let caller = admit(&state, &headers, ip, &write("users.delete")).await?;
    let mut conn = state.conn().await?;
    let user = find_user(&mut conn, user_id(&target)?).await?;
    let by = caller.actor(Some(ip.into()));
    users::delete(&mut conn, user.id, &by, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The body of `:setPassword`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// `POST /admin/v1/users/{id}:{method}` (AIP-136 custom methods): `disable`, `enable`,
/// `signOutEverywhere`, `setPassword` (`{"password"}`), `sendPasswordReset`.
#[tracing::instrument(skip_all)]
pub async fn user_method(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(target): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let (raw_id, method) = target.split_once(':').ok_or_else(|| {
        Problem::client(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST a method: /admin/v1/users/{id}:disable, :enable, :signOutEverywhere, :setPassword or :sendPasswordReset",
        )
    })?;
    let caller = admit(&state, &headers, ip, &write("users.method")).await?;
    let mut conn = state.conn().await?;
    let user = find_user(&mut conn, user_id(raw_id)?).await?;
    let by = caller.actor(Some(ip.into()));
    let now = state.clock.now();
    let conn = &mut conn;
    match method {
        "disable" => {
            users::update_disabled(conn, user.id, &by, now).await?;
        }
        "enable" => {
            users::update_enabled(conn, user.id, &by, now).await?;
        }
        "signOutEverywhere" => {
            let families = users::sign_out_everywhere(conn, user.id, &by, now).await?;
            let body = serde_json::json!({ "families_revoked": families.len() });
            return Ok(Json(body).into_response());
        }
        "setPassword" => {
            let NewPassword { password } = serde_json::from_value(json_body(&headers, &body)?)
                .map_err(|_| {
                    Problem::client(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "the body must be {\"password\": \"...\"}",
                    )
                })?;
            admin::set_password(conn, &state.hasher, &user, &password, &by, now)
                .await?
                .map_err(|m| {
                    Problem::client(StatusCode::UNPROCESSABLE_ENTITY, format!("password: {m}"))
                })?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        "sendPasswordReset" => {
            let Some(to) =
                crate::oauth::recovery::send_reset(conn, state.account_mail(), &user, &by, now)
                    .await?
            else {
                return Err(Problem::client(
                    StatusCode::CONFLICT,
                    "the user has no email address to send a code to",
                ));
            };
            let body = serde_json::json!({ "queued_to": to });
            return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
        }
        _ => return Err(Problem::not_found("method")),
    }
    let user = users::find(conn, user.id)
        .await?
        .ok_or_else(|| Problem::not_found("user"))?;
    Ok(user_response(StatusCode::OK, &user))
}

fn rfc3339(t: Option<time::OffsetDateTime>) -> Option<String> {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
}

/// `GET /admin/v1/users/{id}/sessions`: the browsers they are signed in on, most recent first;
/// each `handle` names one for `DELETE` (it neither is nor reveals the session id).
#[tracing::instrument(skip_all)]
pub async fn list_sessions(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(target): Path<String>,
) -> Result<Response, Problem> {
    admit(&state, &headers, ip, &read("users.sessions")).await?;
    let mut conn = state.conn().await?;
    let user = find_user(&mut conn, user_id(&target)?).await?;
    let sessions =
        crate::sessions::store::list_for_user(&mut conn, user.id, state.clock.now()).await?;
    let sessions: Vec<serde_json::Value> = sessions
        .iter()
        .map(|s| {
            serde_json::json!({
                "handle": s.handle,
                "device": s.device,
                "ip": s.ip,
                "signed_in_at": rfc3339(s.signed_in_at),
                "last_seen_at": rfc3339(s.last_seen_at),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "sessions": sessions })).into_response())
}

/// `DELETE /admin/v1/users/{id}/sessions[/{handle}]`: signs one browser, or all, out
/// (`session.ended`); `{"ended": n}`.
#[tracing::instrument(skip_all)]
pub async fn end_sessions(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(path): Path<Vec<(String, String)>>,
) -> Result<Response, Problem> {
    use crate::sessions::store::{Which, end_for_user};
    let caller = admit(&state, &headers, ip, &write("users.end_sessions")).await?;
    let param = |name: &str| {
        path.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut conn = state.conn().await?;
    let user = find_user(&mut conn, user_id(param("target").unwrap_or(""))?).await?;
    let which = param("handle").map_or(Which::All, Which::Only);
    let by = caller.actor(Some(ip.into()));
    let ended = end_for_user(&mut conn, user.id, which, &by, state.clock.now()).await?;
    Ok(Json(serde_json::json!({ "ended": ended })).into_response())
}

/// `GET /admin/v1/users/{id}/consents`: the apps they allowed, with the scopes.
#[tracing::instrument(skip_all)]
pub async fn list_consents(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(target): Path<String>,
) -> Result<Response, Problem> {
    admit(&state, &headers, ip, &read("users.consents")).await?;
    let mut conn = state.conn().await?;
    let user = find_user(&mut conn, user_id(&target)?).await?;
    let consents = crate::users::consents::list_for_user(&mut conn, user.id).await?;
    let consents: Vec<serde_json::Value> = consents
        .iter()
        .map(|c| {
            serde_json::json!({
                "client_id": c.client_id,
                "client_name": c.client_name,
                "scope": c.scopes.join(" "),
                "granted_at": rfc3339(Some(c.granted_at)),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "consents": consents })).into_response())
}

/// `DELETE /admin/v1/users/{id}/consents/{client_id}`: withdraws the consent, and with it what
/// the app holds for them (`consent.revoked`, 204; 404 when there was none).
#[tracing::instrument(skip_all)]
pub async fn withdraw_consent(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path((target, client_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let caller = admit(&state, &headers, ip, &write("users.withdraw_consent")).await?;
    let mut conn = state.conn().await?;
    let user = find_user(&mut conn, user_id(&target)?).await?;
    let by = caller.actor(Some(ip.into()));
    let now = state.clock.now();
    if crate::oauth::consent::withdraw(&mut conn, user.id, &client_id, &by, now).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found("consent"))
    }
}
