#include "checkpoint/signing.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <new>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace dtrain::ckpt_sign {

namespace {

constexpr const char* kSecretHeader = "dtrain-ed25519-secret-key 1";
constexpr const char* kPublicHeader = "dtrain-ed25519-public-key 1";

static_assert(crypto_sign_PUBLICKEYBYTES == kPublicBytes && crypto_sign_SECRETKEYBYTES == kSecretBytes &&
              crypto_sign_BYTES == kSignatureBytes);
static_assert(sizeof(crypto_generichash_state) <= 384 && alignof(crypto_generichash_state) <= 64);

void init_sodium() {
  // Idempotent and thread-safe; fails only without a source of randomness.
  if (sodium_init() < 0) throw RuntimeError("libsodium cannot start (no source of randomness?)");
}

// The text of key file `path` after the checks every key file gets: it exists,
// is (or links to) a regular file, is not writable by group or others, and
// (secret) not readable by them either; it is at most `max` bytes.
std::string read_key_text(const std::string& path, const std::string& what, bool secret, size_t max) {
  auto bad = [&](const std::string& why) { return ConfigError(fmt::format("{}: '{}' {}", what, path, why)); };
  if (path.empty()) throw ConfigError(fmt::format("{}: no file given", what));
  // O_NONBLOCK: a FIFO must not block the open; fstat then refuses it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw bad("does not exist (create a key pair with: dtrain keygen PREFIX)");
    throw bad(fmt::format("cannot be opened: {}", std::strerror(err)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw bad("is not a regular file");
  }
  const unsigned mode = st.st_mode & 07777;
  if (secret) {
    // A public key where the secret one belongs (its mode, 0644, would be
    // the first thing wrong, and the wrong thing to fix).
    char head[64] = {};
    const ssize_t n = ::pread(fd, head, sizeof head, 0);
    const std::string_view public_head(kPublicHeader);
    if (n >= static_cast<ssize_t>(public_head.size()) && std::string_view(head, public_head.size()) == public_head) {
      ::close(fd);
      std::string secret_path = path.ends_with(".pub") ? path.substr(0, path.size() - 4) + ".key" : "";
      throw bad(fmt::format("is a public key; this needs the secret key{}", secret_path.empty() ? std::string()
                                                                              : " ('" + secret_path + "', beside it)"));
    }
  }
  if (secret && (mode & 077) != 0) {
    ::close(fd);
    throw bad(fmt::format("is a secret key but group or others may read or write it (mode {:04o}); make it "
                          "owner-only: chmod 600 '{}'",
                          mode, path));
  }
  if (!secret && (mode & 022) != 0) {
    ::close(fd);
    throw bad(fmt::format("may be changed by group or others (mode {:04o}), and whoever replaces it decides "
                          "which checkpoints verify: chmod go-w '{}'",
                          mode, path));
  }
  if (st.st_size < 0 || static_cast<size_t>(st.st_size) > max) {
    ::close(fd);
    throw bad(fmt::format("is {} bytes, too long for a dtrain key file", st.st_size));
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  text.resize(got);
  return text;
}

// "HEADER\nHEX\n" with HEX of exactly n bytes; else a ConfigError.
void parse_key(const std::string& text, const char* header, unsigned char* out, size_t n, const std::string& path,
               const std::string& what, const char* kind) {
  const std::string want_head = std::string(header) + "\n";
  const bool shaped = text.size() == want_head.size() + 2 * n + 1 && text.compare(0, want_head.size(), want_head) == 0 &&
                      text.back() == '\n';
  if (!shaped || !from_hex(text.substr(want_head.size(), 2 * n), out, n))
    throw ConfigError(fmt::format("{}: '{}' is not a dtrain {} key file (expected '{}' and a line of {} hex digits, "
                                  "{} bytes in all; dtrain keygen writes them)",
                                  what, path, kind, header, 2 * n, want_head.size() + 2 * n + 1));
}

}  // namespace

std::string to_hex(const unsigned char* p, size_t n) {
  std::string s(2 * n, '0');
  static const char* const kDigits = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kDigits[p[i] >> 4];
    s[2 * i + 1] = kDigits[p[i] & 15];
  }
  return s;
}

bool from_hex(const std::string& hex, unsigned char* out, size_t n) {
  if (hex.size() != 2 * n) return false;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;  // lower case only: one spelling per key
  };
  for (size_t i = 0; i < n; ++i) {
    const int hi = digit(hex[2 * i]), lo = digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return true;
}

std::string PublicKey::id() const {
  unsigned char h[8];
  crypto_generichash(h, sizeof h, bytes.data(), bytes.size(), nullptr, 0);
  return to_hex(h, sizeof h);
}

PublicKey SecretKey::public_key() const {
  PublicKey pk;
  crypto_sign_ed25519_sk_to_pk(pk.bytes.data(), bytes.data());
  pk.path = path;
  return pk;
}

SecretKey read_secret_key(const std::string& path, const std::string& what) {
  init_sodium();
  const std::string text = read_key_text(path, what, true, 4096);
  SecretKey k;
  k.path = path;
  parse_key(text, kSecretHeader, k.bytes.data(), k.bytes.size(), path, what, "Ed25519 secret");
  // The second half must be the first half's public key: a damaged file would
  // otherwise sign checkpoints that nothing verifies.
  unsigned char pk[kPublicBytes], sk[kSecretBytes];
  crypto_sign_seed_keypair(pk, sk, k.bytes.data());
  const bool consistent = sodium_memcmp(sk, k.bytes.data(), kSecretBytes) == 0;
  sodium_memzero(sk, sizeof sk);
  if (!consistent)
    throw ConfigError(fmt::format("{}: '{}' is damaged (its public half does not belong to its secret half)",
                                  what, path));
  return k;
}

PublicKey read_public_key(const std::string& path, const std::string& what) {
  init_sodium();
  // A secret key file verifies too (its public half), under the secret file's stricter checks.
  const std::string text = read_key_text(path, what, false, 4096);
  if (text.rfind(kSecretHeader, 0) == 0) return read_secret_key(path, what).public_key();
  PublicKey k;
  k.path = path;
  parse_key(text, kPublicHeader, k.bytes.data(), k.bytes.size(), path, what, "Ed25519 public");
  return k;
}

std::string write_key_pair(const std::string& prefix) {
  init_sodium();
  if (prefix.empty()) throw ConfigError("keygen: no file name prefix given");
  // "keys/" would write keys/.key and keys/.pub: hidden, and named by nothing.
  const std::string stem = std::filesystem::path(prefix).filename().string();
  std::error_code ec;
  if (stem.empty() || stem == "." || stem == ".." || std::filesystem::is_directory(prefix, ec))
    throw ConfigError(fmt::format("keygen: '{}' is a directory, not a file name prefix; give one inside it, e.g. "
                                  "'{}/ckpt' (writes ckpt.key and ckpt.pub there)",
                                  prefix, prefix.ends_with('/') ? prefix.substr(0, prefix.size() - 1) : prefix));
  // A missing directory for the keys is made, owner-only (0700), as a run's.
  const std::filesystem::path parent = std::filesystem::path(prefix).parent_path();
  if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
    std::vector<std::filesystem::path> missing;
    for (std::filesystem::path p = parent; !p.empty() && !std::filesystem::exists(p, ec); p = p.parent_path())
      missing.push_back(p);
    for (auto it = missing.rbegin(); it != missing.rend(); ++it)
      if (::mkdir(it->c_str(), 0700) != 0 && errno != EEXIST)
        throw ConfigError(fmt::format("keygen: cannot create the directory '{}': {}", it->string(), std::strerror(errno)));
  }
  SecretKey sk;
  PublicKey pk;
  crypto_sign_keypair(pk.bytes.data(), sk.bytes.data());
  auto write = [](const std::string& path, const std::string& text, mode_t mode) {
    // O_EXCL: never overwrite a key (nor follow a link planted in its place).
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
      const int err = errno;
      throw ConfigError(fmt::format("keygen: cannot create '{}': {}{}", path, std::strerror(err),
                                    err == EEXIST ? " (keys are never overwritten: remove it or choose another prefix)"
                                                  : ""));
    }
    const bool ok = ::fchmod(fd, mode) == 0 &&  // the umask must not widen or narrow it
                    ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok) throw RuntimeError(fmt::format("keygen: cannot write '{}': {}", path, std::strerror(err)));
  };
  std::string secret_text = fmt::format("{}\n{}\n", kSecretHeader, to_hex(sk.bytes.data(), sk.bytes.size()));
  write(prefix + ".key", secret_text, 0600);
  sodium_memzero(secret_text.data(), secret_text.size());
  sodium_memzero(sk.bytes.data(), sk.bytes.size());
  write(prefix + ".pub", fmt::format("{}\n{}\n", kPublicHeader, to_hex(pk.bytes.data(), pk.bytes.size())), 0644);
  return pk.id();
}

std::string sign(const SecretKey& key, const std::string& message) {
  init_sodium();
  unsigned char sig[kSignatureBytes];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       key.bytes.data());
  return to_hex(sig, sizeof sig);
}

bool verify(const PublicKey& key, const std::string& message, const std::string& signature_hex) {
  init_sodium();
  unsigned char sig[kSignatureBytes];
  if (!from_hex(signature_hex, sig, sizeof sig)) return false;
  return crypto_sign_verify_detached(sig, reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                                     key.bytes.data()) == 0;
}

Hasher::Hasher() {
  init_sodium();
  crypto_generichash_init(new (state_) crypto_generichash_state, nullptr, 0, kHashBytes);
}

void Hasher::update(const void* data, size_t bytes) {
  crypto_generichash_update(reinterpret_cast<crypto_generichash_state*>(state_),
                            static_cast<const unsigned char*>(data), bytes);
}

std::string Hasher::hex() {
  unsigned char h[kHashBytes];
  crypto_generichash_final(reinterpret_cast<crypto_generichash_state*>(state_), h, sizeof h);
  return to_hex(h, sizeof h);
}

}  // namespace dtrain::ckpt_sign
