//! `/admin/v1/clients`: `keyward clients`' operations for a backend (list, read, register,
//! change under `If-Match`, delete, rotate a secret), never on a management client.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use super::{admit, json_body};
use crate::app::AppState;
use crate::clients::{self, Client};
use crate::http::client_ip::ClientIp;
use crate::oauth::admin::{self, ClientError, ClientPatch, ClientRequest, ClientView, Operation};

const LIST: Operation = Operation {
    scope: "admin:clients.read",
    name: "clients.list",
};
const GET: Operation = Operation {
    scope: "admin:clients.read",
    name: "clients.get",
};
const WRITE: Operation = Operation {
    scope: "admin:clients.write",
    name: "clients.write",
};

/// A client with its entity tag, and its secret when one was just generated (shown once).
fn client_response(status: StatusCode, client: &Client, secret: Option<&str>) -> Response {
    let mut body = serde_json::to_value(ClientView::of(client)).unwrap_or_default();
    if let Some(secret) = secret {
        body["client_secret"] = secret.into();
    }
    let mut response = (status, Json(body)).into_response();
    if let Ok(tag) = HeaderValue::from_str(&client.entity_tag()) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

impl From<ClientError> for Problem {
    fn from(e: ClientError) -> Self {
        let detail = e.to_string();
        let status = match e {
            ClientError::Db(db) => return Self::App(db.into()),
            ClientError::NotFound => StatusCode::NOT_FOUND,
            ClientError::Management => StatusCode::FORBIDDEN,
            ClientError::Stale => StatusCode::PRECONDITION_FAILED,
            ClientError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ClientError::Conflict(_) => StatusCode::CONFLICT,
        };
        Self::client(status, detail)
    }
}

/// `GET /admin/v1/clients`: every client, by id.
#[tracing::instrument(skip_all)]
pub async fn list_clients(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    admit(&state, &headers, ip, &LIST).await?;
    let mut conn = state.conn().await?;
    let all: Vec<ClientView> = clients::list(&mut conn)
        .await?
        .iter()
        .map(ClientView::of)
        .collect();
    Ok(Json(serde_json::json!({ "clients": all })).into_response())
}

/// `GET /admin/v1/clients/{id}`.
#[tracing::instrument(skip_all)]
pub async fn get_client(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    admit(&state, &headers, ip, &GET).await?;
    let mut conn = state.conn().await?;
    let client = clients::find(&mut conn, &id)
        .await?
        .ok_or_else(|| Problem::not_found("client"))?;
    Ok(client_response(StatusCode::OK, &client, None))
}

/// `POST /admin/v1/clients`: registers a client (201, its secret shown once).
#[tracing::instrument(skip_all)]
pub async fn create_client(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let caller = admit(&state, &headers, ip, &WRITE).await?;
    let request: ClientRequest = serde_json::from_value(json_body(&headers, &body)?)
        .map_err(|e| Problem::client(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let by = caller.actor(Some(ip.into()));
    let mut conn = state.conn().await?;
    let (client, secret) =
        admin::register_client(&mut conn, request, &by, state.clock.now()).await?;
    let secret = secret
        .as_ref()
        .map(crate::tokens::opaque::PlainToken::expose);
    Ok(client_response(StatusCode::CREATED, &client, secret))
}

/// `PATCH /admin/v1/clients/{id}`: with `If-Match`, only if nobody changed it since.
#[tracing::instrument(skip_all)]
pub async fn update_client(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let caller = admit(&state, &headers, ip, &WRITE).await?;
    let patch: ClientPatch = serde_json::from_value(json_body(&headers, &body)?)
        .map_err(|e| Problem::client(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    let by = caller.actor(Some(ip.into()));
    let mut conn = state.conn().await?;
    let now = state.clock.now();
    let client = admin::edit_client(&mut conn, &id, if_match, patch, &by, now).await?;
    Ok(client_response(StatusCode::OK, &client, None))
}

/// `DELETE /admin/v1/clients/{id}`: a cut-off for everything the client holds (204).
#[tracing::instrument(skip_all)]
pub async fn delete_client(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let caller = admit(&state, &headers, ip, &WRITE).await?;
    let by = caller.actor(Some(ip.into()));
    let mut conn = state.conn().await?;
    admin::delete_client(&mut conn, &id, &by, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /admin/v1/clients/{id}:rotateSecret`: a new secret, shown once; the old one stops
/// working everywhere within `KEYWARD_KEY_RELOAD`.
#[tracing::instrument(skip_all)]
pub async fn client_method(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(target): Path<String>,
) -> Result<Response, Problem> {
    let Some(id) = target.strip_suffix(":rotateSecret") else {
        return Err(Problem::not_found(
            "method (POST /admin/v1/clients/{id}:rotateSecret)",
        ));
    };
    let caller = admit(&state, &headers, ip, &WRITE).await?;
    let by = caller.actor(Some(ip.into()));
    let mut conn = state.conn().await?;
    let secret = admin::rotate_client_secret(&mut conn, id, &by, state.clock.now()).await?;
    Ok(
        Json(serde_json::json!({ "client_id": id, "client_secret": secret.expose() }))
            .into_response(),
    )
}
