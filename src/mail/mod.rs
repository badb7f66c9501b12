//! Mail to people: letters composed from templates, queued in the transaction of what causes
//! them (the outbox), and delivered by every instance over SMTP, or into files when no SMTP
//! server is configured.

pub mod delivery;
pub mod letters;
pub mod outbox;
pub mod transport;

use serde::{Deserialize, Serialize};

/// One mail, as composed: who it is for, and what it says in text and in HTML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Letter {
    /// What kind of mail (audit events and metrics name it; never secret).
    pub kind: String,
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
}
