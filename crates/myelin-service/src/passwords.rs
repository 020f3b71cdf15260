//! Password hashing (argon2id) on a small pool of dedicated threads. Each hash needs ~19 MiB of
//! work memory and tens of milliseconds of CPU; a fixed pool bounds both whatever the login rate,
//! and each thread reuses one work buffer (allocating it per hash made glibc keep ~16 MB of RSS
//! per hash, measured: 20 concurrent registrations took RSS from 11 MB to 323 MB).

use std::sync::{Arc, Mutex, mpsc};

use myelin_core::{MatrixError, MatrixResult};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use password_hash::{Output, ParamsString, PasswordHash, SaltString, rand_core::OsRng};

/// A hashing thread's reusable argon2 work memory.
type Memory = Vec<Block>;
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

pub struct PasswordHasher {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl PasswordHasher {
    pub fn new(threads: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("myelin-argon2-{i}")).spawn(move || {
                let mut memory: Memory = Vec::new();
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(&mut memory),
                        Err(_) => return,
                    }
                }
            });
            if let Err(err) = spawned {
                tracing::error!(%err, "cannot start a password hashing thread");
            }
        }
        Self { jobs: Mutex::new(tx) }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Memory) -> T + Send + 'static) -> MatrixResult<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(f(memory));
        });
        self.jobs
            .lock()
            .map_err(|_| MatrixError::internal("password hasher poisoned"))?
            .send(job)
            .map_err(|_| MatrixError::internal("password hasher stopped"))?;
        rx.await.map_err(|_| MatrixError::internal("password hasher stopped"))
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for the password.
    pub async fn hash(&self, password: String) -> MatrixResult<String> {
        self.run(move |memory| {
            let salt = SaltString::generate(&mut OsRng);
            let params = Params::DEFAULT;
            let output = compute(password.as_bytes(), &salt, params.clone(), memory)?;
            let phc = PasswordHash {
                algorithm: argon2::ARGON2ID_IDENT,
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params).map_err(internal)?,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok(phc.to_string())
        })
        .await?
    }

    /// Whether `password` matches a PHC string made by `hash` (constant-time comparison).
    pub async fn verify(&self, password: String, hash: String) -> bool {
        self.run(move |memory| {
            let Ok(parsed) = PasswordHash::new(&hash) else { return false };
            let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(&parsed), parsed.salt, parsed.hash) else {
                return false;
            };
            let Ok(salt) = SaltString::from_b64(salt.as_str()) else { return false };
            compute(password.as_bytes(), &salt, params, memory).is_ok_and(|output| output == expected)
        })
        .await
        .unwrap_or(false)
    }
}

fn internal(err: impl std::fmt::Display) -> MatrixError {
    MatrixError::internal(format!("password hashing failed: {err}"))
}

/// argon2id of `password` with `salt`, computed in the thread's reusable memory.
fn compute(password: &[u8], salt: &SaltString, params: Params, memory: &mut Memory) -> MatrixResult<Output> {
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    memory.resize(params.block_count(), Block::default());
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(internal)?;
    let mut out = vec![0u8; len];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(password, salt, &mut out, memory.as_mut_slice())
        .map_err(internal)?;
    Output::new(&out).map_err(internal)
}
