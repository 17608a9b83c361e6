#include "checkpoint/resume.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <exception>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "checkpoint/manifest.h"
#include "checkpoint/signing.h"
#include "checkpoint/session.h"
#include "checkpoint/store.h"
#include "config/dtrain_file.h"
#include "config/schema.h"
#include "config/toml_doc.h"
#include "core/version.h"

namespace dtrain {

namespace fs = std::filesystem;

Candidates find_checkpoints(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (!fs::exists(p, ec)) throw InputError(fmt::format("'{}' does not exist", path));
  Candidates c;
  if (fs::is_regular_file(p, ec) && p.filename() == store::kMasterFile) {
    c.exact = true;
    c.dirs = {p.parent_path().empty() ? "." : p.parent_path().string()};
    return c;
  }
  if (fs::is_directory(p, ec) && fs::exists(p / store::kMasterFile, ec)) {
    c.exact = true;
    c.dirs = {p.string()};
    return c;
  }
  fs::path root = fs::is_regular_file(p, ec) && p.filename() == store::kLatestFile ? p.parent_path() : p;
  if (!fs::is_directory(root, ec))
    throw InputError(fmt::format("'{}' is not a checkpoint: expected a checkpoint directory "
                                 "(step_N), its {}, or a directory of checkpoints",
                                 path, store::kMasterFile));
  auto entries = store::list_complete(root);
  if (entries.empty() && fs::is_directory(root / "checkpoints", ec)) {
    root /= "checkpoints";
    entries = store::list_complete(root);
  }
  // Leftovers of saves that did not finish (a crash, a full disk): said, not silently passed over.
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    // (.old ones are checkpoints being pruned or replaced: no loss, not reported)
    if (name.size() > 4 && name.ends_with(".tmp") && store::parse_step_dir_name(name.substr(0, name.size() - 4)))
      c.skipped.push_back(fmt::format("skipped {}: incomplete (a save that did not finish; the next save removes it)",
                                      (root / name).string()));
  }
  std::sort(c.skipped.begin(), c.skipped.end());
  if (entries.empty())
    throw InputError(fmt::format("no complete checkpoint in '{}' (complete ones are directories "
                                 "step_N holding {}){}{}",
                                 root.string(), store::kMasterFile, c.skipped.empty() ? "" : "; ",
                                 fmt::join(c.skipped, "; ")));
  c.root = root.string();
  std::map<std::string, int> count;
  for (const auto& e : entries) {
    c.dirs.push_back(e.dir.string());
    std::optional<ckpt_manifest::Manifest> m;
    try {
      m = ckpt_manifest::read(e.dir.string());
    } catch (const CheckpointError&) {  // damaged: the load says so
    }
    c.runs.push_back(m ? m->run : "");
    if (!c.runs.back().empty()) ++count[c.runs.back()];
  }
  const std::string latest = store::read_latest(root);
  // `latest` naming something that is not a complete checkpoint here (renamed,
  // hand-edited): said, as the newest complete one is taken instead.
  if (!latest.empty() && std::none_of(entries.begin(), entries.end(), [&](const store::Entry& e) {
        return e.dir.filename() == latest;
      }))
    c.skipped.push_back(fmt::format("'latest' names '{}', which is not a complete checkpoint (step_N holding {}) in {}: "
                                    "taking the newest complete one, {}",
                                    latest, store::kMasterFile, root.string(), entries.front().dir.filename().string()));
  c.run = store::read_run(root);
  if (!c.run.empty()) {
    c.run_source = fmt::format("as its '{}' file says", store::kRunFile);
    return c;
  }
  for (size_t i = 0; i < entries.size() && c.run.empty(); ++i)
    if (entries[i].dir.filename() == latest) c.run = c.runs[i];
  if (!c.run.empty()) {
    c.run_source = fmt::format("that of {}, which 'latest' names", latest);
  } else {
    int most = 0;
    for (const auto& [run, n] : count) most = std::max(most, n);
    for (size_t i = 0; i < entries.size() && c.run.empty(); ++i)  // newest first
      if (!c.runs[i].empty() && count[c.runs[i]] == most) c.run = c.runs[i];
    c.run_source = fmt::format("that of {} of its {} checkpoints", most, entries.size());
  }
  return c;
}

