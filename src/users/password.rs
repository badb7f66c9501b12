//! Password rules and argon2id hashing, run off the async runtime behind a bounded queue.

use std::fmt;
use std::str::FromStr as _;
use std::sync::Arc;

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Mutex, PoisonError};

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use tokio::sync::Semaphore;

use crate::users::name::Username;

/// Argon2id cost parameters for new password hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Passes over memory (OWASP: 2).
    pub iterations: u32,
    /// Lanes (OWASP: 1).
    pub parallelism: u32,
}

impl Argon2Settings {
    /// OWASP's recommended argon2id parameters (Password Storage Cheat Sheet).
    pub const OWASP: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
    /// The largest memory cost we configure or agree to verify (256 MiB).
    pub const MAX_MEMORY_KIB: u32 = 262_144;
    /// The most passes we configure or agree to verify.
    pub const MAX_ITERATIONS: u32 = 16;
    /// The most lanes we configure or agree to verify.
    pub const MAX_PARALLELISM: u32 = 16;

    /// Whether these parameters are within the bounds this server will ever compute.
    #[must_use]
    pub fn is_within_bounds(&self) -> bool {
        (1..=Self::MAX_PARALLELISM).contains(&self.parallelism)
            && (1..=Self::MAX_ITERATIONS).contains(&self.iterations)
            // Argon2 needs at least 8 KiB per lane.
            && self.memory_kib >= 8 * self.parallelism
            && self.memory_kib <= Self::MAX_MEMORY_KIB
    }

    /// Memory passes: what one hash costs in time (lanes run one after another here).
    fn work(&self) -> u64 {
        u64::from(self.memory_kib) * u64::from(self.iterations)
    }

    /// Whether a stored hash with these parameters may be computed by a server configured with
    /// `configured`: within the absolute bounds and at most [`STORED_COST_FACTOR`] times its
    /// memory and its work. Anything dearer would make each sign-in of that user (or each guess
    /// at it) a denial of service, so it is refused rather than computed.
    #[must_use]
    pub fn is_affordable_next_to(&self, configured: &Self) -> bool {
        let factor = u64::from(STORED_COST_FACTOR);
        self.is_within_bounds()
            && u64::from(self.memory_kib) <= factor * u64::from(configured.memory_kib)
            && self.work() <= factor * configured.work()
    }
}

/// How many times the configured memory and work a stored hash may need. Room for hashes made
/// before an operator lowered the cost a little; a hash far dearer than that (imported, or
/// written by someone with database access: `m=262144,t=16` takes seconds and 256 MiB) is not.
pub const STORED_COST_FACTOR: u32 = 4;

/// The shortest password we accept, in bytes (NIST SP 800-63B §5.1.1.2).
pub const MIN_PASSWORD_BYTES: usize = 8;
/// The longest password we accept, in bytes; longer input is refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The weakest zxcvbn score a new password may have: 3 is "safely unguessable" (fewer than
/// 10^10 guesses would not find it), the level Dropbox's estimator suggests for accounts.
const MIN_STRENGTH: zxcvbn::Score = zxcvbn::Score::Three;
/// zxcvbn's matching grows quickly with length; its authors score only a prefix. Beyond 100
/// characters a password is long enough that the prefix alone decides.
const STRENGTH_PREFIX_CHARS: usize = 100;

/// Why a new password was refused, in words fit for the person who chose it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRuleError {
    /// Fewer than [`MIN_PASSWORD_BYTES`].
    #[error("Use at least 8 characters.")]
    TooShort,
    /// More than [`MAX_PASSWORD_BYTES`].
    #[error("Use at most 1024 characters.")]
    TooLong,
    /// The password is the username, or contains it.
    #[error("Don't use your username in your password.")]
    ContainsUsername,
    /// The password is common, breached or follows a guessable pattern (OWASP ASVS 6.2.4,
    /// 6.2.12): zxcvbn's lists of 30,000 common passwords, names and words, keyboard walks,
    /// dates, repeats and l33t substitutions.
    #[error("That password is too easy to guess. {hint}")]
    TooGuessable {
        /// What the estimator saw, and what would help.
        hint: String,
    },
}

