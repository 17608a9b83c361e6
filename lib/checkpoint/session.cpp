#include "checkpoint/session.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "checkpoint/hf.h"
#include "checkpoint/hf_internal.h"
#include "checkpoint/store.h"
#include "core/format_bytes.h"
#include "config/config.h"
#include "core/version.h"

namespace dtrain {

CheckpointKeys checkpoint_keys(const Config& cfg) {
  CheckpointKeys k;
  const CheckpointConfig& c = cfg.checkpoint;
  if (!c.sign_key_file.empty())
    k.sign = std::make_shared<const ckpt_sign::SecretKey>(ckpt_sign::read_secret_key(c.sign_key_file,
                                                                                     "checkpoint.sign_key_file"));
  if (!c.verify_key_file.empty())
    k.verify = std::make_shared<const ckpt_sign::PublicKey>(
        ckpt_sign::read_public_key(c.verify_key_file, "checkpoint.verify_key_file"));
  else if (k.sign)
    k.verify = std::make_shared<const ckpt_sign::PublicKey>(k.sign->public_key());
  return k;
}

unsigned dir_mode(const Config& cfg) {
  try {
    return static_cast<unsigned>(std::stoul(cfg.log.dir_mode, nullptr, 8)) & 07777;
  } catch (const std::exception&) {
    return 0700;
  }
}

CheckpointMeta trainer_meta(Trainer& trainer, int64_t step, const std::string& run_id) {
  const Config& cfg = trainer.config();
  CheckpointMeta m;
  m.program_version = program_version();
  m.model_type = cfg.model.type;
  m.optimizer = cfg.optim.name;
  m.step = step;
  m.optimizer_steps = trainer.optimizer().steps_done();
  m.samples_seen = step * cfg.train.global_batch;
  m.items_seen = step * trainer.items_per_step();
  m.seed = cfg.train.seed;
  m.config = to_toml(cfg);
  m.layout = trainer.groups().layout;
  m.run_id = run_id;
  m.zero = trainer.zero_stage();
  m.data = trainer.train_data();
  return m;
}

namespace {

// What this rank saves or loads of range `r` (Trainer::checkpoint_range): exactly that
// range of every parameter it meets, as slices (Piece::slice_begin), so that
// under ZeRO nothing is ever gathered and on a GPU the device holds no more
// while a checkpoint is written or read:
//   - the optimizer state: under ZeRO the optimizer's own tensors (the
//     range), else its range of the whole state;
//   - the masters: the shard where ZeRO shards them, else the range of the
//     whole ones (after a load the rest is gathered: Trainer::range_loaded);
//   - buffers whole, written by data-parallel rank 0.
// Which rank writes follows collect_pieces: a pipeline's second copy of a tied
// weight never, tensors tensor parallelism does not split on its rank 0 only.
std::vector<Piece> range_pieces(Trainer& t, const FlatRange& r, bool optimizer_state) {
  const Groups& g = t.groups();
  Model& model = t.model();
  const Tensor masters = t.master_shard();
  const bool first_tp = g.coord.tp == 0;
  const auto writes = [&](const Param& p) { return p.primary && (first_tp || p.shard.split()); };
  // `flat` holds flat elements [base, ...) of the parameters. A parameter
  // the range holds whole is a whole piece (stored and read as is).
  const auto slice = [&](const std::string& key, const Param& p, const Tensor& flat, int64_t base, int64_t lo,
                         int64_t hi) {
    Piece piece{key, flat.flat_range(lo - base, hi - lo), p.shard, writes(p)};
    if (hi - lo == p.numel())
      piece.local = piece.local.view(p.shape);
    else
      piece.slice_begin = lo - p.offset;
    return piece;
  };
  std::vector<Piece> out;
  const NamedTensors state = optimizer_state ? t.optimizer().state() : NamedTensors{};
  const FlatRange held = t.optimizer_range();  // what the optimizer's tensors cover
  for (const auto& [name, flat] : state)
    DTRAIN_CHECK(flat.numel() == held.end - held.begin && held.begin <= r.begin && r.end <= held.end,
                 "optimizer state {} covers {} elements from {}, not the range [{}, {})", name, flat.numel(),
                 held.begin, r.begin, r.end);
  // The masters of the range: the shard (of the optimizer's range), or the whole ones.
  const Tensor range_masters = masters.defined() ? masters : model.params.values();
  const int64_t masters_base = masters.defined() ? held.begin : 0;
  DTRAIN_CHECK(!masters.defined() || masters.numel() == held.end - held.begin,
               "the master shard holds {} elements, the optimizer's range {}", masters.numel(),
               held.end - held.begin);
  for (const auto& p : model.params.all()) {
    const std::string key = "model/" + p->name;
    const int64_t lo = std::max(r.begin, p->offset), hi = std::min(r.end, p->offset + p->numel());
    if (!p->trainable)
      out.push_back({key, p->value, p->shard, writes(*p) && g.coord.dp == 0});
    else if (hi > lo)
      out.push_back(slice(key, *p, range_masters, masters_base, lo, hi));
  }
  for (const auto& [name, flat] : state)
    for (const auto& p : model.params.all()) {
      const int64_t lo = std::max(r.begin, p->offset), hi = std::min(r.end, p->offset + p->numel());
      if (p->trainable && hi > lo)
        out.push_back(slice("optim/" + name + "/" + p->name, *p, flat, held.begin, lo, hi));
    }
  return out;
}

// What this rank stores: its checkpoint_range's pieces. Under parallel.sync =
// "local" the replicas differ between syncs and each keeps its own inner optimizer state, so beside the
// usual keys (written by data-parallel rank 0) every replica d writes its own
// under replica/<d>/...:
//   model/<p>                  the replicas' agreed model: the last synced parameters
//   optim/<state>/<p>          replica 0's inner optimizer state
//   outer/momentum/<p>         the outer Nesterov momentum (outer_optim nesterov)
//   replica/<d>/model/<p>      replica d's parameters and buffers as they are now
//   replica/<d>/optim/<s>/<p>  replica d's inner optimizer state
// A resume on the same number of replicas restores every replica's own state
// (bit-identical, mid-period too); any other resume starts every replica from
// model/* and optim/* (see restore_local).
std::vector<Piece> trainer_pieces(Trainer& t) {
  LocalSync* ls = t.local_sync();
  if (!ls) return range_pieces(t, t.checkpoint_range(), /*optimizer_state=*/true);
  const Groups& g = t.groups();
  Model& model = t.model();
  const bool first_dp = g.coord.dp == 0, first_tp = g.coord.tp == 0;
  const NamedTensors state = t.optimizer().state();
  std::vector<Piece> out = collect_pieces(model, state, first_dp, first_tp);
  const auto& params = model.params.all();
  for (size_t i = 0; i < params.size(); ++i) {  // collect_pieces starts with the parameters, in order
    const Param& p = *params[i];
    DTRAIN_CHECK(out[i].key == "model/" + p.name, "checkpoint piece {} out of order", out[i].key);
    out[i].local = (p.trainable ? ls->anchor() : ls->anchor_buffers()).flat_range(p.offset, p.numel()).view(p.shape);
  }
  if (ls->momentum().defined())
    for (Piece& p : collect_pieces(model, NamedTensors{{"m", ls->momentum()}}, first_dp, first_tp))
      if (p.key.rfind("optim/m/", 0) == 0) {
        p.key = "outer/momentum/" + p.key.substr(8);
        out.push_back(std::move(p));
      }
  for (Piece& p : collect_pieces(model, state, true, first_tp)) {
    p.key = fmt::format("replica/{}/{}", g.coord.dp, p.key);
    out.push_back(std::move(p));
  }
  return out;
}

// Reads pieces (a GPU's through host copies).
void load_to(const std::string& dir, std::vector<Piece>& pieces, VerifyKey key = nullptr) {
  std::vector<std::pair<Tensor, Tensor>> uploads;  // (device tensor, its host copy)
  for (Piece& p : pieces)
    if (!p.local.device().is_cpu()) {
      uploads.emplace_back(p.local, Tensor::empty(p.local.shape(), p.local.dtype()));
      p.local = uploads.back().second;
    }
  load_pieces(dir, pieces, key);
  for (auto& [dev, host] : uploads) dev.copy_from(host);
}

// parallel.sync = "local", after model/* and optim/* were loaded: the anchor
// is model/*; with as many replicas as the checkpoint's writer had (and its
// replica/<d> keys), each replica's own parameters and inner state; the outer
// momentum when stored (else zero: a checkpoint of sync "step" or "average").
void restore_local(Trainer& t, const std::string& dir, const CheckpointMeta& m) {
  LocalSync& ls = *t.local_sync();
  const Groups& g = t.groups();
  Model& model = t.model();
  ls.reset_anchor();
  std::set<std::string> keys;
  for (const TensorInfo& info : list_tensors(dir)) keys.insert(info.key);
  const auto& params = model.params.all();
  if (params.empty()) return;
  const std::string mine = fmt::format("replica/{}/", g.coord.dp);
  std::vector<Piece> pieces;
  if (ls.momentum().defined() && keys.count("outer/momentum/" + params.front()->name))
    for (Piece& p : collect_pieces(model, NamedTensors{{"m", ls.momentum()}}))
      if (p.key.rfind("optim/m/", 0) == 0) {
        p.key = "outer/momentum/" + p.key.substr(8);
        pieces.push_back(std::move(p));
      }
  if (m.layout.dp == g.layout.dp && keys.count(mine + "model/" + params.front()->name))
    for (Piece& p : collect_pieces(model, t.optimizer())) {
      p.key = mine + p.key;
      pieces.push_back(std::move(p));
    }
  if (pieces.empty()) return;
  load_to(dir, pieces);
  model.params.sync_compute();
}
}  // namespace

SaveResult save_trainer(Trainer& trainer, int64_t step, const SaveOptions& opts_in, const std::string& run_id) {
  SaveOptions opts = opts_in;
  opts.dir_mode = dir_mode(trainer.config());
  const Groups& g = trainer.groups();
  std::vector<Piece> pieces = trainer_pieces(trainer);
  for (Piece& p : pieces)  // a GPU's tensors are written from host copies
    if (p.write && !p.local.device().is_cpu()) p.local = p.local.to_host();
  return save_checkpoint(trainer.config().checkpoint.dir, trainer_meta(trainer, step, run_id), pieces, *g.world,
                         opts);
}

CheckpointMeta restore_trainer(Trainer& trainer, const std::string& dir, VerifyKey key, bool optimizer_state) {
  // Nothing here communicates: every rank reads its own part, and a rank that
  // fails (damage, a checkpoint pruned as it is read) leaves no collective
  // half-joined; the caller agrees on the outcome.
  const CheckpointMeta m = read_meta(dir, key);
  const Config& cfg = trainer.config();
  std::vector<std::string> problems;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) problems.push_back(fmt::format("checkpoint {}: {}", dir, what));
  };
  expect(m.model_type == cfg.model.type,
         fmt::format("holds a {} model, the config describes a {}", m.model_type, cfg.model.type));
  if (optimizer_state) {  // what continuing the run needs; an evaluation reads the parameters alone
    expect(m.optimizer == cfg.optim.name,
           fmt::format("holds {} state, the config asks for {}", m.optimizer, cfg.optim.name));
    expect(m.seed == cfg.train.seed, fmt::format("was written with seed {}, the config has {}", m.seed,
                                                 cfg.train.seed));
    // The data position: step k reads global samples [k G, (k+1) G).
    expect(m.samples_seen == m.step * cfg.train.global_batch,
           fmt::format("has seen {} samples in {} steps, but train.global_batch is {}", m.samples_seen,
                       m.step, cfg.train.global_batch));
    expect(m.items_seen == m.step * trainer.items_per_step(),
           fmt::format("has seen {} items in {} steps, but a step is {} items", m.items_seen, m.step,
                       trainer.items_per_step()));
    expect(m.step <= cfg.train.steps,
           fmt::format("is at step {}, beyond train.steps = {} (raise it with --set train.steps=N)",
                       m.step, cfg.train.steps));
  }
  if (!problems.empty()) throw ConfigError(problems);

  // The parameters, and the optimizer state straight into the optimizer's
  // tensors: each rank its checkpoint range of them (range_pieces: under ZeRO
  // what it holds; under data parallelism its part, the rest gathered before
  // the next step; local sync's replicas everything).
  std::vector<Piece> pieces = range_pieces(trainer, trainer.checkpoint_range(), optimizer_state);
  load_to(dir, pieces, key);
  trainer.range_loaded(optimizer_state);
  if (optimizer_state) {
    trainer.optimizer().set_steps_done(m.optimizer_steps);
    if (trainer.local_sync()) restore_local(trainer, dir, m);
  } else if (trainer.local_sync()) {
    trainer.local_sync()->reset_anchor();  // every replica at the agreed model (model/*)
  }
  return m;
}

