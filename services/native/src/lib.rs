//! The `kubetensor_native` Python module: ed25519 (RFC 8032) signing, verification and batch
//! verification on ed25519-dalek, for the network's hot paths (`kubetensor.core.keys` calls it; PyNaCl
//! is the fallback when the module is not installed), and the round's sha256 Merkle tree
//! (`kubetensor.core.merkle` calls `merkle_tree` and `merkle_verify`; its Python code is the fallback
//! and the specification: see its module doc).
//!
//! Verdicts are libsodium's (PyNaCl's `crypto_sign_verify_detached`), byte for byte in the checks:
//! a public key must be 32 bytes, a canonical encoding (y < p) and not of small order; a signature must
//! be 64 bytes, its R not of small order and its S canonical (S < l); then the cofactorless equation,
//! compared on encodings: encode([S]B - [k]A) == R with k = SHA-512(R || A || M) mod l (a non-canonical
//! R encoding never matches). The one place a verdict can differ is batch verification: see `verify_batch`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyTuple};
use sha2::{Digest, Sha256};

const SEED_BYTES: usize = 32;

/// The encodings libsodium refuses as small-order points (`ge25519_has_small_order`), compared with
/// the sign bit (bit 255) cleared: every point of order 1, 2, 4 or 8, canonical or not.
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 7] = [
    // 0 (order 4)
    [0; 32],
    // 1 (order 1)
    [
        0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ],
    // 2707385501144840649318225287225658788936804267575313519463743609750303402022 (order 8)
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5,
        0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
    ],
    // 55188659117513257062467267217118295137698188065244968500265048394206261417927 (order 8)
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a,
        0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
    ],
    // p - 1 (order 2)
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
    // p (= 0, order 4, non-canonical)
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
    // p + 1 (= 1, order 1, non-canonical)
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
];