/// Checks a password someone is choosing (sign-up, `users set-password`).
pub fn check_new_password(password: &str, username: &Username) -> Result<(), PasswordRuleError> {
    if password.len() < MIN_PASSWORD_BYTES {
        return Err(PasswordRuleError::TooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordRuleError::TooLong);
    }
    let folded = password.to_lowercase();
    if folded.contains(&username.key()) {
        return Err(PasswordRuleError::ContainsUsername);
    }
    let prefix: String = password.chars().take(STRENGTH_PREFIX_CHARS).collect();
    let estimate = zxcvbn::zxcvbn(&prefix, &[username.as_str()]);
    if estimate.score() < MIN_STRENGTH {
        return Err(PasswordRuleError::TooGuessable {
            hint: hint(estimate.feedback()),
        });
    }
    Ok(())
}

/// zxcvbn's warning and suggestions as one sentence or two, with a default when it has none.
fn hint(feedback: Option<&zxcvbn::feedback::Feedback>) -> String {
    let mut words: Vec<String> = Vec::new();
    if let Some(f) = feedback {
        words.extend(f.warning().map(|w| w.to_string()));
        words.extend(f.suggestions().iter().map(ToString::to_string));
    }
    if words.is_empty() {
        words.push("Use a few uncommon words, or a longer password.".to_owned());
    }
    words.join(" ")
}

/// A hashing failure.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot is taken and the queue is full: answer 503 and let the client retry.
    #[error("password hashing is saturated")]
    Busy,
    /// The hash could not be computed (a bug or a corrupt stored hash).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The password is right; `needs_rehash` when the hash was made with other parameters.
    Match {
        /// The stored hash should be replaced by one with the current parameters.
        needs_rehash: bool,
    },
    /// The password is wrong, or the stored hash is unusable.
    Mismatch,
}

