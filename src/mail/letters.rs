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
#[template(path = "mail/code.txt")]
struct CodeText<'a> {
    letterhead: &'a Letterhead,
    intro: &'a str,
    code: &'a str,
    link: Option<&'a str>,
    valid_for: &'a str,
    if_not_you: &'a str,
}

#[derive(Template)]
#[template(path = "mail/code.html")]
struct CodeHtml<'a> {
    letterhead: &'a Letterhead,
    subject: &'a str,
    intro: &'a str,
    code: &'a str,
    link: Option<&'a str>,
    valid_for: &'a str,
    if_not_you: &'a str,
}

/// What a code letter says around its code.
struct CodeLetter<'a> {
    kind: &'a str,
    subject: String,
    intro: String,
    /// A link that only fills the code in (mail scanners open links: the code is spent only by
    /// a form the person sends).
    link: Option<String>,
    if_not_you: &'a str,
}

fn code_letter(
    letterhead: &Letterhead,
    to: &str,
    code: &str,
    valid_for: &str,
    l: &CodeLetter<'_>,
) -> Letter {
    let shown = grouped(code);
    let fields = |subject| CodeHtml {
        letterhead,
        subject,
        intro: &l.intro,
        code: &shown,
        link: l.link.as_deref(),
        valid_for,
        if_not_you: l.if_not_you,
    };
    let html = render(&fields(&l.subject));
    let text = render(&CodeText {
        letterhead,
        intro: &l.intro,
        code: &shown,
        link: l.link.as_deref(),
        valid_for,
        if_not_you: l.if_not_you,
    });
    Letter {
        kind: l.kind.to_owned(),
        to: to.to_owned(),
        subject: l.subject.clone(),
        text,
        html,
    }
}

/// A code proving `to`, and a link that fills it in. `code` is the eight digits.
#[must_use]
pub fn verify_email(letterhead: &Letterhead, to: &str, code: &str, valid_for: &str) -> Letter {
    let product = &letterhead.product;
    let letter = CodeLetter {
        kind: "verify_email",
        subject: format!("{product}: confirm your email address"),
        intro: format!("Confirm your email address for {product}."),
        link: Some(format!("{}/verify-email?code={code}", letterhead.issuer)),
        if_not_you: "If you did not ask for it, ignore this mail: nothing changes without the code.",
    };
    code_letter(letterhead, to, code, valid_for, &letter)
}

/// A code that sets a new password for `username`, and a link that fills it in.
#[must_use]
pub fn password_reset(
    letterhead: &Letterhead,
    (to, username): (&str, &str),
    code: &str,
    valid_for: &str,
) -> Letter {
    let product = &letterhead.product;
    let user: String = url::form_urlencoded::byte_serialize(username.as_bytes()).collect();
    let letter = CodeLetter {
        kind: "password_reset",
        subject: format!("{product}: your password reset code"),
        intro: format!(
            "Someone, hopefully you, asked to set a new {product} password for the account {username}."
        ),
        link: Some(format!(
            "{}/reset-password?user={user}&code={code}",
            letterhead.issuer
        )),
        if_not_you: "If you did not ask for it, ignore this mail: your password stays as it is.",
    };
    code_letter(letterhead, to, code, valid_for, &letter)
}

/// A code that moves an account to the address `to`. No link: the person is signed in on the
/// page that asked for it.
#[must_use]
pub fn email_change_code(letterhead: &Letterhead, to: &str, code: &str, valid_for: &str) -> Letter {
    let product = &letterhead.product;
    let letter = CodeLetter {
        kind: "email_change",
        subject: format!("{product}: confirm your new email address"),
        intro: format!("Confirm this as the new email address of your {product} account."),
        link: None,
        if_not_you: "If you did not ask for it, ignore this mail: nothing changes without the code.",
    };
    code_letter(letterhead, to, code, valid_for, &letter)
}

#[derive(Template)]
#[template(path = "mail/email_change_asked.txt")]
struct ChangeAskedText<'a> {
    letterhead: &'a Letterhead,
    username: &'a str,
    new_address: &'a str,
    forgot_link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/email_change_asked.html")]
struct ChangeAskedHtml<'a> {
    letterhead: &'a Letterhead,
    subject: &'a str,
    username: &'a str,
    new_address: &'a str,
    forgot_link: &'a str,
}