namespace {

// The default trainer: one process, its parameters left for the checkpoint.
std::unique_ptr<Trainer> one_process_trainer(const Config& cfg, const std::function<void(const std::string&)>& log) {
  TrainerOptions options;
  options.values_loaded = true;
  return std::make_unique<Trainer>(cfg, log, std::move(options));
}

// Keys a resumed run cannot change, and why; an evaluation (`evaluate`)
// changes none of the model's keys and may change any other.
const char* refusal(const std::string& key, bool evaluate) {
  if (evaluate && key.rfind("model.", 0) != 0) return nullptr;
  static const std::map<std::string, const char*> fixed = {
      {"model.type", "the checkpoint holds this model's parameters"},
      {"train.seed", "init, dropout and the sample order of the run so far follow the seed"},
      {"train.global_batch", "the data position is step x global batch"},
      {"train.seq_len", "the data position counts sequences of this length"},
      {"optim.name", "the checkpoint holds this optimizer's state"},
      {"data.shuffle", "it would change the order of the samples still to come"},
  };
  if (auto it = fixed.find(key); it != fixed.end()) return it->second;
  // Dropout is a rate, not a parameter: it may change (as for fine-tuning);
  // so may the ids the loss predicts (no parameter's shape depends on them).
  if (key == "model.dropout" || key == "model.vocab_used") return nullptr;
  if (key == "model.init_from")
    return evaluate ? "an evaluation reads the checkpoint's weights"
                    : "the run started from those weights; a resume continues from the checkpoint's";
  if (key.rfind("model.", 0) == 0) return "the checkpoint holds the parameters of this model (its shapes and layers)";
  return nullptr;
}

std::string key_of(const std::string& override_text) {
  return override_text.substr(0, override_text.find('='));
}

// The whole number the last --set of `key` gives it, if one does and it reads
// as one (anything else is left to the config's own parsing to report).
std::optional<int64_t> given_int(const std::vector<std::string>& overrides, const std::string& key) {
  std::optional<int64_t> v;
  for (const std::string& o : overrides) {
    if (key_of(o) != key) continue;
    const std::string text = o.substr(o.find('=') + 1);
    int64_t x = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), x);
    v = ec == std::errc() && end == text.data() + text.size() ? std::optional<int64_t>(x) : std::nullopt;
  }
  return v;
}

fs::path normal_dir(const fs::path& p) {
  fs::path d = p.lexically_normal();
  if (d.filename().empty() && d.has_parent_path()) d = d.parent_path();
  std::error_code ec;
  const fs::path c = fs::weakly_canonical(d, ec);
  return ec ? d : c;
}

// The directory of checkpoints a candidate lies in: the one holding an
// exactly named step_N, else the directory searched.
fs::path lies_in(const std::string& dir, const Candidates& c) {
  return c.exact ? normal_dir(dir).parent_path() : normal_dir(c.root);
}

bool contains(const fs::path& outer, const fs::path& inner) {
  return std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end()).first == outer.end();
}

// See resume.h: a checkpoint's output paths are followed only where it lies.
// The run directory's config.toml (what the run wrote there) names `ck` as
// its checkpoint directory: the run directory is this checkpoint's own.
bool run_dir_names(const fs::path& out, const fs::path& ck) {
  std::error_code ec;
  const fs::path file = out / "config.toml";
  if (!fs::is_regular_file(file, ec)) return false;
  try {
    // Not one dtrain wrote: nothing of it is trusted to the parser unchecked.
    const std::optional<config::TomlDoc> doc =
        config::try_parse_toml(config::read_toml_file(file.string(), "config"), file.string());
    if (!doc) return false;
    const std::string named = toml::find<std::string>(*doc, "checkpoint", "dir");
    return normal_dir(fs::path(named)) == ck;
  } catch (const std::exception&) {
    return false;
  }
}

void check_output_paths(const std::string& dir, const Candidates& c, const ResumeRequest& req, const Config& cfg) {
  if (!req.out_dir.empty()) return;
  for (const auto& o : req.overrides)
    if (key_of(o) == "log.out_dir" || key_of(o) == "checkpoint.dir") return;
  const fs::path where = lies_in(dir, c);
  const fs::path ck = normal_dir(cfg.checkpoint.dir), out = normal_dir(cfg.log.out_dir);
  // The checkpoint lies where its config says, and the run directory is its
  // own: it holds the checkpoint directory, or (a checkpoint.dir set outside
  // it) its config.toml names that directory.
  if (ck == where && (contains(out, ck) || run_dir_names(out, ck))) return;
  if (ck == where)  // in place, but the run directory does not say the checkpoints are its own
    throw ConfigError(fmt::format(
        "checkpoint {}: its config writes the run's files to '{}', which neither holds its checkpoint directory '{}' "
        "nor names it in a config.toml of its own: give --out DIR (with --set checkpoint.dir={} to keep the "
        "checkpoints there)",
        dir, cfg.log.out_dir, cfg.checkpoint.dir, cfg.checkpoint.dir));
  throw ConfigError(fmt::format(
      "checkpoint {}: its config writes checkpoints to '{}' and the run's files to '{}', but the checkpoint lies in "
      "'{}' (moved or copied?); dtrain continues a run where its checkpoint lies or where --out says, not where a "
      "copy's config points: give --out DIR",
      dir, cfg.checkpoint.dir, cfg.log.out_dir, where.string()));
}