/// Hashes and verifies passwords with argon2id on a fixed set of worker threads.
///
/// Each worker keeps one argon2 memory block for the configured cost, allocated at its first
/// hash and reused ever after. Hashing on tokio's blocking pool instead left each of its threads'
/// allocator arenas holding the 19 MiB it once needed: hundreds of MiB after a sign-in storm,
/// never given back. Here memory is bounded by workers x the configured memory.
#[derive(Clone)]
pub struct PasswordHasher {
    settings: Argon2Settings,
    /// Jobs for the workers; its capacity is the queue's.
    jobs: SyncSender<Job>,
    /// Permits for requests waiting or working; when none is left we refuse at once.
    queue: Arc<Semaphore>,
    /// The queue's permits in all.
    queue_size: usize,
    /// A real hash of a random password, verified against when the user does not exist.
    dummy_hash: Arc<str>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// One unit of work for a hashing worker, given its memory.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// A worker's argon2 memory, kept between hashes.
#[derive(Default)]
pub struct Memory {
    blocks: Vec<Block>,
}

impl Memory {
    /// Runs `argon2` over `blocks` blocks: this worker's own memory when it is the configured
    /// size (the only size it ever keeps), else memory for this hash alone (a stored hash made
    /// with other parameters, verified once and then rehashed).
    fn hash_into(
        &mut self,
        argon2: &Argon2<'_>,
        configured: Argon2Settings,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> argon2::Result<()> {
        let needed = argon2.params().block_count();
        let own = usize::try_from(configured.memory_kib).unwrap_or(usize::MAX);
        if needed == own {
            if self.blocks.len() != own {
                self.blocks = vec![Block::default(); own];
            }
            argon2.hash_password_into_with_memory(password, salt, out, &mut self.blocks[..])
        } else {
            argon2.hash_password_into_with_memory(
                password,
                salt,
                out,
                vec![Block::default(); needed],
            )
        }
    }
}

fn argon2_for(settings: Argon2Settings) -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(
        settings.memory_kib,
        settings.iterations,
        settings.parallelism,
        Some(HASH_BYTES),
    )
    .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Bytes of a new hash's output (argon2's default, and the PHC strings we have always written).
const HASH_BYTES: usize = 32;
/// Bytes of a new hash's salt (RFC 9106 §3.1 recommends 16).
const SALT_BYTES: usize = 16;

/// A new PHC string for `password`, computed in `memory`.
fn hash_with(
    memory: &mut Memory,
    settings: Argon2Settings,
    password: &[u8],
) -> anyhow::Result<String> {
    let argon2 = argon2_for(settings)?;
    let mut salt = [0u8; SALT_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| anyhow::anyhow!("system random number generator failed"))?;
    let mut out = [0u8; HASH_BYTES];
    memory
        .hash_into(&argon2, settings, password, &salt, &mut out)
        .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params())
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
        salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// The highest bcrypt cost verified: 2^13 rounds take about half a second of a core; a stored
/// hash above it is refused rather than let one sign-in hold a hashing worker that long.
pub const MAX_BCRYPT_COST: u32 = 13;

/// What kind of stored hash `hash` is, or why it is none we verify: an argon2id PHC string (what
/// Keyward makes), or what an imported user may bring (bcrypt `$2a$`/`$2b$`/`$2y$`, PHC
/// `pbkdf2-sha256`/`pbkdf2-sha512` or `scrypt`), checked at their next sign-in, within bounded
/// cost, and replaced by argon2id then.
pub fn check_stored(hash: &str) -> Result<StoredHash, String> {
    if is_bcrypt(hash) {
        let parts =
            bcrypt::HashParts::from_str(hash).map_err(|e| format!("not a bcrypt hash ({e})"))?;
        if !(4..=MAX_BCRYPT_COST).contains(&parts.get_cost()) {
            return Err(format!(
                "bcrypt cost {} is outside 4..={MAX_BCRYPT_COST}",
                parts.get_cost()
            ));
        }
        return Ok(StoredHash::Bcrypt);
    }
    let phc = PasswordHash::new(hash).map_err(|_| "neither bcrypt nor a PHC string".to_owned())?;
    match phc.algorithm.as_str() {
        "argon2id" => {
            Params::try_from(&phc).map_err(|e| format!("argon2id parameters: {e}"))?;
            Ok(StoredHash::Argon2id)
        }
        "pbkdf2-sha256" | "pbkdf2-sha512" => pbkdf2_of(&phc).map(|_| StoredHash::Pbkdf2),
        "scrypt" => scrypt_of(&phc).map(|_| StoredHash::Scrypt),
        other => Err(format!(
            "{other} hashes are not supported (argon2id, bcrypt, pbkdf2-sha256/512, scrypt)"
        )),
    }
}

/// The most PBKDF2 iterations verified (OWASP's 2023 advice for SHA-256 is 600,000): a stored
/// hash above twice that is refused rather than let one sign-in hold a worker.
pub const MAX_PBKDF2_ITERATIONS: u32 = 1_200_000;
/// The most memory one scrypt verification may take (128 * r * 2^ln bytes): 64 MiB, what
/// passlib's default (ln=16, r=8) needs.
pub const MAX_SCRYPT_BYTES: u64 = 64 << 20;

/// A PHC PBKDF2 hash, read.
struct Pbkdf2<'a> {
    digest: ring::pbkdf2::Algorithm,
    iterations: std::num::NonZeroU32,
    salt: &'a [u8],
    expected: &'a [u8],
}

/// A PHC PBKDF2 hash's digest, iterations, salt and expected output.
fn pbkdf2_of(phc: &PasswordHash) -> Result<Pbkdf2<'_>, String> {
    let digest = if phc.algorithm.as_str() == "pbkdf2-sha512" {
        ring::pbkdf2::PBKDF2_HMAC_SHA512
    } else {
        ring::pbkdf2::PBKDF2_HMAC_SHA256
    };
    let iterations = phc
        .params
        .get_decimal("i")
        .and_then(std::num::NonZeroU32::new)
        .ok_or("pbkdf2: no iteration count (i=)")?;
    if iterations.get() > MAX_PBKDF2_ITERATIONS {
        return Err(format!(
            "pbkdf2: more than {MAX_PBKDF2_ITERATIONS} iterations"
        ));
    }
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return Err("pbkdf2: no salt or no hash".to_owned());
    };
    Ok(Pbkdf2 {
        digest,
        iterations,
        salt: salt.as_ref(),
        expected: expected.as_ref(),
    })
}

