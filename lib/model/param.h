// Parameters live in one flat buffer (and their gradients in a second one with
// the same offsets), as in llm.c: the optimizer, gradient clipping, gradient
// all-reduce buckets, ZeRO sharding and checkpoints all work on offsets into
// these buffers. Each parameter has a hierarchical name ("blocks.3.attn.qkv.weight")
// that is its checkpoint key and sharding key, and is initialised from a
// random stream keyed by that name, so init does not depend on declaration
// order or on which rank holds it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/exec.h"
#include "core/tensor.h"

namespace dtrain {

struct Init {
  enum class Kind { zeros, ones, normal, uniform } kind = Kind::zeros;
  double scale = 0.0;  // std for normal, bound a for uniform(-a, a)

  static Init zeros() { return {Kind::zeros, 0.0}; }
  static Init ones() { return {Kind::ones, 0.0}; }
  static Init normal(double std) { return {Kind::normal, std}; }
  static Init uniform(double bound) { return {Kind::uniform, bound}; }
};

// How a parameter is split across the ranks of a tensor-parallel group. The
// logical (full) tensor has shape `full`; along dimension `dim` it is blocks
// of the sizes `blocks` (one block, the whole dimension, when empty; Q|K|V for
// a fused qkv weight, whose K and V blocks are narrower under grouped-query
// attention; gate|up for SwiGLU's), each cut into `parts` equal pieces, and
// this rank holds piece `index` of every block, in block order.
// Checkpoints store the full tensor and init draws every element at its full
// index, so a sharded parameter starts with exactly the values of its slice of
// the unsharded one, and any layout reads any other's checkpoint.
struct Shard {
  int dim = -1;  // -1: not split; every rank holds the whole tensor
  int64_t parts = 1;
  int64_t index = 0;
  std::vector<int64_t> blocks;  // sizes along dim, summing to full[dim]; empty: one block
  Shape full;

  bool split() const { return dim >= 0; }
  // `blocks`, or the one block of the whole dimension.
  std::vector<int64_t> block_sizes() const;
  // The shape this rank holds.
  Shape local_shape() const;
  // Flat index into the full tensor of flat local element i.
  int64_t global_index(int64_t i) const;
  // Along `dim`: this rank's rows of the full tensor, one (full_start,
  // local_start, count) run per block.
  struct Run {
    int64_t full_start, local_start, count;
  };
  std::vector<Run> runs() const;
};

struct Param {
  std::string name;
  Shape shape;             // what this rank holds (the full shape unless sharded)
  Shard shard;             // how it maps into the full tensor
  Init init;
  bool decay = true;       // AdamW weight decay applies (false for norms and biases)
  bool trainable = true;   // false: a buffer such as batch-norm running statistics
  // false on a copy of a parameter that another pipeline stage also holds (the
  // output head's copy of the tied token embedding): its gradient is summed
  // with the owner's, and norms and checkpoints count only the owner's.
  bool primary = true;
  // Tied to a parameter of another pipeline stage (the token embedding and
  // the output head's copy of it): the step loop sums the copies' gradients
  // over the group of stages that hold one, so that they stay equal.
  bool tied = false;
  int64_t offset = 0;      // into the flat value (and gradient) buffer of its kind
  // After ParamStore::allocate: `value` is the master copy (fp32, or f64 in
  // gradient checks) that the optimizer updates and checkpoints store;
  // `compute` the copy the layers compute with: the same tensor, or its bf16
  // rounding under mixed precision (refreshed by ParamStore::sync_compute).
  Tensor value;
  Tensor compute;
  Tensor grad;             // trainable parameters only; master dtype (fp32 under bf16)

  int64_t numel() const { return shape.numel(); }
};

// ParamStore::allocate's seed for parameters loaded right after (see there).
inline constexpr std::optional<uint64_t> kValuesLoaded = std::nullopt;

class ParamStore {
 public:
  // Declares a trainable parameter. The returned reference stays valid.
  Param& add(const std::string& name, const Shape& shape, Init init, bool decay);
  // A trainable parameter of which this rank holds the part `shard` describes
  // (shard.full is the full shape).
  Param& add_sharded(const std::string& name, const Shard& shard, Init init, bool decay);
  // Declares a non-trainable buffer (saved in checkpoints, never optimised).
  Param& add_buffer(const std::string& name, const Shape& shape, Init init);