std::vector<std::string> init_trainer_from(Trainer& trainer, const std::string& tokenizer) {
  Model& model = trainer.model();
  const ModelConfig& cfg = trainer.config().model;
  Tensor shard = trainer.master_shard();
  if (!shard.defined()) return apply_init_from(model, cfg, tokenizer);
  const FlatRange r = trainer.optimizer_range();  // what the shard holds
  const ParamSink take_range = [&](Param& p, const std::vector<float>& full) {
    if (!p.trainable) return hf_detail::set_from_full(p, full);
    const int64_t lo = std::max(r.begin, p.offset), hi = std::min(r.end, p.offset + p.numel());
    if (lo >= hi) return;
    Tensor host = Tensor::empty(Shape{hi - lo}, DType::f32);
    float* dst = host.data<float>();
    for (int64_t i = lo - p.offset; i < hi - p.offset; ++i)  // this rank's shard of p, its range of that
      dst[i - (lo - p.offset)] = full[static_cast<size_t>(p.shard.split() ? p.shard.global_index(i) : i)];
    shard.flat_range(lo - r.begin, hi - lo).copy_from(host);
  };
  DTRAIN_CHECK(shard.dtype() == DType::f32, "model.init_from: the masters are {}, not fp32", dtype_name(shard.dtype()));
  std::vector<std::string> lines = apply_init_from(model, cfg, tokenizer, take_range);
  if (!lines.empty()) trainer.range_loaded(/*state=*/false);
  return lines;
}

