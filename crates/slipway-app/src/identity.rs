//! Authentication and identity management: who is calling, and the users, tokens and
//! permissions admins manage.
//!
//! Passwords and token secrets are hashed with argon2 (tens of milliseconds on purpose), so a
//! verified credential is remembered: the cache maps a keyed SHA-256 of the credential (the key is
//! random per process, so the cache is useless outside it) to the principal. An entry is
//! dropped when any user, token or permission changes — in this process at once, in another
//! process that shares the database within [`GENERATION_POLL`] — and after [`CACHE_TTL`].
//! Failed attempts slow the client down: after [`FREE_FAILURES`] failures from one address,
//! every credential check from it waits, doubling up to [`MAX_PENALTY`]. An address checks one
//! credential at a time (its [`Turn`]), so parallel guesses queue behind each other's waits
//! instead of sleeping side by side, and a flood from one address holds at most one of the
//! argon2 slots that every other address's logins need.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde_json::json;
use sha2::{Digest, Sha256};
use slipway_core::auth::{
    Grant, Permission, Principal, Resource, ResourceKind, Role, TokenInfo, User, validate_user_name,
};
use slipway_core::{Error, Result};

use crate::{App, now_ms};

/// How long a verified credential is trusted without a new argon2 check.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// How often a server looks for identity changes made by other processes.
pub const GENERATION_POLL: Duration = Duration::from_secs(2);
/// Failed attempts from one address before it is slowed down.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait a failing client is given before each check.
pub const MAX_PENALTY: Duration = Duration::from_secs(10);
/// Failures older than this are forgotten.
const FAILURE_WINDOW: Duration = Duration::from_secs(900);
/// Bounds the memory of the cache and the failure table under a flood of distinct values.
const MAX_ENTRIES: usize = 50_000;
/// Credential checks from one address that may run or wait at once; beyond them a check is
/// refused at once (a client with a cached credential never waits here).
pub const MAX_WAITING_PER_ADDRESS: usize = 16;
const MIN_PASSWORD_LENGTH: usize = 8;
const TOKEN_PREFIX: &str = "slw_";

/// How long a console session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The description of the tokens console sessions are.
pub const SESSION_DESCRIPTION: &str = "console session";

/// A secret as it arrives: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What a request presented.
#[derive(Debug, Clone)]
pub enum Credential {
    Basic {
        user: String,
        password: Secret,
    },
    Bearer(Secret),
    /// A client certificate that the TLS layer verified against the server's client CA,
    /// naming this user (its subject's common name). Only the TLS listener makes this: no
    /// header can, so holding the CA's signature is the proof.
    Certificate {
        user: String,
    },
}

struct CachedPrincipal {
    principal: Principal,
    verified_at: Instant,
    /// Token expiry, checked on every hit.
    expires_at_ms: Option<i64>,
    generation: i64,
}

struct FailureCount {
    failures: u32,
    last: Instant,
}

/// Authentication state shared by every request.
pub(crate) struct Authenticator {
    enabled: bool,
    cache_key: [u8; 32],
    generation: AtomicI64,
    cache: Mutex<HashMap<[u8; 32], CachedPrincipal>>,
    failures: Mutex<HashMap<IpAddr, FailureCount>>,
    /// One gate per address with a credential check running or waiting; removed by the last
    /// [`Turn`] to leave it, so the map holds only addresses being checked right now.
    turns: Mutex<HashMap<IpAddr, Arc<tokio::sync::Mutex<()>>>>,
    /// Console sessions issued per user lately (each is a token and an argon2 hash).
    sign_ins: Mutex<HashMap<String, Vec<Instant>>>,
}

/// Console sessions one user may start per [`SIGN_IN_WINDOW`] on one server.
pub const MAX_SIGN_INS: usize = 10;
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(600);

