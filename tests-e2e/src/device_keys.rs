//! What a test client uploads for end-to-end encryption, really signed: a device's ed25519 key
//! pair, its signed device keys and one-time keys, and cross-signing key pairs.

use anyhow::{Context, Result};
use ruma::{
    serde::Base64,
    signatures::{Ed25519KeyPair, sign_json},
};
use serde_json::{Value, json};

use crate::{Client, federation::canonical};

/// A fresh ed25519 key pair with key id `name`, and its public key (unpadded base64).
pub fn key_pair(name: &str) -> Result<(Ed25519KeyPair, String)> {
    let pair = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), name.to_owned()).context("parse key")?;
    let public = Base64::<ruma::serde::base64::Standard>::new(pair.public_key().to_vec()).encode();
    Ok((pair, public))
}

/// A cross-signing key pair: its key id is `ed25519:<its own public key>`.
pub fn cross_signing_pair() -> Result<(Ed25519KeyPair, String)> {
    let der = Ed25519KeyPair::generate();
    let probe = Ed25519KeyPair::from_der(&der, "probe".into()).context("parse key")?;
    let public = Base64::<ruma::serde::base64::Standard>::new(probe.public_key().to_vec()).encode();
    Ok((Ed25519KeyPair::from_der(&der, public.clone()).context("parse key")?, public))
}

/// `value` signed by `signer` with `pair`.
pub fn signed(signer: &str, pair: &Ed25519KeyPair, value: Value) -> Result<Value> {
    let mut object = canonical(&value)?;
    sign_json(signer, pair, &mut object).context("sign")?;
    Ok(serde_json::to_value(object)?)
}

/// A device's signing key, and what its client uploads.
pub struct DeviceKeys {
    pub pair: Ed25519KeyPair,
    pub public: String,
}

impl DeviceKeys {
    pub fn new(device_id: &str) -> Result<Self> {
        let (pair, public) = key_pair(device_id)?;
        Ok(Self { pair, public })
    }

    /// The signed `device_keys` object of `client`'s device.
    pub fn device_keys(&self, client: &Client) -> Result<Value> {
        signed(
            &client.user_id,
            &self.pair,
            json!({
                "user_id": client.user_id,
                "device_id": client.device_id,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {
                    format!("curve25519:{}", client.device_id): "Y3VydmUyNTUxOWtleW9mdGhlZGV2aWNlMTIzNDU2Nzg",
                    format!("ed25519:{}", client.device_id): self.public,
                },
            }),
        )
    }

    /// A signed one-time (or fallback) key `signed_curve25519:<id>` whose key is `otk-<id>`.
    pub fn otk(&self, client: &Client, id: &str, fallback: bool) -> Result<(String, Value)> {
        let mut key = json!({ "key": format!("otk-{id}") });
        if fallback {
            key["fallback"] = json!(true);
        }
        Ok((format!("signed_curve25519:{id}"), signed(&client.user_id, &self.pair, key)?))
    }
}
