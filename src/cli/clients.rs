//! `keyward clients ...`: register, inspect, delete relying parties and rotate their secrets.

use std::io::BufRead as _;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use diesel_async::AsyncPgConnection;
use serde_json::json;
use time::OffsetDateTime;

use crate::audit::Actor;
use crate::clients::registration::{Edit, Registration, RegistrationError, Secret};
use crate::clients::{self, Client, CreateClientError};
use crate::config::Config;
use crate::oauth::client_removal;
use crate::tokens::opaque::PlainToken;

/// Operators' client commands.
#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints its id and (for confidential clients) its secret, once.
    Create(CreateArgs),
    /// List clients: id, name, type, first-party, grants, redirect URIs (tab-separated).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show {
        /// The client_id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a client: a cut-off (its codes, consents, refresh tokens and access tokens end).
    Delete {
        /// The client_id.
        id: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a client: each option given replaces that setting (a repeatable option replaces
    /// the whole list); settings not named are kept.
    Update(UpdateArgs),
    /// Replace a confidential client's secret; prints the new one, once.
    RotateSecret {
        /// The client_id.
        id: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `clients create` is told.
#[derive(Debug, Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is a command-line switch the operator sets"
)]
pub struct CreateArgs {
    /// Shown to people on the consent page.
    #[arg(long)]
    name: String,
    /// The client_id (default: generated).
    #[arg(long)]
    id: Option<String>,
    /// Exact redirect URI (https, or http on loopback); repeat for several. Required with the
    /// authorization code grant; a machine client (client credentials only) needs none.
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// A browser origin, exactly scheme, host and port as in https://app.example.com, whose
    /// pages may call /token, /revoke and /userinfo besides the redirect URIs' origins; repeat
    /// for several. No wildcards.
    #[expect(clippy::doc_markdown, reason = "clap help text, shown as written")]
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
    /// Grant type; repeat for several (default: authorization_code).
    #[arg(long = "grant")]
    grants: Vec<String>,
    /// Scopes it may request, space-separated.
    #[arg(long, default_value = "openid profile email")]
    scope: String,
    /// A public client (SPA, native app): no secret, PKCE only.
    #[arg(long)]
    public: bool,
    /// Read the secret from stdin instead of generating one (at least 32 characters).
    #[arg(long)]
    secret_stdin: bool,
    /// Operated by you: people are not asked for consent.
    #[arg(long)]
    first_party: bool,
    /// Its users must prove a second factor (an authenticator app) to sign in to it; those
    /// without one set one up at sign-in.
    #[arg(long)]
    require_mfa: bool,
    /// `optional`: code requests may go without PKCE if they carry a `nonce` and ask for
    /// `openid` (RFC 9700 §2.1.1), for libraries that send none (`passport-openidconnect`).
    /// Confidential clients only.
    #[arg(long, value_enum, default_value = "required")]
    pkce: Pkce,
    /// Exact post-logout redirect URI; repeat for several.
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// Resource server its access tokens may name in `aud`; repeat for several.
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What `clients update` is told.
#[derive(Debug, Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is a command-line switch the operator sets"
)]
pub struct UpdateArgs {
    /// The client_id.
    id: String,
    /// Shown to people on the sign-in and consent pages.
    #[arg(long)]
    name: Option<String>,
    /// Exact redirect URIs, replacing the registered ones; repeat for several.
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Browser origins besides the redirect URIs' (exact, no wildcards), replacing those given
    /// before; repeat for several.
    #[arg(long = "allowed-origin", conflicts_with = "clear_allowed_origins")]
    allowed_origins: Vec<String>,
    /// Allow no origins besides the redirect URIs'.
    #[arg(long)]
    clear_allowed_origins: bool,
    /// Exact post-logout redirect URIs, replacing the registered ones; repeat for several.
    #[arg(
        long = "post-logout-redirect-uri",
        conflicts_with = "clear_post_logout_redirect_uris"
    )]
    post_logout_redirect_uris: Vec<String>,
    /// Register no post-logout redirect URI.
    #[arg(long)]
    clear_post_logout_redirect_uris: bool,
    /// Grant types, replacing the registered ones; repeat for several.
    #[arg(long = "grant")]
    grants: Vec<String>,
    /// Scopes it may request, space-separated, replacing the registered ones.
    #[arg(long)]
    scope: Option<String>,
    /// Resource servers its tokens may name in `aud`, replacing the registered ones.
    #[arg(long = "audience", conflicts_with = "clear_audiences")]
    audiences: Vec<String>,
    /// Name no resource server (tokens are for Keyward's own endpoints only).
    #[arg(long)]
    clear_audiences: bool,
    /// Whether it is operated by you (people are not asked for consent).
    #[arg(long, value_name = "true|false")]
    first_party: Option<bool>,
    /// Whether its users must prove a second factor to sign in to it.
    #[arg(long, value_name = "true|false")]
    require_mfa: Option<bool>,
    /// Whether its code requests must carry PKCE (`optional`: a `nonce` instead).
    #[arg(long, value_enum)]
    pkce: Option<Pkce>,
    /// Print the client as JSON.
    #[arg(long)]
    json: bool,
}