/// An address's turn to have a credential checked: one at a time per address.
struct Turn {
    auth: Arc<Authenticator>,
    client: IpAddr,
    gate: Arc<tokio::sync::Mutex<()>>,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.held = None;
        let mut turns = self.auth.turns.lock().unwrap_or_else(|e| e.into_inner());
        // Gates are cloned only under this lock: the map's and ours are the only references
        // when nobody else waits, and then the address is forgotten.
        if Arc::strong_count(&self.gate) == 2 {
            turns.remove(&self.client);
        }
    }
}

impl Authenticator {
    pub(crate) fn new(enabled: bool) -> Authenticator {
        let mut cache_key = [0u8; 32];
        // Without randomness the key is still unknown outside this process's memory.
        let _ = getrandom::fill(&mut cache_key);
        Authenticator {
            enabled,
            cache_key,
            generation: AtomicI64::new(i64::MIN),
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
            sign_ins: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a sign-in of `user`; `false` when they started [`MAX_SIGN_INS`] sessions within
    /// the window already.
    fn sign_in_allowed(&self, user: &str) -> bool {
        let now = Instant::now();
        let mut sign_ins = self.sign_ins.lock().unwrap_or_else(|e| e.into_inner());
        sign_ins.retain(|_, times| {
            times.retain(|t| now.duration_since(*t) < SIGN_IN_WINDOW);
            !times.is_empty()
        });
        let times = sign_ins.entry(user.to_owned()).or_default();
        if times.len() >= MAX_SIGN_INS {
            return false;
        }
        times.push(now);
        true
    }

    /// Waits until no other credential check from `client` runs; `None` when
    /// [`MAX_WAITING_PER_ADDRESS`] checks from it already wait, so that a flood from one
    /// address cannot hold an unbounded number of connections and tasks.
    async fn turn(self: &Arc<Self>, client: IpAddr) -> Option<Turn> {
        let gate = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            if turns.len() >= MAX_ENTRIES {
                // Gates left behind by requests dropped while they waited.
                turns.retain(|_, gate| Arc::strong_count(gate) > 1);
            }
            let gate = turns.entry(client).or_default();
            // The map holds one reference; each check running or waiting holds another.
            if Arc::strong_count(gate) > MAX_WAITING_PER_ADDRESS {
                return None;
            }
            gate.clone()
        };
        let held = gate.clone().lock_owned().await;
        Some(Turn {
            auth: self.clone(),
            client,
            gate,
            held: Some(held),
        })
    }

    fn fingerprint(&self, credential: &Credential) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.cache_key);
        match credential {
            Credential::Basic { user, password } => {
                hasher.update(b"basic\0");
                hasher.update(user.as_bytes());
                hasher.update(b"\0");
                hasher.update(password.expose().as_bytes());
            }
            Credential::Bearer(token) => {
                hasher.update(b"bearer\0");
                hasher.update(token.expose().as_bytes());
            }
            Credential::Certificate { user } => {
                hasher.update(b"certificate\0");
                hasher.update(user.as_bytes());
            }
        }
        hasher.finalize().into()
    }

    fn cached(&self, fingerprint: &[u8; 32]) -> Option<Principal> {
        let generation = self.generation.load(Ordering::Acquire);
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache.get(fingerprint)?;
        let fresh = entry.generation == generation
            && entry.verified_at.elapsed() < CACHE_TTL
            && entry.expires_at_ms.is_none_or(|at| at > now_ms());
        fresh.then(|| entry.principal.clone())
    }

    /// Caches a principal verified against the identity tables as they were at `generation`,
    /// read before the verification: a change that lands while argon2 runs then makes the
    /// entry stale instead of hiding behind the newer generation.
    fn remember(
        &self,
        fingerprint: [u8; 32],
        principal: &Principal,
        expires_at_ms: Option<i64>,
        generation: i64,
    ) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(
            fingerprint,
            CachedPrincipal {
                principal: principal.clone(),
                verified_at: Instant::now(),
                expires_at_ms,
                generation,
            },
        );
    }

    fn penalty(&self, client: IpAddr) -> Duration {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(&client) {
            Some(count)
                if count.failures >= FREE_FAILURES && count.last.elapsed() < FAILURE_WINDOW =>
            {
                let doublings = (count.failures - FREE_FAILURES).min(16);
                (Duration::from_millis(250) * 2u32.pow(doublings)).min(MAX_PENALTY)
            }
            _ => Duration::ZERO,
        }
    }

    fn record_failure(&self, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_ENTRIES {
            failures.retain(|_, count| count.last.elapsed() < FAILURE_WINDOW);
        }
        let count = failures.entry(client).or_insert(FailureCount {
            failures: 0,
            last: Instant::now(),
        });
        if count.last.elapsed() >= FAILURE_WINDOW {
            count.failures = 0;
        }
        count.failures = count.failures.saturating_add(1);
        count.last = Instant::now();
    }

    fn record_success(&self, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&client);
    }

    /// Takes a newly read generation; a change empties the cache.
    fn observe_generation(&self, generation: i64) {
        if self.generation.swap(generation, Ordering::AcqRel) != generation {
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

/// Hashes a password or token secret for storage (argon2id, random salt, PHC string).
pub fn hash_secret(secret: &str) -> Result<String> {
    hasher()?
        .hash_password(secret.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| Error::internal_msg(format!("hashing a secret: {e}")))
}

fn verify_secret(secret: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &hash)
            .is_ok()
    })
}

