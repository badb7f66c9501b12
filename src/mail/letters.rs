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

/// Renders a template whose fields are all strings: it cannot fail.
fn render(template: &impl Template) -> String {
    template
        .render()
        .unwrap_or_else(|e| unreachable!("a letter of strings renders: {e}"))
}