/// l = 2^252 + 27742317777372353535851937790883648493, little-endian: S must be below it.
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Signatures per batch verification: 12 to 48 cost about the same per signature (the multiscalar
/// multiplication's tables stay in cache) and a failing batch costs its signatures checked alone, so a
/// forged signature among 64 costs 16 extra checks, not 64.
const BATCH_CHUNK: usize = 16;

/// Decoded public keys, by their exact bytes: a round's miners sign with the same hotkeys every time,
/// and a decompression costs a seventh of a verification. Emptied when full (a bound, not a policy).
const KEY_CACHE_CAPACITY: usize = 4096;
static KEY_CACHE: OnceLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> = OnceLock::new();

fn has_small_order(encoding: &[u8; 32]) -> bool {
    SMALL_ORDER_ENCODINGS
        .iter()
        .any(|bad| bad[..31] == encoding[..31] && bad[31] == encoding[31] & 0x7f)
}

/// y < p (the sign bit aside), as libsodium's `ge25519_is_canonical`.
fn is_canonical_point(encoding: &[u8; 32]) -> bool {
    let top_is_max = encoding[31] & 0x7f == 0x7f && encoding[1..31].iter().all(|&byte| byte == 0xff);
    !(top_is_max && encoding[0] >= 0xed)
}

/// S < l, as libsodium's `sc25519_is_canonical` (compared from the most significant byte down).
fn is_canonical_scalar(scalar: &[u8; 32]) -> bool {
    for (s, l) in scalar.iter().rev().zip(GROUP_ORDER.iter().rev()) {
        if s != l {
            return s < l;
        }
    }
    false
}

fn decode_key(public_key: &[u8]) -> Option<VerifyingKey> {
    let encoding: &[u8; 32] = public_key.try_into().ok()?;
    let cache = KEY_CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(key) = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(encoding)
    {
        return Some(*key);
    }
    if !is_canonical_point(encoding) || has_small_order(encoding) {
        return None;
    }
    let key = VerifyingKey::from_bytes(encoding).ok()?;
    let mut keys = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if keys.len() >= KEY_CACHE_CAPACITY {
        keys.clear();
    }
    keys.insert(*encoding, key);
    Some(key)
}

/// The signature when its shape passes libsodium's checks; the equation is checked by the caller.
/// A non-canonical R is refused here too: libsodium refuses it by the final comparison of encodings,
/// and the batch equation (on decoded points) would not.
fn decode_signature(signature: &[u8]) -> Option<Signature> {
    let bytes: &[u8; 64] = signature.try_into().ok()?;
    let r: &[u8; 32] = bytes[..32].try_into().ok()?;
    let s: &[u8; 32] = bytes[32..].try_into().ok()?;
    if has_small_order(r) || !is_canonical_point(r) || !is_canonical_scalar(s) {
        return None;
    }
    Some(Signature::from_bytes(bytes))
}

fn verify_one(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    match (decode_key(public_key), decode_signature(signature)) {
        // dalek's `verify` is the cofactorless check on encodings (its `verify_strict` adds the
        // small-order checks done above, on decoded points).
        (Some(key), Some(signature)) => key.verify(message, &signature).is_ok(),
        _ => false,
    }
}

fn verify_all(
    public_keys: &[PyBackedBytes],
    messages: &[PyBackedBytes],
    signatures: &[PyBackedBytes],
) -> Vec<bool> {
    let mut verdicts = vec![false; public_keys.len()];
    let mut indices = Vec::with_capacity(public_keys.len());
    let mut keys = Vec::with_capacity(public_keys.len());
    let mut sigs = Vec::with_capacity(public_keys.len());
    let mut msgs: Vec<&[u8]> = Vec::with_capacity(public_keys.len());
    for (index, ((public_key, message), signature)) in
        public_keys.iter().zip(messages).zip(signatures).enumerate()
    {
        if let (Some(key), Some(signature)) = (decode_key(public_key), decode_signature(signature)) {
            indices.push(index);
            keys.push(key);
            sigs.push(signature);
            msgs.push(message.as_ref());
        }
    }
    for start in (0..indices.len()).step_by(BATCH_CHUNK) {
        let chunk = start..(start + BATCH_CHUNK).min(indices.len());
        let passed = chunk.len() > 1
            && ed25519_dalek::verify_batch(&msgs[chunk.clone()], &sigs[chunk.clone()], &keys[chunk.clone()])
                .is_ok();
        for position in chunk {
            // When the chunk's batch fails (one of them at least does), or it holds only one signature,
            // each alone says which.
            verdicts[indices[position]] =
                passed || keys[position].verify(msgs[position], &sigs[position]).is_ok();
        }
    }
    verdicts
}

/// An ed25519 signing key made from its 32-byte seed (RFC 8032). Signatures are deterministic and
/// byte-identical to libsodium's (PyNaCl) for the same seed and message.
#[pyclass(frozen, module = "kubetensor_native")]
struct SigningKey {
    key: ed25519_dalek::SigningKey,
}

#[pymethods]
impl SigningKey {
    #[new]
    fn new(seed: &[u8]) -> PyResult<Self> {
        let seed: &[u8; SEED_BYTES] = seed.try_into().map_err(|_| {
            PyValueError::new_err(format!(
                "an ed25519 seed is {SEED_BYTES} bytes, got {} bytes",
                seed.len()
            ))
        })?;
        Ok(Self {
            key: ed25519_dalek::SigningKey::from_bytes(seed),
        })
    }

    /// The 32-byte public key.
    #[getter]
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.key.verifying_key().as_bytes())
    }

    /// The 64-byte signature of `message`. The GIL is kept: a signature takes microseconds, less than
    /// another thread could hold the GIL for once it had it.
    fn sign<'py>(&self, py: Python<'py>, message: &[u8]) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.key.sign(message).to_bytes())
    }

    fn __repr__(&self) -> String {
        // Never the seed.
        let public: String = self.key.verifying_key().as_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("SigningKey(public_key={public}...)")
    }
}

/// True when `signature` is `public_key`'s signature of `message`; False for anything else, wrong
/// lengths included.
#[pyfunction]
fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    verify_one(public_key, message, signature)
}

/// `verify` of each (public key, message, signature), in order, as batch verifications of 16 (random
/// linear combination, about half the cost per signature); the signatures of a batch that fails are
/// checked alone, so the list says exactly which fail. Items of the wrong length, undecodable or small-order keys,
/// small-order or non-canonical R and non-canonical S are False without failing the others. The GIL is
/// released while it runs. ValueError when the three lists differ in length.
///
/// The difference from `verify`: the batch equation holds when every item's equation holds up to a
/// small-order (torsion) point that the batch's coefficients cancel. Only a signer who built a key or
/// an R with a torsion component can produce such an item (it still proves the secret key's holder
/// signed it); `verify` refuses it, the batch accepts it when its coefficients (which ed25519-dalek
/// derives from the batch's contents) cancel the torsion.
#[pyfunction]
fn verify_batch(
    py: Python<'_>,
    public_keys: Vec<PyBackedBytes>,
    messages: Vec<PyBackedBytes>,
    signatures: Vec<PyBackedBytes>,
) -> PyResult<Vec<bool>> {
    if public_keys.len() != messages.len() || public_keys.len() != signatures.len() {
        return Err(PyValueError::new_err(format!(
            "public_keys, messages and signatures must have one item each per signature, got {}, {} and {}",
            public_keys.len(),
            messages.len(),
            signatures.len()
        )));
    }
    Ok(py.detach(|| verify_all(&public_keys, &messages, &signatures)))
}