/// The hash of a random secret nobody knows, made with [`hasher`]'s parameters: what a credential
/// for a missing user or token is checked against, so that it costs what a wrong password
/// costs. `None` only if the system has no randomness, and then hashing fails anyway.
static DUMMY_HASH: LazyLock<Option<String>> =
    LazyLock::new(|| random_hex(32).and_then(|secret| hash_secret(&secret)).ok());

/// argon2id with OWASP's 7 MiB / 5 passes setting, which it rates equal to 19 MiB / 2 passes.
/// The memory is what every check holds while it runs, and what the allocator keeps afterwards:
/// at 19 MiB one login doubled the idle server's resident memory. Verification reads the
/// parameters from the stored hash, so older hashes keep working.
fn hasher() -> Result<Argon2<'static>> {
    let params = argon2::Params::new(7 * 1024, 5, 1, None)
        .map_err(|e| Error::internal_msg(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params,
    ))
}

/// Password hashes running at once: one per core (at least two). Each holds its memory for tens
/// of milliseconds; without a bound, a burst of bad logins from many addresses would start one
/// per blocking thread. One address holds at most one of them (its [`Turn`]).
static HASHING: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    tokio::sync::Semaphore::new(cores.max(2))
});

/// argon2 is deliberately slow; keep it off the async workers, and only a few at a time.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|e| Error::internal("waiting to hash a secret", e))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::internal("running a password hash", e))
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)
        .map_err(|e| Error::internal_msg(format!("reading the system's randomness: {e}")))?;
    Ok(hex::encode(buffer))
}

fn unauthenticated_message() -> &'static str {
    "authentication required: send HTTP Basic credentials (MLFLOW_TRACKING_USERNAME and \
     MLFLOW_TRACKING_PASSWORD) or a bearer token (MLFLOW_TRACKING_TOKEN)"
}

fn validate_password(password: &Secret) -> Result<()> {
    if password.expose().chars().count() < MIN_PASSWORD_LENGTH {
        return Err(Error::invalid(format!(
            "the password is too short: use at least {MIN_PASSWORD_LENGTH} characters"
        )));
    }
    Ok(())
}

/// Experiment ids in the form the access check compares (`"01"` is experiment `1`).
fn normalized(resource: Resource) -> Result<Resource> {
    Ok(match resource.kind {
        ResourceKind::Experiment => Resource::experiment(
            slipway_core::tracking::ExperimentId::parse(&resource.id)?.to_string(),
        ),
        ResourceKind::RegisteredModel => resource,
    })
}

/// A token as handed to its owner: `slw_<id>_<secret>`, shown once.
#[derive(Debug)]
pub struct IssuedToken {
    pub info: TokenInfo,
    pub token: Secret,
}

