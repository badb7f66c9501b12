//! `keyward clients ...`: register, inspect, delete relying parties and rotate their secrets.

use std::io::BufRead as _;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::{self, NewAuditEvent};
use crate::clients::{self, Client, CreateClientError, GrantType, NewClient, Origin, RedirectUri};
use crate::config::Config;
use crate::crypto::random_bytes;
use crate::scope::Scopes;
use crate::tokens::opaque::{PlainToken, TokenHash};

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
    /// Delete a client, with its codes and consents.
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
    /// Print the client as JSON.
    #[arg(long)]
    json: bool,
}

fn client_json(c: &Client) -> serde_json::Value {
    json!({
        "client_id": c.id,
        "name": c.name,
        "type": if c.is_public { "public" } else { "confidential" },
        "first_party": c.is_first_party,
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "grant_types": c.grant_types,
        "scope": c.scopes.join(" "),
        "audiences": c.audiences,
        "allowed_origins": c.allowed_origins,
        "created_at": c.created_at.format(&Rfc3339).unwrap_or_default(),
    })
}

fn read_secret() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the secret from stdin")?;
    let secret = line.trim_end_matches(['\n', '\r']).to_owned();
    // SHA-256 is only a sound storage hash for high-entropy secrets.
    if secret.len() < 32 {
        bail!("the secret must be at least 32 characters (use a generated one)");
    }
    Ok(secret)
}

/// Runs a `clients` command.
pub async fn run(cmd: ClientsCommand, config: &Config, now: OffsetDateTime) -> anyhow::Result<()> {
    let mut conn = super::connect(config).await?;
    match cmd {
        ClientsCommand::Create(args) => create(&mut conn, args, now).await,
        ClientsCommand::List { json } => list(&mut conn, json).await,
        ClientsCommand::Show { id, json } => show(&mut conn, &id, json).await,
        ClientsCommand::Delete { id, json } => delete(&mut conn, &id, json, now).await,
        ClientsCommand::Update(args) => update(&mut conn, args, now).await,
        ClientsCommand::RotateSecret { id, json } => rotate_secret(&mut conn, &id, json, now).await,
    }
}

/// Exact URIs, each checked as a redirect URI must be (https, or http on loopback).
fn parse_uris(uris: &[String]) -> anyhow::Result<Vec<RedirectUri>> {
    uris.iter()
        .map(|u| RedirectUri::parse(u).map_err(Into::into))
        .collect()
}

fn as_strings(uris: &[RedirectUri]) -> Vec<String> {
    uris.iter().map(|u| u.as_str().to_owned()).collect()
}

/// The grants asked for, each one we support; `authorization_code` when none is.
fn parse_grants(grants: Vec<String>) -> anyhow::Result<Vec<String>> {
    if grants.is_empty() {
        return Ok(vec![GrantType::AuthorizationCode.as_str().to_owned()]);
    }
    for g in &grants {
        if GrantType::parse(g).is_none() {
            bail!(
                "grant '{g}' is not supported (supported: authorization_code, refresh_token, client_credentials, password)"
            );
        }
    }
    Ok(grants)
}

/// Resource indicators (RFC 8707 §2): absolute URIs without a fragment.
fn check_audiences(audiences: &[String]) -> anyhow::Result<()> {
    for a in audiences {
        if url::Url::parse(a).map_or(true, |u| u.fragment().is_some()) {
            bail!("audience '{a}' must be an absolute URI without a fragment");
        }
    }
    Ok(())
}

/// RFC 6749 §3.1.2.2: a client of the code flow registers where codes go.
fn require_redirect_for_code(
    redirect_uris: &[RedirectUri],
    grants: &[String],
) -> anyhow::Result<()> {
    if redirect_uris.is_empty()
        && grants
            .iter()
            .any(|g| g == GrantType::AuthorizationCode.as_str())
    {
        bail!("--redirect-uri is required for the authorization_code grant (the default)");
    }
    Ok(())
}

fn parse_origins(origins: &[String]) -> anyhow::Result<Vec<Origin>> {
    origins
        .iter()
        .map(|o| Origin::parse(o).map_err(Into::into))
        .collect()
}

/// Checks what `create` was told and builds the row; returns the secret to show, if any.
fn new_client(
    args: CreateArgs,
    now: OffsetDateTime,
) -> anyhow::Result<(NewClient, Option<String>)> {
    if args.public && args.secret_stdin {
        bail!("a public client has no secret");
    }
    check_audiences(&args.audiences)?;
    let scopes = Scopes::parse(&args.scope).map_err(|_| anyhow::anyhow!("--scope is malformed"))?;
    let id = args.id.unwrap_or_else(|| {
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            random_bytes::<15>(),
        )
    });
    let secret: Option<String> = match (args.public, args.secret_stdin) {
        (true, _) => None,
        (false, true) => Some(read_secret()?),
        (false, false) => Some(clients::generate_secret().expose().to_owned()),
    };
    let grant_types = parse_grants(args.grants)?;
    let redirect_uris = parse_uris(&args.redirect_uris)?;
    require_redirect_for_code(&redirect_uris, &grant_types)?;
    let explicit = parse_origins(&args.allowed_origins)?;
    let new = NewClient {
        id,
        name: args.name,
        secret_hash: secret
            .as_deref()
            .map(|s| TokenHash::of(s).as_bytes().to_vec()),
        is_public: args.public,
        is_first_party: args.first_party,
        allowed_origins: clients::cors_origins(&redirect_uris, &explicit),
        redirect_uris: as_strings(&redirect_uris),
        post_logout_redirect_uris: as_strings(&parse_uris(&args.post_logout_redirect_uris)?),
        grant_types,
        scopes: scopes.to_vec(),
        audiences: args.audiences,
        created_at: now,
        updated_at: now,
    };
    // A secret the operator typed is theirs already: never echo it.
    let shown = if args.secret_stdin { None } else { secret };
    Ok((new, shown))
}