/// A PHC scrypt hash's parameters, salt and expected output.
fn scrypt_of(phc: &PasswordHash) -> Result<(scrypt::Params, &[u8], &[u8]), String> {
    let number = |name: &str| phc.params.get_decimal(name);
    let (Some(ln), Some(r), Some(p)) = (number("ln"), number("r"), number("p")) else {
        return Err("scrypt: ln=, r= and p= are required".to_owned());
    };
    let bytes = 128u64
        .saturating_mul(u64::from(r))
        .saturating_mul(1u64.checked_shl(ln).unwrap_or(u64::MAX));
    if bytes > MAX_SCRYPT_BYTES || p > 16 {
        return Err("scrypt: parameters need more than 64 MiB or p > 16".to_owned());
    }
    let params = u8::try_from(ln)
        .ok()
        .and_then(|ln| scrypt::Params::new(ln, r, p).ok())
        .ok_or("scrypt: invalid parameters")?;
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return Err("scrypt: no salt or no hash".to_owned());
    };
    Ok((params, salt.as_ref(), expected.as_ref()))
}

/// An imported PBKDF2 or scrypt PHC hash: right or wrong, never kept past the first sign-in.
fn verify_imported(password: &[u8], phc: &PasswordHash) -> Verification {
    let matched = match phc.algorithm.as_str() {
        "scrypt" => scrypt_of(phc).is_ok_and(|(params, salt, expected)| {
            let mut out = vec![0u8; expected.len()];
            scrypt::scrypt(password, salt, &params, &mut out).is_ok()
                && crate::crypto::constant_time_eq(&out, expected)
        }),
        // ring compares in constant time.
        _ => pbkdf2_of(phc).is_ok_and(|h| {
            ring::pbkdf2::verify(h.digest, h.iterations, h.salt, password, h.expected).is_ok()
        }),
    };
    if matched {
        Verification::Match { needs_rehash: true }
    } else {
        Verification::Mismatch
    }
}

/// A stored hash's kind ([`check_stored`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredHash {
    /// argon2id, as Keyward makes them.
    Argon2id,
    /// bcrypt, as an imported user brings them.
    Bcrypt,
    /// PBKDF2-HMAC-SHA256/512 in PHC form, imported.
    Pbkdf2,
    /// scrypt in PHC form, imported.
    Scrypt,
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

/// An imported bcrypt hash: right or wrong, it is replaced by argon2id at the first sign-in.
fn verify_bcrypt(password: &[u8], hash: &str) -> Verification {
    if check_stored(hash) != Ok(StoredHash::Bcrypt) {
        tracing::warn!("stored bcrypt hash is malformed or too costly; refusing to compute it");
        return Verification::Mismatch;
    }
    // bcrypt reads at most 72 bytes, as the system that made the hash did (`bcrypt.hash`).
    match bcrypt::verify(password, hash) {
        Ok(true) => Verification::Match { needs_rehash: true },
        _ => Verification::Mismatch,
    }
}

