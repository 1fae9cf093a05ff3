//! Password hashing: argon2id with OWASP's parameters, as PHC strings.
//!
//! Each hash fills ~19 MiB and takes tens of milliseconds of one core. So
//! hashing runs on a few dedicated threads, one per core, each reusing one
//! block of memory for every hash: memory stays at cores × 19 MiB however
//! many logins arrive, and no hash pays to allocate and fault in fresh
//! pages. Callers queue for a [`HashPermit`] first (two per thread), so a
//! burst of logins waits its turn instead of piling up.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, PasswordVerifier, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// argon2id, m = 19456 KiB, t = 2, p = 1 (OWASP's first recommendation).
pub fn argon2_params() -> Params {
    Params::new(19_456, 2, 1, None).expect("constant argon2 parameters are valid")
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params())
}

/// Hashing failed: the hasher threads are gone, or argon2 refused the input.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// The right to run one hash now; see the module doc.
pub struct HashPermit {
    _held: OwnedSemaphorePermit,
}

/// Work for a hasher thread, given that thread's memory.
type Job = Box<dyn FnOnce(&mut [Block]) + Send>;

/// Hashes and verifies passwords.
pub struct Passwords {
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    /// Verified against when the user does not exist, so that an unknown
    /// username costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

impl Passwords {
    /// Starts one hasher thread per core (they end when this is dropped)
    /// and computes the dummy hash.
    pub async fn new() -> Result<Self, HashError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..cores {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || hasher_thread(&queue))
                .map_err(|err| HashError(format!("cannot start a hasher thread: {err}")))?;
        }
        let mut passwords = Self {
            // One hash running and one queued per thread: the queued one
            // starts the moment a thread frees up, while its caller's last
            // database check before hashing happens in parallel.
            permits: Arc::new(Semaphore::new(2 * cores)),
            jobs,
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
        self.run(permit, move |memory| hash_with(memory, password.as_bytes()))
            .await?
    }

    /// Checks `password` against `hash`, or against the dummy hash when there
    /// is none (always `false` then, after the same work).
    pub async fn verify(&self, permit: HashPermit, password: &str, hash: Option<&str>) -> bool {
        let known = hash.is_some();
        let hash: Arc<str> = hash.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let password = password.to_owned();
        let matches = self
            .run(permit, move |memory| {
                verify_with(memory, password.as_bytes(), &hash)
            })
            .await;
        known && matches.unwrap_or(false)
    }

    /// Runs `work` on a hasher thread, holding `permit` until it is done.
    async fn run<T: Send + 'static>(
        &self,
        permit: HashPermit,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _permit = permit;
            let _ = done.send(work(memory));
        });
        let stopped = || HashError("the hasher threads have stopped".into());
        self.jobs.send(job).map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())
    }
}

/// Runs jobs until the [`Passwords`] that feeds it is dropped.
fn hasher_thread(queue: &Mutex<mpsc::Receiver<Job>>) {
    let mut memory = vec![Block::default(); argon2_params().block_count()];
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(&mut memory),
            Err(mpsc::RecvError) => return,
        }
    }
}

fn hash_with(memory: &mut [Block], password: &[u8]) -> Result<String, HashError> {
    let params = argon2_params();
    let salt: [u8; 16] = rand::random();
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2()
        .hash_password_into_with_memory(password, &salt, &mut output, memory)
        .map_err(|err| HashError(err.to_string()))?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(output),
    ))
}

fn verify_with(memory: &mut [Block], password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let same_parameters = parsed.algorithm == argon2::ARGON2ID_IDENT
        && parsed.version == Some(0x13)
        && Params::try_from(&parsed).is_ok_and(|params| {
            params.block_count() == argon2_params().block_count()
                && params.t_cost() == argon2_params().t_cost()
                && params.p_cost() == argon2_params().p_cost()
        });
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    if !same_parameters {
        // A hash made with other parameters: let argon2 read them from the
        // string (it allocates its own memory for that).
        return argon2().verify_password(password, phc).is_ok();
    }
    let mut output = vec![0u8; expected.len()];
    argon2()
        .hash_password_into_with_memory(password, salt.as_ref(), &mut output, memory)
        .is_ok()
        // `Output`'s equality is constant-time.
        && Output::new(&output).is_ok_and(|output| output == expected)
}

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher;

    use super::*;

    fn memory() -> Vec<Block> {
        vec![Block::default(); argon2_params().block_count()]
    }

    #[test]
    fn our_phc_strings_verify_with_the_argon2_crate_and_back() {
        let mut memory = memory();
        let ours = hash_with(&mut memory, b"correct horse battery").unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            argon2()
                .verify_password(b"correct horse battery", ours.as_str())
                .is_ok()
        );
        assert!(argon2().verify_password(b"wrong", ours.as_str()).is_err());

        let theirs = argon2()
            .hash_password(b"correct horse battery")
            .unwrap()
            .to_string();
        assert!(verify_with(&mut memory, b"correct horse battery", &theirs));
        assert!(!verify_with(&mut memory, b"correct horse batterz", &theirs));
        assert!(!verify_with(&mut memory, b"anything", "not a hash"));
    }

    #[test]
    fn hashes_with_other_parameters_still_verify() {
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let hash = cheap.hash_password(b"old password").unwrap().to_string();
        assert!(verify_with(&mut memory(), b"old password", &hash));
        assert!(!verify_with(&mut memory(), b"new password", &hash));
    }
}
