// The manifest of a checkpoint directory: the size and CRC-32 of every file's
// bytes, the step, the checkpoint id and the run id, written by world rank 0 after all
// the HDF5 files are closed. The reader checks a file against it before HDF5
// opens that file, so a flipped byte in HDF5's own metadata (object headers,
// the global heap of the virtual-dataset mappings) is reported as damage and
// the previous checkpoint is used, instead of being handed to HDF5, whose
// parser trusts it and can crash. The manifest checks its own text too.
// Checkpoints written before manifests existed (format 1) have none and are
// read as before; a format-2 checkpoint without one is refused.
//
// A signed checkpoint's manifest (checkpoint.sign_key_file, signing.h) adds
// each file's BLAKE2b-256 hash, the signer's key id and an Ed25519 signature
// of every line before it; readers that predate signatures skip those lines.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "checkpoint/signing.h"

namespace dtrain::ckpt_manifest {

inline constexpr const char* kFile = "manifest";

struct FileSum {
  int64_t bytes = 0;
  uint32_t crc32 = 0;
  std::string blake2b;  // hex; only when asked for (signed manifests)
};

struct Manifest {
  int64_t step = 0;
  std::string id;
  std::string run;  // the run's identity (CheckpointMeta::run_id; "" when it has none)
  std::map<std::string, FileSum> files;  // by file name within the directory
  // Signed manifests only: the signer's key id (ckpt_sign::PublicKey::id), the
  // signature, and the text it signs (every line before the signature's).
  std::string key_id, signature, signed_text;
  bool after_signature = false;  // lines follow the signature (unsigned: refused when verifying)
};

// Size and CRC-32 of a regular file's bytes (and their BLAKE2b-256 if `hash`),
// read in blocks. Throws InputError for a file that is not a regular file (a
// FIFO would block) or cannot be read.
FileSum sum_file(const std::filesystem::path& path, bool hash = false);

// The manifest's text (its last line a CRC-32 of the lines before it); signed
// with `key` if given (every file's FileSum::blake2b must be set then).
std::string to_text(const Manifest& m, const ckpt_sign::SecretKey* key = nullptr);

// The manifest of checkpoint `dir`, or nullopt if it has none. Throws
// CheckpointError if it is there but damaged.
std::optional<Manifest> read(const std::string& dir);

// Throws CheckpointSignatureError unless `m` is signed by `key` (a signature
// that verifies over its text, and a hash for every file it lists).
void check_signature(const std::string& dir, const Manifest& m, const ckpt_sign::PublicKey& key);

// Throws CheckpointError unless file `name` of checkpoint `dir` has the size and
// CRC-32 that the manifest records; with `hash` (a signed manifest, already
// checked) its BLAKE2b-256 too, a mismatch there (the CRC forged to match)
// being a CheckpointSignatureError.
void verify(const std::string& dir, const Manifest& m, const std::string& name, bool hash = false);
// Every file m lists is in `dir`, a regular file of the size recorded (no
// byte read: what `dtrain inspect DIR` checks before it names the checkpoint
// a resume loads; the checksums are verify's). Throws CheckpointError naming
// the first file that is not.
void check_sizes(const std::string& dir, const Manifest& m);

}  // namespace dtrain::ckpt_manifest