CheckpointSession::CheckpointSession(Trainer& trainer, SessionOptions opts)
    : trainer_(trainer), opts_(std::move(opts)), last_save_time_(std::chrono::steady_clock::now()) {
  last_step_ = opts_.start_step > 0 ? opts_.start_step : -1;
  if (opts_.run_id.empty()) opts_.run_id = new_run_id(*trainer_.groups().world);
  sign_key_ = checkpoint_keys(trainer_.config()).sign;  // checked before training: a bad key is no late surprise
  if (trainer_.config().checkpoint.async) snapshot_pieces(false);  // allocates host_
}

std::vector<Piece> CheckpointSession::snapshot_pieces(bool copy) {
  std::vector<Piece> out;
  for (Piece& p : trainer_pieces(trainer_)) {
    if (!p.write) continue;
    const size_t i = out.size();
    if (i >= host_.size()) host_.push_back(Tensor{});
    if (!host_[i].defined() || host_[i].shape() != p.local.shape() || host_[i].dtype() != p.local.dtype())
      host_[i] = Tensor::zeros(p.local.shape(), p.local.dtype());  // zeroing touches every page
    if (copy) host_[i].copy_from(p.local);
    p.local = host_[i];
    out.push_back(std::move(p));
  }
  return out;
}

bool CheckpointSession::should_stop(int64_t done) {
  return agree_stop(true, [done] { return fmt::format("stopping after step {} with a checkpoint", done); });
}