// Where the resumed run will save (cfg.checkpoint.dir) must not hold what
// its saves would replace or prune: checkpoints of another run (a --out
// pointed at another run's directory), or, when an older checkpoint of this
// run was named exactly, newer ones of it (continuing in place would replace
// them). A damaged newer one passed over in a fall-back is fair to replace.
// Returns whether the run continues in another run directory than the
// checkpoint's own (RUN for RUN/checkpoints/step_N; the directory holding
// step_N otherwise), whose earlier record is then not this run's.
bool check_target(const std::string& dir, const Candidates& c, const CheckpointMeta& meta, const ResumeConfig& rc) {
  const Config& cfg = rc.cfg;
  const fs::path target = normal_dir(cfg.checkpoint.dir);
  const fs::path own = lies_in(dir, c);
  // The run directory of the checkpoint: the one its config names when the
  // checkpoint lies where that config says (a checkpoint.dir outside the run
  // directory included), else the one holding checkpoints/ (or the directory
  // of checkpoints itself).
  const fs::path own_run = normal_dir(rc.own_checkpoint_dir) == own && run_dir_names(normal_dir(rc.own_out_dir), own)
                               ? normal_dir(rc.own_out_dir)
                           : own.filename() == "checkpoints" ? own.parent_path()
                                                             : own;
  const bool elsewhere = normal_dir(cfg.log.out_dir) != own_run;
  std::error_code ec;
  if (!fs::is_directory(cfg.checkpoint.dir, ec)) return elsewhere;
  const std::vector<store::Entry> there = store::list_complete(cfg.checkpoint.dir);
  if (there.empty()) return elsewhere;
  const std::string run = store::read_run(cfg.checkpoint.dir);
  const bool other_run = target != own && (run.empty() || meta.run_id.empty() || run != meta.run_id);
  const bool same_run_elsewhere = target != own && !other_run;
  if (other_run)
    throw ConfigError(fmt::format(
        "checkpoint.dir: '{}' holds {} checkpoint{} of {} (newest {}), not of the run being resumed ({}), which "
        "its saves would replace or prune: give this run another --out (or checkpoint.dir)",
        cfg.checkpoint.dir, there.size(), there.size() == 1 ? "" : "s",
        run.empty() ? "an earlier run" : "run " + run, there.front().dir.filename().string(),
        meta.run_id.empty() ? "run id unknown" : "run " + meta.run_id));
  if ((c.exact || same_run_elsewhere) && there.front().step > meta.step)
    throw ConfigError(fmt::format(
        "checkpoint.dir: '{}' holds {}, newer than step {} being resumed, which continuing there would replace: "
        "give --out DIR to branch into another directory (or remove the newer checkpoints)",
        cfg.checkpoint.dir, there.front().dir.filename().string(), meta.step));
  // A newer checkpoint passed over in a fall-back because another run wrote
  // it (copied in) is that run's intact work, not fair to replace.
  if (!meta.run_id.empty())
    for (const store::Entry& e : there) {
      if (e.step <= meta.step) break;  // newest first
      std::optional<ckpt_manifest::Manifest> m;
      try {
        m = ckpt_manifest::read(e.dir.string());
      } catch (const CheckpointError&) {  // damaged: fair to replace
      }
      if (m && !m->run.empty() && m->run != meta.run_id)
        throw ConfigError(fmt::format(
            "checkpoint.dir: '{}' holds {} of run {}, another run's, newer than step {} being resumed, which "
            "continuing there would replace: give --out DIR to branch into another directory (or move it away)",
            cfg.checkpoint.dir, e.dir.filename().string(), m->run, meta.step));
    }
  // This run's own checkpoints there (a copy continued in the original's
  // directory): its record there is this run's, continued, not set aside.
  return elsewhere && !same_run_elsewhere;
}

// `dtrain eval`'s key for a checkpoint of config `cfg`: the public key its
// config names (checkpoint.verify_key_file, else the public half of
// sign_key_file: PREFIX.pub beside PREFIX.key where dtrain keygen left it,
// else read from the secret key), null when it names none. An evaluation
// only verifies: where the file it needs is missing, the way on is
// --verify-key with the public key.
std::shared_ptr<const ckpt_sign::PublicKey> evaluation_key(const Config& cfg) {
  const CheckpointConfig& c = cfg.checkpoint;
  const char* const hint =
      ": an evaluation only verifies the run's signatures: give the public key with --verify-key PREFIX.pub";
  auto with_hint = [&](const ConfigError& e) {
    std::vector<std::string> problems = e.problems();
    for (std::string& p : problems)  // (keygen's hint is for a run that signs)
      p = p.substr(0, p.find(" (create a key pair")) + hint;
    return ConfigError(problems);
  };
  try {
    if (!c.verify_key_file.empty())
      return std::make_shared<const ckpt_sign::PublicKey>(
          ckpt_sign::read_public_key(c.verify_key_file, "checkpoint.verify_key_file"));
    if (c.sign_key_file.empty()) return nullptr;
    const fs::path secret(c.sign_key_file);
    std::error_code ec;
    if (const fs::path pub = fs::path(secret).replace_extension(".pub");
        secret.extension() == ".key" && fs::is_regular_file(pub, ec))
      return std::make_shared<const ckpt_sign::PublicKey>(
          ckpt_sign::read_public_key(pub.string(), "checkpoint.sign_key_file's public key"));
    return checkpoint_keys(cfg).verify;
  } catch (const ConfigError& e) {
    throw with_hint(e);
  } catch (const InputError& e) {
    throw with_hint(ConfigError(e.what()));
  }
}

