//! Random identifiers: access tokens, device ids, transaction-free event ids.

use rand::{Rng, distributions::Alphanumeric};

/// A random alphanumeric string of `len` characters from the OS-seeded thread RNG.
pub fn alphanumeric(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// A device id as Synapse makes them: ten upper-case letters.
pub fn device_id() -> String {
    let mut rng = rand::thread_rng();
    (0..10).map(|_| char::from(b'A' + rng.gen_range(0..26u8))).collect()
}