/// The same description the management API gives.
fn client_json(c: &Client) -> serde_json::Value {
    serde_json::to_value(crate::oauth::admin::ClientView::of(c)).unwrap_or_default()
}

/// Whether a client's code requests must carry PKCE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pkce {
    /// Every code request carries an S256 challenge (the default; OAuth 2.1).
    Required,
    /// A confidential OpenID Connect client may send a `nonce` instead.
    Optional,
}

fn read_secret() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the secret from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Runs a `clients` command.
pub async fn run(cmd: ClientsCommand, config: &Config, now: OffsetDateTime) -> anyhow::Result<()> {
    let mut conn = super::connect(config).await?;
    let reload = config.keys.reload;
    match cmd {
        ClientsCommand::Create(args) => create(&mut conn, args, now).await,
        ClientsCommand::List { json } => list(&mut conn, json).await,
        ClientsCommand::Show { id, json } => show(&mut conn, &id, json).await,
        ClientsCommand::Delete { id, json } => delete(&mut conn, &id, json, reload, now).await,
        ClientsCommand::Update(args) => update(&mut conn, args, now).await,
        ClientsCommand::RotateSecret { id, json } => {
            rotate_secret(&mut conn, &id, json, reload, now).await
        }
    }
}

/// What `create` was told, as a registration to check.
fn registration(args: CreateArgs) -> anyhow::Result<Registration> {
    let secret = match (args.public, args.secret_stdin) {
        (true, true) => bail!("{}", RegistrationError::SecretForPublic),
        (true, false) => None,
        (false, true) => Some(Secret::Chosen(read_secret()?)),
        (false, false) => Some(Secret::Generate),
    };
    Ok(Registration {
        name: args.name,
        id: args.id,
        secret,
        is_first_party: args.first_party,
        redirect_uris: args.redirect_uris,
        post_logout_redirect_uris: args.post_logout_redirect_uris,
        allowed_origins: args.allowed_origins,
        grants: args.grants,
        scope: args.scope,
        audiences: args.audiences,
        require_mfa: args.require_mfa,
        pkce_optional: args.pkce == Pkce::Optional,
    })
}

async fn create(
    conn: &mut AsyncPgConnection,
    args: CreateArgs,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let json = args.json;
    let checked = registration(args)?.check(now)?;
    let client = match clients::register(conn, &checked.new, &Actor::cli()).await {
        Ok(c) => c,
        Err(e @ (CreateClientError::IdTaken(_) | CreateClientError::IdLooksLikeUser(_))) => {
            bail!("{e}")
        }
        Err(CreateClientError::Db(e)) => return Err(e.into()),
    };
    // A secret the operator typed is theirs already: only a generated one is shown.
    let shown = checked.secret.as_ref().map(PlainToken::expose);
    if json {
        let mut out = client_json(&client);
        out["client_secret"] = json!(shown);
        out!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        out!("client_id\t{}", client.id);
        if let Some(s) = shown {
            out!("client_secret\t{s}");
            eprintln!("store the secret now: it is shown once and only its hash is kept");
        }
    }
    Ok(())
}