  // Lays out and allocates the flat buffers and initialises every parameter
  // from `seed`. Call once, after all layers are built. `compute` is the dtype
  // layers compute in: f32 or f64 (masters, gradients and compute copy all in
  // it), or bf16 (fp32 masters and gradients, a bf16 compute copy).
  // On a GPU the values are drawn on the host and uploaded, so a GPU run
  // starts from the CPU's weights bit for bit.
  // `seed` kValuesLoaded: nothing is drawn, every value stays zero, for a
  // caller that loads all of them next (a checkpoint's: loading checks that
  // its pieces cover each parameter whole). Drawing GPT-2 124M's normals is
  // most of a second per core. `grads` false: no gradient buffer (inference).
  void allocate(DType compute, const Exec& ex, std::optional<uint64_t> seed, bool grads = true);
  void allocate(DType compute, Device device, std::optional<uint64_t> seed, bool grads = true) {
    allocate(compute, Exec{device}, seed, grads);
  }
  bool allocated() const { return values_.defined(); }
  // Where the parameters live and their ops (update, norm, conversion) run.
  const Exec& exec() const { return exec_; }
  // Instead of allocating: every parameter declared here becomes a view of
  // the same-named one in `owner` (allocated, same declarations). A second
  // copy of a pipeline stage's layers (another in-flight micro-batch) uses it
  // to share the parameters and accumulate into the same gradients. With
  // `subset`, this store may declare only some of the owner's parameters (one
  // model chunk of an interleaved pipeline stage); the flat buffers are still
  // the owner's whole ones.
  void share(const ParamStore& owner, bool subset = false);

  const std::vector<std::unique_ptr<Param>>& all() const { return params_; }
  Param* find(const std::string& name) const;  // nullptr if absent

  Tensor& values() { return values_; }    // every trainable parameter's master, flat
  Tensor& compute_values() { return compute_; }  // their compute copy, same offsets
  Tensor& grads() { return grads_; }      // their gradients, same offsets
  // Refreshes the compute copy from the masters (bf16: rounds every element;
  // otherwise nothing to do). Call after the masters change: an update, a load.
  void sync_compute();
  // The same for flat elements [begin, end) only (ZeRO-1: the ranges other
  // ranks updated; this rank's own range was refreshed by its optimizer).
  void sync_compute(int64_t begin, int64_t end);
  bool mixed() const { return compute_.defined() && compute_.dtype() != master_dtype_; }
  Tensor& buffers() { return buffers_; }  // every non-trainable buffer, flat
  int64_t num_trainable() const { return trainable_numel_; }
  // Elements of the flat trainable buffers (parameters and their alignment
  // padding): values().numel(), also after release_values.
  int64_t flat_numel() const { return flat_numel_; }
  void zero_grads();  // all threads, one pass
  // Frees the flat gradient buffer (ZeRO-2 re-points every Param::grad to its
  // own windows first); zero_grads then does nothing.
  void release_grads() { grads_ = Tensor{}; }
  // ZeRO-3: frees the flat masters and their compute copy (every trainable
  // Param::value is dropped; Param::compute is the caller's to re-point);
  // adopt_values hands back a full master buffer (a checkpoint's save or
  // load), re-pointing every trainable Param::value at it.
  void release_values();
  // ZeRO-1/2 under bf16: frees the flat masters only (every trainable
  // Param::value is dropped); the compute copy stays whole, and
  // adopt_values hands a full master buffer back the same way.
  void release_masters();
  void adopt_values(const Tensor& values);

  // Re-initialises every parameter and buffer from `seed` (used by allocate).
  void initialize(uint64_t seed);

 private:
  Param& declare(const std::string& name, const Shape& shape, const Shard& shard, Init init,
                 bool decay, bool trainable);
  std::vector<std::unique_ptr<Param>> params_;
  std::unordered_map<std::string, Param*> by_name_;  // find() without a scan (a deep model declares 10^5)
  Exec exec_;
  Tensor values_, compute_, grads_, buffers_;
  DType master_dtype_ = DType::f32;  // the masters' (and gradients') dtype, also while released
  int64_t trainable_numel_ = 0;
  int64_t flat_numel_ = 0;
};

}  // namespace dtrain
