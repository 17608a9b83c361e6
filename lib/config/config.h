// The resolved training configuration: plain typed structs, one per TOML
// section. Every key is declared exactly once, with its type, default, range
// and help text, in the schema (schema.cpp); code reads these fields, never
// strings, so a misspelt key is a compile error here and a clear message to
// the user there.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dtrain {

// The model families dtrain builds. Code dispatches on this type (and the
// traits below), never on the family's name.
enum class ModelFamily : uint8_t { gpt, cnn };

struct ModelConfig {
  std::string type;  // "gpt" | "cnn", as written in the file; see family()
  // The family named by `type`; throws ConfigError for a name it does not know.
  ModelFamily family() const;
  // Token ids in, a token per item, tensor parallelism available (GPT); or
  // images in, one label per image, accuracy reported (CNN).
  bool token_model() const { return family() == ModelFamily::gpt; }
  bool classifier() const { return family() == ModelFamily::cnn; }
  // gpt
  int64_t vocab_size;
  // The ids the model predicts: the softmax covers [0, vocab_used); rows
  // above it up to vocab_size are padding (for tp or fast products), never
  // predicted. 0 in a file: derived by validation (GPT-2's 50257 under
  // data.tokenizer "gpt2"; a Hugging Face model's own with model.init_from,
  // set where the run starts), else all of vocab_size. See used_vocab().
  int64_t vocab_used = 0;
  int64_t used_vocab() const { return vocab_used > 0 ? vocab_used : vocab_size; }
  // The key that bounds the token ids: "model.vocab_used" where it is below vocab_size.
  const char* used_vocab_key() const {
    return vocab_used > 0 && vocab_used < vocab_size ? "model.vocab_used" : "model.vocab_size";
  }
  int64_t context_length;
  int64_t n_layer;
  int64_t n_head;
  int64_t n_kv_head = 0;  // key/value heads: grouped-query attention below n_head; 0 = n_head
  int64_t n_embd;
  double dropout;
  bool bias;
  // The block's parts: GPT-2's (layernorm, gelu, learned) or LLaMA's
  // (rmsnorm, swiglu, rope), in any combination.
  // (Defaults here too: code that builds a ModelConfig{} of its own gets GPT-2's.)
  std::string norm = "layernorm";    // "layernorm" | "rmsnorm"
  std::string mlp = "gelu";          // "gelu" | "swiglu"
  std::string position = "learned";  // "learned" (wpe) | "rope" (rotary, in the attention)
  double rope_theta = 10000;   // rope: the base of the rotary frequencies
  // rope: LLaMA 3.1's frequency scaling ("llama3") or none; its factor, low and
  // high frequency factors and the context it stretches (kernels/elementwise_math.h).
  std::string rope_scaling = "none";
  double rope_factor = 8, rope_low_freq_factor = 1, rope_high_freq_factor = 4;
  int64_t rope_original_context = 8192;
  int64_t ffn_hidden = 0;      // the MLP's hidden width; 0 = ffn_width()'s default
  bool tie_embeddings = true;  // the output head is wte (GPT-2) or its own lm_head.weight (LLaMA)
  bool rms_norm() const { return norm == "rmsnorm"; }
  bool swiglu() const { return mlp == "swiglu"; }
  bool rope() const { return position == "rope"; }
  // Key/value heads: n_kv_head, else n_head (multi-head attention).
  int64_t kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  // The MLP's hidden width: ffn_hidden, else 4 n_embd for gelu and LLaMA's
  // 8/3 n_embd rounded up to a multiple of 256 for swiglu (the same
  // parameters as gelu's 4 n_embd in two matrices, give or take the rounding).
  int64_t ffn_width() const {
    if (ffn_hidden > 0) return ffn_hidden;
    if (!swiglu()) return 4 * n_embd;
    return (8 * n_embd / 3 + 255) / 256 * 256;
  }
  std::string init_from;  // "" = random init from train.seed; "hf:DIR" = a Hugging Face GPT-2 directory
  // cnn
  int64_t in_channels;
  int64_t image_size;
  int64_t num_classes;
  int64_t stem_channels;
  std::vector<int64_t> channels;  // output channels of each stage
  std::vector<int64_t> blocks;    // residual blocks in each stage
  std::string stem_pool;          // "max" | "none": pooling after the stem

  bool operator==(const ModelConfig&) const = default;
};

