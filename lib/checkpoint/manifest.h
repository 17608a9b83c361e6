// The manifest of a checkpoint directory: the size and CRC-32 of every file's
// bytes, the step, the checkpoint id and the run id, written by world rank 0 after all
// the HDF5 files are closed. The reader checks a file against it before HDF5
// opens that file, so a flipped byte in HDF5's own metadata (object headers,
// the global heap of the virtual-dataset mappings) is reported as damage and
// the previous checkpoint is used, instead of being handed to HDF5, whose
// parser trusts it and can crash. The manifest checks its own text too.
// Checkpoints written before manifests existed (format 1) have none and are
// read as before; a format-2 checkpoint without one is refused.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace dtrain::ckpt_manifest {

inline constexpr const char* kFile = "manifest";

struct FileSum {
  int64_t bytes = 0;
  uint32_t crc32 = 0;
};

struct Manifest {
  int64_t step = 0;
  std::string id;
  std::string run;  // the run's identity (CheckpointMeta::run_id; "" when it has none)
  std::map<std::string, FileSum> files;  // by file name within the directory
};

// Size and CRC-32 of a regular file's bytes, read in blocks. Throws InputError
// for a file that is not a regular file (a FIFO would block) or cannot be read.
FileSum sum_file(const std::filesystem::path& path);

// The manifest's text (its last line a CRC-32 of the lines before it).
std::string to_text(const Manifest& m);

// The manifest of checkpoint `dir`, or nullopt if it has none. Throws
// CheckpointError if it is there but damaged.
std::optional<Manifest> read(const std::string& dir);

// Throws CheckpointError unless file `name` of checkpoint `dir` has the size and
// CRC-32 that the manifest records.
void verify(const std::string& dir, const Manifest& m, const std::string& name);

}  // namespace dtrain::ckpt_manifest
