//! The HTTP calls both load generators make: `POST /token` as a confidential client, and `GET`.

use serde_json::Value;

/// A running Keyward and the client the generator authenticates as.
pub struct Endpoint {
    /// Keeps connections alive between requests, as real clients do.
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The client's id.
    pub id: String,
    /// Its secret (HTTP Basic).
    pub secret: String,
}

impl Endpoint {
    /// A token request; the status (none when the request failed) and the JSON body.
    pub async fn token(&self, form: &[(&str, &str)]) -> (Option<u16>, Option<Value>) {
        let resp = self
            .http
            .post(format!("{}/token", self.base))
            .basic_auth(&self.id, Some(&self.secret))
            .form(form)
            .send()
            .await;
        match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                (Some(status), r.json().await.ok())
            }
            Err(_) => (None, None),
        }
    }

    /// `GET path`, its body read; the status.
    pub async fn get(&self, path: &str) -> Option<u16> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        let _ = r.bytes().await;
        Some(status)
    }
}