/// Verifies `password` against a stored hash after checking its parameters are sane: argon2id
/// PHC, or an imported bcrypt hash.
fn verify_with(
    memory: &mut Memory,
    current: Argon2Settings,
    password: &[u8],
    phc: &str,
) -> Verification {
    if is_bcrypt(phc) {
        return verify_bcrypt(password, phc);
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        tracing::warn!("stored password hash is not a PHC string");
        return Verification::Mismatch;
    };
    if matches!(
        hash.algorithm.as_str(),
        "pbkdf2-sha256" | "pbkdf2-sha512" | "scrypt"
    ) {
        return verify_imported(password, &hash);
    }
    if hash.algorithm.as_str() != "argon2id" {
        tracing::warn!("stored password hash is not argon2id");
        return Verification::Mismatch;
    }
    let Ok(params) = Params::try_from(&hash) else {
        return Verification::Mismatch;
    };
    let stored = Argon2Settings {
        memory_kib: params.m_cost(),
        iterations: params.t_cost(),
        parallelism: params.p_cost(),
    };
    // Fail closed: the account cannot sign in until an operator sets a new password.
    if !stored.is_affordable_next_to(&current) {
        tracing::warn!(
            ?stored,
            configured = ?current,
            "stored password hash costs more than {STORED_COST_FACTOR}x the configured argon2 \
             parameters; refusing to compute it (set a new password with `keyward users \
             set-password`)"
        );
        return Verification::Mismatch;
    }
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Verification::Mismatch;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return Verification::Mismatch,
    };
    let argon2 = Argon2::new(Algorithm::Argon2id, version, params);
    let mut out = vec![0u8; expected.len()];
    if memory
        .hash_into(&argon2, current, password, salt.as_ref(), &mut out)
        .is_err()
    {
        return Verification::Mismatch;
    }
    if crate::crypto::constant_time_eq(out.as_slice(), expected.as_ref()) {
        Verification::Match {
            needs_rehash: stored != current || hash.version != Some(0x13),
        }
    } else {
        Verification::Mismatch
    }
}

/// A worker: takes jobs until every sender is gone, reusing one memory block throughout.
fn work(jobs: &Mutex<Receiver<Job>>) {
    let mut memory = Memory::default();
    loop {
        // The lock is held only while waiting for the next job, never while hashing.
        let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        // A job that panicked answers nobody (its caller sees the worker's error); the worker
        // lives on for the next one.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory)));
    }
}

