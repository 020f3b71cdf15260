//! The server's ed25519 signing key: generated on first start into the data directory, loaded after.

use std::path::Path;

use ruma::signatures::Ed25519KeyPair;

pub struct ServerKeys {
    pub key_pair: Ed25519KeyPair,
    pub key_id: String,
}

impl ServerKeys {
    /// Loads `<data_dir>/signing.key` (PKCS#8 DER, base64 on one line prefixed by the key version),
    /// creating it if absent.
    pub fn load_or_generate(data_dir: &Path, random: &dyn myelin_core::Random) -> Result<Self, String> {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let path = data_dir.join("signing.key");
        if !path.exists() {
            let der = Ed25519KeyPair::generate();
            let version = random.alphanumeric(6);
            let line = format!("ed25519 {version} {}\n", engine.encode(der.as_slice()));
            std::fs::write(&path, line).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut parts = text.split_whitespace();
        let (Some("ed25519"), Some(version), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{}: expected `ed25519 VERSION BASE64`", path.display()));
        };
        let der = engine.decode(key).map_err(|e| format!("{}: {e}", path.display()))?;
        let key_pair =
            Ed25519KeyPair::from_der(&der, version.to_owned()).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { key_id: format!("ed25519:{version}"), key_pair })
    }
}