impl App {
    /// Whether requests must authenticate.
    pub fn auth_enabled(&self) -> bool {
        self.auth.enabled
    }

    /// Who is calling. With authentication off everyone is the anonymous principal.
    pub async fn authenticate(
        &self,
        credential: Option<Credential>,
        client: IpAddr,
    ) -> Result<Principal> {
        if !self.auth.enabled {
            return Ok(Principal::anonymous());
        }
        let credential =
            credential.ok_or_else(|| Error::unauthenticated(unauthenticated_message()))?;
        let fingerprint = self.auth.fingerprint(&credential);
        if let Some(principal) = self.auth.cached(&fingerprint) {
            return Ok(principal);
        }
        let Some(_turn) = self.auth.turn(client).await else {
            return Err(Error::unauthenticated(format!(
                "too many credential checks from {client} are waiting already; retry later"
            )));
        };
        // The check before ours may have verified the same credential.
        if let Some(principal) = self.auth.cached(&fingerprint) {
            return Ok(principal);
        }
        // Read in our turn, so it counts the failures of the checks queued before us.
        let penalty = self.auth.penalty(client);
        if !penalty.is_zero() {
            tokio::time::sleep(penalty).await;
        }
        let generation = self.auth.generation.load(Ordering::Acquire);
        match self.verify(&credential).await? {
            Some((principal, expires_at_ms)) => {
                self.auth.record_success(client);
                self.auth
                    .remember(fingerprint, &principal, expires_at_ms, generation);
                Ok(principal)
            }
            None => {
                self.auth.record_failure(client);
                tracing::warn!(%client, "rejected credentials");
                Err(Error::unauthenticated(
                    "invalid credentials: check the user name and password, or the token",
                ))
            }
        }
    }

    /// The principal for a valid credential, with the token's expiry; `None` when invalid.
    /// A name or token id that does not exist (or cannot log in) costs an argon2 check all the
    /// same, against [`DUMMY_HASH`]: answering it at once would tell a guesser which names exist.
    async fn verify(&self, credential: &Credential) -> Result<Option<(Principal, Option<i64>)>> {
        let (candidate, secret) = match credential {
            Credential::Certificate { user } => {
                return Ok(self
                    .principal_named(user)
                    .await?
                    .map(|principal| (principal, None)));
            }
            Credential::Basic { user, password } => {
                let candidate = match self.store.get_user_credentials(user).await {
                    Ok(stored) => stored.password_hash.map(|hash| (user.clone(), hash, None)),
                    Err(Error::NotFound(_)) => None,
                    Err(error) => return Err(error),
                };
                (candidate, password.clone())
            }
            Credential::Bearer(token) => {
                // A token that is not even shaped like ours tells nothing about who exists.
                let Some((id, secret)) = token
                    .expose()
                    .strip_prefix(TOKEN_PREFIX)
                    .and_then(|rest| rest.split_once('_'))
                else {
                    return Ok(None);
                };
                let candidate = match self.store.get_token_credentials(id).await {
                    Ok(stored) if stored.info.is_usable(now_ms()) => Some((
                        stored.info.user_name,
                        stored.secret_hash,
                        stored.info.expires_at,
                    )),
                    Ok(_) | Err(Error::NotFound(_)) => None,
                    Err(error) => return Err(error),
                };
                (candidate, Secret::new(secret))
            }
        };
        let Some((user_name, stored_hash, expires_at)) = candidate else {
            blocking(move || {
                if let Some(dummy) = DUMMY_HASH.as_deref() {
                    verify_secret(secret.expose(), dummy);
                }
            })
            .await?;
            return Ok(None);
        };
        let valid = blocking(move || verify_secret(secret.expose(), &stored_hash)).await?;
        if !valid {
            return Ok(None);
        }
        // The user behind a token may have been deleted since; their role may have changed.
        Ok(self
            .principal_named(&user_name)
            .await?
            .map(|principal| (principal, expires_at)))
    }

