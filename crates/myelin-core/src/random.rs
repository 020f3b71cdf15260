//! Randomness, as a value the services are given: the OS-seeded generator in the server, a seeded
//! one in tests that need repeatable ids.

use std::sync::Mutex;

use rand::{Rng, RngCore, SeedableRng, distributions::Alphanumeric, rngs::StdRng};

/// A source of random identifiers (tokens, device ids, session ids).
pub trait Random: Send + Sync + 'static {
    /// `len` random bytes' worth of entropy as a u64 stream: the one primitive.
    fn next_u64(&self) -> u64;

    /// A random alphanumeric string of `len` characters.
    fn alphanumeric(&self, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len).map(|_| char::from(CHARS[(self.next_u64() % CHARS.len() as u64) as usize])).collect()
    }

    /// A device id as Synapse makes them: ten upper-case letters.
    fn device_id(&self) -> String {
        (0..10).map(|_| char::from(b'A' + (self.next_u64() % 26) as u8)).collect()
    }
}

/// The operating system's randomness (through the thread-local generator it seeds).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn next_u64(&self) -> u64 {
        rand::thread_rng().next_u64()
    }

    fn alphanumeric(&self, len: usize) -> String {
        rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
    }
}

/// A generator from a fixed seed: the same ids in the same order on every run.
pub struct SeededRandom(Mutex<StdRng>);

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(StdRng::seed_from_u64(seed)))
    }
}

impl Random for SeededRandom {
    fn next_u64(&self) -> u64 {
        match self.0.lock() {
            Ok(mut rng) => rng.next_u64(),
            Err(poisoned) => poisoned.into_inner().next_u64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{OsRandom, Random, SeededRandom};

    #[test]
    fn seeded_ids_repeat_and_have_their_shape() {
        let (a, b) = (SeededRandom::new(7), SeededRandom::new(7));
        assert_eq!(a.alphanumeric(12), b.alphanumeric(12));
        let device = a.device_id();
        assert_eq!(device.len(), 10);
        assert!(device.bytes().all(|c| c.is_ascii_uppercase()));
        let token = OsRandom.alphanumeric(40);
        assert_eq!(token.len(), 40);
        assert!(token.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(token, OsRandom.alphanumeric(40));
    }
}
