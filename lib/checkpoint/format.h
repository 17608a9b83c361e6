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

// The boxes (start in local_start, count) that tile flat elements [begin,
// end) of a row-major array of shape `dims`, in order: at most 2 rank - 1.
std::vector<Box> flat_boxes(const std::vector<int64_t>& dims, int64_t begin, int64_t end);

// A piece's array (what its rank file stores, or what a reader fills) and
// where it lies in the full tensor. A whole piece: its shape, and boxes_of
// its shard. A slice: the rows (along the first dimension longer than 1) of
// the rank's part that the slice touches, the slice starting `offset`
// elements in (the elements of the first and last row outside it are stored
// as zeros and mapped nowhere: at most two rows more than the slice), and the
// boxes of the slice alone.
struct PieceMap {
  std::vector<int64_t> shape;
  int64_t offset = 0;
  std::vector<Box> boxes;  // full_start, count: in the full tensor; local_start: in the array
};
PieceMap map_of(const Piece& p);

// A stored piece's "boxes" attribute, a (boxes, 3 x rank) array: full_start,
// local_start and count of each box, and back.
std::vector<int64_t> boxes_attr(const std::vector<Box>& boxes);
std::vector<Box> boxes_from_attr(const std::vector<int64_t>& flat, size_t rank);

// The metadata as one string, in a fixed order: what meta_crc32 covers.
std::string canonical(const CheckpointMeta& m);

// Copies box `count` from src (shape sshape, at sstart) to dst (shape dshape,
// at dstart), elements of `esize` bytes, row-major.
void copy_box(const char* src, const std::vector<int64_t>& sshape,
              const std::vector<int64_t>& sstart, char* dst, const std::vector<int64_t>& dshape,
              const std::vector<int64_t>& dstart, const std::vector<int64_t>& count, size_t esize);

}  // namespace dtrain::ckpt_format
