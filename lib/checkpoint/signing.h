// Signed checkpoints (checkpoint.sign_key_file): Ed25519 signatures
// (libsodium's crypto_sign) over a checkpoint's manifest, whose signed form
// lists every file's size, CRC-32 and BLAKE2b-256 hash (so every byte of every
// file: tensors, their checksums and attributes, the master file's metadata
// and config), the step, the checkpoint id and the run id.
//
// Why Ed25519 and not an HMAC: a verifier needs only the public key, so a
// machine that checks checkpoints (an inference service, `dtrain inspect` on
// a shared login node) cannot forge them; with a shared HMAC secret every
// verifier could. CRC-32s alone are not signed: they can be forged at will
// (four chosen bytes give any CRC), a BLAKE2b hash cannot.
//
// Key files (`dtrain keygen PREFIX` writes PREFIX.key and PREFIX.pub), text,
// two lines each:
//   dtrain-ed25519-secret-key 1        dtrain-ed25519-public-key 1
//   <128 hex digits: libsodium's       <64 hex digits: the 32-byte public key>
//    64-byte secret key, seed + public key>
// A secret key file must be readable and writable by its owner only (mode
// 0600 or 0400); a public key file must not be writable by group or others
// (whoever can replace it decides what verifies). Either may be reached
// through a symbolic link (Kubernetes mounts secrets so) to a regular file.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace dtrain::ckpt_sign {

inline constexpr size_t kPublicBytes = 32, kSecretBytes = 64, kSignatureBytes = 64, kHashBytes = 32;

struct PublicKey {
  std::array<unsigned char, kPublicBytes> bytes{};
  std::string path;  // the file it was read from
  // 16 hex digits of BLAKE2b(public key): what a manifest names its signer by.
  std::string id() const;
};

struct SecretKey {
  std::array<unsigned char, kSecretBytes> bytes{};
  std::string path;
  PublicKey public_key() const;  // the second half of libsodium's secret key
};

// Reads and checks a key file; `what` names it in messages (a config key such
// as "checkpoint.sign_key_file", or "--verify-key"). Throws ConfigError, one
// line naming `what`, the file and what is wrong: missing, not a regular file,
// permissions (secret: group or others may read or write it; public: group or
// others may write it), or not a key of the right kind and length.
SecretKey read_secret_key(const std::string& path, const std::string& what);
// A public key file, or the public half of a secret key file.
PublicKey read_public_key(const std::string& path, const std::string& what);

// A new key pair: PREFIX.key (mode 0600, created exclusively) and PREFIX.pub
// (0644). Refuses to overwrite either file. Returns the key id.
std::string write_key_pair(const std::string& prefix);

// The detached signature of `message`, as 128 hex digits.
std::string sign(const SecretKey& key, const std::string& message);
// True if `signature_hex` is `key`'s signature of `message`.
bool verify(const PublicKey& key, const std::string& message, const std::string& signature_hex);

// Incremental BLAKE2b-256 (libsodium's crypto_generichash, the hash Python's
// hashlib.blake2b(digest_size=32) computes).
class Hasher {
 public:
  Hasher();
  void update(const void* data, size_t bytes);
  std::string hex();  // finishes; call once
 private:
  alignas(64) unsigned char state_[384];
};

// Hex text of bytes, and back (false on a wrong length or a non-hex digit).
std::string to_hex(const unsigned char* p, size_t n);
bool from_hex(const std::string& hex, unsigned char* out, size_t n);

}  // namespace dtrain::ckpt_sign
