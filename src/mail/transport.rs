//! Where mail goes: an SMTP server (lettre: STARTTLS or implicit TLS, plain only to a server on
//! this machine), or, when none is configured, `.eml` files in a directory for development.

use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long one SMTP conversation may take before it counts as a failed attempt.
const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where the operator said mail goes (`KEYWARD_SMTP_URL`, `KEYWARD_SMTP_PASSWORD_FILE`,
/// `KEYWARD_MAIL_DIR`).
#[derive(Clone)]
pub enum Route {
    /// An SMTP server.
    Smtp {
        /// The URL, checked by [`check_smtp_url`].
        url: String,
        /// A file holding the password, replacing the URL's (read when the transport opens).
        password_file: Option<PathBuf>,
    },
    /// `.eml` files in this directory (no SMTP server configured).
    Files(PathBuf),
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp { url, .. } => write!(f, "Smtp({})", without_credentials(url)),
            Self::Files(dir) => write!(f, "Files({})", dir.display()),
        }
    }
}

/// Checks an SMTP URL and returns the one lettre is given. `smtps://` is implicit TLS (port
/// 465); `smtp://` is STARTTLS, required (port 587), unless the server is on this machine (a
/// local relay), where it may be plain. `tls=opportunistic` is refused: anyone on the path could
/// strip the STARTTLS offer and read the codes in the mail (RFC 8314 §3).
pub fn check_smtp_url(raw: &str) -> Result<String, String> {
    let mut url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    let host = url
        .host()
        .ok_or_else(|| "names no host (e.g. smtp://mail.example.com:587)".to_owned())?;
    // smtp:// is not a scheme the URL standard knows, so an IPv4 host stays a "domain".
    let loopback = match host {
        url::Host::Domain(d) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match (url.scheme(), tls.as_deref()) {
        ("smtps", None) | ("smtp", Some("required")) => {}
        ("smtp", None) if loopback => {}
        ("smtp", None) => {
            url.query_pairs_mut().append_pair("tls", "required");
        }
        ("smtp", Some(other)) => {
            return Err(format!(
                "tls={other} is not accepted: use smtp:// (STARTTLS, required) or smtps://"
            ));
        }
        ("smtps", Some(_)) => return Err("smtps:// is always TLS: drop the tls parameter".into()),
        (scheme, _) => return Err(format!("scheme '{scheme}' is not smtp:// or smtps://")),
    }
    Ok(url.into())
}

/// The URL without its password, for logs and `keyward check`.
#[must_use]
pub fn without_credentials(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            let _ = url.set_password(None);
            url.into()
        }
        Err(_) => "<invalid>".to_owned(),
    }
}

/// Parses the sender (`KEYWARD_MAIL_FROM`), e.g. `Keyward <no-reply@example.com>`.
pub fn parse_sender(raw: &str) -> Result<Mailbox, String> {
    raw.parse::<Mailbox>()
        .map_err(|e| format!("'{raw}' is not an address with an optional name: {e}"))
}

/// Why a send failed, and whether trying again could help.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// The server refused for good (a 5xx reply, a malformed address): do not retry.
    pub permanent: bool,
    /// What happened, without credentials.
    pub message: String,
}

/// An open transport.
#[derive(Clone)]
pub struct Transport {
    inner: Inner,
    /// Where mail goes, without credentials.
    describe: String,
}

#[derive(Clone)]
enum Inner {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Transport {
    /// Opens `route`: for files, the directory is created (mode 0700: mails carry codes).
    pub fn open(route: &Route) -> Result<Self, String> {
        match route {
            Route::Smtp { url, password_file } => {
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| format!("cannot use the SMTP URL: {e}"))?
                    .timeout(Some(SMTP_TIMEOUT));
                if let Some(file) = password_file {
                    let password = std::fs::read_to_string(file).map_err(|e| {
                        format!("KEYWARD_SMTP_PASSWORD_FILE {}: {e}", file.display())
                    })?;
                    let user = url::Url::parse(url).map(|u| u.username().to_owned());
                    let user = user.unwrap_or_default();
                    let password = password.trim_end_matches(['\r', '\n']).to_owned();
                    builder = builder.credentials(Credentials::new(user, password));
                }
                Ok(Self {
                    inner: Inner::Smtp(builder.build()),
                    describe: without_credentials(url),
                })
            }
            Route::Files(dir) => {
                create_private_dir(dir)?;
                Ok(Self {
                    inner: Inner::Files(AsyncFileTransport::new(dir), dir.clone()),
                    describe: format!("files in {}", dir.display()),
                })
            }
        }
    }

    /// Where mail goes, without credentials.
    #[must_use]
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Hands `message` over; returns where it went (for files, the file's path).
    pub async fn send(&self, message: Message) -> Result<String, SendError> {
        match &self.inner {
            Inner::Smtp(smtp) => match smtp.send(message).await {
                Ok(_) => Ok(self.describe.clone()),
                Err(e) => Err(SendError {
                    permanent: e.is_permanent(),
                    message: e.to_string(),
                }),
            },
            Inner::Files(files, dir) => match files.send(message).await {
                Ok(id) => Ok(dir.join(format!("{id}.eml")).display().to_string()),
                Err(e) => Err(SendError {
                    permanent: false,
                    message: e.to_string(),
                }),
            },
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the mail directory {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_get_tls_unless_the_server_is_on_this_machine() {
        let ok = |raw: &str| check_smtp_url(raw).expect(raw);
        assert_eq!(
            ok("smtp://user:pw@mail.example.com:587"),
            "smtp://user:pw@mail.example.com:587?tls=required"
        );
        assert_eq!(
            ok("smtp://mail.example.com?tls=required"),
            "smtp://mail.example.com?tls=required"
        );
        assert_eq!(ok("smtps://mail.example.com"), "smtps://mail.example.com");
        assert_eq!(ok("smtp://127.0.0.1:2525"), "smtp://127.0.0.1:2525");
        assert_eq!(ok("smtp://localhost:25"), "smtp://localhost:25");
        assert_eq!(ok("smtp://[::1]:25"), "smtp://[::1]:25");
        for bad in [
            "smtp://mail.example.com?tls=opportunistic",
            "smtp://127.0.0.1?tls=none",
            "smtps://mail.example.com?tls=required",
            "http://mail.example.com",
            "smtp://",
            "not a url",
        ] {
            assert!(check_smtp_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_never_show() {
        let shown = format!(
            "{:?}",
            Route::Smtp {
                url: "smtp://user:hunter2@mail.example.com".into(),
                password_file: Some("/run/secrets/smtp".into()),
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("user@mail.example.com"), "{shown}");
    }

    #[test]
    fn a_sender_is_an_address_with_an_optional_name() {
        assert!(parse_sender("Keyward <no-reply@example.com>").is_ok());
        assert!(parse_sender("no-reply@example.com").is_ok());
        assert!(parse_sender("no-reply").is_err());
        assert!(parse_sender("").is_err());
    }
}