struct DataConfig {
  // token data (gpt): llm.c .bin files; train: one shared file, or one per
  // data-parallel replica (parallel.dp entries; replica d reads entry d)
  std::vector<std::string> train;
  std::string val;
  // image data (cnn): IDX files
  std::string train_images;
  std::string train_labels;
  std::string val_images;
  std::string val_labels;
  std::vector<double> mean;  // per channel, after scaling pixels to [0, 1]
  std::vector<double> std;
  bool shuffle;
  // what the token files hold (gpt): "byte" (ids = UTF-8 bytes) | "gpt2" (GPT-2 BPE)
  std::string tokenizer;
  std::string tokenizer_dir;  // gpt2: the directory of encoder.json and vocab.bpe

  bool operator==(const DataConfig&) const = default;
};

struct TrainConfig {
  int64_t steps;
  int64_t seed;
  int64_t global_batch;  // samples (sequences or images) per optimizer step
  int64_t micro_batch;   // samples per forward/backward on one data-parallel rank
  int64_t grad_accum;    // micro-batches per optimizer step on one rank
  int64_t seq_len;       // tokens per sequence (gpt); 0 = model.context_length
  int64_t eval_every;    // steps between evaluations (0 = only at the end)
  int64_t eval_batches;  // micro-batches per evaluation (0 = the whole validation set)
  std::string precision;  // "fp32"
  std::string recompute;  // "none" | "selective" | "full"
  std::string device;     // "cpu" | "cuda"
  bool tf32;              // cuda: fp32 matrix products may use TF32 tensor cores
  int64_t threads;        // CPU threads (0 = all cores)
  bool skip_nonfinite;    // a non-finite loss or gradient norm skips the update instead of stopping

  bool operator==(const TrainConfig&) const = default;
};

struct OptimConfig {
  std::string name;  // "adamw" | "sgd"
  double lr;
  double min_lr;
  int64_t warmup_steps;
  std::string schedule;  // "cosine" | "linear" | "sqrt" | "constant"
  int64_t decay_start;   // the decay begins here (0: at warmup_steps, kept 0): lr held until then
  int64_t decay_steps;   // 0 = train.steps
  double weight_decay;
  double beta1;
  double beta2;
  double eps;
  double momentum;
  bool nesterov;
  double grad_clip;  // max global gradient norm (0 = off)

  bool operator==(const OptimConfig&) const = default;
};

struct ParallelConfig {
  std::string mode;      // "auto" | "manual": how dp, tp, pp were chosen
  std::string hardware;  // mode auto: preset name or hardware file ("" = cpu-local, or a GPU's preset)
  // mode auto, resolved: the keys the planner chose ("parallel.dp,parallel.tp,
  // ..."), which a run resumed on another number of ranks plans again.
  std::string planned;
  int64_t dp;
  int64_t tp;
  int64_t pp;
  std::string schedule;  // pipeline schedule: "1f1b" | "gpipe" | "interleaved"
  int64_t virtual_stages;  // model chunks per pipeline stage (interleaved: >= 2)
  int64_t zero;          // 0 | 1 (optimizer state sharded across dp) | 2 (and gradients); 3 refused
  bool sequence_parallel = false;  // GPT, tp > 1: norms, dropouts, residuals split along the sequence
  double bucket_mb;      // gradient all-reduce bucket size
  bool overlap;          // start buckets during the backward pass
  double timeout;        // seconds before a collective that does not complete is an error
  std::string device_comm;  // device tensors: "auto" | "nccl" | "mpi" (host-staged; ranks sharing a GPU)
  // How data-parallel replicas agree (train/local_sync.h): "step" (gradient
  // all-reduce) | "local" (sync_every local steps, then an outer step on the
  // mean parameter change: "average" or "nesterov" with outer_lr, outer_momentum).
  std::string sync = "step";
  int64_t sync_every = 1;
  std::string outer_optim = "average";
  double outer_lr = 1.0;
  double outer_momentum = 0.9;

  bool operator==(const ParallelConfig&) const = default;
};

// parallel.sync = "local" with sync_every = 1, outer_optim = "average" and
// outer_lr = 1 syncs every step with no outer optimizer: that is synchronous
// data parallelism, and runs as such (the gradients averaged before the one
// optimizer step, as sync = "step"), not as averaging the replicas' parameters
// after each took its own step (which differs for any optimizer whose update
// is not linear in the gradient, AdamW or clipping, and in rounding for all).
inline bool local_sync_is_dp(const ParallelConfig& p) {
  return p.sync == "local" && p.sync_every == 1 && p.outer_optim == "average" && p.outer_lr == 1.0;
}
// Local sync with its own semantics (train/local_sync.h): periods of H > 1
// steps, or an outer optimizer other than plain averaging.
inline bool local_sync_active(const ParallelConfig& p) { return p.sync == "local" && !local_sync_is_dp(p); }

