//! The letters Keyward sends, each a plain-text and an HTML askama template under
//! `templates/mail/`, named with the product name; links are built from the issuer, never from a
//! request's `Host`.

use askama::Template;

use crate::mail::Letter;

/// What every letter is signed with.
#[derive(Clone, Debug)]
pub struct Letterhead {
    /// `KEYWARD_PRODUCT_NAME`.
    pub product: String,
    /// `KEYWARD_ISSUER`: the one base of every link.
    pub issuer: String,
}

#[derive(Template)]
#[template(path = "mail/test.txt")]
struct TestText<'a> {
    letterhead: &'a Letterhead,
    to: &'a str,
}

#[derive(Template)]
#[template(path = "mail/test.html")]
struct TestHtml<'a> {
    letterhead: &'a Letterhead,
    subject: &'a str,
    to: &'a str,
}

/// `keyward mail test ADDRESS`: proves the transport delivers.
#[must_use]
pub fn test(letterhead: &Letterhead, to: &str) -> Letter {
    let subject = format!("{}: test mail", letterhead.product);
    Letter {
        kind: "test".to_owned(),
        to: to.to_owned(),
        text: render(&TestText { letterhead, to }),
        html: render(&TestHtml {
            letterhead,
            subject: &subject,
            to,
        }),
        subject,
    }
}

#[derive(Template)]
#[template(path = "mail/verify_email.txt")]
struct VerifyText<'a> {
    letterhead: &'a Letterhead,
    code: &'a str,
    link: &'a str,
    valid_for: &'a str,
}

#[derive(Template)]
#[template(path = "mail/verify_email.html")]
struct VerifyHtml<'a> {
    letterhead: &'a Letterhead,
    subject: &'a str,
    code: &'a str,
    link: &'a str,
    valid_for: &'a str,
}

/// A code proving `to`, and a link that only fills it in (mail scanners open links: the code is
/// spent only by a form the person sends). `code` is the eight digits.
#[must_use]
pub fn verify_email(letterhead: &Letterhead, to: &str, code: &str, valid_for: &str) -> Letter {
    let subject = format!("{}: confirm your email address", letterhead.product);
    let link = format!("{}/verify-email?code={code}", letterhead.issuer);
    // Grouped for reading aloud and typing; the form ignores the space.
    let shown = format!(
        "{} {}",
        &code[..4.min(code.len())],
        &code[4.min(code.len())..]
    );
    Letter {
        kind: "verify_email".to_owned(),
        to: to.to_owned(),
        text: render(&VerifyText {
            letterhead,
            code: &shown,
            link: &link,
            valid_for,
        }),
        html: render(&VerifyHtml {
            letterhead,
            subject: &subject,
            code: &shown,
            link: &link,
            valid_for,
        }),
        subject,
    }
}

#[derive(Template)]
#[template(path = "mail/address_in_use.txt")]
struct InUseText<'a> {
    letterhead: &'a Letterhead,
    signin_link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/address_in_use.html")]
struct InUseHtml<'a> {
    letterhead: &'a Letterhead,
    subject: &'a str,
    signin_link: &'a str,
}

/// To the owner of a verified address someone signed up with: the page said the same as for a
/// new address, so only the owner learns it is taken (OWASP ASVS 5.0, registration).
#[must_use]
pub fn address_in_use(letterhead: &Letterhead, to: &str) -> Letter {
    let subject = format!(
        "{}: someone tried to sign up with your address",
        letterhead.product
    );
    let signin_link = format!("{}/signin", letterhead.issuer);
    Letter {
        kind: "address_in_use".to_owned(),
        to: to.to_owned(),
        text: render(&InUseText {
            letterhead,
            signin_link: &signin_link,
        }),
        html: render(&InUseHtml {
            letterhead,
            subject: &subject,
            signin_link: &signin_link,
        }),
        subject,
    }
}

#[derive(Template)]
#[template(path = "mail/password_reset.txt")]
struct ResetText<'a> {
    letterhead: &'a Letterhead,
    username: &'a str,
    code: &'a str,
    link: &'a str,
    valid_for: &'a str,
}

#[derive(Template)]
#[template(path = "mail/password_reset.html")]
struct ResetHtml<'a> {
    letterhead: &'a Letterhead,
    subject: &'a str,
    username: &'a str,
    code: &'a str,
    link: &'a str,
    valid_for: &'a str,
}

/// A code that sets a new password for `username`, and a link that only fills it in.
#[must_use]
pub fn password_reset(
    letterhead: &Letterhead,
    (to, username): (&str, &str),
    code: &str,
    valid_for: &str,
) -> Letter {
    let subject = format!("{}: your password reset code", letterhead.product);
    let link = format!(
        "{}/reset-password?user={}&code={code}",
        letterhead.issuer,
        url::form_urlencoded::byte_serialize(username.as_bytes()).collect::<String>()
    );
    let shown = grouped(code);
    Letter {
        kind: "password_reset".to_owned(),
        to: to.to_owned(),
        text: render(&ResetText {
            letterhead,
            username,
            code: &shown,
            link: &link,
            valid_for,
        }),
        html: render(&ResetHtml {
            letterhead,
            subject: &subject,
            username,
            code: &shown,
            link: &link,
            valid_for,
        }),
        subject,
    }
}

#[derive(Template)]
#[template(path = "mail/password_changed.txt")]
struct ChangedText<'a> {
    letterhead: &'a Letterhead,
    username: &'a str,
    forgot_link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/password_changed.html")]
struct ChangedHtml<'a> {
    letterhead: &'a Letterhead,
    subject: &'a str,
    username: &'a str,
    forgot_link: &'a str,
}

/// The notice that `username`'s password changed (NIST SP 800-63B §6.1.2.3: notify the owner).
#[must_use]
pub fn password_changed(letterhead: &Letterhead, to: &str, username: &str) -> Letter {
    let subject = format!("{}: your password was changed", letterhead.product);
    let forgot_link = format!("{}/forgot-password", letterhead.issuer);
    Letter {
        kind: "password_changed".to_owned(),
        to: to.to_owned(),
        text: render(&ChangedText {
            letterhead,
            username,
            forgot_link: &forgot_link,
        }),
        html: render(&ChangedHtml {
            letterhead,
            subject: &subject,
            username,
            forgot_link: &forgot_link,
        }),
        subject,
    }
}

/// Eight digits as two groups of four, for reading and typing; forms ignore the space.
fn grouped(code: &str) -> String {
    let split = code.len().min(4);
    format!("{} {}", &code[..split], &code[split..])
}

/// Renders a template whose fields are all strings: it cannot fail.
fn render(template: &impl Template) -> String {
    template
        .render()
        .unwrap_or_else(|e| unreachable!("a letter of strings renders: {e}"))
}