bool CheckpointSession::stop_requested(int64_t done) {
  const bool first = done == opts_.start_step;  // the evaluation before the first step
  return agree_stop(false, [&] {
    return first && last_step_ < 0 ? std::string("the evaluation in progress is abandoned; stopping before step 1, "
                                                 "without a checkpoint (the run has done no step)")
                                   : fmt::format("the evaluation in progress is abandoned; stopping after step {}{}",
                                                 done, first ? "" : " with a checkpoint");
  });
}

bool CheckpointSession::agree_stop(bool clock, const std::function<std::string()>& where) {
  const double minutes = clock ? trainer_.config().checkpoint.every_minutes : 0.0;
  // Rank 0's clock decides the time-based checkpoint; everyone's signals the stop.
  const bool local_stop = opts_.signals && opts_.signals->poll();
  Communicator& world = *trainer_.groups().world;
  const bool local_due =
      world.rank() == 0 && minutes > 0 &&
      std::chrono::duration<double>(std::chrono::steady_clock::now() - last_save_time_).count() >=
          minutes * 60.0;
  // [0]: the lowest rank that took a stop signal, with that signal: (size - rank) * 256 + its
  // number (max picks it; exact in fp64); [1]: the time-based checkpoint is due.
  Tensor flags = Tensor::zeros(Shape{2}, DType::f64);
  const int sig = local_stop ? std::clamp(opts_.signals->received_number(), 1, 255) : 0;
  flags.data<double>()[0] = local_stop ? static_cast<double>(world.size() - world.rank()) * 256 + sig : 0.0;
  flags.data<double>()[1] = local_due ? 1.0 : 0.0;
  all_reduce(world, flags, ReduceOp::max);
  if (clock) time_due_ = flags.data<double>()[1] > 0;
  const double who = flags.data<double>()[0];
  const bool stop = who > 0;
  if (stop && stop_reason_.empty()) {
    const auto code = static_cast<int64_t>(who);
    const int64_t rank = world.size() - code / 256;
    stop_reason_ = local_stop ? opts_.signals->received()
                              : fmt::format("{} on rank {}", SignalWatch::name(static_cast<int>(code % 256)),
                                            world.world_rank(static_cast<int>(rank)));
    if (opts_.log)
      opts_.log(fmt::format("{} received: {}{}", stop_reason_, where(),
                            stop_reason_ == "SIGINT" ? " (Ctrl-C again stops at once, without one)" : ""));
  }
  return stop;
}

