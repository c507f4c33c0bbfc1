use std::io::Read;
use std::sync::Arc;

use age::secrecy::ExposeSecret;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::*;

struct Key {
    identities: Identities,
    recipients: Recipients,
}

fn key() -> Key {
    let identity = age::x25519::Identity::generate();
    let public = identity.to_public().to_string();
    Key {
        identities: Identities::parse(identity.to_string().expose_secret()).unwrap(),
        recipients: Recipients::parse_at("r", &[public]).unwrap(),
    }
}

/// `len` bytes that do not repeat within an age chunk.
fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn encrypt(recipients: &Recipients, plain: &[u8], piece: usize) -> Vec<u8> {
    let mut enc = Encryptor::new(recipients).unwrap();
    let mut out = Vec::new();
    for part in plain.chunks(piece) {
        out.extend_from_slice(&enc.write(part).unwrap());
    }
    out.extend_from_slice(&enc.finish().unwrap());
    out
}

fn decrypt(identities: &Identities, cipher: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut reader =
        open(cipher, identities).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn a_file_encrypted_in_pieces_decrypts_to_the_same_bytes() {
    let key = key();
    for len in [0, 1, 64 * 1024, 64 * 1024 + 1, 300_000] {
        let plain = plaintext(len);
        let cipher = encrypt(&key.recipients, &plain, 10_000);
        assert!(cipher.starts_with(b"age-encryption.org/v1\n"));
        assert_eq!(
            decrypt(&key.identities, &cipher).unwrap(),
            plain,
            "{len} bytes"
        );
    }
}

#[test]
fn another_identity_does_not_open_the_file_and_says_so() {
    let (writer, other) = (key(), key());
    let cipher = encrypt(&writer.recipients, &plaintext(1000), 100);
    assert!(matches!(
        check_head(&cipher[..cipher.len().min(4096)], &other.identities),
        Err(OpenError::NoMatchingKey)
    ));
    check_head(&cipher, &writer.identities).unwrap();
    assert!(matches!(
        check_head(b"PAR1 not an age file", &writer.identities),
        Err(OpenError::Damaged(_))
    ));
}

#[test]
fn a_changed_or_cut_off_ciphertext_fails_to_decrypt() {
    let key = key();
    let plain = plaintext(200_000);
    let cipher = encrypt(&key.recipients, &plain, 50_000);
    let mut changed = cipher.clone();
    let at = changed.len() - 70_000;
    changed[at] ^= 1;
    assert!(
        decrypt(&key.identities, &changed).is_err(),
        "a flipped bit is found"
    );
    // Cut at a chunk boundary: every chunk read is authentic, but the last one is missing.
    let header = cipher.len() - (plain.len() + 4 * 16);
    let cut = &cipher[..header + 2 * (64 * 1024 + 16)];
    assert!(
        decrypt(&key.identities, cut).is_err(),
        "a file cut short is found"
    );
}

#[test]
fn recipients_are_checked_each_named_and_secret_keys_refused() {
    let key = key();
    let good = key.recipients.keys()[0].clone();
    let secret = age::x25519::Identity::generate()
        .to_string()
        .expose_secret()
        .to_string();
    let errors = Recipients::parse_at(
        "encryption.recipients",
        &[good.clone(), "age1xyz".into(), secret, "hello".into()],
    )
    .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "encryption.recipients[1]",
            "encryption.recipients[2]",
            "encryption.recipients[3]"
        ]
    );
    assert!(errors[1].message.contains("secret key"), "{:?}", errors[1]);
    assert!(Recipients::parse_at("f", &[]).is_err());
    let twice = Recipients::parse_at("f", &[good.clone(), format!(" {good} ")]).unwrap();
    assert_eq!(twice.keys(), [good], "each key once");
    let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";
    assert_eq!(
        Recipients::parse_at("f", &[ssh.into()]).unwrap().keys(),
        [ssh]
    );
}

#[test]
fn identity_text_is_parsed_without_echoing_it() {
    assert!(Identities::parse("# nothing here\n").is_err());
    let err = Identities::parse("AGE-SECRET-KEY-1NOTAKEY").unwrap_err();
    assert!(
        !err.contains("NOTAKEY"),
        "the secret is not repeated: {err}"
    );
    let identities = key().identities;
    assert!(!format!("{identities:?}").contains("AGE-SECRET"));
}

#[test]
fn identity_sources_are_a_secret_version_or_an_absolute_path() {
    assert_eq!(
        IdentitySource::parse("projects/p/secrets/k/versions/latest"),
        Ok(IdentitySource::SecretVersion(
            "projects/p/secrets/k/versions/latest".into()
        ))
    );
    assert!(IdentitySource::parse("projects/p/secrets/k").is_err());
    assert!(IdentitySource::parse("key.txt").is_err());
    assert_eq!(
        IdentitySource::parse("/run/keys/age.txt"),
        Ok(IdentitySource::File("/run/keys/age.txt".into()))
    );
}

fn run(mut recrypt: Recrypt, input: &[u8]) -> (Vec<u8>, String) {
    let mut out = Vec::new();
    for part in input.chunks(7000) {
        out.extend_from_slice(&recrypt.update(Bytes::copy_from_slice(part)).unwrap());
    }
    let (tail, sha) = recrypt.finish().unwrap();
    out.extend_from_slice(&tail);
    (out, sha)
}

#[test]
fn recrypt_encrypts_clear_files_and_reencrypts_age_files_for_new_recipients() {
    let (old, new) = (key(), key());
    let plain = plaintext(150_000);
    let sha = hex::encode(Sha256::digest(&plain));

    let (cipher, plain_sha) = run(Recrypt::encrypt(&old.recipients).unwrap(), &plain);
    assert_eq!(plain_sha, sha);
    assert_eq!(decrypt(&old.identities, &cipher).unwrap(), plain);

    let again = Recrypt::reencrypt(
        Arc::new(old.identities),
        Arc::new(Recipients::parse_at("r", new.recipients.keys()).unwrap()),
    )
    .unwrap();
    let (recrypted, plain_sha) = run(again, &cipher);
    assert_eq!(plain_sha, sha);
    assert_eq!(decrypt(&new.identities, &recrypted).unwrap(), plain);
}

#[test]
fn recrypt_refuses_a_file_its_identities_do_not_open() {
    let (old, stranger) = (key(), key());
    let cipher = encrypt(&old.recipients, &plaintext(100_000), 4096);
    let mut recrypt =
        Recrypt::reencrypt(Arc::new(stranger.identities), Arc::new(old.recipients)).unwrap();
    let mut failed = None;
    for part in cipher.chunks(1000) {
        if let Err(e) = recrypt.update(Bytes::copy_from_slice(part)) {
            failed = Some(e);
            break;
        }
    }
    let e = match failed {
        Some(e) => e,
        None => recrypt.finish().unwrap_err(),
    };
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
}
