//! Password hashing: argon2id with OWASP's parameters, as PHC strings.
//!
//! Each hash takes ~19 MiB and tens of milliseconds of one core, so hashing
//! runs on tokio's blocking threads, at most one per core at a time: a burst
//! of logins queues for a [`HashPermit`] instead of exhausting memory.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// argon2id, m = 19456 KiB, t = 2, p = 1 (OWASP's first recommendation).
pub fn argon2_params() -> Params {
    Params::new(19_456, 2, 1, None).expect("constant argon2 parameters are valid")
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params())
}

/// Hashing failed (it only can if the system's random source does).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// The right to run one hash now; see the module doc.
pub struct HashPermit {
    _held: OwnedSemaphorePermit,
}

/// Hashes and verifies passwords.
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Verified against when the user does not exist, so that an unknown
    /// username costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

impl Passwords {
    /// Prepares the hasher; computes the dummy hash (one hash's time).
    pub async fn new() -> Result<Self, HashError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut passwords = Self {
            permits: Arc::new(Semaphore::new(cores)),
            dummy_hash: Arc::from(""),
        };
        let random: [u8; 16] = rand::random();
        passwords.dummy_hash = passwords.hash(&format!("{random:x?}")).await?.into();
        Ok(passwords)
    }

    /// Waits until a hash may run.
    pub async fn permit(&self) -> HashPermit {
        let permit = self.permits.clone().acquire_owned().await;
        HashPermit {
            _held: permit.expect("the hashing semaphore is never closed"),
        }
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let permit = self.permit().await;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            argon2()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|err| HashError(err.to_string()))
        })
        .await
        .map_err(|err| HashError(err.to_string()))?
    }

    /// Checks `password` against `hash`, or against the dummy hash when there
    /// is none (always `false` then, after the same work).
    pub async fn verify(&self, permit: HashPermit, password: &str, hash: Option<&str>) -> bool {
        let known = hash.is_some();
        let hash: Arc<str> = hash.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            argon2()
                .verify_password(password.as_bytes(), &*hash)
                .is_ok()
        })
        .await
        .unwrap_or(false);
        known && matches
    }
}
