// The schema table: the one place where each config key, its default, its
// constraint and its help text are written down. Relations between keys
// (batch sizes, divisibility, required data paths) live in validate.cpp.
#include "config/schema.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "config/footprint.h"

namespace dtrain::config {

namespace {

// Binds a key to the Config field at `path`, e.g. FIELD(model.n_layer).
#define FIELD(path) [](Config& c) -> auto& { return c.path; }

Constraint none() { return {}; }
Constraint at_least(double x) {
  Constraint c;
  c.lo = Bound{x, true};
  return c;
}
Constraint above(double x) {
  Constraint c;
  c.lo = Bound{x, false};
  return c;
}
Constraint half_open(double lo, double hi) {  // [lo, hi)
  Constraint c;
  c.lo = Bound{lo, true};
  c.hi = Bound{hi, false};
  return c;
}
Constraint at_most(Constraint c, double hi) {  // adds an inclusive upper bound
  c.hi = Bound{hi, true};
  return c;
}
Constraint one_of(std::vector<std::string> choices) {
  Constraint c;
  c.choices = std::move(choices);
  return c;
}
Constraint non_empty(Constraint each) {
  each.non_empty = true;
  return each;
}

using Ints = std::vector<int64_t>;
using Floats = std::vector<double>;
using Strings = std::vector<std::string>;
using std::string;

constexpr Applies kAll = Applies::kAll;
constexpr Applies kGpt = Applies::kGpt;
constexpr Applies kCnn = Applies::kCnn;

std::vector<KeySpec> build_schema() {
  return {
      // [model]
      {"model", "type", kAll, string("gpt"), one_of({"gpt", "cnn"}),
       "which model to train", FIELD(model.type)},
      {"model", "vocab_size", kGpt, int64_t{256}, at_least(2),
       "token ids are in [0, vocab_size)", FIELD(model.vocab_size)},
      {"model", "vocab_used", kGpt, int64_t{0}, at_least(0),
       "ids the model predicts: the loss's softmax covers [0, vocab_used), and the rows above it up to "
       "vocab_size are padding, never predicted (llm.c's V under its padded Vp; Megatron's padding is "
       "predicted: set vocab_used = vocab_size for that); 0 = derived: GPT-2's 50257 with data.tokenizer "
       "\"gpt2\", a Hugging Face model's own vocab_size with model.init_from, else vocab_size",
       FIELD(model.vocab_used)},
      {"model", "context_length", kGpt, int64_t{256}, at_least(1),
       "longest sequence the position embedding covers", FIELD(model.context_length)},
      {"model", "n_layer", kGpt, int64_t{4}, at_most(at_least(1), 65536),
       "transformer blocks", FIELD(model.n_layer)},
      {"model", "n_head", kGpt, int64_t{4}, at_least(1),
       "attention heads per block", FIELD(model.n_head)},
      {"model", "n_kv_head", kGpt, int64_t{0}, at_least(0),
       "key/value heads per block; fewer than n_head, dividing it, is grouped-query attention "
       "(LLaMA 2 70B, LLaMA 3: each key/value head serves n_head / n_kv_head query heads; 1: "
       "multi-query); 0 = n_head",
       FIELD(model.n_kv_head)},
      {"model", "n_embd", kGpt, int64_t{128}, at_least(1),
       "embedding width; a multiple of n_head", FIELD(model.n_embd)},
      {"model", "dropout", kGpt, 0.0, half_open(0, 1),
       "dropout probability in training", FIELD(model.dropout)},
      {"model", "bias", kGpt, true, none(),
       "biases in linear layers and layer norms", FIELD(model.bias)},
      {"model", "norm", kGpt, string("layernorm"), one_of({"layernorm", "rmsnorm"}),
       "the blocks' and the final norm: GPT-2's LayerNorm or LLaMA's RMSNorm (no bias)",
       FIELD(model.norm)},
      {"model", "mlp", kGpt, string("gelu"), one_of({"gelu", "swiglu"}),
       "the MLP: GPT-2's GELU (tanh) or LLaMA's SwiGLU (silu(x W_gate) * x W_up, then W_down)",
       FIELD(model.mlp)},
      {"model", "position", kGpt, string("learned"), one_of({"learned", "rope"}),
       "positions: a learned embedding added to the tokens' (wpe, GPT-2) or rotary embeddings "
       "turning each head's queries and keys (RoPE, LLaMA; no wpe)",
       FIELD(model.position)},
      {"model", "rope_theta", kGpt, 10000.0, above(1),
       "position = \"rope\": the base of the rotary frequencies (LLaMA 2: 10000, LLaMA 3: 500000)",
       FIELD(model.rope_theta)},
      {"model", "rope_scaling", kGpt, string("none"), one_of({"none", "llama3"}),
       "position = \"rope\": \"llama3\" stretches the long wavelengths for a longer context as LLaMA 3.1 "
       "does (transformers' rope_type \"llama3\"; the rope_factor, rope_low_freq_factor, "
       "rope_high_freq_factor and rope_original_context keys), or \"none\"",
       FIELD(model.rope_scaling)},
      {"model", "rope_factor", kGpt, 8.0, at_least(1.0),
       "rope_scaling = \"llama3\": long wavelengths' frequencies divided by this (LLaMA 3.1: 8, 3.2: 32)",
       FIELD(model.rope_factor)},
      {"model", "rope_low_freq_factor", kGpt, 1.0, above(0),
       "rope_scaling = \"llama3\": wavelengths beyond rope_original_context / this are scaled in full",
       FIELD(model.rope_low_freq_factor)},
      {"model", "rope_high_freq_factor", kGpt, 4.0, above(0),
       "rope_scaling = \"llama3\": wavelengths below rope_original_context / this are kept; between, interpolated",
       FIELD(model.rope_high_freq_factor)},
      {"model", "rope_original_context", kGpt, int64_t{8192}, at_least(1),
       "rope_scaling = \"llama3\": the context the unscaled model was trained on",
       FIELD(model.rope_original_context)},
      {"model", "ffn_hidden", kGpt, int64_t{0}, at_least(0),
       "the MLP's hidden width; 0 = 4 n_embd (gelu) or 8/3 n_embd rounded up to a multiple of 256 (swiglu)",
       FIELD(model.ffn_hidden)},
      {"model", "tie_embeddings", kGpt, true, none(),
       "the output head shares the token embedding wte (GPT-2) or has its own lm_head.weight (LLaMA)",
       FIELD(model.tie_embeddings)},
      {"model", "init_from", kGpt, string(""), none(),
       "\"\" = random init; \"hf:DIR\" = start from a Hugging Face GPT-2 or LLaMA directory (config.json, "
       "model.safetensors), e.g. one `dtrain export --format hf` wrote",
       FIELD(model.init_from)},
      {"model", "in_channels", kCnn, int64_t{1}, at_least(1),
       "channels of the input images", FIELD(model.in_channels)},
      {"model", "image_size", kCnn, int64_t{28}, at_least(4),
       "height and width of the (square) input images", FIELD(model.image_size)},
      {"model", "num_classes", kCnn, int64_t{10}, at_least(2),
       "classes to predict", FIELD(model.num_classes)},
      {"model", "stem_channels", kCnn, int64_t{32}, at_least(1),
       "output channels of the stem convolution", FIELD(model.stem_channels)},
      {"model", "channels", kCnn, Ints{32, 64, 128}, non_empty(at_least(1)),
       "output channels of each stage", FIELD(model.channels)},
      {"model", "blocks", kCnn, Ints{1, 1, 1}, non_empty(at_most(at_least(1), 65536)),
       "residual blocks in each stage; one entry per channels entry", FIELD(model.blocks)},
      {"model", "stem_pool", kCnn, string("none"), one_of({"none", "max"}),
       "pooling after the stem", FIELD(model.stem_pool)},

      // [data]
      {"data", "train", kGpt, Strings{""}, none(),
       "training tokens (llm.c .bin file, or a glob pattern such as \"fineweb_train_*.bin\": every file it "
       "matches, in name order); required. A list of parallel.dp files gives each "
       "data-parallel replica its own file (replica d reads only entry d: data that stays on its site)",
       FIELD(data.train)},
      {"data", "val", kGpt, string(""), none(),
       "validation tokens (llm.c .bin file or glob pattern); required", FIELD(data.val)},
      {"data", "train_images", kCnn, string(""), none(),
       "training images (IDX file); required", FIELD(data.train_images)},
      {"data", "train_labels", kCnn, string(""), none(),
       "training labels (IDX file); required", FIELD(data.train_labels)},
      {"data", "val_images", kCnn, string(""), none(),
       "validation images (IDX file); required", FIELD(data.val_images)},
      {"data", "val_labels", kCnn, string(""), none(),
       "validation labels (IDX file); required", FIELD(data.val_labels)},
      {"data", "mean", kCnn, Floats{0.1307}, non_empty(none()),
       "per-channel mean of pixels scaled to [0, 1]; 1 or in_channels entries",
       FIELD(data.mean)},
      {"data", "std", kCnn, Floats{0.3081}, non_empty(above(0)),
       "per-channel standard deviation; 1 or in_channels entries", FIELD(data.std)},
      {"data", "shuffle", kAll, true, none(),
       "shuffle training samples each epoch", FIELD(data.shuffle)},
      {"data", "tokenizer", kGpt, string("byte"), one_of({"byte", "gpt2", "hf"}),
       "what the token ids mean: UTF-8 bytes, GPT-2 BPE, or a Hugging Face tokenizer.json (LLaMA 3's, "
       "GPT-2's, ...); `dtrain tokenize` writes token files with it, `dtrain generate` decodes with it",
       FIELD(data.tokenizer)},
      {"data", "tokenizer_dir", kGpt, string("data/gpt2"), none(),
       "tokenizer gpt2: the directory holding its encoder.json and vocab.bpe; hf: its tokenizer.json "
       "(and tokenizer_config.json)",
       FIELD(data.tokenizer_dir)},

      // [train]
      {"train", "steps", kAll, int64_t{1000}, at_least(1),
       "optimizer steps", FIELD(train.steps)},
      {"train", "seed", kAll, int64_t{1337}, at_least(0),
       "seed of every random draw (init, dropout, shuffling)", FIELD(train.seed)},
      {"train", "global_batch", kAll, int64_t{0}, at_least(0),
       "samples per optimizer step; 0 = derive (set two of the three batch keys)",
       FIELD(train.global_batch)},
      {"train", "micro_batch", kAll, int64_t{0}, at_least(0),
       "samples per forward/backward on one data-parallel rank; 0 = derive",
       FIELD(train.micro_batch)},
      {"train", "grad_accum", kAll, int64_t{0}, at_most(at_least(0), kMaxGradAccum),
       "micro-batches per optimizer step on one rank; 0 = derive", FIELD(train.grad_accum)},
      {"train", "seq_len", kGpt, int64_t{0}, at_least(0),
       "tokens per sequence, <= model.context_length; 0 = model.context_length",
       FIELD(train.seq_len)},
      {"train", "eval_every", kAll, int64_t{100}, at_least(0),
       "steps between evaluations (and one at step 0); 0 = at step 0 and the end only", FIELD(train.eval_every)},
      {"train", "eval_batches", kAll, int64_t{20}, at_least(0),
       "micro-batches of train.micro_batch per evaluation (the set is this x micro_batch samples, over all dp "
       "ranks); 0 = the whole validation set",
       FIELD(train.eval_batches)},
      {"train", "precision", kAll, string("fp32"), one_of({"fp32", "bf16"}),
       "arithmetic precision: fp32, or bf16 mixed precision (bf16 weights copy and activations, fp32 master weights, gradients and optimizer state)", FIELD(train.precision)},
      {"train", "recompute", kGpt, string("none"), one_of({"none", "selective", "full"}),
       "activation recomputation: none; selective (GELU outputs and attention probabilities "
       "remade in backward); full (each block keeps only its input and re-runs its forward in "
       "backward)", FIELD(train.recompute)},
      {"train", "device", kAll, string("cpu"), one_of({"cpu", "cuda"}),
       "where to train: cpu, or cuda (each rank takes GPU local_rank % GPUs on its node)",
       FIELD(train.device)},
      {"train", "tf32", kAll, false, none(),
       "cuda with precision fp32: let matrix products use TF32 tensor cores (faster, ~1e-3 "
       "relative error); off: strict fp32, comparable with the CPU", FIELD(train.tf32)},
      {"train", "threads", kAll, int64_t{0}, at_most(at_least(0), 4096),
       "CPU threads; 0 = OMP_NUM_THREADS where set, else the rank's share of the cores it may run on (all of them "
       "for one rank; a core shared among the node's ranks that may use it)", FIELD(train.threads)},
      {"train", "skip_nonfinite", kAll, false, none(),
       "a non-finite loss or gradient norm skips that step's update instead of stopping the run",
       FIELD(train.skip_nonfinite)},

      // [optim]
      {"optim", "name", kAll, string("adamw"), one_of({"adamw", "sgd"}),
       "optimizer", FIELD(optim.name)},
      {"optim", "lr", kAll, 3e-4, above(0),
       "peak learning rate", FIELD(optim.lr)},
      {"optim", "min_lr", kAll, 0.0, at_least(0),
       "learning rate at the end of the decay; <= lr", FIELD(optim.min_lr)},
      {"optim", "warmup_steps", kAll, int64_t{0}, at_least(0),
       "steps of linear warmup from 0 to lr; < train.steps", FIELD(optim.warmup_steps)},
      {"optim", "schedule", kAll, string("cosine"), one_of({"cosine", "linear", "sqrt", "constant"}),
       "decay from lr to min_lr after the warmup: cosine, linear, sqrt (1 - sqrt of the decay's progress, "
       "the cooldown of warmup-stable-decay), or constant (lr after the warmup, no decay)",
       FIELD(optim.schedule)},
      {"optim", "decay_start", kAll, int64_t{0}, at_least(0),
       "step at which the decay from lr begins, lr held from the end of the warmup until then "
       "(warmup-stable-decay: a fifth of the run before decay_steps, say); 0 = at the warmup's end",
       FIELD(optim.decay_start)},
      {"optim", "decay_steps", kAll, int64_t{0}, at_least(0),
       "step at which the decay reaches min_lr; 0 = train.steps", FIELD(optim.decay_steps)},
      {"optim", "weight_decay", kAll, 0.1, at_least(0),
       "decoupled weight decay (adamw) or L2 penalty (sgd)", FIELD(optim.weight_decay)},
      {"optim", "beta1", kAll, 0.9, half_open(0, 1),
       "adamw: first-moment decay", FIELD(optim.beta1)},
      {"optim", "beta2", kAll, 0.95, half_open(0, 1),
       "adamw: second-moment decay", FIELD(optim.beta2)},
      {"optim", "eps", kAll, 1e-8, above(0),
       "adamw: denominator epsilon", FIELD(optim.eps)},
      {"optim", "momentum", kAll, 0.9, half_open(0, 1),
       "sgd: momentum", FIELD(optim.momentum)},
      {"optim", "nesterov", kAll, false, none(),
       "sgd: Nesterov momentum", FIELD(optim.nesterov)},
      {"optim", "grad_clip", kAll, 1.0, at_least(0),
       "max global gradient norm; 0 = no clipping", FIELD(optim.grad_clip)},

      // [parallel]
      {"parallel", "mode", kAll, string("auto"), one_of({"auto", "manual"}),
       "auto: the planner picks dp/tp/pp (and micro-batch, ZeRO, schedule where not set) for the "
       "ranks launched; manual: as given. Setting dp, tp or pp without mode means manual",
       FIELD(parallel.mode)},
      {"parallel", "hardware", kAll, string(""), none(),
       "mode auto: hardware preset (h100-sxm, h200, a100-80gb, cpu-local) or hardware TOML file; "
       "\"\" = cpu-local on the CPU, the GPU's preset on cuda", FIELD(parallel.hardware)},
      {"parallel", "planned", kAll, string(""), none(),
       "written by mode auto: the keys the planner chose, comma-separated; a run resumed on another "
       "number of ranks plans them again (the others stay as the config fixed them)",
       FIELD(parallel.planned)},
      {"parallel", "dp", kAll, int64_t{1}, at_least(1),
       "data-parallel ranks; dp x tp x pp = ranks launched", FIELD(parallel.dp)},
      {"parallel", "tp", kAll, int64_t{1}, at_least(1),
       "tensor-parallel ranks", FIELD(parallel.tp)},
      {"parallel", "pp", kAll, int64_t{1}, at_least(1),
       "pipeline-parallel ranks", FIELD(parallel.pp)},
      {"parallel", "schedule", kAll, string("1f1b"), one_of({"1f1b", "gpipe", "interleaved"}),
       "pipeline schedule over the grad_accum micro-batches", FIELD(parallel.schedule)},
      {"parallel", "virtual_stages", kAll, int64_t{1}, at_least(1),
       "model chunks per pipeline stage: 1, or with schedule interleaved 2 or more (the bubble shrinks by it)",
       FIELD(parallel.virtual_stages)},
      {"parallel", "zero", kAll, int64_t{0}, half_open(0, 4),
       "ZeRO stage over the data-parallel ranks: 1 shards the optimizer state (gradients reduce-scattered), "
       "2 the gradients too, 3 the parameters too (each layer's all-gathered before its forward and its backward); "
       "nothing to shard when dp = 1",
       FIELD(parallel.zero)},
      {"parallel", "sequence_parallel", kGpt, false, none(),
       "split the layer norms, dropouts and residual stream along the sequence across the tp ranks "
       "(Megatron-style; needs parallel.tp > 1 and train.seq_len divisible by it): their "
       "activations cost 1/tp, the tp all-reduces become all-gather/reduce-scatter pairs",
       FIELD(parallel.sequence_parallel)},
      {"parallel", "bucket_mb", kAll, 25.0, at_most(above(0), 1048576),
       "gradient all-reduce bucket size in MiB (started during backward)", FIELD(parallel.bucket_mb)},
      {"parallel", "overlap", kAll, true, none(),
       "start gradient buckets during the backward pass (false: all after it)",
       FIELD(parallel.overlap)},
      {"parallel", "timeout", kAll, 300.0, at_most(at_least(1), 1e7),  // below a second: any collective may miss it
       "seconds a collective may wait before the run fails naming the missing ranks",
       FIELD(parallel.timeout)},
      {"parallel", "sync", kAll, string("step"), one_of({"step", "local"}),
       "how data-parallel replicas agree: step = gradients all-reduced every step; local = each replica "
       "takes parallel.sync_every steps on its own data, then the replicas average their parameter "
       "changes and apply the outer optimizer (local SGD / DiLoCo; not with parallel.zero); with sync_every 1, "
       "outer_optim average and outer_lr 1 it is data parallelism: the gradients averaged every step, as step",
       FIELD(parallel.sync)},
      {"parallel", "sync_every", kAll, int64_t{1}, at_least(1),
       "sync local: optimizer steps between parameter syncs (H); the run's last step always syncs; 1 with plain "
       "averaging (outer_optim average, outer_lr 1) runs as sync step",
       FIELD(parallel.sync_every)},
      {"parallel", "outer_optim", kAll, string("average"), one_of({"average", "nesterov"}),
       "sync local: average = synced params + outer_lr x mean change (outer_lr 1: plain averaging); "
       "nesterov = SGD with Nesterov momentum on the mean change, as DiLoCo (outer_lr 0.7, momentum 0.9)",
       FIELD(parallel.outer_optim)},
      {"parallel", "outer_lr", kAll, 1.0, at_most(above(0), 1e3),
       "sync local: the outer optimizer's learning rate", FIELD(parallel.outer_lr)},
      {"parallel", "outer_momentum", kAll, 0.9, half_open(0, 1),
       "sync local, outer_optim nesterov: the outer momentum", FIELD(parallel.outer_momentum)},
      {"parallel", "device_comm", kAll, string("auto"), one_of({"auto", "nccl", "mpi"}),
       "train.device = cuda: how the ranks exchange device tensors: nccl, or mpi through host "
       "staging (slow; what works when ranks share a GPU, which NCCL refuses); auto: mpi when "
       "ranks share a GPU, else nccl",
       FIELD(parallel.device_comm)},

      // [checkpoint]
      {"checkpoint", "dir", kAll, string(""), none(),
       "where checkpoints go; \"\" = <log.out_dir>/checkpoints", FIELD(checkpoint.dir)},
      {"checkpoint", "every", kAll, int64_t{0}, at_least(0),
       "steps between checkpoints; 0 = none", FIELD(checkpoint.every)},
      {"checkpoint", "every_minutes", kAll, 0.0, at_most(at_least(0), 1e7),
       "minutes between checkpoints (wall clock); 0 = none", FIELD(checkpoint.every_minutes)},
      {"checkpoint", "keep", kAll, int64_t{3}, at_least(1),
       "complete checkpoints kept on disk (older ones are deleted)", FIELD(checkpoint.keep)},
      {"checkpoint", "at_end", kAll, true, none(),
       "write a checkpoint after the last step", FIELD(checkpoint.at_end)},
      {"checkpoint", "async", kAll, false, none(),
       "training waits only for a copy of the state in host memory; a background thread writes and "
       "publishes it (the last checkpoint and a preemption's are written before the run ends)",
       FIELD(checkpoint.async)},
      {"checkpoint", "sign_key_file", kAll, string(""), none(),
       "Ed25519 secret key file (dtrain keygen; mode 0600): every checkpoint's manifest is signed, and "
       "`dtrain resume` refuses a checkpoint not signed by its public half; \"\" = unsigned",
       FIELD(checkpoint.sign_key_file)},
      {"checkpoint", "verify_key_file", kAll, string(""), none(),
       "Ed25519 public key file (dtrain keygen's .pub) that a resumed checkpoint must be signed by; "
       "\"\" = the public half of checkpoint.sign_key_file (none: checkpoints are not verified)",
       FIELD(checkpoint.verify_key_file)},

      // [log]
      {"log", "out_dir", kAll, string(""), none(),
       "run directory; \"\" = runs/<config file stem>", FIELD(log.out_dir)},
      {"log", "every", kAll, int64_t{10}, at_least(1),
       "steps between progress lines", FIELD(log.every)},
      {"log", "profile", kAll, false, none(),
       "progress lines add the interval's forward / backward / comm wait / optimizer / data shares",
       FIELD(log.profile)},
      {"log", "plot", kAll, false, none(),
       "at the end (not on a stop), draw the loss curves to <out_dir>/loss.png (tools/plot_metrics.py, matplotlib)",
       FIELD(log.plot)},
      {"log", "dir_mode", kAll, string("0700"), none(),
       "permissions (octal) of the run directory and the checkpoint directory when dtrain creates them; "
       "the default lets only their owner in (\"0750\": the group may read too)",
       FIELD(log.dir_mode)},
  };
}

#undef FIELD

}  // namespace

const std::vector<KeySpec>& schema() {
  static const std::vector<KeySpec> table = build_schema();
  return table;
}

const std::vector<std::string>& sections() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const KeySpec& k : schema())
      if (out.empty() || out.back() != k.section) out.push_back(k.section);
    return out;
  }();
  return names;
}