impl PasswordHasher {
    /// Starts `concurrency` workers behind a queue of `queue` (waiting and working); computes
    /// one hash up front for the unknown-user path.
    pub fn new(settings: Argon2Settings, concurrency: usize, queue: usize) -> anyhow::Result<Self> {
        let mut filler = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut filler)
            .map_err(|_| anyhow::anyhow!("system random number generator failed"))?;
        // In memory of its own, given back at once: no worker keeps memory before it is needed.
        let dummy_hash = hash_with(&mut Memory::default(), settings, &filler)?;
        let queue_size = queue.max(concurrency).max(1);
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<Job>(queue_size);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..concurrency.max(1) {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("keyward-argon2-{n}"))
                .spawn(move || work(&receiver))
                .map_err(|e| anyhow::anyhow!("cannot start a hashing worker: {e}"))?;
        }
        Ok(Self {
            settings,
            jobs,
            queue: Arc::new(Semaphore::new(queue_size)),
            queue_size,
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Hashes computing or waiting for a worker now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.queue_size - self.queue.available_permits()
    }

    /// The parameters new hashes are made with.
    #[must_use]
    pub fn settings(&self) -> Argon2Settings {
        self.settings
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        // Refuse at once when the queue is full, so a flood of sign-ins costs us nothing but a
        // 503 instead of memory and latency for everyone.
        let _queued = self
            .queue
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::Busy)?;
        let (done, result) = tokio::sync::oneshot::channel();
        // The worker has no span of its own: carry the caller's, so anything logged while
        // hashing belongs to the request that asked.
        let span = tracing::Span::current();
        let job: Job = Box::new(move |memory| {
            // The caller went away while this waited (its client hung up): nobody to answer,
            // so no hash to compute.
            if done.is_closed() {
                return;
            }
            let _ = done.send(span.in_scope(|| job(memory)));
        });
        // Never full while we hold a queue permit: the channel holds as many jobs as there are.
        self.jobs.try_send(job).map_err(|_| HashError::Busy)?;
        result
            .await
            .map_err(|_| HashError::Internal(anyhow::anyhow!("a hashing worker failed")))
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let settings = self.settings;
        let password = password.as_bytes().to_vec();
        self.run(move |memory| hash_with(memory, settings, &password))
            .await?
            .map_err(HashError::Internal)
    }

    /// Verifies a password against a stored PHC string.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<Verification, HashError> {
        let settings = self.settings;
        let password = password.as_bytes().to_vec();
        let phc = phc.to_owned();
        self.run(move |memory| verify_with(memory, settings, &password, &phc))
            .await
    }

    /// Does the work of a verification that cannot succeed, for users that do not exist, so the
    /// response time does not tell which usernames are taken.
    pub async fn verify_dummy(&self, password: &str) -> Result<(), HashError> {
        let phc = Arc::clone(&self.dummy_hash);
        let settings = self.settings;
        let password = password.as_bytes().to_vec();
        self.run(move |memory| {
            verify_with(memory, settings, &password, &phc);
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Argon2Settings = Argon2Settings {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn user(name: &str) -> Username {
        Username::parse(name).expect("valid username")
    }

    #[test]
    fn new_passwords_follow_the_length_rule() {
        assert_eq!(
            check_new_password("short", &user("bob")),
            Err(PasswordRuleError::TooShort)
        );
        assert_eq!(
            check_new_password(&"x".repeat(1025), &user("bob")),
            Err(PasswordRuleError::TooLong)
        );
        assert!(check_new_password(&"horse battery ".repeat(73), &user("bob")).is_ok());
        assert!(check_new_password("correct horse", &user("bob")).is_ok());
    }

    #[test]
    fn new_passwords_must_not_be_guessable_or_hold_the_username() {
        // The 35-entry list of old let all but the first through.
        for weak in [
            "Password123",
            "qwerty12345",
            "iloveyou2",
            "1q2w3e4r5t",
            "letmein123",
            "Summer2024!",
            "monkey12345",
            "11111111111",
        ] {
            let refused = check_new_password(weak, &user("bob"));
            assert!(
                matches!(refused, Err(PasswordRuleError::TooGuessable { .. })),
                "{weak}: {refused:?}"
            );
        }
        let message = check_new_password("qwerty12345", &user("bob"))
            .expect_err("weak")
            .to_string();
        assert!(
            message.starts_with("That password is too easy to guess. This is a very common"),
            "{message}"
        );
        for fine in ["correct horse battery", "zebra-lamp-92", "Tr0ub4dor&3"] {
            assert_eq!(check_new_password(fine, &user("bob")), Ok(()), "{fine}");
        }
        assert_eq!(
            check_new_password("xxALICExx99", &user("alice")),
            Err(PasswordRuleError::ContainsUsername)
        );
    }

    #[test]
    fn a_hash_verifies_only_its_own_password() {
        let hash = hash_with(&mut Memory::default(), CHEAP, b"correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(
            verify_with(&mut Memory::default(), CHEAP, b"correct horse", &hash),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            verify_with(&mut Memory::default(), CHEAP, b"wrong horse", &hash),
            Verification::Mismatch
        );
    }

    #[test]
    fn hashes_written_by_the_argon2_crate_verify_and_ours_verify_there() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let library = argon2_for(CHEAP)
            .expect("argon2")
            .hash_password(b"correct horse")
            .expect("hash")
            .to_string();
        assert_eq!(
            verify_with(&mut Memory::default(), CHEAP, b"correct horse", &library),
            Verification::Match {
                needs_rehash: false
            }
        );
        let ours = hash_with(&mut Memory::default(), CHEAP, b"correct horse").expect("hash");
        let parsed = PasswordHash::new(&ours).expect("PHC");
        assert!(
            argon2_for(CHEAP)
                .expect("argon2")
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
    }

    #[test]
    fn a_hash_with_other_parameters_asks_for_a_rehash() {
        let hash = hash_with(&mut Memory::default(), CHEAP, b"correct horse").expect("hash");
        let stronger = Argon2Settings {
            memory_kib: 128,
            ..CHEAP
        };
        assert_eq!(
            verify_with(&mut Memory::default(), stronger, b"correct horse", &hash),
            Verification::Match { needs_rehash: true }
        );
    }

    #[test]
    fn stored_parameters_out_of_bounds_are_refused_before_hashing() {
        // m=4 GiB would take seconds and gigabytes: it must not even be attempted.
        let hostile = "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$\
                       AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            verify_with(&mut Memory::default(), CHEAP, b"anything", hostile),
            Verification::Mismatch
        );
        let many_passes = "$argon2id$v=19$m=64,t=1000,p=1$c29tZXNhbHRzb21lc2FsdA$\
                           AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            verify_with(&mut Memory::default(), CHEAP, b"anything", many_passes),
            Verification::Mismatch
        );
    }

    #[test]
    fn stored_parameters_far_dearer_than_configured_are_refused() {
        // Within the absolute bounds, but 4096x the memory and 16x the passes of CHEAP: at OWASP
        // settings this would be 5 s and 256 MiB per attempt.
        let dear = "$argon2id$v=19$m=262144,t=16,p=1$c29tZXNhbHRzb21lc2FsdA$\
                    AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            verify_with(
                &mut Memory::default(),
                Argon2Settings::OWASP,
                b"anything",
                dear
            ),
            Verification::Mismatch
        );
        let configured = Argon2Settings::OWASP;
        let at = |memory_kib, iterations| Argon2Settings {
            memory_kib,
            iterations,
            parallelism: 1,
        };
        assert!(at(19_456 * 4, 2).is_affordable_next_to(&configured));
        assert!(at(19_456, 8).is_affordable_next_to(&configured));
        assert!(!at(19_456 * 4 + 1, 2).is_affordable_next_to(&configured));
        assert!(!at(19_456 * 2, 5).is_affordable_next_to(&configured));
        assert!(
            at(8, 1).is_affordable_next_to(&configured),
            "cheaper is fine"
        );
    }

    #[test]
    fn a_hash_4x_dearer_than_configured_still_verifies() {
        let dearer = Argon2Settings {
            memory_kib: 256,
            ..CHEAP
        };
        let hash = hash_with(&mut Memory::default(), dearer, b"correct horse").expect("hash");
        assert_eq!(
            verify_with(&mut Memory::default(), CHEAP, b"correct horse", &hash),
            Verification::Match { needs_rehash: true }
        );
    }

    #[test]
    fn non_argon2id_hashes_are_refused() {
        assert_eq!(
            verify_with(&mut Memory::default(), CHEAP, b"x", "not a hash"),
            Verification::Mismatch
        );
        assert_eq!(
            verify_with(
                &mut Memory::default(),
                CHEAP,
                b"x",
                "$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA"
            ),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn hashes_run_on_the_workers_and_reuse_one_memory_block() {
        let hasher = PasswordHasher::new(CHEAP, 1, 4).expect("hasher");
        let mut seen = Vec::new();
        for _ in 0..3 {
            let hash = hasher.hash("correct horse").await.expect("hash");
            assert!(matches!(
                hasher.verify("correct horse", &hash).await,
                Ok(Verification::Match {
                    needs_rehash: false
                })
            ));
            let (thread, block) = hasher
                .run(|memory| {
                    let name = std::thread::current().name().map(str::to_owned);
                    (name, memory.blocks.as_ptr() as usize)
                })
                .await
                .expect("ran");
            assert_eq!(thread.as_deref(), Some("keyward-argon2-0"));
            seen.push(block);
        }
        assert!(seen.iter().all(|b| *b == seen[0]), "{seen:?}");
        // A stored hash with other parameters is verified in memory of its own, and the
        // worker's block stays the configured size.
        let dearer = Argon2Settings {
            memory_kib: 256,
            ..CHEAP
        };
        let old = hash_with(&mut Memory::default(), dearer, b"pw").expect("hash");
        assert_eq!(
            hasher.verify("pw", &old).await.expect("verify"),
            Verification::Match { needs_rehash: true }
        );
        let kept = hasher.run(|memory| memory.blocks.len()).await.expect("ran");
        assert_eq!(kept, 64);
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let hasher = PasswordHasher::new(CHEAP, 1, 1).expect("hasher");
        let held = hasher
            .queue
            .clone()
            .try_acquire_owned()
            .expect("the only permit");
        assert!(matches!(
            hasher.hash("whatever pw").await,
            Err(HashError::Busy)
        ));
        drop(held);
        assert!(hasher.hash("whatever pw").await.is_ok());
    }
}
