// Checks between keys and derived values: the rules a single key's type and
// range cannot express. Each check runs only when the keys it reads were
// themselves valid, so one mistake gives one message.
#include "config/validate.h"

#include "core/device.h"

#include <algorithm>
#include <filesystem>
#include <initializer_list>
#include <numeric>
#include <optional>

#include <fmt/format.h>

#include "config/footprint.h"
#include "config/schema.h"
#include "core/error.h"

namespace dtrain::config {

int64_t padded_vocab(int64_t vocab, int64_t tp) {
  const int64_t unit = std::lcm<int64_t>(64, tp);
  return (vocab + unit - 1) / unit * unit;
}

const std::vector<std::string>& required_data_paths(const std::string& model_type) {
  static const std::vector<std::string> gpt = {"data.train", "data.val"};
  static const std::vector<std::string> cnn = {"data.train_images", "data.train_labels", "data.val_images",
                                               "data.val_labels"};
  static const std::vector<std::string> none;
  return model_type == "gpt" ? gpt : model_type == "cnn" ? cnn : none;
}

namespace {

std::optional<int64_t> checked_mul(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

class Validator {
 public:
  Validator(Config& c, const std::vector<KeyState>& keys, const std::string& name,
            const std::string& run_name, int world_size, const AutoLayout& auto_layout,
            Problems& problems)
      : c_(c),
        keys_(keys),
        name_(name),
        run_name_(run_name),
        world_size_(world_size),
        auto_layout_(auto_layout),
        problems_(problems) {}

  void run() {
    if (ok({"model.type"})) {
      if (c_.model.type == "gpt") check_gpt();  // the name: an unknown one is reported above
      if (c_.model.type == "cnn") check_cnn();
    }
    check_backend();
    check_optim();
    check_parallel();
    const size_t before = problems_.size();
    resolve_batch();
    const bool batch_ok = problems_.size() == before;
    if (!layout_unresolved_) {
      // Independent of each other and of the batch (but for interleaving's
      // count of micro-batches): all said at once.
      check_schedule(batch_ok);
      check_layout_fits_model();
    }
    if (problems_.size() == before && !layout_unresolved_) check_sizes();
    check_output_paths();
    resolve_paths();
  }

 private:
  bool layout_unresolved_ = false;  // parallel.mode = "auto" found no layout
  const KeyState& key(std::string_view name) const {
    auto dot = name.find('.');
    const KeySpec* spec = find_key(name.substr(0, dot), name.substr(dot + 1));
    return keys_[index_of(*spec)];
  }
  bool ok(std::initializer_list<std::string_view> names) const {
    for (auto n : names)
      if (key(n).bad) return false;
    return true;
  }
  bool is_set(std::string_view name) const { return key(name).origin.explicit_value(); }
  // Where to point the user for a problem with these keys: the last --set
  // among them (what was just changed; a resume's or an evaluation's own
  // overrides come before the user's), else the first one the config file
  // sets, else the config as a whole.
  Origin where(std::initializer_list<std::string_view> names) const {
    const Origin* latest = nullptr;
    for (auto n : names)
      if (const Origin& o = key(n).origin; o.kind == Origin::Kind::kSet && (!latest || o.order > latest->order))
        latest = &o;
    if (latest) return *latest;
    for (auto n : names)
      if (is_set(n)) return key(n).origin;
    return Origin::defaults(name_);
  }
  void problem(std::initializer_list<std::string_view> names, std::string what) {
    problems_.add(where(names), std::move(what));
  }

  void require_path(std::string_view name, const std::string& value, const char* model_type) {
    if (!value.empty() || key(name).bad) return;
    problem({name}, fmt::format("{}: expected a file path (required for model.type \"{}\"), got {}",
                                name, model_type, is_set(name) ? "\"\"" : "no value"));
  }

  void check_gpt() {
    const ModelConfig& m = c_.model;
    if (ok({"model.n_embd", "model.n_head"}) && m.n_embd % m.n_head != 0)
      problem({"model.n_embd", "model.n_head"},
              fmt::format("model.n_embd: expected a multiple of model.n_head ({}), got {}",
                          m.n_head, m.n_embd));
    else if (m.rope() && ok({"model.n_embd", "model.n_head", "model.position"}) && (m.n_embd / m.n_head) % 2 != 0)
      problem({"model.position", "model.n_embd", "model.n_head"},
              fmt::format("model.position = \"rope\" turns pairs of each head's features: the head width "
                          "model.n_embd / model.n_head ({} / {} = {}) must be even",
                          m.n_embd, m.n_head, m.n_embd / m.n_head));
    if (m.rope_scaling == "llama3" && ok({"model.rope_scaling", "model.position"}) && !m.rope())
      problem({"model.rope_scaling", "model.position"},
              fmt::format("model.rope_scaling = \"llama3\" scales rotary embeddings, but model.position = \"{}\"",
                          m.position));
    else if (m.rope_scaling == "llama3" && ok({"model.rope_high_freq_factor", "model.rope_low_freq_factor"}) &&
             !(m.rope_high_freq_factor > m.rope_low_freq_factor))
      problem({"model.rope_high_freq_factor", "model.rope_low_freq_factor"},
              fmt::format("model.rope_high_freq_factor: expected more than model.rope_low_freq_factor ({}), got {}",
                          m.rope_low_freq_factor, m.rope_high_freq_factor));
    if (ok({"model.n_kv_head", "model.n_head"}) && m.n_kv_head > 0 && m.n_head % m.n_kv_head != 0)
      problem({"model.n_kv_head", "model.n_head"},
              fmt::format("model.n_kv_head: expected a divisor of model.n_head ({}): each key/value head serves a "
                          "group of n_head / n_kv_head query heads, got {}",
                          m.n_head, m.n_kv_head));
    if (ok({"train.seq_len", "model.context_length"})) {
      if (c_.train.seq_len > m.context_length)
        problem({"train.seq_len", "model.context_length"},
                fmt::format("train.seq_len: expected at most model.context_length ({}), got {}",
                            m.context_length, c_.train.seq_len));
      else if (c_.train.seq_len == 0)
        c_.train.seq_len = m.context_length;
    }
    for (const std::string& path : c_.data.train) require_path("data.train", path, "gpt");
    require_path("data.val", c_.data.val, "gpt");  // required_data_paths("gpt")
    // GPT-2 BPE's 50257 ids must fit the vocabulary (byte tokens are checked
    // where the token files are read: small test vocabularies are fine).
    const int64_t ids = 50257;
    if (ok({"data.tokenizer", "model.vocab_size"}) && c_.data.tokenizer == "gpt2" && m.vocab_size < ids)
      problem({"model.vocab_size", "data.tokenizer"},
              fmt::format("model.vocab_size: expected at least {} (the ids of data.tokenizer \"{}\"), "
                          "got {}",
                          ids, c_.data.tokenizer, m.vocab_size));
    if (ok({"model.vocab_used", "model.vocab_size"}) && m.vocab_used > m.vocab_size)
      problem({"model.vocab_used", "model.vocab_size"},
              fmt::format("model.vocab_used: expected at most model.vocab_size ({}), got {}", m.vocab_size,
                          m.vocab_used));
    // GPT-2's tokenizer has 50257 ids: a padded vocabulary's rows above them
    // are never predicted (model.vocab_used), as llm.c and the export have it.
    // (A Hugging Face model's own size, with model.init_from, is set where
    // the run starts: it is read from the directory.)
    else if (ok({"data.tokenizer", "model.vocab_size", "model.vocab_used"}) && c_.data.tokenizer == "gpt2" &&
             m.vocab_used == 0 && m.vocab_size > ids)
      c_.model.vocab_used = ids;
    if (ok({"model.init_from"}) && !m.init_from.empty() && m.init_from.rfind("hf:", 0) != 0)
      problem({"model.init_from"},
              fmt::format("model.init_from: expected \"\" or \"hf:DIR\" (a Hugging Face GPT-2 "
                          "directory), got \"{}\"",
                          m.init_from));
  }

  void check_cnn() {
    const ModelConfig& m = c_.model;
    if (ok({"model.channels", "model.blocks"}) && m.blocks.size() != m.channels.size())
      problem({"model.blocks", "model.channels"},
              fmt::format("model.blocks: expected {} entries (one per model.channels entry), "
                          "got {}",
                          m.channels.size(), m.blocks.size()));
    for (auto [name, values] :
         {std::pair{"data.mean", &c_.data.mean}, std::pair{"data.std", &c_.data.std}}) {
      size_t n = values->size();
      if (!ok({name, "model.in_channels"}) || n == 1 || static_cast<int64_t>(n) == m.in_channels)
        continue;
      std::string expected =
          m.in_channels == 1
              ? "1 entry (model.in_channels is 1)"
              : fmt::format("1 entry or {} (one per model.in_channels)", m.in_channels);
      problem({name, "model.in_channels"},
              fmt::format("{}: expected {}, got {} entries", name, expected, n));
    }
    require_path("data.train_images", c_.data.train_images, "cnn");  // required_data_paths("cnn")
    require_path("data.train_labels", c_.data.train_labels, "cnn");
    require_path("data.val_images", c_.data.val_images, "cnn");
    require_path("data.val_labels", c_.data.val_labels, "cnn");
  }

  void check_backend() {
    if (c_.parallel.device_comm == "nccl" && c_.train.device != "cuda")
      problem({"parallel.device_comm", "train.device"},
              fmt::format("parallel.device_comm: nccl carries GPU tensors, but train.device is "
                          "{}; use auto (or mpi)",
                          c_.train.device));
    if (c_.train.device == "cuda" && !gpu::built())
      problem({"train.device"},
              "train.device: cuda needs the CUDA backend, which this build does not have "
              "(build with -DDTRAIN_CUDA=ON where the CUDA toolkit is installed)");
  }

  void check_optim() {
    OptimConfig& o = c_.optim;
    if (ok({"optim.min_lr", "optim.lr"}) && o.min_lr > o.lr)
      problem({"optim.min_lr", "optim.lr"},
              fmt::format("optim.min_lr: expected at most optim.lr ({}), got {}", o.lr, o.min_lr));
    if (ok({"optim.warmup_steps", "train.steps"}) && o.warmup_steps >= c_.train.steps)
      problem({"optim.warmup_steps", "train.steps"},
              fmt::format("optim.warmup_steps: expected less than train.steps ({}), got {} (a shorter run needs a "
                          "shorter warmup: --set optim.warmup_steps={}, a tenth of the run, say)",
                          c_.train.steps, o.warmup_steps, c_.train.steps / 10));
    if (ok({"optim.decay_steps", "train.steps"}) && o.decay_steps == 0)
      o.decay_steps = c_.train.steps;
    // decay_start 0 stays 0 (the decay starts at the warmup's end, whatever
    // warmup a resume sets): resolved to warmup_steps it would be checked on
    // reading the config back as if the user had set it.
    if (!ok({"optim.decay_start", "optim.warmup_steps", "optim.decay_steps", "optim.schedule"}) || o.decay_start == 0)
      return;
    if (o.schedule == "constant") {
      problem({"optim.decay_start", "optim.schedule"},
              fmt::format("optim.decay_start: schedule = \"constant\" has no decay to start (got {}): choose "
                          "optim.schedule = \"linear\", \"sqrt\" or \"cosine\"",
                          o.decay_start));
    } else if (o.decay_start < o.warmup_steps || o.decay_start >= o.decay_steps) {
      problem({"optim.decay_start", "optim.warmup_steps", "optim.decay_steps"},
              fmt::format("optim.decay_start: expected from optim.warmup_steps ({}) to below optim.decay_steps ({}), "
                          "got {}",
                          o.warmup_steps, o.decay_steps, o.decay_start));
    }
  }

  void check_parallel() {
    check_planned();
    if (!ok({"parallel.dp", "parallel.tp", "parallel.pp"})) return;
    if (ok({"parallel.mode"}) && !resolve_auto()) {
      layout_unresolved_ = true;  // the degrees are not known: no checks that need them
      return;
    }
    const ParallelConfig& p = c_.parallel;
    auto dp_tp = checked_mul(p.dp, p.tp);
    auto ranks = dp_tp ? checked_mul(*dp_tp, p.pp) : std::nullopt;
    // Under parallel.mode = "auto" the degrees a config sets are constraints:
    // with all three set there is nothing left to choose.
    const bool all_fixed = p.mode == "auto" && is_set("parallel.dp") && is_set("parallel.tp") && is_set("parallel.pp");
    // The data-parallel degree that would use the ranks launched, where tp x pp divides them.
    const int64_t model_ranks = dp_tp && ranks ? p.tp * p.pp : 0;
    const bool dp_fills = !all_fixed && model_ranks > 0 && world_size_ > 1 && world_size_ % model_ranks == 0;
    if (!ranks || *ranks != world_size_)
      problem({"parallel.dp", "parallel.tp", "parallel.pp"},
              fmt::format("parallel: dp x tp x pp = {} but {} {} launched{}",
                          ranks ? fmt::to_string(*ranks) : "(too large)", world_size_,
                          world_size_ == 1 ? "rank was" : "ranks were",
                          all_fixed  ? " (parallel.mode = \"auto\" keeps the degrees the config sets: leave out "
                                       "parallel.dp, tp and pp, or the ones the planner may choose)"
                          : dp_fills ? fmt::format(" (--set parallel.dp={} uses them all)", world_size_ / model_ranks)
                                     : std::string()));
    check_sequence_parallel();
    check_local_sync();
  }

  // parallel.planned: keys the planner may choose, comma-separated.
  void check_planned() {
    const std::string& list = c_.parallel.planned;
    if (list.empty() || !ok({"parallel.planned"})) return;
    const std::vector<std::string>& known = planner_keys();
    for (const std::string& key : planned_keys(list))
      if (std::find(known.begin(), known.end(), key) == known.end())
        problem({"parallel.planned"}, fmt::format("parallel.planned: '{}' is not a key the planner chooses ({})", key,
                                                  fmt::join(known, ", ")));
  }

  // parallel.sync = "local" (train/local_sync.h) and data that stays on its
  // site: data.train lists one file per data-parallel replica.
  void check_local_sync() {
    const ParallelConfig& p = c_.parallel;
    // H = 1 with plain averaging is data parallelism (local_sync_is_dp): one
    // optimizer over the replicas, which ZeRO may shard.
    if (ok({"parallel.sync", "parallel.sync_every", "parallel.outer_optim", "parallel.outer_lr", "parallel.zero"}) &&
        local_sync_active(p) && p.zero >= 1 && p.dp > 1)
      problem({"parallel.sync", "parallel.zero"},
              fmt::format("parallel.sync = \"local\" with parallel.zero = {}: ZeRO shards one optimizer over the "
                          "data-parallel replicas, but local sync gives each replica its own; use parallel.zero = 0",
                          p.zero));
    if (c_.model.type == "gpt" && ok({"data.train"}) && c_.data.train.size() > 1 &&
        static_cast<int64_t>(c_.data.train.size()) != p.dp)
      problem({"data.train", "parallel.dp"},
              fmt::format("data.train: lists {} files, but parallel.dp is {}: give one file per data-parallel "
                          "replica (entry d is replica d's), or one file that every replica shares",
                          c_.data.train.size(), p.dp));
  }

  // Interleaved 1F1B: v >= 2 chunks per stage on more than one stage, and
  // micro-batches in groups of pp (Megatron's order needs whole groups).
  void check_schedule(bool batch_ok) {
    const ParallelConfig& p = c_.parallel;
    if (!ok({"parallel.schedule", "parallel.virtual_stages", "parallel.pp", "train.grad_accum"})) return;
    const std::initializer_list<std::string_view> keys = {"parallel.schedule", "parallel.virtual_stages", "parallel.pp"};
    if (p.schedule != "interleaved") {
      if (p.virtual_stages != 1)
        problem(keys, fmt::format("parallel.virtual_stages = {} needs parallel.schedule = \"interleaved\" "
                                  "({} \"{}\")", p.virtual_stages,
                                  is_set("parallel.schedule") ? "got" : "unset, it is", p.schedule));
      return;
    }
    if (p.virtual_stages < 2)
      problem(keys, fmt::format("parallel.schedule = \"interleaved\" needs parallel.virtual_stages >= 2, got {}",
                                p.virtual_stages));
    else if (p.pp < 2)
      problem(keys, fmt::format("parallel.schedule = \"interleaved\" needs parallel.pp > 1, got {}", p.pp));
    else if (batch_ok && c_.train.grad_accum % p.pp != 0)
      problem({"train.grad_accum", "parallel.pp", "parallel.schedule"},
              fmt::format("parallel.schedule = \"interleaved\" needs train.grad_accum (micro-batches per step, "
                          "{}) to be a multiple of parallel.pp ({})", c_.train.grad_accum, p.pp));
  }

  // The layout against the model's shapes (what building the model on these
  // ranks would refuse, said here so that `validate` and a run's first line
  // agree): tp splits a GPT's heads and vocabulary and nothing of a CNN; every
  // pipeline stage, and under interleaving every chunk, needs a top-level layer
  // (GPT: embedding, blocks, final norm, head; CNN: stem, blocks, head).
  void check_layout_fits_model() {
    const ParallelConfig& p = c_.parallel;
    const ModelConfig& m = c_.model;
    const bool gpt = m.type == "gpt";
    if (p.tp > 1 && !gpt) {
      problem({"parallel.tp", "model.type"},
              fmt::format("parallel.tp = {}: tensor parallelism is not available for the CNN; use parallel.dp and "
                          "parallel.pp",
                          p.tp));
      return;
    }
    if (p.tp > 1 && ok({"model.n_head"}) && m.n_head % p.tp != 0)
      problem({"model.n_head", "parallel.tp"},
              fmt::format("model.n_head ({}) is not divisible by parallel.tp ({}): tensor parallelism splits the "
                          "attention heads across its ranks",
                          m.n_head, p.tp));
    else if (p.tp > 1 && ok({"model.n_kv_head", "model.n_head"}) && m.kv_heads() % p.tp != 0)
      problem({"model.n_kv_head", "parallel.tp"},
              fmt::format("model.n_kv_head ({}) is not divisible by parallel.tp ({}): tensor parallelism splits the "
                          "key/value heads across its ranks with their query heads",
                          m.kv_heads(), p.tp));
    else if (p.tp > 1 && ok({"model.n_head", "model.n_embd", "model.ffn_hidden", "model.mlp"}) &&
             m.ffn_width() % p.tp != 0)  // (with n_head divisible, so are n_embd and GELU's default 4 n_embd)
      problem({"model.ffn_hidden", "model.mlp", "parallel.tp"},
              fmt::format("model.ffn_hidden ({}{}) is not divisible by parallel.tp ({}): tensor parallelism splits "
                          "the MLP's hidden features across its ranks",
                          m.ffn_width(),
                          m.ffn_hidden > 0 ? "" : fmt::format(", the default for model.mlp = \"{}\"", m.mlp), p.tp));
    if (p.tp > 1 && ok({"model.vocab_size"}) && m.vocab_size % p.tp != 0) {
      problem({"model.vocab_size", "parallel.tp"},
              fmt::format("model.vocab_size ({}) is not divisible by parallel.tp ({}); use a padded vocabulary "
                          "such as {}",
                          m.vocab_size, p.tp, padded_vocab(m.vocab_size, p.tp)));
    }
    if (gpt ? !ok({"model.n_layer"}) : !ok({"model.blocks", "model.channels"})) return;
    int64_t layers = 2;  // the CNN's stem and head
    if (gpt) {
      layers = m.n_layer + 3;
    } else {
      for (int64_t n : m.blocks) layers += n;
    }
    // (interleaving on one stage is check_schedule's to say)
    const int64_t chunks = p.schedule == "interleaved" && p.pp > 1 ? p.virtual_stages : 1;
    const auto needed = checked_mul(p.pp, chunks);
    if (chunks > 1 && (!needed || *needed > layers))
      problem({"parallel.pp", "parallel.virtual_stages", gpt ? "model.n_layer" : "model.blocks"},
              fmt::format("parallel.pp ({}) x parallel.virtual_stages ({}) exceeds the model's {} top-level layers "
                          "(each model chunk needs at least one)",
                          p.pp, chunks, layers));
    else if (p.pp > layers)
      problem({"parallel.pp", gpt ? "model.n_layer" : "model.blocks"},
              fmt::format("parallel.pp ({}) exceeds the model's {} top-level layers (each pipeline stage needs at "
                          "least one)",
                          p.pp, layers));
  }

  // parallel.sequence_parallel splits the sequence across the tp ranks.
  void check_sequence_parallel() {
    const ParallelConfig& p = c_.parallel;
    if (!p.sequence_parallel || !ok({"parallel.sequence_parallel"})) return;
    if (p.tp <= 1) {
      problem({"parallel.sequence_parallel", "parallel.tp"},
              "parallel.sequence_parallel = true needs parallel.tp > 1 (it splits the sequence "
              "across the tensor-parallel ranks); set parallel.tp or drop the key");
      return;
    }
    if (!ok({"train.seq_len", "model.context_length"})) return;
    const int64_t T = train_seq_len(c_);
    if (T % p.tp != 0)
      problem({"parallel.sequence_parallel", "train.seq_len", "parallel.tp"},
              fmt::format("parallel.sequence_parallel: the sequence length ({}, train.seq_len or "
                          "model.context_length) must be divisible by parallel.tp ({})",
                          T, p.tp));
  }

  // parallel.mode is "auto" unless set, or unless dp, tp or pp is set
  // (explicit degrees win). In auto mode on more than one rank the planner
  // picks the degrees left free (the ones set are fixed), and the micro-batch,
  // ZeRO stage and schedule where the config leaves them free. Returns false
  // when no layout was chosen (the problem is reported).
  bool resolve_auto() {
    ParallelConfig& p = c_.parallel;
    TrainConfig& t = c_.train;
    const bool dp = is_set("parallel.dp"), tp = is_set("parallel.tp"), pp = is_set("parallel.pp");
    if (!is_set("parallel.mode") && (dp || tp || pp)) p.mode = "manual";
    if (p.mode == "auto" && world_size_ == 1 && !p.hardware.empty() && auto_layout_ && ok({"parallel.hardware"})) {
      // Nothing to plan on one rank, but the hardware it would plan for on many must be readable.
      Config probe = c_;
      probe.source.clear();
      try {
        (void)auto_layout_(AutoLayoutRequest{.config = &probe, .world_size = 1, .hardware_only = true});
      } catch (const dtrain::ConfigError& e) {
        for (const std::string& what : e.problems()) problem({"parallel.hardware"}, what);
        return false;
      }
    }
    if (p.mode != "auto" || world_size_ == 1 || (dp && tp && pp)) return true;
    // The planner reads the model and the batch: only when those are sound.
    if (!problems_.empty() ||
        !ok({"train.global_batch", "train.micro_batch", "train.grad_accum", "parallel.zero", "parallel.schedule",
             "parallel.hardware", "train.precision"}))
      return false;
    const std::initializer_list<std::string_view> modes = {"parallel.mode", "parallel.dp", "parallel.tp",
                                                           "parallel.pp"};
    if (!auto_layout_) {
      problem(modes, fmt::format("parallel.mode = \"auto\" on {} ranks needs the layout planner, which "
                                 "this program does not have; set parallel.dp, parallel.tp and parallel.pp",
                                 world_size_));
      return false;
    }
    // The batch the planner must keep: as given, else what micro_batch x
    // grad_accum (x dp when set) makes on one process.
    Config planned = c_;
    if (t.global_batch == 0) {
      if (t.micro_batch == 0) {
        problem({"train.global_batch", "train.micro_batch"},
                "parallel.mode = \"auto\": set train.global_batch (or train.micro_batch) so that the "
                "planner knows the batch to split");
        return false;
      }
      auto per_rank = checked_mul(t.micro_batch, std::max<int64_t>(1, t.grad_accum));
      auto global = per_rank ? checked_mul(*per_rank, dp ? p.dp : 1) : std::nullopt;
      if (!global) {
        problem({"train.micro_batch", "train.grad_accum"},
                fmt::format("train.micro_batch {} x train.grad_accum {} is more than 2^63", t.micro_batch,
                            t.grad_accum));
        return false;
      }
      planned.train.global_batch = *global;
    }
    AutoLayoutRequest req{.config = &planned,
                          .world_size = world_size_,
                          .fixed_dp = dp,
                          .fixed_tp = tp,
                          .fixed_pp = pp,
                          .fixed_micro_batch = t.micro_batch > 0,
                          .fixed_grad_accum = t.grad_accum > 0 && t.global_batch > 0,
                          // local sync has no ZeRO: the planner keeps the config's (0)
                          .fixed_zero = is_set("parallel.zero") || local_sync_active(c_.parallel),
                          .fixed_schedule = is_set("parallel.schedule"),
                          .fixed_recompute = is_set("train.recompute"),
                          .fixed_virtual_stages = is_set("parallel.virtual_stages"),
                          .fixed_sequence_parallel = is_set("parallel.sequence_parallel")};
    AutoLayoutChoice choice;
    try {
      choice = auto_layout_(req);
    } catch (const dtrain::ConfigError& e) {
      for (const std::string& what : e.problems()) problem(modes, "parallel.mode = \"auto\": " + what);
      return false;
    }
    // What the planner chose, for a run resumed on another number of ranks.
    std::vector<std::string> chosen;
    auto chose = [&](bool fixed, const char* key) {
      if (!fixed) chosen.push_back(key);
    };
    chose(dp, "parallel.dp");
    chose(tp, "parallel.tp");
    chose(pp, "parallel.pp");
    chose(req.fixed_micro_batch, "train.micro_batch");
    chose(req.fixed_grad_accum, "train.grad_accum");
    chose(req.fixed_zero, "parallel.zero");
    chose(req.fixed_schedule, "parallel.schedule");
    chose(req.fixed_virtual_stages, "parallel.virtual_stages");
    if (c_.model.type == "gpt") {
      chose(req.fixed_sequence_parallel, "parallel.sequence_parallel");
      chose(req.fixed_recompute, "train.recompute");
    }
    p.planned = fmt::format("{}", fmt::join(chosen, ","));
    p.dp = choice.dp;
    p.tp = choice.tp;
    p.pp = choice.pp;
    p.zero = choice.zero;
    p.schedule = choice.schedule;
    p.virtual_stages = choice.virtual_stages;
    p.sequence_parallel = choice.sequence_parallel;
    t.global_batch = planned.train.global_batch;
    t.micro_batch = choice.micro_batch;
    t.grad_accum = choice.grad_accum;
    if (!choice.recompute.empty()) t.recompute = choice.recompute;
    return true;
  }

  // global_batch = micro_batch x grad_accum x dp: any two give the third.
  void resolve_batch() {
    if (!ok({"train.global_batch", "train.micro_batch", "train.grad_accum", "parallel.dp"})) return;
    TrainConfig& t = c_.train;
    const int64_t dp = c_.parallel.dp;
    // Each problem is pointed at the keys its own arithmetic involves (dp among
    // them where it divides or multiplies: a resume's own train.grad_accum=0,
    // which comes first, is not what a user's --set parallel.dp=N after it is
    // told about; and a --set parallel.dp is not blamed for a batch left unset).
    const bool g = t.global_batch > 0, m = t.micro_batch > 0, a = t.grad_accum > 0;
    auto fail = [&](std::string what) {
      if (!g && !m)
        problem({"train.global_batch", "train.micro_batch", "train.grad_accum"}, std::move(what));
      else if (!m && !a)
        problem({"train.global_batch", "parallel.dp"}, std::move(what));
      else if (!g || a == m)  // micro_batch [and grad_accum] given, or all three: the product
        problem({"train.global_batch", "train.micro_batch", "train.grad_accum", "parallel.dp"}, std::move(what));
      else if (m)
        problem({"train.global_batch", "train.micro_batch", "parallel.dp"}, std::move(what));
      else
        problem({"train.global_batch", "train.grad_accum", "parallel.dp"}, std::move(what));
    };

    if (!g && !m) {
      fail(fmt::format("set two of train.global_batch, train.micro_batch, train.grad_accum ({})",
                       a ? "only train.grad_accum is set" : "none is set"));
      return;
    }
    if (!g) {  // micro_batch [and grad_accum]: global follows
      if (!a) t.grad_accum = 1;
      auto per_rank = checked_mul(t.micro_batch, t.grad_accum);
      auto global = per_rank ? checked_mul(*per_rank, dp) : std::nullopt;
      if (!global)
        return fail(fmt::format("train.micro_batch {} x train.grad_accum {} x parallel.dp {} is more than 2^63",
                                t.micro_batch, t.grad_accum, dp));
      t.global_batch = *global;
      return;
    }
    if (!m && !a) {  // global only: no accumulation
      if (t.global_batch % dp != 0)
        return fail(
            fmt::format("train.global_batch = {} is not a multiple of dp {}, so "
                        "micro_batch (with grad_accum 1) cannot be derived",
                        t.global_batch, dp));
      t.grad_accum = 1;
      t.micro_batch = t.global_batch / dp;
      return;
    }
    if (m && a) {
      auto per_rank = checked_mul(t.micro_batch, t.grad_accum);
      auto global = per_rank ? checked_mul(*per_rank, dp) : std::nullopt;
      if (!global || *global != t.global_batch)
        fail(fmt::format("train.global_batch = {} but micro_batch {} x grad_accum {} x dp {} = {}",
                         t.global_batch, t.micro_batch, t.grad_accum, dp,
                         global ? fmt::to_string(*global) : "(too large)"));
      return;
    }
    // global and one of micro_batch, grad_accum: the other is the quotient.
    const int64_t known = m ? t.micro_batch : t.grad_accum;
    const char* known_name = m ? "micro_batch" : "grad_accum";
    const char* derived_name = m ? "grad_accum" : "micro_batch";
    auto divisor = checked_mul(known, dp);
    if (!divisor || t.global_batch % *divisor != 0) {
      // With a micro-batch given and the batch split evenly over dp, the
      // largest micro-batch that would divide a rank's share (more dp ranks
      // on resume: the checkpoint's micro-batch no longer fits).
      std::string hint;
      if (m && t.global_batch % dp == 0 && t.global_batch / dp <= (int64_t{1} << 20)) {  // a search of at most 2^20
        const int64_t share = t.global_batch / dp;
        int64_t best = std::min(known, share);
        while (best > 1 && share % best != 0) --best;
        hint = fmt::format(" (set train.micro_batch to a divisor of global_batch / dp = {}, e.g. {})", share, best);
      }
      return fail(
          fmt::format("train.global_batch = {} is not a multiple of {} {} x dp {} = {}, "
                      "so {} cannot be derived{}",
                      t.global_batch, known_name, known, dp,
                      divisor ? fmt::to_string(*divisor) : "(too large)", derived_name, hint));
    }
    (m ? t.grad_accum : t.micro_batch) = t.global_batch / *divisor;
  }

  // The memory one rank would need, against kMaxRankBytes; `model_keys` are
  // the keys it depends on (the message names those the config sets).
  bool check_footprint(std::initializer_list<std::string_view> model_keys) {
    if (!ok(model_keys)) return false;
    const Footprint f = footprint(c_);
    if (!(f.total() <= kMaxRankBytes)) {
      // Named: the keys given with --set (the likely culprits), else those the file sets.
      std::vector<std::string> named;
      Origin at = where(model_keys);
      for (bool from_set : {true, false})
        for (auto n : named.empty() || from_set ? model_keys : std::initializer_list<std::string_view>{})
          if (is_set(n) && (key(n).origin.kind == Origin::Kind::kSet) == from_set) {
            if (named.empty()) at = key(n).origin;
            named.push_back(std::string(n));
          }
      problems_.add(at,
              fmt::format("{}: the model and batch would need about {} on each rank ({:.3g} parameters; "
                          "weights, gradients and optimizer state {}, activations {}), more than the {} "
                          "dtrain accepts",
                          named.empty() ? std::string("model") : fmt::format("{}", fmt::join(named, ", ")),
                          format_bytes(f.total()), f.params, format_bytes(f.state_bytes),
                          format_bytes(f.act_bytes), format_bytes(kMaxRankBytes)));
      return false;
    }
    return true;
  }

  // Sizes derived from the config must stay far from int64's range: the
  // memory one rank would need, and the counters of samples and tokens seen.
  void check_sizes() {
    if (!ok({"model.type", "train.global_batch", "train.micro_batch", "train.grad_accum", "parallel.dp",
             "parallel.tp", "parallel.pp", "train.steps"}))
      return;
    // Micro-batches per step: the pipeline schedule lists each one (ints, a few
    // bytes apiece); derived from train.global_batch, the schema's bound has not
    // seen it (found by tools/campaign.py: 2^31 wrapped to a negative count).
    if (c_.train.grad_accum > kMaxGradAccum) {
      problem({"train.grad_accum", "train.global_batch", "train.micro_batch"},
              fmt::format("train.grad_accum: {} micro-batches per step (train.global_batch {} / (train.micro_batch {} "
                          "x parallel.dp {})), more than the {} dtrain accepts",
                          c_.train.grad_accum, c_.train.global_batch, c_.train.micro_batch, c_.parallel.dp,
                          kMaxGradAccum));
      return;
    }
    const bool gpt = c_.model.type == "gpt";
    const bool fits = gpt ? check_footprint({"model.n_layer", "model.n_embd", "model.vocab_size", "model.context_length",
                                             "model.n_head", "model.n_kv_head", "train.micro_batch", "train.seq_len",
                                             "train.global_batch"})
                          : check_footprint({"model.channels", "model.blocks", "model.image_size",
                                             "model.stem_channels", "model.in_channels", "model.num_classes",
                                             "train.micro_batch", "train.global_batch"});
    if (!fits) return;
    // samples_seen = steps x global_batch, items = x seq_len (or x 1 image): int64 counters.
    const int64_t per_sample = gpt ? std::max(c_.train.seq_len, c_.model.context_length) : 1;
    auto samples = checked_mul(c_.train.steps, c_.train.global_batch);
    auto items = samples ? checked_mul(*samples, per_sample) : std::nullopt;
    if (!items || *items > (int64_t{1} << 62))
      problem({"train.steps", "train.global_batch"},
              fmt::format("train.steps: {} steps of {} samples would count more than 2^62 {} seen",
                          c_.train.steps, c_.train.global_batch, gpt ? "tokens" : "images"));
  }

  // log.dir_mode: three or four octal digits that leave the owner every right
  // (dtrain writes there); the output directories: no control characters (a
  // newline would split the `latest` file and every message naming them).
  void check_output_paths() {
    const std::string& m = c_.log.dir_mode;
    const bool digits = (m.size() == 3 || (m.size() == 4 && m[0] == '0')) &&
                        m.find_first_not_of("01234567") == std::string::npos;
    if (!digits)
      problem({"log.dir_mode"}, fmt::format("log.dir_mode: expected octal permissions such as \"0700\" or "
                                            "\"0750\", got \"{}\"",
                                            m));
    else if ((std::stoi(m, nullptr, 8) & 0700) != 0700)
      problem({"log.dir_mode"}, fmt::format("log.dir_mode: \"{}\" denies the owner (dtrain itself) reading, "
                                            "writing or entering the directory; the owner's digit must be 7",
                                            m));
    for (auto [name, value] : {std::pair{"log.out_dir", &c_.log.out_dir}, std::pair{"checkpoint.dir", &c_.checkpoint.dir},
                               std::pair{"checkpoint.sign_key_file", &c_.checkpoint.sign_key_file},
                               std::pair{"checkpoint.verify_key_file", &c_.checkpoint.verify_key_file}})
      if (std::any_of(value->begin(), value->end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x20; }))
        problem({name}, fmt::format("{}: the path holds a control character (a newline?)", name));
  }

  void resolve_paths() {
    namespace fs = std::filesystem;
    if (c_.log.out_dir.empty()) c_.log.out_dir = (fs::path("runs") / run_name_).string();
    if (c_.checkpoint.dir.empty())
      c_.checkpoint.dir = (fs::path(c_.log.out_dir) / "checkpoints").string();
  }

  Config& c_;
  const std::vector<KeyState>& keys_;
  const std::string& name_;
  const std::string& run_name_;
  int world_size_;
  const AutoLayout& auto_layout_;
  Problems& problems_;
};

}  // namespace

void validate_and_resolve(Config& c, const std::vector<KeyState>& keys, const std::string& name,
                          const std::string& run_name, int world_size,
                          const AutoLayout& auto_layout, Problems& problems) {
  Validator(c, keys, name, run_name, world_size, auto_layout, problems).run();
}

}  // namespace dtrain::config
