#include "checkpoint/manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <zlib.h>

#include "checkpoint/checkpoint.h"
#include "core/error.h"

namespace dtrain::ckpt_manifest {

namespace fs = std::filesystem;

namespace {

constexpr const char* kHeader = "dtrain-checkpoint-manifest 1";
constexpr int64_t kMaxManifestBytes = 1 << 24;  // 16 MiB: ~300k files

uint32_t crc_of(const std::string& s) {
  return static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(s.data()),
                                     static_cast<uInt>(s.size())));
}

}  // namespace

FileSum sum_file(const fs::path& path, bool hash) {
  // O_NONBLOCK: opening a FIFO for reading must not wait for a writer; fstat then refuses it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw InputError(fmt::format("'{}': cannot open: {}", path.string(), std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(fmt::format("'{}': not a regular file", path.string()));
  }
  FileSum s;
  uLong crc = crc32(0L, Z_NULL, 0);
  std::optional<ckpt_sign::Hasher> hasher;
  if (hash) hasher.emplace();
  std::vector<unsigned char> buf(size_t{1} << 20);
  while (true) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      throw InputError(fmt::format("'{}': cannot read: {}", path.string(), why));
    }
    if (n == 0) break;
    crc = crc32(crc, buf.data(), static_cast<uInt>(n));
    if (hasher) hasher->update(buf.data(), static_cast<size_t>(n));
    s.bytes += n;
  }
  ::close(fd);
  s.crc32 = static_cast<uint32_t>(crc);
  if (hasher) s.blake2b = hasher->hex();
  return s;
}

std::string to_text(const Manifest& m, const ckpt_sign::SecretKey* key) {
  std::string body = fmt::format("{}\nstep {}\nid {}\n", kHeader, m.step, m.id);
  if (!m.run.empty()) body += fmt::format("run {}\n", m.run);  // readers before run ids skip the line
  for (const auto& [name, s] : m.files) body += fmt::format("file {} {} {:08x}\n", name, s.bytes, s.crc32);
  if (key) {  // readers before signatures skip these lines too
    for (const auto& [name, s] : m.files) {
      DTRAIN_CHECK(s.blake2b.size() == 2 * ckpt_sign::kHashBytes, "manifest: {} has no hash to sign", name);
      body += fmt::format("blake2b {} {}\n", name, s.blake2b);
    }
    body += fmt::format("key {}\n", key->public_key().id());
    body += fmt::format("signature {}\n", ckpt_sign::sign(*key, body));
  }
  return body + fmt::format("crc32 {:08x}\n", crc_of(body));
}

std::optional<Manifest> read(const std::string& dir) {
  const fs::path path = fs::path(dir) / kFile;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(path, ec))) return std::nullopt;
  auto bad = [&](const std::string& what) { return CheckpointError(dir, kFile, "", what); };
  std::string text;
  {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st {};
    if (fd < 0) throw bad(fmt::format("cannot open: {}", std::strerror(errno)));
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > kMaxManifestBytes) {
      ::close(fd);
      throw bad("not a regular file of at most 16 MiB");
    }
    text.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < text.size()) {
      const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    text.resize(got);
  }
  // The last line is "crc32 XXXXXXXX" over everything before it.
  const size_t last = text.size() >= 2 ? text.rfind('\n', text.size() - 2) : std::string::npos;
  if (last == std::string::npos || text.back() != '\n') throw bad("truncated");
  const std::string body = text.substr(0, last + 1), tail = text.substr(last + 1);
  if (tail != fmt::format("crc32 {:08x}\n", crc_of(body)))  // exactly as written: no byte of it may differ
    throw bad("damaged (its own checksum does not match)");
  Manifest m;
  std::istringstream in(body);
  std::string line;
  std::getline(in, line);
  if (line != kHeader) throw bad(fmt::format("unknown format '{}'", line));
  size_t at = line.size() + 1;  // where the next line starts in `body`
  while (std::getline(in, line)) {
    const size_t line_start = at;
    at += line.size() + 1;
    std::istringstream ls(line);
    std::string what;
    ls >> what;
    if (!m.signature.empty()) m.after_signature = true;  // check_signature refuses it
    if (what == "step") {
      ls >> m.step;
    } else if (what == "id") {
      ls >> m.id;
    } else if (what == "run") {
      ls >> m.run;
    } else if (what == "file") {
      std::string name;
      FileSum s;
      ls >> name >> s.bytes >> std::hex >> s.crc32;
      if (name.empty() || name.find('/') != std::string::npos || s.bytes < 0) throw bad("damaged file line");
      m.files[name] = s;
    } else if (what == "blake2b") {
      std::string name, hex;
      ls >> name >> hex;
      auto it = m.files.find(name);
      if (it == m.files.end() || hex.size() != 2 * ckpt_sign::kHashBytes) throw bad("damaged blake2b line");
      it->second.blake2b = hex;
    } else if (what == "key") {
      ls >> m.key_id;
    } else if (what == "signature") {
      ls >> m.signature;
      m.signed_text = body.substr(0, line_start);
    }
    if (!ls) throw bad(fmt::format("damaged line '{}'", line));
  }
  return m;
}

