// What the writer and the reader agree on, in one place: the attribute names
// of the two kinds of file, the metadata's own checksum, and the mapping of a
// stored piece's rows into the full tensor (the boxes that become the master
// file's virtual-dataset mappings). Private to lib/checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"

namespace dtrain::ckpt_format {

inline constexpr const char* kMasterFormat = "dtrain-checkpoint";
inline constexpr const char* kPartFormat = "dtrain-checkpoint-part";

// A box of the full tensor (start and count per dimension) and where the same
// elements sit in the stored (or held) piece.
struct Box {
  std::vector<int64_t> full_start, count, local_start;
  int64_t volume() const;
};

// The boxes a shard covers: one per run along the split dimension (one box
// of the whole tensor when it is not split).
std::vector<Box> boxes_of(const Shard& shard);

// The runs attribute of a stored piece: {full_start, local_start, count} per run,
// along `split_dim` (dimension 0 when not split).
std::vector<int64_t> runs_attr(const Shard& shard);

// The metadata as one string, in a fixed order: what meta_crc32 covers.
std::string canonical(const CheckpointMeta& m);

// Copies box `count` from src (shape sshape, at sstart) to dst (shape dshape,
// at dstart), elements of `esize` bytes, row-major.
void copy_box(const char* src, const std::vector<int64_t>& sshape,
              const std::vector<int64_t>& sstart, char* dst, const std::vector<int64_t>& dshape,
              const std::vector<int64_t>& dstart, const std::vector<int64_t>& count, size_t esize);

}  // namespace dtrain::ckpt_format