/// To the old address when someone asks to move `username`'s account to `new_address`.
#[must_use]
pub fn email_change_asked(
    letterhead: &Letterhead,
    (to, username): (&str, &str),
    new_address: &str,
) -> Letter {
    let subject = format!("{}: a new email address was asked for", letterhead.product);
    let forgot_link = format!("{}/forgot-password", letterhead.issuer);
    Letter {
        kind: "email_change_asked".to_owned(),
        to: to.to_owned(),
        text: render(&ChangeAskedText {
            letterhead,
            username,
            new_address,
            forgot_link: &forgot_link,
        }),
        html: render(&ChangeAskedHtml {
            letterhead,
            subject: &subject,
            username,
            new_address,
            forgot_link: &forgot_link,
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

#[derive(Template)]
#[template(path = "mail/factor_notice.txt")]
struct FactorText<'a> {
    letterhead: &'a Letterhead,
    username: &'a str,
    what: &'a str,
    more: Option<&'a str>,
    account_link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/factor_notice.html")]
struct FactorHtml<'a> {
    letterhead: &'a Letterhead,
    subject: &'a str,
    username: &'a str,
    what: &'a str,
    more: Option<&'a str>,
    account_link: &'a str,
}

/// A change to how an account signs in, for its owner to read (NIST SP 800-63B §6.1.2.3:
/// authenticator binding and use of a recovery code are notified).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorChange {
    /// An authenticator app was set up.
    AppAdded,
    /// The authenticator app was removed.
    AppRemoved,
    /// A passkey was added.
    PasskeyAdded,
    /// A passkey was removed.
    PasskeyRemoved,
    /// A recovery code was used; this many are left.
    RecoveryCodeUsed {
        /// Unused codes left.
        left: i64,
        /// Whether that is few enough to make new ones.
        few: bool,
    },
    /// A new set of recovery codes replaced the old one.
    RecoveryCodesReplaced,
    /// An operator removed every second factor.
    Reset,
}

impl FactorChange {
    fn kind(self) -> &'static str {
        match self {
            Self::AppAdded | Self::PasskeyAdded => "factor_added",
            Self::AppRemoved | Self::PasskeyRemoved => "factor_removed",
            Self::RecoveryCodeUsed { .. } => "recovery_code_used",
            Self::RecoveryCodesReplaced => "recovery_codes_replaced",
            Self::Reset => "factors_reset",
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Self::AppAdded => "an authenticator app was added",
            Self::AppRemoved => "your authenticator app was removed",
            Self::PasskeyAdded => "a passkey was added",
            Self::PasskeyRemoved => "a passkey was removed",
            Self::RecoveryCodeUsed { .. } => "a recovery code was used",
            Self::RecoveryCodesReplaced => "you have new recovery codes",
            Self::Reset => "your two-step sign-in was turned off",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::AppAdded => {
                "An authenticator app was just set up as the second step of signing in"
            }
            Self::AppRemoved => {
                "The authenticator app was just removed: signing in now takes only your password"
            }
            Self::PasskeyAdded => "A passkey was just added: it signs you in on its own",
            Self::PasskeyRemoved => "A passkey was just removed and no longer signs you in",
            Self::RecoveryCodeUsed { .. } => "A recovery code was just used to sign in",
            Self::RecoveryCodesReplaced => {
                "New recovery codes were just made; the ones you had before no longer work"
            }
            Self::Reset => {
                "An administrator just removed your authenticator app, passkeys and recovery \
                 codes: signing in now takes only your password"
            }
        }
    }

    fn more(self) -> Option<String> {
        match self {
            Self::RecoveryCodeUsed { left, few } if few => Some(format!(
                "You have {left} recovery code(s) left. Make a new set on your account page \
                 before you run out."
            )),
            Self::RecoveryCodeUsed { left, .. } => {
                Some(format!("You have {left} recovery codes left."))
            }
            _ => None,
        }
    }
}

/// The notice of `change` to the account `username`.
#[must_use]
pub fn factor_notice(
    letterhead: &Letterhead,
    to: &str,
    username: &str,
    change: FactorChange,
) -> Letter {
    let subject = format!("{}: {}", letterhead.product, change.subject());
    let account_link = format!("{}/account", letterhead.issuer);
    let what = change.what();
    let more = change.more();
    Letter {
        kind: change.kind().to_owned(),
        to: to.to_owned(),
        text: render(&FactorText {
            letterhead,
            username,
            what,
            more: more.as_deref(),
            account_link: &account_link,
        }),
        html: render(&FactorHtml {
            letterhead,
            subject: &subject,
            username,
            what,
            more: more.as_deref(),
            account_link: &account_link,
        }),
        subject,
    }
}
