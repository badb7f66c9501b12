//! A real SMTP server process for the tests (`tests/smtp/sink.py`, on Debian's aiosmtpd): each
//! mail it takes is a JSON file the tests read; it can be stopped and started again on its port
//! to play an outage.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One mail as the server's MIME parser read it.
#[derive(Clone, Debug, Deserialize)]
pub struct Mail {
    /// `RCPT TO` addresses.
    pub envelope_to: Vec<String>,
    /// The `From` header.
    pub from: String,
    /// The `To` header.
    pub to: String,
    /// The subject, decoded.
    pub subject: String,
    /// The `Message-ID` header.
    pub message_id: String,
    /// The plain-text part, decoded.
    pub text: Option<String>,
    /// The HTML part, decoded.
    pub html: Option<String>,
}

impl Mail {
    /// The eight digits after "Your code: " in the text part.
    pub fn code(&self) -> String {
        let text = self.text.as_deref().expect("a text part");
        let shown = text
            .lines()
            .find_map(|l| l.strip_prefix("Your code: "))
            .expect("a code line");
        shown.chars().filter(char::is_ascii_digit).collect()
    }

    /// The link that fills the code in, if the mail has one.
    pub fn link(&self) -> Option<String> {
        let text = self.text.as_deref()?;
        text.lines()
            .find(|l| l.starts_with("http") && l.contains("code="))
            .map(|l| l.trim().to_owned())
    }

    /// Whether it went to `to` and its subject ends with `subject_end`.
    pub fn is(&self, to: &str, subject_end: &str) -> bool {
        self.envelope_to.iter().any(|t| t == to) && self.subject.ends_with(subject_end)
    }
}

impl crate::support::TestApp {
    /// An app sending mail to `sink`, with `extra` settings.
    pub async fn with_mail(sink: &SmtpSink, extra: &[(&'static str, &str)]) -> Self {
        let url = sink.url();
        let mut settings = vec![
            ("KEYWARD_SMTP_URL", url.as_str()),
            ("KEYWARD_MAIL_FROM", "Keyward <no-reply@keyward.test>"),
        ];
        settings.extend_from_slice(extra);
        Self::spawn_with(&settings).await
    }
}

/// The server, its port and the directory of what it received.
pub struct SmtpSink {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl SmtpSink {
    /// Starts a server on a free port.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("keyward-smtp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let (child, port) = spawn(0, &dir).await;
        Self {
            child: Some(child),
            port,
            dir,
        }
    }

    /// The `KEYWARD_SMTP_URL` that reaches it (plain SMTP: it is on this machine).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Stops it: connections are refused until [`SmtpSink::restart`].
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (child, port) = spawn(self.port, &self.dir).await;
        assert_eq!(port, self.port);
        self.child = Some(child);
    }

    /// Every mail received so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits until at least `count` mails arrived; returns them all. Waits for the condition,
    /// however long a busy machine takes; gives up only after minutes, to fail rather than hang.
    pub async fn wait_for(&self, count: usize) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let mails = self.mails();
            if mails.len() >= count {
                return mails;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {count} mails arrived",
                mails.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The mails to `to` whose subject ends with `subject_end`, once there are `count`.
    pub async fn wait_for_about(&self, to: &str, subject_end: &str, count: usize) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let found: Vec<Mail> = self
                .mails()
                .into_iter()
                .filter(|m| m.is(to, subject_end))
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {count} '{subject_end}' mails to {to}",
                found.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The one mail to `address`, waiting for it.
    pub async fn wait_for_mail_to(&self, address: &str) -> Mail {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let mut to: Vec<Mail> = self
                .mails()
                .into_iter()
                .filter(|m| m.envelope_to.iter().any(|t| t == address))
                .collect();
            if let Some(mail) = to.pop() {
                assert!(to.is_empty(), "more than one mail to {address}");
                return mail;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no mail to {address}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `sink.py` on `port` (0: any) and waits for the port it listens on.
async fn spawn(port: u16, dir: &Path) -> (Child, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/sink.py");
    // Debian's Python, which has Debian's aiosmtpd (another python3 on the PATH may not).
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(port.to_string())
        .arg(dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3-aiosmtpd runs (make test-deps installs it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("the SMTP server prints its port once listening");
    (child, line.trim().parse().unwrap())
}