/// The longest Merkle proof accepted (`kubetensor.core.merkle.MAX_PROOF`): a tree of up to 2**32 leaves.
const MAX_PROOF: usize = 32;

/// sha256(0x00 || item).
fn leaf_hash(item: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update([0u8]);
    hash.update(item);
    hash.finalize().into()
}

/// sha256(0x01 || min(a, b) || max(a, b)), bytes compared as Python compares them.
fn node_hash(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    let mut hash = Sha256::new();
    hash.update([1u8]);
    hash.update(low);
    hash.update(high);
    hash.finalize().into()
}

/// Every level of the tree over `leaves`, bottom up: an odd last node moves up unchanged.
fn levels(leaves: Vec<[u8; 32]>) -> Vec<Vec<[u8; 32]>> {
    let mut levels = vec![leaves];
    while levels[levels.len() - 1].len() > 1 {
        let below = &levels[levels.len() - 1];
        let mut above: Vec<[u8; 32]> = below
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
        if below.len() % 2 == 1 {
            above.push(below[below.len() - 1]);
        }
        levels.push(above);
    }
    levels
}

/// `kubetensor.core.merkle.tree`: the root over `items` and every item's proof (a tuple of sibling
/// hashes, bottom up), in order. ValueError for no items.
#[pyfunction]
fn merkle_tree<'py>(
    py: Python<'py>,
    items: Vec<PyBackedBytes>,
) -> PyResult<(Bound<'py, PyBytes>, Vec<Bound<'py, PyTuple>>)> {
    if items.is_empty() {
        return Err(PyValueError::new_err("a Merkle tree needs at least one leaf"));
    }
    let levels = py.detach(|| levels(items.iter().map(|item| leaf_hash(item)).collect()));
    let mut proofs = Vec::with_capacity(items.len());
    for index in 0..items.len() {
        let mut proof: Vec<Bound<'py, PyBytes>> = Vec::with_capacity(levels.len());
        let mut position = index;
        for level in &levels[..levels.len() - 1] {
            let sibling = position ^ 1;
            if sibling < level.len() {
                proof.push(PyBytes::new(py, &level[sibling]));
            }
            position /= 2;
        }
        proofs.push(PyTuple::new(py, proof)?);
    }
    Ok((PyBytes::new(py, &levels[levels.len() - 1][0]), proofs))
}

/// `kubetensor.core.merkle.verify`: whether `proof` leads from `item`'s leaf hash to `root`. False for
/// a proof longer than 32 or a sibling that is not 32 bytes.
#[pyfunction]
fn merkle_verify(root: &[u8], item: &[u8], proof: Vec<PyBackedBytes>) -> bool {
    if proof.len() > MAX_PROOF {
        return false;
    }
    let mut node = leaf_hash(item);
    for sibling in &proof {
        let Ok(sibling) = <&[u8; 32]>::try_from(&sibling[..]) else {
            return false;
        };
        node = node_hash(&node, sibling);
    }
    node[..] == *root
}

/// ed25519 signing and (batch) verification on ed25519-dalek, with libsodium's (PyNaCl's) verdicts.
///
/// `verify` refuses what libsodium refuses: keys and signatures of the wrong length, non-canonical or
/// small-order public keys, small-order R, non-canonical S; it checks the cofactorless equation on
/// encodings, as libsodium does. `verify_batch` agrees with it on every item except one made with a
/// torsion component by its own signer, which the batch's cofactorless random linear combination can
/// accept (see its docstring). `SigningKey.sign` is RFC 8032's deterministic signature.
#[pymodule]
fn kubetensor_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<SigningKey>()?;
    module.add_function(wrap_pyfunction!(verify, module)?)?;
    module.add_function(wrap_pyfunction!(verify_batch, module)?)?;
    module.add_function(wrap_pyfunction!(merkle_tree, module)?)?;
    module.add_function(wrap_pyfunction!(merkle_verify, module)?)?;
    Ok(())
}