void check_signature(const std::string& dir, const Manifest& m, const ckpt_sign::PublicKey& key) {
  auto refuse = [&](const std::string& why) { return CheckpointSignatureError(dir, kFile, "", why); };
  if (m.signature.empty())
    throw refuse(fmt::format("not signed, and a verify key is configured ('{}', key {}): refused", key.path,
                             key.id()));
  if (m.after_signature)
    throw refuse("has lines after its signature, which the signature does not cover: refused");
  if (m.key_id != key.id())
    throw refuse(fmt::format("signed with another key (key {}; the verify key '{}' is key {}): refused",
                             m.key_id.empty() ? "not named" : m.key_id, key.path, key.id()));
  if (!ckpt_sign::verify(key, m.signed_text, m.signature))
    throw refuse(fmt::format("its signature does not match its contents (changed after it was signed, or forged; "
                             "key {}): refused",
                             key.id()));
  for (const auto& [name, s] : m.files)
    if (s.blake2b.empty()) throw refuse(fmt::format("the signed manifest has no hash of {}: refused", name));
}

void check_sizes(const std::string& dir, const Manifest& m) {
  for (const auto& [name, s] : m.files) {
    const fs::path path = fs::path(dir) / name;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (!fs::exists(st)) throw CheckpointError(dir, name, "", "the file is missing");
    if (!fs::is_regular_file(st)) throw CheckpointError(dir, name, "", "not a regular file");
    const auto bytes = static_cast<int64_t>(fs::file_size(path, ec));
    if (ec) throw CheckpointError(dir, name, "", fmt::format("cannot read its size: {}", ec.message()));
    if (bytes != s.bytes)
      throw CheckpointError(dir, name, "", fmt::format("is {} bytes, the manifest recorded {}", bytes, s.bytes));
  }
}

void verify(const std::string& dir, const Manifest& m, const std::string& name, bool hash) {
  auto it = m.files.find(name);
  if (it == m.files.end()) throw CheckpointError(dir, name, "", "not listed in the manifest");
  FileSum got;
  try {
    got = sum_file(fs::path(dir) / name, hash);
  } catch (const InputError& e) {
    throw CheckpointError(dir, name, "", e.what());
  }
  if (got.bytes != it->second.bytes)
    throw CheckpointError(dir, name, "", fmt::format("is {} bytes, the manifest recorded {}", got.bytes,
                                                     it->second.bytes));
  if (got.crc32 != it->second.crc32)
    throw CheckpointError(dir, name, "",
                          fmt::format("the file's bytes do not match the manifest (crc32 {:08x} recorded, "
                                      "the file has {:08x}): damaged",
                                      it->second.crc32, got.crc32));
  if (hash && got.blake2b != it->second.blake2b)
    throw CheckpointSignatureError(dir, name, "",
                                   fmt::format("the file's bytes do not match the signed manifest (blake2b {} "
                                               "signed, the file has {}; its CRC-32 matches, so it was changed "
                                               "deliberately): refused",
                                               it->second.blake2b.substr(0, 16), got.blake2b.substr(0, 16)));
}

}  // namespace dtrain::ckpt_manifest
