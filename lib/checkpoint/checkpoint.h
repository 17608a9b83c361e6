// HDF5 checkpoints: what a training run needs to continue (every parameter
// and buffer, the optimizer state, the step, the data position, the resolved
// config) in a form that survives crashes and that any layout can read.
//
// One checkpoint is a directory <root>/step_<8 digits>/ holding
//   rank_<world rank>.h5  one per writing rank: the pieces of tensors that rank
//                         holds (a tensor-parallel shard, a pipeline stage's
//                         parameters), each with its place in the full tensor
//                         and its CRC-32;
//   manifest              every file's size and CRC-32, the step and the id,
//                         checked before HDF5 opens a file (manifest.h);
//   checkpoint.h5         the metadata (step, items seen, layout, config, ...)
//                         and, under every tensor's name, an HDF5 virtual
//                         dataset of the FULL logical tensor over those pieces,
//                         so h5py and h5dump read whole tensors.
// dtrain's reader uses the virtual datasets' mappings as its index and reads
// the pieces itself, checking each one's checksum and that the pieces cover
// every element (HDF5 would silently fill a missing piece with zeros).
// The directory is written as step_<n>.tmp and renamed when complete; <root>/latest
// names the newest complete one. See the README's checkpoint section.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/signing.h"
#include "core/comm.h"
#include "core/error.h"
#include "model/model.h"
#include "optim/optimizer.h"
#include "parallel/layout.h"