const KeySpec* find_key(std::string_view section, std::string_view key) {
  for (const KeySpec& k : schema())
    if (section == k.section && key == k.key) return &k;
  return nullptr;
}

bool applies_to(Applies applies, std::string_view model_type) {
  switch (applies) {
    case Applies::kAll: return true;
    case Applies::kGpt: return model_type == "gpt";
    case Applies::kCnn: return model_type == "cnn";
  }
  return false;
}

const char* applies_name(Applies applies) {
  switch (applies) {
    case Applies::kAll: return "all";
    case Applies::kGpt: return "gpt";
    case Applies::kCnn: return "cnn";
  }
  return "?";
}

Value get(const KeySpec& spec, const Config& c) {
  // The accessors hand out mutable references; reading through a copy keeps
  // one accessor per key instead of a const and a non-const one.
  Config& mutable_c = const_cast<Config&>(c);
  return std::visit([&](auto field) -> Value { return field(mutable_c); }, spec.field);
}

void set(const KeySpec& spec, Config& c, const Value& v) {
  std::visit(
      [&](auto field) {
        using T = std::remove_reference_t<decltype(field(c))>;
        field(c) = std::get<T>(v);
      },
      spec.field);
}

std::string toml_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", x);  // shortest text that round-trips
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f)
          out += fmt::format("\\u{:04X}", static_cast<unsigned char>(ch));
        else
          out += ch;
    }
  }
  return out + "\"";
}