    /// The user as they are now, with their grants; `None` when there is no such user.
    async fn principal_named(&self, user_name: &str) -> Result<Option<Principal>> {
        let user = match self.store.get_user_credentials(user_name).await {
            Ok(stored) => stored.user,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(error) => return Err(error),
        };
        let grants = self
            .store
            .list_grants(Some(&user.name))
            .await?
            .into_iter()
            .map(|grant| (grant.resource, grant.permission))
            .collect();
        Ok(Some(Principal {
            name: user.name,
            role: user.role,
            grants,
        }))
    }

    /// Reads the identity generation and drops cached credentials if it moved. The server
    /// calls this every [`GENERATION_POLL`]; identity changes through this `App` call it too.
    pub async fn refresh_identity(&self) -> Result<()> {
        let generation = self.store.identity_generation().await?;
        self.auth.observe_generation(generation);
        Ok(())
    }

    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        password: Option<Secret>,
    ) -> Result<User> {
        validate_user_name(name)?;
        let hash = match password {
            Some(password) => {
                validate_password(&password)?;
                Some(blocking(move || hash_secret(password.expose())).await??)
            }
            None => None,
        };
        let now = now_ms();
        let user = User {
            name: name.to_owned(),
            role,
            created_at: now,
            updated_at: now,
        };
        let has_password = hash.is_some();
        self.audited(
            "users.create",
            format!("user:{name}"),
            json!({ "role": role.as_str(), "password": has_password }),
        )
        .create_user(user.clone(), hash)
        .await?;
        self.refresh_identity().await?;
        Ok(user)
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.store.list_users().await
    }

    pub async fn get_user(&self, name: &str) -> Result<User> {
        Ok(self.store.get_user_credentials(name).await?.user)
    }

    pub async fn set_user_role(&self, name: &str, role: Role) -> Result<User> {
        let before = self.store.get_user_credentials(name).await?.user.role;
        let user = self
            .audited(
                "users.set_role",
                format!("user:{name}"),
                json!({ "before": { "role": before.as_str() }, "after": { "role": role.as_str() } }),
            )
            .update_user(name, Some(role), None, now_ms())
            .await?;
        self.refresh_identity().await?;
        Ok(user)
    }

    pub async fn set_user_password(&self, name: &str, password: Secret) -> Result<User> {
        validate_password(&password)?;
        let hash = blocking(move || hash_secret(password.expose())).await??;
        // Only that it changed: never the password or its hash.
        let user = self
            .audited("users.set_password", format!("user:{name}"), json!({}))
            .update_user(name, None, Some(hash), now_ms())
            .await?;
        self.refresh_identity().await?;
        Ok(user)
    }

    /// Changes the role, the password or both in one write: a bad password changes nothing.
    pub async fn update_user(
        &self,
        name: &str,
        role: Option<Role>,
        password: Option<Secret>,
    ) -> Result<User> {
        if role.is_none() && password.is_none() {
            return Err(Error::invalid(
                "nothing to change: send a new 'role', a new 'password', or both",
            ));
        }
        let hash = match password {
            Some(password) => {
                validate_password(&password)?;
                Some(blocking(move || hash_secret(password.expose())).await??)
            }
            None => None,
        };
        let before = self.store.get_user_credentials(name).await?.user.role;
        let summary = json!({
            "before": { "role": before.as_str() },
            "after": { "role": role.unwrap_or(before).as_str() },
            "password_changed": hash.is_some(),
        });
        let user = self
            .audited("users.update", format!("user:{name}"), summary)
            .update_user(name, role, hash, now_ms())
            .await?;
        self.refresh_identity().await?;
        Ok(user)
    }

    pub async fn delete_user(&self, name: &str) -> Result<()> {
        self.audited("users.delete", format!("user:{name}"), json!({}))
            .delete_user(name)
            .await?;
        self.refresh_identity().await
    }

    /// Creates a token for `user_name`; the returned secret is never stored or shown again.
    pub async fn create_token(
        &self,
        user_name: &str,
        expires_in: Option<Duration>,
        description: &str,
    ) -> Result<IssuedToken> {
        let id = random_hex(8)?;
        let secret = random_hex(32)?;
        let hash = {
            let secret = secret.clone();
            blocking(move || hash_secret(&secret)).await??
        };
        let now = now_ms();
        let expires_at = match expires_in {
            Some(duration) => Some(
                i64::try_from(duration.as_millis())
                    .ok()
                    .and_then(|ms| now.checked_add(ms))
                    .ok_or_else(|| Error::invalid("the token's lifetime is too long"))?,
            ),
            None => None,
        };
        let info = TokenInfo {
            id: id.clone(),
            user_name: user_name.to_owned(),
            description: description.to_owned(),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        self.audited(
            "tokens.create",
            format!("token:{id}"),
            json!({ "user": user_name, "expires_at": expires_at, "description": description }),
        )
        .create_token(info.clone(), hash)
        .await?;
        self.refresh_identity().await?;
        Ok(IssuedToken {
            info,
            token: Secret::new(format!("{TOKEN_PREFIX}{id}_{secret}")),
        })
    }

    /// Signs a person in to the console: their password (or one of their tokens) checked as
    /// any request's is (throttled per address), then a token of theirs issued for
    /// [`SESSION_LIFETIME`], which the console keeps in an HttpOnly cookie. Audited as the
    /// token's creation, by them.
    pub async fn sign_in(
        &self,
        user: &str,
        password: Secret,
        client: IpAddr,
    ) -> Result<(Principal, IssuedToken)> {
        if !self.auth.enabled {
            return Err(Error::invalid(
                "this server runs without --auth: the console needs no sign-in",
            ));
        }
        // A token of theirs signs a person in as well as their password (people who were
        // given a token and no password, service accounts an admin looks through).
        let credential = if password.expose().starts_with(TOKEN_PREFIX) {
            Credential::Bearer(password)
        } else {
            Credential::Basic {
                user: user.to_owned(),
                password,
            }
        };
        // A token signs in for no longer than it lasts, and a session's own token does not
        // sign in again: a session could otherwise be renewed for ever.
        let mut lifetime = SESSION_LIFETIME;
        if let Credential::Bearer(token) = &credential
            && let Some((id, _)) = token
                .expose()
                .strip_prefix(TOKEN_PREFIX)
                .and_then(|rest| rest.split_once('_'))
            && let Ok(stored) = self.store.get_token_credentials(id).await
        {
            if stored.info.description == SESSION_DESCRIPTION {
                return Err(Error::unauthenticated(
                    "a console session's token cannot start another session; sign in with your password or an API token",
                ));
            }
            if let Some(expires_at) = stored.info.expires_at {
                let left = u64::try_from(expires_at - now_ms()).unwrap_or(0);
                lifetime = lifetime.min(Duration::from_millis(left));
            }
        }
        let principal = self.authenticate(Some(credential), client).await?;
        if principal.name != user {
            return Err(Error::unauthenticated(
                "invalid credentials: check the user name and password, or the token",
            ));
        }
        if !self.auth.sign_in_allowed(&principal.name) {
            return Err(Error::invalid(format!(
                "user '{}' started {MAX_SIGN_INS} console sessions in the last {} minutes; use one of them, or wait",
                principal.name,
                SIGN_IN_WINDOW.as_secs() / 60
            )));
        }
        let issued = self
            .for_principal(&principal, self.caller.request_id.clone())
            .create_token(&principal.name, Some(lifetime), SESSION_DESCRIPTION)
            .await?;
        Ok((principal, issued))
    }

    /// Ends a console session: its token is revoked, if it is the caller's own session.
    pub async fn sign_out(&self, session: &Secret) -> Result<()> {
        let Some((id, _)) = session
            .expose()
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(());
        };
        let stored = match self.store.get_token_credentials(id).await {
            Ok(stored) => stored,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        if stored.info.user_name != self.caller.actor
            || stored.info.description != SESSION_DESCRIPTION
        {
            return Err(Error::permission_denied(
                "only the session's own user can end it this way",
            ));
        }
        self.revoke_token(id).await?;
        Ok(())
    }

    pub async fn list_tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenInfo>> {
        self.store.list_tokens(user_name).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<TokenInfo> {
        let token = self
            .audited("tokens.revoke", format!("token:{id}"), json!({}))
            .revoke_token(id, now_ms())
            .await?;
        self.refresh_identity().await?;
        Ok(token)
    }

    pub async fn set_permission(
        &self,
        user_name: &str,
        resource: Resource,
        permission: Permission,
    ) -> Result<()> {
        let resource = normalized(resource)?;
        let summary = json!({
            "user": user_name,
            "resource_type": resource.kind.as_str(),
            "resource_id": resource.id,
            "permission": permission.as_str(),
        });
        self.audited("permissions.set", format!("user:{user_name}"), summary)
            .set_grant(Grant {
                user_name: user_name.to_owned(),
                resource,
                permission,
            })
            .await?;
        self.refresh_identity().await
    }

    pub async fn delete_permission(&self, user_name: &str, resource: &Resource) -> Result<()> {
        let resource = &normalized(resource.clone())?;
        self.audited(
            "permissions.delete",
            format!("user:{user_name}"),
            json!({ "resource_type": resource.kind.as_str(), "resource_id": resource.id }),
        )
        .delete_grant(user_name, resource)
        .await?;
        self.refresh_identity().await
    }

    pub async fn list_permissions(&self, user_name: Option<&str>) -> Result<Vec<Grant>> {
        self.store.list_grants(user_name).await
    }
}

/// Parses a lifetime such as `30d`, `12h`, `90m` or `3600s`.
pub fn parse_lifetime(raw: &str) -> Result<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        Error::invalid(format!(
            "invalid lifetime '{raw}': write a number and a unit, such as 30d, 12h, 90m or 3600s"
        ))
    })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(Error::invalid(format!(
                "invalid lifetime '{raw}': the unit must be s, m, h or d"
            )));
        }
    };
    if number == 0 {
        return Err(Error::invalid(
            "a token's lifetime must be longer than zero",
        ));
    }
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse() {
        assert_eq!(
            parse_lifetime("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_lifetime("90m").unwrap(), Duration::from_secs(5400));
        assert!(parse_lifetime("30").is_err());
        assert!(parse_lifetime("d").is_err());
        assert!(parse_lifetime("0h").is_err());
        assert!(parse_lifetime("5w").is_err());
    }

    #[test]
    fn secrets_hash_and_verify() {
        let hash = hash_secret("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_secret("correct horse", &hash));
        assert!(!verify_secret("correct horsE", &hash));
        assert!(!verify_secret("correct horse", "not a hash"));
        // Missing users are checked against a hash that costs the same.
        let dummy = DUMMY_HASH.as_deref().unwrap();
        assert!(
            dummy.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"),
            "{dummy}"
        );
    }

    #[test]
    fn failures_slow_a_client_down_and_success_clears_it() {
        let auth = Authenticator::new(true);
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert_eq!(auth.penalty(client), Duration::ZERO);
            auth.record_failure(client);
        }
        assert_eq!(auth.penalty(client), Duration::from_millis(250));
        auth.record_failure(client);
        assert_eq!(auth.penalty(client), Duration::from_millis(500));
        for _ in 0..40 {
            auth.record_failure(client);
        }
        assert_eq!(auth.penalty(client), MAX_PENALTY);
        assert_eq!(auth.penalty(other), Duration::ZERO);
        auth.record_success(client);
        assert_eq!(auth.penalty(client), Duration::ZERO);
    }

    #[test]
    fn secrets_do_not_print() {
        let credential = Credential::Basic {
            user: "alice".into(),
            password: Secret::new("hunter22"),
        };
        assert!(!format!("{credential:?}").contains("hunter22"));
    }
}