async fn create(
    conn: &mut AsyncPgConnection,
    args: CreateArgs,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let json = args.json;
    let (new, shown_secret) = new_client(args, now)?;
    let client = match clients::insert(conn, &new).await {
        Ok(c) => c,
        Err(e @ (CreateClientError::IdTaken(_) | CreateClientError::IdLooksLikeUser(_))) => {
            bail!("{e}")
        }
        Err(CreateClientError::Db(e)) => return Err(e.into()),
    };
    audit_event(conn, "client.created", &client.id, now).await?;
    if json {
        let mut out = client_json(&client);
        out["client_secret"] = json!(shown_secret);
        out!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        out!("client_id\t{}", client.id);
        if let Some(s) = shown_secret {
            out!("client_secret\t{s}");
            eprintln!("store the secret now: it is shown once and only its hash is kept");
        }
    }
    Ok(())
}

/// Applies what `update` was told to the stored client, checking it as `create` would.
fn changed(
    client: &Client,
    args: UpdateArgs,
    now: OffsetDateTime,
) -> anyhow::Result<clients::ClientChanges> {
    let mut changes = client.changes(now);
    if let Some(name) = args.name {
        changes.name = name;
    }
    if let Some(first_party) = args.first_party {
        changes.is_first_party = first_party;
    }
    if !args.grants.is_empty() {
        changes.grant_types = parse_grants(args.grants)?;
    }
    if let Some(scope) = args.scope {
        let scopes = Scopes::parse(&scope).map_err(|_| anyhow::anyhow!("--scope is malformed"))?;
        changes.scopes = scopes.to_vec();
    }
    if args.clear_audiences {
        changes.audiences.clear();
    } else if !args.audiences.is_empty() {
        check_audiences(&args.audiences)?;
        changes.audiences = args.audiences;
    }
    if args.clear_post_logout_redirect_uris {
        changes.post_logout_redirect_uris.clear();
    } else if !args.post_logout_redirect_uris.is_empty() {
        changes.post_logout_redirect_uris =
            as_strings(&parse_uris(&args.post_logout_redirect_uris)?);
    }
    let redirect_uris = if args.redirect_uris.is_empty() {
        parse_uris(&client.redirect_uris)?
    } else {
        parse_uris(&args.redirect_uris)?
    };
    require_redirect_for_code(&redirect_uris, &changes.grant_types)?;
    let explicit = if args.clear_allowed_origins {
        vec![]
    } else if args.allowed_origins.is_empty() {
        parse_origins(&client.explicit_origins())?
    } else {
        parse_origins(&args.allowed_origins)?
    };
    changes.allowed_origins = clients::cors_origins(&redirect_uris, &explicit);
    changes.redirect_uris = as_strings(&redirect_uris);
    Ok(changes)
}

async fn locked_update(
    conn: &mut AsyncPgConnection,
    args: UpdateArgs,
    now: OffsetDateTime,
) -> anyhow::Result<Client> {
    let Some(client) = clients::find_for_update(conn, &args.id).await? else {
        bail!("no client '{}'", args.id);
    };
    let id = args.id.clone();
    let changes = changed(&client, args, now)?;
    let updated = clients::update(conn, &id, &changes)
        .await?
        .context("the client vanished while locked")?;
    audit_event(conn, "client.updated", &id, now).await?;
    Ok(updated)
}

async fn update(
    conn: &mut AsyncPgConnection,
    args: UpdateArgs,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let id = args.id.clone();
    let json = args.json;
    // Under the row lock: two operators changing one client at once do not undo each other.
    let updated = conn
        .transaction(async |conn| locked_update(conn, args, now).await)
        .await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&client_json(&updated))?);
    } else {
        out!("client_id\t{id}");
    }
    Ok(())
}

async fn audit_event(
    conn: &mut AsyncPgConnection,
    kind: &str,
    client_id: &str,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let event = NewAuditEvent::new(kind, audit::ACTOR_CLI, now)
        .subject(client_id)
        .client(client_id);
    audit::insert(conn, &event).await?;
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
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    if !clients::delete(conn, id).await? {
        bail!("no client '{id}'");
    }
    audit_event(conn, "client.deleted", id, now).await?;
    let message = format!("deleted client '{id}', its codes and its consents");
    super::report(json, &json!({ "client_id": id, "deleted": true }), &message)?;
    Ok(())
}

async fn rotate_secret(
    conn: &mut AsyncPgConnection,
    id: &str,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let secret: PlainToken = clients::generate_secret();
    if !clients::update_secret_hash(conn, id, &secret.hash(), now).await? {
        bail!("no confidential client '{id}'");
    }
    audit_event(conn, "client.secret_rotated", id, now).await?;
    if json {
        let out = json!({ "client_id": id, "client_secret": secret.expose() });
        out!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        out!("client_secret\t{}", secret.expose());
    }
    eprintln!("the old secret stops working now; store the new one: it is shown once");
    Ok(())
}