namespace dtrain {

// 2: a manifest (size and CRC-32 of every file) beside the HDF5 files; format 1
// checkpoints, which have none, are still read.
inline constexpr int64_t kCheckpointFormatVersion = 2;

// A checkpoint that cannot be used: missing, truncated or damaged files,
// checksum mismatches, missing tensors. Names the checkpoint, the file and
// (where one is involved) the tensor.
class CheckpointError : public InputError {
 public:
  CheckpointError(std::string checkpoint, std::string file, std::string tensor, std::string problem);
  const std::string& checkpoint() const { return checkpoint_; }
  const std::string& file() const { return file_; }
  const std::string& tensor() const { return tensor_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string checkpoint_, file_, tensor_, problem_;
};

// A checkpoint that fails its signature check when a verify key is given:
// unsigned, signed with another key, or changed after it was signed. Not
// damage that an older checkpoint may stand in for: `dtrain resume` stops
// (see resume.h).
class CheckpointSignatureError : public CheckpointError {
 public:
  using CheckpointError::CheckpointError;
};

struct CheckpointMeta {
  int64_t format_version = kCheckpointFormatVersion;
  std::string program_version;  // dtrain's version that wrote it
  std::string model_type;       // "gpt" | "cnn"
  std::string optimizer;        // "adamw" | "sgd"
  int64_t step = 0;             // optimizer steps done (the next step to run is `step`, 0-based)
  int64_t optimizer_steps = 0;  // updates applied (steps skipped for non-finite losses excluded)
  int64_t samples_seen = 0;     // sequences or images consumed: step x global batch
  int64_t items_seen = 0;       // tokens or images consumed
  int64_t seed = 0;
  std::string config;           // the resolved config (TOML) of the run that wrote it
  Layout layout;                // the parallel layout that wrote it
  int64_t zero = 0;             // the ZeRO stage in effect (0: none; attribute absent in older checkpoints)
  std::string id;               // unique per checkpoint; every rank file carries it too
  std::string run_id;           // drawn when a run first starts, kept by its resumes ("" before run ids)
  std::string written_at;       // UTC, ISO 8601
  // The training data as the run read it (Trainer::train_data: files, tokens,
  // sequences); "" when not recorded (per-replica files, or written before).
  std::string data;
};

// One tensor as this rank holds it.
struct Piece {
  std::string key;    // "model/<param>" or "optim/<state>/<param>"
  Tensor local;       // this rank's part, on the CPU
  Shard shard;        // how `local` maps into the full tensor (shard.full = full shape)
  bool write = true;  // false: another rank stores it (see collect_pieces)
  // -1: `local` is this rank's whole part (shard.local_shape()). Otherwise
  // `local` is 1-D and holds flat elements [slice_begin, slice_begin +
  // local.numel()) of that part: what one data-parallel rank saves and loads
  // (its range of the flat buffers cuts parameters anywhere: under ZeRO the
  // range it holds, which is then never gathered).
  int64_t slice_begin = -1;
  bool slice() const { return slice_begin >= 0; }
};

// Every parameter, buffer and optimizer state tensor this rank holds, the
// optimizer state given as flat buffers over all the trainable parameters
// (the offsets of params.values(); a trainer's data-parallel ranks save and
// load one range each instead, as slices, except under local sync:
// Piece::slice_begin, session.cpp).
// Which ones this rank writes: each element of each tensor is written by
// exactly one rank, so copies are left out: a pipeline's second copy of a tied
// weight (Param::primary false), every tensor on data-parallel replicas other
// than the first (`first_dp` false), and tensors that tensor parallelism does
// not split on tensor-parallel ranks other than the first (`first_tp` false).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
std::vector<Piece> collect_pieces(Model& model, const NamedTensors& optimizer_state,
                                  bool first_dp = true, bool first_tp = true);
// The same with the optimizer's own state, which must cover every parameter.
std::vector<Piece> collect_pieces(Model& model, Optimizer& opt, bool first_dp = true,
                                  bool first_tp = true);

struct SaveOptions {
  int64_t keep = 0;  // keep the newest `keep` checkpoints after this one (0 = all)
  // Tests: called after every file operation of the save, with what it did
  // ("create rank_00000.h5", "rename step_00000010.tmp -> step_00000010", ...).
  std::function<void(const std::string&)> on_file_op;
  // checkpoint.sign_key_file: the manifest is signed with it (signing.h).
  std::shared_ptr<const ckpt_sign::SecretKey> sign_key;
  // Permissions of the checkpoint directory when the save creates it (log.dir_mode).
  unsigned dir_mode = 0700;
};

struct SaveResult {
  std::string dir;         // the complete checkpoint directory
  int64_t bytes = 0;       // bytes of all its files
  double seconds = 0;
  std::vector<std::string> pruned;  // checkpoints deleted by keep
};

// Writes the checkpoint of step meta.step under `root`, collectively over
// `world` (every rank calls it): each rank writes its pieces, world rank 0
// the master file, the rename and the `latest` pointer, then prunes. Throws
// RuntimeError on every rank if any rank failed (nothing partial is left
// under a complete name); throws RuntimeError without writing if a tensor
// holds a non-finite value.
SaveResult save_checkpoint(const std::string& root, CheckpointMeta meta,
                           const std::vector<Piece>& pieces, Communicator& world,
                           const SaveOptions& opts = {});

// The same save in three parts, for checkpoint.async: only begin_save
// communicates (on the training thread); the other two may run on a
// background thread while training goes on. The ranks tell the lead that
// their part is done with a marker file in step_N.tmp, and nothing is
// published unless every part succeeded: the previous checkpoint stays
// `latest` otherwise.
struct PendingSave {
  std::string root, tmp, final_dir;
  CheckpointMeta meta;  // with its id and time
  int world_size = 1, world_rank = 0;
  bool lead = false;  // world rank 0: writes the master file and publishes
  SaveOptions opts;
};
// Collective: the checkpoint's id, and step_N.tmp (created by the lead).
// Throws RuntimeError on every rank if the directory cannot be made.
PendingSave begin_save(const std::string& root, CheckpointMeta meta, Communicator& world,
                       const SaveOptions& opts = {});
// No communication: this rank's pieces (write = true) into its rank file,
// then its marker. Never throws: returns "" or why it failed.
std::string write_pending_part(const PendingSave& s, const std::vector<Piece>& pieces);
// The lead only, no communication: waits up to `timeout_seconds` for every
// rank's marker, then writes the master file, publishes and prunes. Throws
// RuntimeError (after removing step_N.tmp) if a part failed or is missing.
SaveResult publish_pending(const PendingSave& s, double timeout_seconds);

// A new run identity ("" never), the same on every rank of `world` (collective).
std::string new_run_id(Communicator& world);

// The reading functions below take an optional verify key: given one, the
// checkpoint must be signed by it (its manifest's signature checked first,
// then every file's BLAKE2b hash before HDF5 opens the file), else they throw
// CheckpointSignatureError naming the file; without one they read as before.
using VerifyKey = const ckpt_sign::PublicKey*;

// The metadata of the checkpoint in directory `dir` (throws CheckpointError).
CheckpointMeta read_meta(const std::string& dir, VerifyKey key = nullptr);

// Fills every piece's `local` with its slice of the full tensor, reading each
// stored piece that overlaps it and checking its checksum (whatever layout
// wrote it). Throws CheckpointError naming the file and tensor on any damage.
void load_pieces(const std::string& dir, std::vector<Piece>& pieces, VerifyKey key = nullptr);

struct TensorInfo {
  std::string key;
  std::vector<int64_t> shape;  // the full logical tensor
  std::string dtype;
  int64_t pieces = 0;          // stored pieces it is made of
};
// Every tensor of the checkpoint, sorted by key (throws CheckpointError).
std::vector<TensorInfo> list_tensors(const std::string& dir, VerifyKey key = nullptr);
// Reads every stored piece of every tensor and checks its checksum and
// coverage; returns the bytes read (throws CheckpointError).
int64_t verify_checkpoint(const std::string& dir, VerifyKey key = nullptr);

}  // namespace dtrain