/// What `update` was told, as a change: a repeatable option replaces the whole list, a
/// `--clear-*` switch empties it, and what is not named is kept.
fn edit(args: UpdateArgs) -> Edit {
    let list = |given: Vec<String>, clear: bool| {
        if clear {
            Some(vec![])
        } else {
            Some(given).filter(|g| !g.is_empty())
        }
    };
    Edit {
        name: args.name,
        is_first_party: args.first_party,
        redirect_uris: list(args.redirect_uris, false),
        allowed_origins: list(args.allowed_origins, args.clear_allowed_origins),
        post_logout_redirect_uris: list(
            args.post_logout_redirect_uris,
            args.clear_post_logout_redirect_uris,
        ),
        grants: list(args.grants, false),
        scope: args.scope,
        audiences: list(args.audiences, args.clear_audiences),
        require_mfa: args.require_mfa,
        pkce_optional: args.pkce.map(|p| p == Pkce::Optional),
    }
}

async fn update(
    conn: &mut AsyncPgConnection,
    args: UpdateArgs,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let id = args.id.clone();
    let json = args.json;
    let updated = clients::edit(conn, &id, edit(args), &Actor::cli(), now).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&client_json(&updated))?);
    } else {
        out!("client_id\t{id}");
    }
    Ok(())
}

async fn list(conn: &mut AsyncPgConnection, json: bool) -> anyhow::Result<()> {
    let all = clients::list(conn).await?;
    if json {
        let out: Vec<serde_json::Value> = all.iter().map(client_json).collect();
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    out!("client_id\tname\ttype\tparty\tgrants\tredirect_uris");
    for c in &all {
        let kind = if c.is_public {
            "public"
        } else {
            "confidential"
        };
        let party = if c.is_first_party {
            "first-party"
        } else {
            "third-party"
        };
        out!(
            "{}\t{}\t{kind}\t{party}\t{}\t{}",
            c.id,
            c.name,
            c.grant_types.join(","),
            c.redirect_uris.join(","),
        );
    }
    Ok(())
}

async fn show(conn: &mut AsyncPgConnection, id: &str, json: bool) -> anyhow::Result<()> {
    let c = clients::find(conn, id)
        .await?
        .with_context(|| format!("no client '{id}'"))?;
    let out = client_json(&c);
    if json {
        out!("{}", serde_json::to_string_pretty(&out)?);
    } else if let Some(map) = out.as_object() {
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                other => other.to_string(),
            };
            out!("{k}\t{v}");
        }
    }
    Ok(())
}

async fn delete(
    conn: &mut AsyncPgConnection,
    id: &str,
    json: bool,
    reload: std::time::Duration,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let Some(families) = client_removal::delete_client(conn, id, &Actor::cli(), now).await? else {
        bail!("no client '{id}'");
    };
    let message = format!(
        "deleted client '{id}': its codes, consents, refresh tokens ({} families) and access \
         tokens end now; running servers stop authenticating it within {}",
        families.len(),
        humantime_secs(reload)
    );
    let out = json!({ "client_id": id, "deleted": true, "families_revoked": families.len() });
    super::report(json, &out, &message)?;
    Ok(())
}

/// "30s": a reload interval in the words of the settings.
fn humantime_secs(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

async fn rotate_secret(
    conn: &mut AsyncPgConnection,
    id: &str,
    json: bool,
    reload: std::time::Duration,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let Some(secret) = clients::rotate_secret(conn, id, &Actor::cli(), now).await? else {
        bail!("no confidential client '{id}'");
    };
    if json {
        let out = json!({ "client_id": id, "client_secret": secret.expose() });
        out!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        out!("client_secret\t{}", secret.expose());
    }
    eprintln!(
        "store the new secret: it is shown once. The old one stops working on every running \
         server within {} (KEYWARD_KEY_RELOAD)",
        humantime_secs(reload)
    );
    Ok(())
}