std::string toml_literal(const Value& v) {
  struct Visitor {
    std::string operator()(int64_t x) const { return std::to_string(x); }
    std::string operator()(double x) const { return toml_float(x); }
    std::string operator()(bool x) const { return x ? "true" : "false"; }
    std::string operator()(const std::string& x) const { return toml_string(x); }
    std::string operator()(const std::vector<int64_t>& xs) const {
      return fmt::format("[{}]", fmt::join(xs, ", "));
    }
    std::string operator()(const std::vector<double>& xs) const {
      std::string out = "[";
      for (size_t i = 0; i < xs.size(); ++i) out += (i ? ", " : "") + toml_float(xs[i]);
      return out + "]";
    }
    std::string operator()(const std::vector<std::string>& xs) const {
      if (xs.size() == 1) return toml_string(xs[0]);
      std::string out = "[";
      for (size_t i = 0; i < xs.size(); ++i) out += (i ? ", " : "") + toml_string(xs[i]);
      return out + "]";
    }
  };
  return std::visit(Visitor{}, v);
}

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kBool: return "bool";
    case Kind::kString: return "string";
    case Kind::kInts: return "int[]";
    case Kind::kFloats: return "float[]";
    case Kind::kStrings: return "string|string[]";
  }
  return "?";
}

const char* kind_phrase(Kind kind) {
  switch (kind) {
    case Kind::kInt: return "an integer";
    case Kind::kFloat: return "a number";
    case Kind::kBool: return "a boolean";
    case Kind::kString: return "a string";
    case Kind::kInts: return "an array of integers";
    case Kind::kFloats: return "an array of numbers";
    case Kind::kStrings: return "a string or an array of strings";
  }
  return "?";
}

std::string describe_bounds(const Constraint& c) {
  auto num = [](double x) { return fmt::format("{}", x); };
  if (c.lo && c.hi)
    return fmt::format("in {}{}, {}{}", c.lo->inclusive ? "[" : "(", num(c.lo->value),
                       num(c.hi->value), c.hi->inclusive ? "]" : ")");
  if (c.lo) return fmt::format("{} {}", c.lo->inclusive ? ">=" : ">", num(c.lo->value));
  if (c.hi) return fmt::format("{} {}", c.hi->inclusive ? "<=" : "<", num(c.hi->value));
  return "";
}

std::string describe_constraint(const Constraint& c, Kind kind) {
  std::vector<std::string> parts;
  if (!c.choices.empty()) parts.push_back(fmt::format("one of {}", fmt::join(c.choices, "|")));
  if (c.non_empty) parts.push_back("non-empty");
  std::string bounds = describe_bounds(c);
  if (!bounds.empty())
    parts.push_back(kind == Kind::kInts || kind == Kind::kFloats ? "each " + bounds : bounds);
  return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace dtrain::config