void CheckpointSession::after_step(int64_t done, bool stopping) {
  const Config& cfg = trainer_.config();
  const CheckpointConfig& c = cfg.checkpoint;
  const bool due = stopping || time_due_ || (c.every > 0 && done % c.every == 0) ||
                   (c.at_end && done == cfg.train.steps);
  if (!due || done == last_step_) return;
  finish();  // one checkpoint in flight at a time
  // The run ends here: its last checkpoint is complete before the process exits.
  if (c.async && !stopping && done < cfg.train.steps)
    save_async(done);
  else
    save_sync(done);
  last_save_time_ = std::chrono::steady_clock::now();
  time_due_ = false;
}

int64_t CheckpointSession::writing_step() const { return in_flight_ ? in_flight_->save.meta.step : -1; }

std::string CheckpointSession::newest_dir() const {
  if (!last_dir_.empty()) return last_dir_;
  if (!opts_.start_dir.empty()) return opts_.start_dir;
  if (last_step_ > 0)
    return (std::filesystem::path(trainer_.config().checkpoint.dir) / store::step_dir_name(last_step_)).string();
  return "";
}

std::string CheckpointSession::recovery(const std::string& aside) const {
  namespace fs = std::filesystem;
  const Config& cfg = trainer_.config();
  const std::string newest = newest_dir();
  if (newest.empty()) return "no checkpoint of this run was written before it" + aside;
  std::string command = cfg.checkpoint.dir;
  if (last_dir_.empty() && !opts_.start_dir.empty()) {
    // Nothing saved since the resume: the checkpoint resumed from, continued
    // where this run writes (another directory than its own: --out again).
    command = opts_.start_dir;
    const fs::path own = fs::path(opts_.start_dir).lexically_normal().parent_path();
    if (own != fs::path(cfg.checkpoint.dir).lexically_normal()) command += " --out " + cfg.log.out_dir;
  }
  return fmt::format("the newest checkpoint is {} (step {}){}; continue with: dtrain resume {}", newest, last_step_,
                     aside, command);
}

