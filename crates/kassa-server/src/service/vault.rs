//! The card vault (ADR 50): envelope encryption of saved cards. Each card gets a random
//! 256-bit data key; the card (PAN and expiry) is sealed under it with AES-256-GCM, and the
//! data key is sealed under a master key from the config, named by its key id. The database
//! holds ciphertext, the key id, and what may be shown (last four, expiry, BIN).
//!
//! A saved card also carries its keyed fingerprint ([`CardFingerprinter`], ADR 75), so the
//! same card saved twice, or by two players, is recognised without opening either.
//!
//! Rotation without downtime: add the new master key, make it `active_key`; new cards are
//! sealed under it, old ones still open under theirs; [`Vault::rewrap`] moves old cards'
//! data keys to the active key (the cards' ciphertext is untouched), after which the old key
//! can be removed.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use kassa_connectors::{CardDetails, ExposeSecret, SecretString};
use kassa_store::acquirer::VaultCardRecord;
use kassa_store::{now_ms, Store, StoreError};
use sha2::Sha256;

/// Bytes of an AES-GCM nonce, stored in front of each ciphertext.
const NONCE_BYTES: usize = 12;
/// Bytes of an AES-256 key.
const KEY_BYTES: usize = 32;
/// Saved cards read per batch by the vault tools (re-wrap, fingerprint).
const CARDS_PER_BATCH: u32 = 100;

/// Why the vault refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A master key is not 32 bytes of base64, or the active key is not among them.
    #[error("vault config: {0}")]
    Config(String),
    /// The card's key id names no configured master key.
    #[error("vault key {0:?} is not configured")]
    UnknownKey(String),
    /// The ciphertext does not open (wrong key, or altered bytes).
    #[error("a vault card does not decrypt")]
    Corrupt,
    /// No saved card with this token for this player.
    #[error("no saved card {0:?}")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The fewest bytes a fingerprint key may have (HMAC-SHA256's own output length).
const FINGERPRINT_KEY_BYTES_MIN: usize = 32;
/// SHA-256's block: the MAC buffers input shorter than this.
const BLOCK_BYTES: usize = 64;

/// Keyed fingerprints of card numbers (ADR 75): HMAC-SHA256 of the PAN under
/// `[vault] fingerprint_key`, in hex. Not a plain hash: the PANs of one BIN are few enough
/// (at most 10^9 with the Luhn digit) that a SHA-256 of a PAN is reversed by trying them
/// all; without the key a fingerprint tells nothing.
#[derive(Clone)]
pub struct CardFingerprinter {
    /// The MAC keyed once; cloned for each card.
    keyed: Hmac<Sha256>,
}

impl fmt::Debug for CardFingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CardFingerprinter(..)")
    }
}

impl CardFingerprinter {
    /// The fingerprinter of `key` (base64 of at least 32 bytes).
    pub fn new(key: &SecretString) -> Result<CardFingerprinter, VaultError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.expose_secret().trim())
            .ok()
            .filter(|bytes| bytes.len() >= FINGERPRINT_KEY_BYTES_MIN)
            .ok_or_else(|| {
                VaultError::Config("fingerprint_key must be at least 32 bytes in base64".into())
            })?;
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&bytes)
            .map_err(|_| VaultError::Config("fingerprint_key is not a usable key".into()))?;
        Ok(CardFingerprinter { keyed })
    }

    /// The fingerprint of `card`: the same for the same PAN, whatever its expiry.
    ///
    /// The MAC's state buffers the PAN (less than a block) until it is finalized, and
    /// nothing wipes a stack: a state on the stack, moved into `finalize`, left two copies
    /// of the card number in a worker thread's stack memory, found in the card node's core
    /// dump (ADR 71). So the state lives on the heap, is finalized in place, and its buffer
    /// is overwritten before it is freed (where freed memory is zeroed as well).
    pub fn of(&self, card: &CardDetails) -> String {
        let mut mac = Box::new(self.keyed.clone());
        mac.update(card.pan().as_bytes());
        let fingerprint = hex::encode(mac.finalize_reset().into_bytes());
        // Less than a block: copied into the buffer over the PAN, not hashed through.
        mac.update(&[0u8; BLOCK_BYTES - 1]);
        std::hint::black_box(&mac);
        fingerprint
    }
}