struct CheckpointConfig {
  std::string dir;
  int64_t every;         // steps between checkpoints (0 = none)
  double every_minutes;  // minutes between checkpoints (0 = none)
  int64_t keep;          // complete checkpoints kept on disk
  bool at_end;           // one after the last step
  bool async;            // write in a background thread; the step pays for a host copy only
  std::string sign_key_file;    // Ed25519 secret key: every checkpoint is signed ("" = unsigned)
  std::string verify_key_file;  // public key a resumed checkpoint must be signed by ("" = sign_key_file's)

  bool operator==(const CheckpointConfig&) const = default;
};

struct LogConfig {
  std::string out_dir;  // "" = runs/<config file stem>
  int64_t every;        // steps between progress lines
  bool profile;         // progress lines add a time breakdown (train/profiler.h)
  bool plot;            // draw <out_dir>/loss.png at the end (tools/plot_metrics.py)
  std::string dir_mode;  // octal permissions of the run and checkpoint directories dtrain creates

  bool operator==(const LogConfig&) const = default;
};

struct Config {
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  OptimConfig optim;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  LogConfig log;

  std::string source;  // the file it was read from ("" for built-in defaults)

  bool operator==(const Config&) const = default;
};

// parallel.mode = "auto": the layout planner (lib/parallel) that picks the
// degrees, handed in by the caller because config comes before the model in
// the data flow. It gets the config with every other key read (train.seq_len
// resolved, train.global_batch set: as given, else micro_batch x grad_accum
// [x dp when set]) and which choices the config fixed; it returns the layout
// or throws ConfigError saying why none fits.
struct AutoLayoutRequest {
  const Config* config = nullptr;
  int world_size = 1;
  bool fixed_dp = false, fixed_tp = false, fixed_pp = false;
  bool fixed_micro_batch = false, fixed_grad_accum = false;
  bool fixed_zero = false, fixed_schedule = false, fixed_recompute = false;
  bool fixed_virtual_stages = false, fixed_sequence_parallel = false;
  // Only read parallel.hardware (a ConfigError when it cannot be): one rank
  // has no layout to plan, yet a bad hardware name must not pass there and
  // fail on many.
  bool hardware_only = false;
};
struct AutoLayoutChoice {
  int64_t dp = 1, tp = 1, pp = 1, micro_batch = 1, grad_accum = 1, zero = 0;
  std::string schedule = "1f1b";
  int64_t virtual_stages = 1;     // interleaved: chunks per stage
  bool sequence_parallel = false;
  std::string recompute;  // "none", "selective" or "full" where the plan chose; empty: the config's
};
using AutoLayout = std::function<AutoLayoutChoice(const AutoLayoutRequest&)>;

// Reads, overrides, validates and resolves a config. Throws ConfigError with
// every problem found (unknown keys with a did-you-mean, wrong types, values
// out of range, inconsistent batch sizes), each naming the file, line and key.
// `overrides` are "section.key=value" strings (the value is TOML; a bare word
// is taken as a string). `world_size` is the number of ranks launched.
// The result is resolved: the three batch sizes, train.seq_len (gpt; 0 ->
// context_length), optim.decay_steps (0 -> train.steps), log.out_dir and
// checkpoint.dir are filled in. Relative data paths are kept as written.
// parallel.mode "auto" with degrees left free on more than one rank asks
// `auto_layout`; without one that is a config error.
// The sequence length a GPT trains on (train.seq_len, else the context
// length); 0 for models without sequences.
int64_t train_seq_len(const Config& c);

Config load_config(const std::string& path, const std::vector<std::string>& overrides = {},
                   int world_size = 1, const AutoLayout& auto_layout = {});

// Same, from TOML text (`name` is used in messages in place of a file name).
Config parse_config(const std::string& toml_text, const std::string& name,
                    const std::vector<std::string>& overrides = {}, int world_size = 1,
                    const AutoLayout& auto_layout = {});

// The resolved config as TOML: every key that applies to c.model.type, with
// defaults and derived values filled in; parse_config(to_toml(c), c.source)
// gives back c. Keys in `omit` ("section.key") are left out, to be chosen
// again (a resumed auto-mode run's parallel.planned).
std::string to_toml(const Config& c, const std::vector<std::string>& omit = {});

// parallel.planned's keys, split at the commas ("" -> none).
std::vector<std::string> planned_keys(const std::string& list);
// The keys parallel.mode = "auto" may choose ("parallel.dp", "train.micro_batch", ...).
const std::vector<std::string>& planner_keys();

// Help for every key, one per line, in aligned columns:
// "section.key  type  default  applies  help (constraint)".
std::string describe_keys();

// Every key at its schema default, model.type set to `model_type`; not
// validated (data paths empty, batch sizes unset): a starting point for tests.
Config default_config(const std::string& model_type = "gpt");

}  // namespace dtrain