void CheckpointSession::save_sync(int64_t done) {
  const CheckpointConfig& c = trainer_.config().checkpoint;
  SaveOptions so;
  so.keep = c.keep;
  so.on_file_op = opts_.on_file_op;
  so.sign_key = sign_key_;
  SaveResult r;
  try {
    r = save_trainer(trainer_, done, so, opts_.run_id);
  } catch (const RuntimeError& e) {  // a full disk, another rank's failure: what is left to resume from
    throw RuntimeError(fmt::format("{}; {}", e.what(), recovery()));
  }
  last_dir_ = r.dir;
  last_step_ = done;
  if (opts_.log) {
    std::string msg = fmt::format("checkpoint step {} -> {} ({} in {:.2f} s)", done, r.dir,
                                  format_bytes(static_cast<double>(r.bytes)), r.seconds);
    if (!r.pruned.empty()) msg += fmt::format("; deleted {}", fmt::join(r.pruned, ", "));
    opts_.log(msg);
  }
}

void CheckpointSession::save_async(int64_t done) {
  const auto t0 = std::chrono::steady_clock::now();
  const Config& cfg = trainer_.config();
  const Groups& g = trainer_.groups();
  auto f = std::make_unique<InFlight>();
  // The stall: this rank's state copied to host memory (under ZeRO its range).
  f->snapshot = snapshot_pieces(true);
  SaveOptions so;
  so.keep = cfg.checkpoint.keep;
  so.on_file_op = opts_.on_file_op;
  so.sign_key = sign_key_;
  so.dir_mode = dir_mode(cfg);
  f->save = begin_save(cfg.checkpoint.dir, trainer_meta(trainer_, done, opts_.run_id), *g.world, so);
  f->stall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double timeout = cfg.parallel.timeout;
  InFlight* raw = f.get();
  const double stall = f->stall_seconds;
  // Owned by the session before the thread starts: whatever throws after,
  // finish() (or the destructor) joins it; an exception escaping the thread
  // would end the process.
  in_flight_ = std::move(f);
  in_flight_->thread = std::thread([raw, timeout] {
    const auto w0 = std::chrono::steady_clock::now();
    try {
      raw->error = write_pending_part(raw->save, raw->snapshot);
      if (raw->save.lead && raw->error.empty()) raw->result = publish_pending(raw->save, timeout);
    } catch (const std::exception& e) {
      if (raw->error.empty()) raw->error = e.what();
    }
    if (raw->save.lead && !raw->error.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(raw->save.tmp, ec);  // nothing of a failed save stays
    }
    raw->write_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  });
  if (opts_.log)
    opts_.log(fmt::format("checkpoint step {}: training stalled {:.3f} s (host copy); writing in the background",
                          done, stall));
}

void CheckpointSession::finish() {
  if (!in_flight_) return;
  std::unique_ptr<InFlight> f = std::move(in_flight_);
  f->thread.join();
  // Every rank learns whether the checkpoint was published: the lead's
  // outcome covers every part (it read every rank's marker).
  Tensor flag = Tensor::zeros(Shape{1}, DType::f32);
  flag.data<float>()[0] = f->error.empty() ? 0.0f : 1.0f;
  all_reduce(*trainer_.groups().world, flag, ReduceOp::max);
  const int64_t step = f->save.meta.step;
  if (flag.data<float>()[0] > 0) {
    const std::string newest = newest_dir().empty() ? "none" : newest_dir();
    const std::string why = f->error.empty() ? "another rank's part failed" : f->error;
    if (opts_.warn)
      opts_.warn(fmt::format("checkpoint step {} failed in the background: {}; the newest checkpoint is still {}",
                             step, why, newest));
    return;
  }
  last_dir_ = f->save.final_dir;
  last_step_ = step;
  if (opts_.log && f->save.lead) {
    const SaveResult& r = f->result;
    std::string msg = fmt::format("checkpoint step {} -> {} ({}; training stalled {:.3f} s, written in {:.2f} s "
                                  "in the background)",
                                  step, r.dir, format_bytes(static_cast<double>(r.bytes)), f->stall_seconds,
                                  f->write_seconds);
    if (!r.pruned.empty()) msg += fmt::format("; deleted {}", fmt::join(r.pruned, ", "));
    opts_.log(msg);
  }
}

CheckpointSession::~CheckpointSession() {
  // Only after an error: a normal run called finish(). The write goes on to
  // its end (no communication), so nothing is left half-written.
  if (in_flight_ && in_flight_->thread.joinable()) in_flight_->thread.join();
}

}  // namespace dtrain