/// The master keys by id, and the one new cards are sealed under.
pub struct Vault {
    store: Store,
    keys: BTreeMap<String, Aes256Gcm>,
    active: String,
    fingerprints: Option<CardFingerprinter>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

/// Seals `plain` under `cipher`, binding it to `context` (authenticated, not stored).
fn seal(cipher: &Aes256Gcm, plain: &[u8], context: &[u8]) -> Result<Vec<u8>, VaultError> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: context,
            },
        )
        .map_err(|_| VaultError::Corrupt)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal`] made with the same key and context.
fn open(cipher: &Aes256Gcm, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, VaultError> {
    if sealed.len() < NONCE_BYTES {
        return Err(VaultError::Corrupt);
    }
    let (nonce, body) = sealed.split_at(NONCE_BYTES);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: context,
            },
        )
        .map_err(|_| VaultError::Corrupt)
}

impl Vault {
    /// A vault over `store` with `keys` (id → base64 of 32 bytes); `active` seals new cards.
    pub fn new(
        store: Store,
        keys: &BTreeMap<String, SecretString>,
        active: &str,
    ) -> Result<Vault, VaultError> {
        let mut ciphers = BTreeMap::new();
        for (id, encoded) in keys {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.expose_secret().trim())
                .ok()
                .filter(|bytes| bytes.len() == KEY_BYTES)
                .ok_or_else(|| {
                    VaultError::Config(format!("master key {id:?} must be 32 bytes in base64"))
                })?;
            ciphers.insert(
                id.clone(),
                Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
            );
        }
        if !ciphers.contains_key(active) {
            return Err(VaultError::Config(format!(
                "active_key {active:?} is not among the master keys"
            )));
        }
        Ok(Vault {
            store,
            keys: ciphers,
            active: active.to_string(),
            fingerprints: None,
        })
    }

    /// Saves each new card with its fingerprint under `fingerprints`.
    pub fn with_fingerprints(mut self, fingerprints: Option<CardFingerprinter>) -> Vault {
        self.fingerprints = fingerprints;
        self
    }

    fn cipher(&self, key_id: &str) -> Result<&Aes256Gcm, VaultError> {
        self.keys
            .get(key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))
    }

    /// Saves `card` for a player; answers the token it is paid with again.
    pub async fn save(
        &self,
        merchant_id: &str,
        player_id: &str,
        card: &CardDetails,
        approved_account: Option<&str>,
    ) -> Result<VaultCardRecord, VaultError> {
        let token = kassa_core::ids::generate("card");
        let data_key = Aes256Gcm::generate_key(OsRng);
        let plain = SecretString::from(format!("{}|{}", card.pan(), card.expiry_yymm()));
        let ciphertext = seal(
            &Aes256Gcm::new(&data_key),
            plain.expose_secret().as_bytes(),
            token.as_bytes(),
        )?;
        let wrapped_key = seal(self.cipher(&self.active)?, &data_key, token.as_bytes())?;
        let record = VaultCardRecord {
            token,
            merchant_id: merchant_id.to_string(),
            player_id: player_id.to_string(),
            key_id: self.active.clone(),
            wrapped_key,
            ciphertext,
            last4: card.last4().to_string(),
            expiry_yymm: card.expiry_yymm().to_string(),
            bin: card.pan().chars().take(6).collect(),
            created_at_ms: now_ms(),
            approved_account: approved_account.map(str::to_string),
            fingerprint: self.fingerprints.as_ref().map(|f| f.of(card)),
        };
        self.store.insert_vault_card(&record).await?;
        Ok(record)
    }

    /// A player's saved cards (ciphertext stays closed).
    pub async fn cards_of(
        &self,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<Vec<VaultCardRecord>, VaultError> {
        Ok(self
            .store
            .player_vault_cards(merchant_id, player_id)
            .await?)
    }

    /// Opens the player's saved card `token` for one charge; `today_yymm` checks its expiry.
    pub async fn open(
        &self,
        merchant_id: &str,
        player_id: &str,
        token: &str,
        today_yymm: &str,
    ) -> Result<CardDetails, VaultError> {
        let record = self
            .cards_of(merchant_id, player_id)
            .await?
            .into_iter()
            .find(|card| card.token == token)
            .ok_or_else(|| VaultError::NotFound(token.to_string()))?;
        self.open_record(&record, today_yymm)
    }

    fn open_record(
        &self,
        record: &VaultCardRecord,
        today_yymm: &str,
    ) -> Result<CardDetails, VaultError> {
        let context = record.token.as_bytes();
        let data_key = open(self.cipher(&record.key_id)?, &record.wrapped_key, context)?;
        if data_key.len() != KEY_BYTES {
            return Err(VaultError::Corrupt);
        }
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key));
        let plain = SecretString::from(
            String::from_utf8(open(&cipher, &record.ciphertext, context)?)
                .map_err(|_| VaultError::Corrupt)?,
        );
        let (pan, expiry) = plain
            .expose_secret()
            .split_once('|')
            .ok_or(VaultError::Corrupt)?;
        CardDetails::new(pan, expiry, today_yymm).map_err(|_| VaultError::Corrupt)
    }

    /// Fingerprints saved cards under the configured key (ADR 80): the cards saved before
    /// the key was set, or with `all` every card (after the key changed, so old and new
    /// cards match again). Answers how many fingerprints were written. Safe to run while
    /// cards are saved and used: each card is one update, and a run can be repeated.
    pub async fn fingerprint_cards(&self, all: bool) -> Result<u64, VaultError> {
        let fingerprints = self.fingerprints.as_ref().ok_or_else(|| {
            VaultError::Config("no fingerprint_key is configured ([vault] fingerprint_key)".into())
        })?;
        let (mut written, mut after) = (0, String::new());
        loop {
            let batch = self
                .store
                .vault_cards_to_fingerprint(&after, all, CARDS_PER_BATCH)
                .await?;
            let Some(last) = batch.last() else {
                return Ok(written);
            };
            after = last.token.clone();
            for record in &batch {
                // The card's own expiry as "today": an expired card is fingerprinted too.
                let card = self.open_record(record, &record.expiry_yymm)?;
                let fingerprint = fingerprints.of(&card);
                if self
                    .store
                    .set_vault_card_fingerprint(&record.token, &fingerprint)
                    .await?
                {
                    written += 1;
                }
            }
        }
    }

    /// Re-wraps every card's data key under the active master key; answers how many moved.
    /// Safe to run while cards are saved and used: each card moves in one conditional update.
    pub async fn rewrap(&self) -> Result<u64, VaultError> {
        let mut moved = 0;
        loop {
            let batch = self
                .store
                .vault_cards_not_under(&self.active, CARDS_PER_BATCH)
                .await?;
            if batch.is_empty() {
                return Ok(moved);
            }
            for card in &batch {
                let context = card.token.as_bytes();
                let data_key = open(self.cipher(&card.key_id)?, &card.wrapped_key, context)?;
                let wrapped = seal(self.cipher(&self.active)?, &data_key, context)?;
                if self
                    .store
                    .rewrap_vault_card(&card.token, &card.key_id, &self.active, &wrapped)
                    .await?
                {
                    moved += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(pan: &str) -> CardDetails {
        CardDetails::new(pan, "3412", "2612").unwrap()
    }

    /// HMAC-SHA256 under 32 bytes of `k`, as Python's `hmac` computes it: finalizing in
    /// place and wiping the buffer must not change a fingerprint already stored.
    #[test]
    fn fingerprints_are_hmac_sha256_of_the_pan_and_repeat() {
        let key = SecretString::from("a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=");
        let fingerprinter = CardFingerprinter::new(&key).unwrap();
        let first = "b3386afacc3787e2d9ba212011bf6a805246631241d9b908aca92d055eb5f99d";
        assert_eq!(fingerprinter.of(&card("4000009876547129")), first);
        let second = "68461c4333f0d6ffc13ab17a895ccb61b6a8864e96602c4e91c869cfb9ccc6f1";
        assert_eq!(fingerprinter.of(&card("4111111111111111")), second);
        assert_eq!(fingerprinter.of(&card("4000009876547129")), first);
    }
}