// Rank 0's strings on every rank of `world` (collective).
std::vector<std::string> from_rank0(Communicator& world, const std::vector<std::string>& mine) {
  if (world.size() == 1) return mine;
  std::string packed;
  if (world.rank() == 0)
    for (const std::string& s : mine) packed += s + '\0';
  Tensor n = Tensor::zeros(Shape{1}, DType::i32);
  n.data<int32_t>()[0] = static_cast<int32_t>(packed.size());
  world.broadcast(n, 0)->wait();
  const auto bytes = static_cast<size_t>(n.data<int32_t>()[0]);
  Tensor t = Tensor::zeros(Shape{static_cast<int64_t>(bytes / 4 + 1)}, DType::i32);
  if (world.rank() == 0) std::memcpy(t.raw(), packed.data(), bytes);
  world.broadcast(t, 0)->wait();
  packed.assign(static_cast<const char*>(t.raw()), bytes);
  std::vector<std::string> out;
  for (size_t at = 0; at < packed.size();) {
    const size_t end = packed.find('\0', at);
    out.push_back(packed.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

}  // namespace

Candidates agreed_checkpoints(const std::string& path, Communicator& world) {
  std::optional<Candidates> c;
  std::exception_ptr failed;
  try {
    c = find_checkpoints(path);
  } catch (...) {
    failed = std::current_exception();
  }
  Tensor flag = Tensor::zeros(Shape{1}, DType::f32);
  flag.data<float>()[0] = failed ? 1.0f : 0.0f;
  all_reduce(world, flag, ReduceOp::max);
  if (failed) std::rethrow_exception(failed);
  if (flag.data<float>()[0] != 0) throw InputError(fmt::format("'{}': another rank found no checkpoint to read", path));
  // A checkpoint saved or pruned between two ranks' listings of one
  // directory (a run still going) must not give them different models: rank
  // 0's list is the list. A rank given another path, or a checkpoint named
  // exactly, keeps its own (what it was asked for; the checks that follow
  // refuse what does not fit).
  const std::string rank0_path = from_rank0(world, {path}).at(0);
  std::vector<std::string> dirs = from_rank0(world, c->dirs), runs = from_rank0(world, c->runs);
  const std::string run = from_rank0(world, {c->run}).at(0);
  if (!c->exact && path == rank0_path) {
    c->dirs = std::move(dirs);
    c->runs = std::move(runs);
    c->run = run;
  }
  return *c;
}

std::shared_ptr<const ckpt_sign::PublicKey> evaluation_key_of(const std::string& dir,
                                                              const std::vector<std::string>& overrides) {
  const CheckpointMeta meta = read_meta(dir);
  const std::string name = (fs::path(dir) / store::kMasterFile).string() + " [config]";
  std::vector<std::string> keys;  // the --set of its key files: the others are not this checkpoint's business
  for (const std::string& o : overrides)
    if (key_of(o) == "checkpoint.verify_key_file" || key_of(o) == "checkpoint.sign_key_file") keys.push_back(o);
  try {
    return evaluation_key(parse_config(meta.config, name, keys, meta.layout.world()));
  } catch (const ConfigError& e) {
    std::vector<std::string> problems = e.problems();
    for (std::string& p : problems) p = fmt::format("checkpoint {}: {}", dir, p);
    throw ConfigError(problems);
  }
}

ResumeConfig resume_config(const CheckpointMeta& meta, const std::string& checkpoint_dir,
                           const std::vector<std::string>& overrides, const std::string& out_dir,
                           int world_size, const AutoLayout& auto_layout, bool evaluate,
                           const std::string& eval_data) {
  const char* const when = evaluate ? "evaluating" : "resuming";
  const std::string name = (fs::path(checkpoint_dir) / store::kMasterFile).string() + " [config]";
  // A checkpoint written before model.vocab_used: its loss covered the whole
  // table, and keeps doing so (the derivation would change it mid-run, and an
  // evaluation would no longer give the loss it logged).
  std::vector<std::string> pin;
  if (static const std::regex has_key(R"((^|\n)[ \t]*vocab_used[ \t]*=)"); !std::regex_search(meta.config, has_key)) {
    const Config as_written = parse_config(meta.config, name, {}, meta.layout.world());
    if (as_written.model.token_model()) pin.push_back(fmt::format("model.vocab_used={}", as_written.model.vocab_size));
  }
  const Config base = parse_config(meta.config, name, pin, meta.layout.world());
  std::set<std::string> given;
  for (const auto& o : overrides) given.insert(key_of(o));
  std::vector<std::string> eff = pin;
  if (!out_dir.empty()) {
    if (!given.count("log.out_dir")) eff.push_back("log.out_dir=" + config::toml_string(out_dir));
    if (!given.count("checkpoint.dir"))
      eff.push_back("checkpoint.dir=" + config::toml_string((fs::path(out_dir) / "checkpoints").string()));
  }
  const bool layout_given = given.count("parallel.dp") || given.count("parallel.tp") || given.count("parallel.pp");
  bool dp_changes = given.count("parallel.dp") > 0;
  const bool one_process = !layout_given && world_size == 1 && meta.layout.world() > 1;
  if (one_process) {
    // One process continues any layout's checkpoint without being told so.
    for (const char* k : {"parallel.dp=1", "parallel.tp=1", "parallel.pp=1"}) eff.push_back(k);
    dp_changes = base.parallel.dp != 1;
  }
  // What only a pipeline or tensor parallelism can run is dropped when the
  // layout resumed on has none (unless given): the checkpoint holds no trace
  // of either.
  const int64_t tp = one_process ? 1 : given_int(overrides, "parallel.tp").value_or(base.parallel.tp);
  const int64_t pp = one_process ? 1 : given_int(overrides, "parallel.pp").value_or(base.parallel.pp);
  if (pp == 1 && base.parallel.schedule == "interleaved" && !given.count("parallel.schedule") &&
      !given.count("parallel.virtual_stages"))
    for (const char* k : {"parallel.schedule=1f1b", "parallel.virtual_stages=1"}) eff.push_back(k);
  if (tp == 1 && base.parallel.sequence_parallel && !given.count("parallel.sequence_parallel"))
    eff.push_back("parallel.sequence_parallel=false");
  // The global batch stays (the data position is step x global batch): where
  // dp or the micro-batch changes and the micro-batch count is not given, the
  // count is derived again from them.
  if (evaluate && !given.count("train.global_batch") && !given.count("train.grad_accum")) {
    // An evaluation runs no step: any micro-batch on any layout, the global
    // batch following from it (and the micro-batch count, which a schedule
    // may constrain, kept).
    eff.push_back(fmt::format("train.grad_accum={}", base.train.grad_accum));
    eff.push_back("train.global_batch=0");
  } else if ((dp_changes || given.count("train.micro_batch")) && !given.count("train.grad_accum")) {
    eff.push_back("train.grad_accum=0");
  }
  eff.insert(eff.end(), overrides.begin(), overrides.end());
  if (evaluate) {
    // The validation data (--data's in place of a GPT's data.val) is what the
    // training keys name too, so that neither a training set left behind nor
    // one per replica (local sync on another dp) stands in the way. The
    // literal a --set gave is repeated as it was written.
    auto value = [&](const std::string& key, const std::string& fallback) {
      std::string v = config::toml_string(fallback);
      for (const auto& o : overrides)
        if (key_of(o) == key) v = o.substr(o.find('=') + 1);
      return v;
    };
    if (base.model.type == "gpt") {
      const std::string val = eval_data.empty() ? value("data.val", base.data.val) : config::toml_string(eval_data);
      eff.push_back("data.val=" + val);
      eff.push_back("data.train=" + val);
    } else if (!eval_data.empty()) {
      throw ConfigError(fmt::format("--data: the checkpoint holds a {} model, which reads images and labels (IDX "
                                    "files): give them with --set data.val_images=FILE --set data.val_labels=FILE",
                                    base.model.type));
    } else {
      eff.push_back("data.train_images=" + value("data.val_images", base.data.val_images));
      eff.push_back("data.train_labels=" + value("data.val_labels", base.data.val_labels));
    }
  }
  // A layout the checkpoint's planner chose, on another number of ranks: what
  // it chose is chosen again for these (the keys the config fixed stay).
  std::string text = meta.config;
  const bool replan = !layout_given && world_size > 1 && world_size != meta.layout.world() &&
                      base.parallel.mode == "auto" && !base.parallel.planned.empty() && auto_layout;
  if (replan) {
    std::vector<std::string> omit = planned_keys(base.parallel.planned);
    omit.push_back("parallel.planned");
    for (const std::string& o : overrides) std::erase(omit, key_of(o));  // given: fixed
    text = to_toml(base, omit);
  }

  ResumeConfig rc;
  rc.own_out_dir = base.log.out_dir;
  rc.own_checkpoint_dir = base.checkpoint.dir;
  try {
    rc.cfg = parse_config(text, name, eff, world_size, auto_layout);
  } catch (const ConfigError& e) {
    // A --set of a key a resume cannot change (model.type = "cnn" on a GPT's
    // checkpoint) makes the checkpoint's own lines invalid: said as what it
    // is, one line, not as the problems of the config it would make.
    std::vector<std::string> refused;
    for (const auto& o : overrides) {
      const std::string key = key_of(o);
      const char* why = refusal(key, evaluate);
      const size_t dot = key.find('.');
      const config::KeySpec* spec = dot == std::string::npos ? nullptr : config::find_key(key.substr(0, dot), key.substr(dot + 1));
      if (!why || !spec) continue;
      bool changes = true;
      try {
        std::vector<std::string> with = pin;
        with.push_back(o);
        const Config alone = parse_config(meta.config, name, with, meta.layout.world());
        changes = config::get(*spec, alone) != config::get(*spec, base);
      } catch (const ConfigError&) {  // a value the checkpoint's config cannot hold with it: a change
      }
      if (changes) refused.push_back(fmt::format("--set {}: {} cannot change when {}: {}", o, key, when, why));
    }
    if (!refused.empty()) throw ConfigError(refused);
    std::vector<std::string> problems = e.problems();
    // A layout that does not make the ranks launched: one line saying which
    // degrees came from where and what to give, in place of the config's own,
    // and first (the batch problems of a layout that cannot run follow from it).
    const int64_t dp = one_process ? 1 : given_int(overrides, "parallel.dp").value_or(base.parallel.dp);
    if (!replan && dp * tp * pp != world_size && !(base.parallel.mode == "auto" && auto_layout)) {
      std::erase_if(problems, [](const std::string& p) { return p.find("ranks were launched") != std::string::npos; });
      auto ranks = [](int64_t n) { return fmt::format("{} rank{}", n, n == 1 ? "" : "s"); };
      const std::string launched = fmt::format("{} {} launched", world_size, world_size == 1 ? "was" : "were");
      if (!layout_given)
        problems.insert(problems.begin(), fmt::format(
            "{}: the checkpoint was written on {} ({}) and {}: choose the layout "
            "with --set parallel.dp=D --set parallel.tp=T --set parallel.pp=P (D x T x P = {})",
            name, meta.layout.str(), ranks(meta.layout.world()), launched, world_size));
      else
        problems.insert(problems.begin(), fmt::format(
            "the layout dp={} tp={} pp={} (the degrees not given with --set are the checkpoint's, written on {}) "
            "makes {} and {}: give all three (D x T x P = {})",
            dp, tp, pp, meta.layout.str(), ranks(dp * tp * pp), launched, world_size));
    }
    throw ConfigError(problems);
  }
  std::vector<std::string> problems;
  for (const config::KeySpec& spec : config::schema()) {
    if (!config::applies_to(spec.applies, base.model.type)) continue;
    const config::Value before = config::get(spec, base), after = config::get(spec, rc.cfg);
    if (before == after) continue;
    const std::string key = spec.name();
    // An evaluation's global batch follows its micro-batch and layout, and its
    // training keys name the validation data (above): said only where given.
    if (evaluate && !given.count(key) &&
        (key == "train.global_batch" || key == "train.grad_accum" || key == "data.train" ||
         key == "data.train_images" || key == "data.train_labels"))
      continue;
    const std::string change = fmt::format("{}: {} -> {}", key, config::toml_literal(before),
                                           config::toml_literal(after));
    if (const char* why = refusal(key, evaluate)) {
      std::string where = key;
      for (const auto& o : overrides)
        if (key_of(o) == key) where = "--set " + o;
      problems.push_back(fmt::format("{}: {} cannot change when {} ({}): {}", where, key, when,
                                     change.substr(key.size() + 2), why));
    } else if (key == "train.micro_batch" && !evaluate && rc.cfg.train.eval_batches > 0 &&
               rc.cfg.train.eval_every > 0) {
      // Evaluation reads eval_batches micro-batches: another size, other samples.
      rc.changes.push_back(fmt::format("{} (evaluation reads train.eval_batches x train.micro_batch = {} validation "
                                       "samples from here, {} before: eval_loss before and after this step averages "
                                       "different samples)",
                                       change, rc.cfg.train.eval_batches * rc.cfg.train.micro_batch,
                                       base.train.eval_batches * base.train.micro_batch));
    } else if (key == "train.steps" && !evaluate && rc.cfg.optim.schedule != "constant" &&
               rc.cfg.optim.decay_steps == base.optim.decay_steps && rc.cfg.optim.decay_steps < rc.cfg.train.steps) {
      // The schedule keeps the original run's end: said, with how to stretch it.
      rc.changes.push_back(fmt::format("{} (optim.decay_steps stays {}: the learning rate reaches optim.min_lr "
                                       "there and stays; --set optim.decay_steps={} stretches the schedule{})",
                                       change, rc.cfg.optim.decay_steps, rc.cfg.train.steps,
                                       rc.cfg.optim.decay_start > 0
                                           ? fmt::format(", and a later optim.decay_start (now {}) keeps its "
                                                         "cooldown as long",
                                                         rc.cfg.optim.decay_start)
                                           : std::string()));
    } else if (key == "train.steps" && !evaluate && rc.cfg.optim.schedule != "constant" &&
               rc.cfg.optim.decay_steps == base.optim.decay_steps && rc.cfg.optim.decay_steps > rc.cfg.train.steps) {
      // Fewer steps: the schedule keeps the original run's end too, so the
      // run stops before its decay does. Said, with how to end it there.
      rc.changes.push_back(fmt::format("{} (optim.decay_steps stays {}: the run ends before the learning rate has "
                                       "decayed to optim.min_lr; --set optim.decay_steps={} ends the decay with the "
                                       "run{})",
                                       change, rc.cfg.optim.decay_steps, rc.cfg.train.steps,
                                       rc.cfg.optim.decay_start > 0
                                           ? fmt::format(", and an earlier optim.decay_start (now {}) its cooldown",
                                                         rc.cfg.optim.decay_start)
                                           : std::string()));
    } else {
      rc.changes.push_back(change);
    }
  }
  if (!problems.empty()) throw ConfigError(problems);
  return rc;
}

// Cuts the metrics back to `step`; whether an evaluation at `step` remains
// (true where there are no metrics to complete: another --out).
bool trim_metrics(const std::string& path, int64_t step) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return true;  // absent (or not a file, which the metrics writer reports)
  std::ifstream in(path);
  if (!in) return true;
  std::string kept, line;
  bool dropped = false, evaluated = false;
  while (std::getline(in, line)) {
    // A line that is not JSON (a killed run's half-written last line) goes
    // too: nothing could read it.
    const nlohmann::json r = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool has_step = !r.is_discarded() && r.is_object() && r.contains("step") && r["step"].is_number_integer();
    if (r.is_discarded() || (has_step && r["step"].get<int64_t>() > step)) {
      dropped = true;
      continue;
    }
    evaluated |= has_step && r["step"].get<int64_t>() == step && r.contains("eval_loss");
    kept += line + "\n";
  }
  in.close();
  if (dropped) store::write_file_atomic(path, kept, {});
  return evaluated;
}

Resumed resume(const ResumeRequest& req, Communicator& world) {
  const Candidates c = agreed_checkpoints(req.path, world);
  auto log = [&](const std::string& s) {
    if (req.log) req.log(s);
  };
  // A key from outside the checkpoint: checked before anything of it is read.
  std::shared_ptr<const ckpt_sign::PublicKey> outside_key;
  if (!req.verify_key_file.empty())
    outside_key = std::make_shared<const ckpt_sign::PublicKey>(
        ckpt_sign::read_public_key(req.verify_key_file, "--verify-key"));
  std::vector<std::string> failures;
  if (req.warn && world.rank() == 0)
    for (const std::string& s : c.skipped) req.warn(s);
  for (size_t i = 0; i < c.dirs.size(); ++i) {
    const std::string& dir = c.dirs[i];
    Resumed r;
    std::optional<CheckpointError> damage;
    bool refused = false;  // a signature failed: stop here, no fall-back
    try {
      if (!c.exact && !c.run.empty() && !c.runs[i].empty() && c.runs[i] != c.run)
        throw CheckpointError(dir, ckpt_manifest::kFile, "",
                              fmt::format("belongs to another run (run {}; the run of {} is {}, {}): not "
                                          "{} unless named exactly (dtrain {} {})",
                                          c.runs[i], c.root, c.run, c.run_source,
                                          req.evaluate_only ? "evaluated" : "continued",
                                          req.evaluate_only ? "eval" : "resume", dir));
      r.meta = read_meta(dir, outside_key.get());
      // What this rank alone may refuse (its --set, its directories): agreed
      // on before any rank builds a trainer, so that none waits for one that left.
      std::optional<ResumeConfig> resumed;
      std::shared_ptr<const ckpt_sign::PublicKey> key = outside_key;
      bool elsewhere = false;
      const auto checks = [&] {
        resumed.emplace(resume_config(r.meta, dir, req.overrides, req.out_dir, req.world_size, req.auto_layout,
                                      req.evaluate_only, req.eval_data));
        if (req.evaluate_only) {
          if (!key) key = evaluation_key(resumed->cfg);
          // Nothing is signed: the trainer's checks need neither key file.
          resumed->cfg.checkpoint.sign_key_file.clear();
          resumed->cfg.checkpoint.verify_key_file.clear();
          return std::string();
        }
        if (!key) key = checkpoint_keys(resumed->cfg).verify;  // ConfigError for a bad key file: not damage, no fall-back
        check_output_paths(dir, c, req, resumed->cfg);
        elsewhere = check_target(dir, c, r.meta, *resumed);
        return std::string();
      };
      if (req.agree) req.agree(checks);
      else checks();
      const ResumeConfig& rc = *resumed;
      if (key)
        log(fmt::format("checking the signature of {} with key {} ('{}'{})", dir, key->id(), key->path,
                        outside_key ? ", --verify-key" : ", named by the checkpoint's config"));
      r.trainer = req.make_trainer ? req.make_trainer(rc.cfg, elsewhere) : one_process_trainer(rc.cfg, req.log);
      const auto t0 = std::chrono::steady_clock::now();
      restore_trainer(*r.trainer, dir, key.get(), /*optimizer_state=*/!req.evaluate_only);
      r.key = key;
      r.candidates = c;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      r.dir = dir;
      log(fmt::format("{} {}: step {} of {}, {} {} seen; written by dtrain {} on {}; "
                      "loaded in {:.2f} s",
                      req.evaluate_only ? "evaluating" : "resuming from", dir, r.meta.step, rc.cfg.train.steps,
                      r.meta.items_seen,
                      r.meta.model_type == "cnn" ? "images" : "tokens", r.meta.program_version,
                      r.meta.layout.str(), secs));
      for (const auto& ch : rc.changes) log("override " + ch);
      // Another build's kernels may round differently: the run goes on, but
      // not bit for bit with an uninterrupted run (of either build).
      if (r.meta.program_version != program_version())
        log(fmt::format("note: the checkpoint was written by dtrain {}, this is dtrain {}: the losses from here "
                        "equal an uninterrupted run's only to rounding (bit for bit on the same build)",
                        r.meta.program_version, program_version()));
    } catch (const CheckpointSignatureError& e) {
      damage = e;
      refused = true;
    } catch (const CheckpointError& e) {
      damage = e;
    }
    // Every rank must have loaded its part of this checkpoint (1: damage, 2: a signature failed).
    Tensor flag = Tensor::zeros(Shape{1}, DType::f32);
    flag.data<float>()[0] = refused ? 2.0f : damage ? 1.0f : 0.0f;
    all_reduce(world, flag, ReduceOp::max);
    if (flag.data<float>()[0] == 0) {
      if (req.evaluate_only) return r;
      // Every rank learns whether the checkpoint's step was evaluated (an evaluation is collective).
      Tensor logged = Tensor::zeros(Shape{1}, DType::f32);
      if (world.rank() == 0)
        logged.data<float>()[0] =
            trim_metrics((fs::path(r.trainer->config().log.out_dir) / "metrics.jsonl").string(), r.meta.step) ? 1.0f
                                                                                                                : 0.0f;
      all_reduce(world, logged, ReduceOp::max);
      r.eval_logged = logged.data<float>()[0] > 0;
      // Another corpus under the same keys (shards added or replaced): allowed,
      // as another data.train is, but said, since the batches still to come differ.
      if (const std::string now = r.trainer->train_data();
          world.rank() == 0 && req.warn && !r.meta.data.empty() && !now.empty() && now != r.meta.data)
        req.warn(fmt::format("data.train holds {} now; the run that wrote {} read {}: the batches from step {} on "
                             "follow the data as it is now",
                             now, dir, r.meta.data, r.meta.step));
      return r;
    }
    const bool local = damage.has_value();
    if (flag.data<float>()[0] == 2) {
      if (!refused) throw CheckpointSignatureError(dir, "", "", "another rank found a signature that does not verify");
      if (c.exact)
        throw CheckpointSignatureError(damage->checkpoint(), damage->file(), damage->tensor(), damage->problem());
      throw CheckpointSignatureError(
          damage->checkpoint(), damage->file(), damage->tensor(),
          fmt::format("{}; not falling back to an older checkpoint: one that fails its signature was changed by "
                      "someone without the key, which needs looking into (an older one still {} when named "
                      "exactly: dtrain {} DIR/step_N)",
                      damage->problem(), req.evaluate_only ? "evaluates" : "resumes",
                      req.evaluate_only ? "eval" : "resume"));
    }
    if (!damage) damage = CheckpointError(dir, "", "", "another rank could not load its part");
    if (c.exact) {
      // Rank 0's error is what the app reports; another rank's own finding is said here.
      if (local && world.rank() != 0 && req.warn) req.warn(damage->what());
      throw *damage;
    }
    // A checkpoint gone while being read is not damage: another process
    // (a run still going, pruning to checkpoint.keep) removed it.
    if (std::error_code gone_ec; !fs::exists(dir, gone_ec) && !gone_ec)
      damage = CheckpointError(dir, "", "",
                               fmt::format("removed while being read: another process prunes this directory (a run "
                                           "still going, with checkpoint.keep?); {} again, or from a copy",
                                           req.evaluate_only ? "evaluate" : "resume"));
    failures.push_back(fmt::format("{}: {}{}{}", fs::path(dir).filename().string(),
                                   damage->file().empty() ? "" : damage->file() + ": ",
                                   damage->tensor().empty() ? "" : "tensor " + damage->tensor() + ": ",
                                   damage->problem()));
    // The last one's damage is in the error below, with every other's: no warning of its own.
    if (i + 1 < c.dirs.size() && req.warn && (local || world.rank() == 0))
      req.warn(fmt::format("{}; falling back to {}", damage->what(), c.dirs[i + 1]));
  }
  throw CheckpointError(c.root, "", "", fmt::format("no loadable checkpoint: {}", fmt::join(failures, "; ")));
}

}  // namespace dtrain
