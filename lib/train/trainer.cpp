#include "train/trainer.h"

#include "core/device.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/file_kind.h"
#include "kernels/cpu/gemm.h"
#include "model/batchnorm.h"
#include "ops/ops.h"
#include "parallel/pipeline.h"

namespace dtrain {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  auto total = static_cast<int64_t>(s + 0.5);
  if (total >= 3600) return fmt::format("{}h{:02}m", total / 3600, total % 3600 / 60);
  if (total >= 60) return fmt::format("{}m{:02}s", total / 60, total % 60);
  return fmt::format("{}s", total);
}

std::string format_rate(double r) {
  if (r >= 1e6) return fmt::format("{:.2f}M", r / 1e6);
  if (r >= 1e4) return fmt::format("{:.1f}k", r / 1e3);
  return fmt::format("{:.0f}", r);
}

DType precision_dtype(const std::string& p) {
  if (p == "fp32") return DType::f32;
  if (p == "bf16") return DType::bf16;  // fp32 masters, gradients and optimizer state
  throw ConfigError(fmt::format("train.precision: '{}': expected fp32 or bf16", p));
}

}  // namespace

Trainer::Trainer(const Config& cfg, const Groups& groups, std::function<void(const std::string&)> log,
                 TrainerOptions options)
    : cfg_(cfg), g_(groups), log_(std::move(log)), options_(std::move(options)) {
  setup();
}

Trainer::Trainer(const Config& cfg, std::function<void(const std::string&)> log, TrainerOptions options)
    : cfg_(cfg),
      self_(std::make_unique<SelfGroups>()),
      g_(self_->groups()),
      log_(std::move(log)),
      options_(std::move(options)) {
  setup();
}

Trainer::~Trainer() {
  for (void* e : uploaded_) gpu::event_destroy(e);
}

void Trainer::setup() {
  const Layout want{static_cast<int>(cfg_.parallel.dp), static_cast<int>(cfg_.parallel.tp),
                    static_cast<int>(cfg_.parallel.pp)};
  if (want.dp != g_.layout.dp || want.tp != g_.layout.tp || want.pp != g_.layout.pp)
    throw ConfigError(fmt::format("parallel: the config asks for {} but the ranks are laid out as {}",
                                  want.str(), g_.layout.str()));
  if (cfg_.model.family() == ModelFamily::cnn && want.tp > 1)
    throw ConfigError(fmt::format("parallel.tp = {}: tensor parallelism is not available for the CNN; "
                                  "use parallel.dp and parallel.pp", want.tp));
  for (Communicator* c : {g_.world, g_.dp, g_.tp, g_.pp, g_.embed}) c->set_timeout(cfg_.parallel.timeout);
  cpu::set_num_threads(static_cast<int>(cfg_.train.threads), options_.cores);

  const TrainConfig& t = cfg_.train;
  // The device first: a run that cannot have its GPU stops here, before any
  // data is read or memory allocated.
  runtime_ = ops::Runtime::open(t.device, options_.local_rank, t.tf32);
  const Exec& ex = runtime_->exec();
  if (std::string w = runtime_->warnings(); !w.empty() && g_.world->rank() == 0) log_(w);
  // On a GPU the profiler times scopes with CUDA events on the compute stream.
  if (options_.profiler && ex.on_cuda()) options_.profiler->set_device_timer(make_cuda_event_timer(ex.stream));
  // Device tensors' collectives are ordered after the work queued on this stream.
  for (Communicator* c : {g_.world, g_.dp, g_.tp, g_.pp, g_.embed}) c->set_compute_stream(ex.stream);
  seq_len_ = train_seq_len(cfg_);
  open_own_data();
  par_.tp = g_.layout.tp > 1 ? g_.tp : nullptr;
  par_.sequence_parallel = cfg_.parallel.sequence_parallel;

  // Pipeline stages: contiguous runs of top-level layers balanced by their
  // forward + backward FLOPs (the loss counts with the last layer). The
  // interleaved schedule cuts pp * v runs, virtual stage c * pp + stage being
  // this stage's model chunk c.
  const std::string schedule = g_.layout.pp > 1 ? cfg_.parallel.schedule : "1f1b";
  chunks_ = schedule == "interleaved" ? static_cast<int>(cfg_.parallel.virtual_stages) : 1;
  {
    auto whole = describe_model(cfg_.model, seq_len_, par_);
    std::vector<double> costs;
    for (const Cost& c : whole->layer_costs(t.micro_batch)) costs.push_back(c.fwd_flops + c.bwd_flops);
    const double loss_cost = costs.back();
    costs.pop_back();
    costs.back() += loss_cost;
    if (chunks_ > 1 && static_cast<int64_t>(costs.size()) < int64_t{g_.layout.pp} * chunks_)
      throw ConfigError(fmt::format("parallel.pp ({}) x parallel.virtual_stages ({}) exceeds the model's {} top-level "
                                    "layers (each model chunk needs at least one)",
                                    g_.layout.pp, chunks_, costs.size()));
    bounds_ = partition_layers(costs, g_.layout.pp * chunks_);
  }
  par_.first_layer = bounds_[layers_vstage(0)];
  par_.last_layer = bounds_[layers_vstage(0) + 1];
  for (int c = 1; c < chunks_; ++c)
    par_.more_layers.emplace_back(bounds_[layers_vstage(c)], bounds_[layers_vstage(c) + 1]);

  // This stage's order of forward and backward passes (one stage: plain
  // accumulation), planned once; one copy of the stage's activations per
  // micro-batch in flight.
  ops_ = pipeline_schedule(schedule, g_.coord.pp, g_.layout.pp, static_cast<int>(t.grad_accum), chunks_);
  if (g_.layout.pp > 1) transfers_ = pipeline_transfers(ops_, g_.coord.pp, g_.layout.pp, chunks_);
  outputs_.resize(ops_.size());
  const DType dtype = precision_dtype(t.precision);
  build_chunks(dtype, ex);
  Model& m = model();
  const Shape data_x = [&] {
    Shape s{t.micro_batch};
    for (int64_t d : m.sample_shape) s.push_back(d);
    return s;
  }();
  const DType data_dtype = cfg_.model.token_model() ? DType::i32 : dtype;
  // --- profiler hook: the activations' bytes (the heap's growth; on a GPU the device's)
  auto used = [&ex] {
    if (!ex.on_cuda()) return heap_bytes();
    const gpu::DeviceInfo d = gpu::device_info(ex.device.index);
    return static_cast<double>(d.total_bytes - d.free_bytes);
  };
  const double heap0 = options_.profiler ? used() : 0;
  for (auto& slot : slots_) {
    slot->recompute = recompute_from_name(t.recompute);
    slot->plan(t.micro_batch);
    stage_in_.push_back(slot->first_stage() ? Tensor{}
                                            : Tensor::empty(slot->input_shape(t.micro_batch), dtype, ex.device));
    x_.push_back(Tensor::empty(data_x, data_dtype, ex.device));
    y_.push_back(Tensor::empty(m.target_shape(t.micro_batch), DType::i32, ex.device));
    if (ex.on_cuda()) {
      xh_.push_back(Tensor::pinned(data_x, data_dtype));
      yh_.push_back(Tensor::pinned(m.target_shape(t.micro_batch), DType::i32));
      uploaded_.push_back(gpu::event_create(false));
      gpu::event_record(uploaded_.back(), ex.stream);
    }
  }
  for (int c = 0; c < chunks_; ++c) {
    const Model& first_copy = *slots_[chunk_slot_[c]];
    grad_in_.push_back(first_copy.last_stage() ? Tensor{}
                                               : Tensor::empty(first_copy.output_shape(t.micro_batch), dtype, ex.device));
  }
  if (options_.profiler) options_.profiler->set_plan_bytes(used() - heap0);  // --- profiler hook

  // ZeRO (train/zero.h): data-parallel rank d keeps the optimizer state (and
  // from stage 2 on the reduced gradients) of one contiguous range of the
  // flat parameters. With one data-parallel rank there is nothing to shard.
  opt_range_ = FlatRange{0, m.params.flat_numel()};
  // sync = "local" with H = 1 and plain averaging is data parallelism and
  // runs as it (config.h: local_sync_is_dp): no LocalSync, ZeRO allowed.
  const bool local = local_sync_active(cfg_.parallel);
  if (local && cfg_.parallel.zero >= 1 && g_.layout.dp > 1)
    throw ConfigError(fmt::format("parallel.sync = \"local\" with parallel.zero = {}: ZeRO shards one optimizer "
                                  "over the data-parallel replicas, but local sync gives each replica its own; "
                                  "use parallel.zero = 0", cfg_.parallel.zero));
  if (cfg_.parallel.zero >= 1 && g_.layout.dp > 1) {
    // slots[0] owns the parameters: the interleaved schedule's owner of every
    // chunk's layers (ZeRO's layer numbers are its), else the first copy.
    std::vector<Model*> all;
    if (owner_) all.push_back(owner_.get());
    for (auto& s : slots_) all.push_back(s.get());
    const int stage = static_cast<int>(cfg_.parallel.zero);
    zero_ = std::make_unique<ZeroSharding>(stage, all, *g_.dp, g_.layout.pp > 1 ? g_.embed : nullptr,
                                           cfg_.parallel.bucket_mb, options_.zero_break, cfg_.parallel.overlap);
    opt_range_ = zero_->range();
    if (zero_->master_shard().defined()) {
      // ZeRO-3, and ZeRO-1/2 under bf16: the optimizer updates the fp32
      // master shard and writes its compute copy; then the full masters go
      // (ZeRO-3: and the full compute copy).
      opt_ = make_optimizer(cfg_.optim, m.params, opt_range_, zero_->grad_shard(), zero_->master_shard(),
                            zero_->compute_shard());
      zero_->shard_params();
    } else {
      opt_ = make_optimizer(cfg_.optim, m.params, opt_range_, zero_->grad_shard());
    }
  } else {
    opt_ = make_optimizer(cfg_.optim, m.params, opt_range_);
    reducer_ = std::make_unique<GradReducer>(m.params, *g_.dp, cfg_.parallel.bucket_mb);
  }
  if (local) local_ = std::make_unique<LocalSync>(m.params, *g_.dp, cfg_.parallel, ex);
  scalars_ = Tensor::empty(Shape{4}, DType::f64);
  if (const Tensor& b = m.params.buffers(); b.numel() > 0)  // planned here: a step allocates nothing
    buffers_at_start_ = Tensor::empty(b.shape(), b.dtype(), ex.device);
}

void Trainer::open_own_data() {
  if (!per_replica_data(cfg_) || g_.world->size() == 1) {
    data_ = open_data(cfg_, seq_len_, g_.coord.dp);
    return;
  }
  // Each replica opens only its own file, so a problem with it is one rank's:
  // the ranks agree on the first failing rank's message (every rank throws
  // it), as they would for a problem that every rank sees.
  constexpr int64_t kText = 1024;
  std::string problem;
  try {
    data_ = open_data(cfg_, seq_len_, g_.coord.dp);
  } catch (const InputError& e) {
    problem = e.what();
  } catch (const ConfigError& e) {  // several files
    problem = e.what();
  }
  const int n = g_.world->size();
  // One byte per int32 (the communicators carry no byte tensors).
  Tensor mine = Tensor::zeros(Shape{kText}, DType::i32), all = Tensor::zeros(Shape{kText * n}, DType::i32);
  for (size_t i = 0; i < std::min<size_t>(problem.size(), kText - 1); ++i)
    mine.data<int32_t>()[i] = static_cast<unsigned char>(problem[i]);
  g_.world->all_gather(mine, all)->wait();
  for (int r = 0; r < n; ++r) {
    const int32_t* text = all.data<int32_t>() + r * kText;
    std::string what;
    for (int64_t i = 0; i < kText && text[i] != 0; ++i) what += static_cast<char>(text[i]);
    if (!what.empty()) throw InputError(what);
  }
}

void Trainer::build_chunks(DType dtype, const Exec& ex) {
  // One copy of each model chunk's activation buffers per micro-batch of it
  // in flight. Without interleaving the first copy owns the parameters;
  // with it an unplanned model of all the chunks' layers does (one store: the
  // optimizer, buckets, clipping, ZeRO ranges and checkpoints see one stage)
  // and every copy is a replica of one chunk sharing it.
  const TrainConfig& t = cfg_.train;
  const std::optional<uint64_t> seed =
      options_.values_loaded ? kValuesLoaded : std::optional<uint64_t>(static_cast<uint64_t>(t.seed));
  if (chunks_ > 1) {
    owner_ = build_model(cfg_.model, seq_len_, dtype, ex, seed, par_);
    owner_->recompute = recompute_from_name(t.recompute);  // what the profiler's prediction reads
  }
  for (int c = 0; c < chunks_; ++c) {
    ModelParallel chunk = par_;
    chunk.first_layer = bounds_[layers_vstage(c)];
    chunk.last_layer = bounds_[layers_vstage(c) + 1];
    chunk.more_layers.clear();
    chunk_slot_.push_back(static_cast<int>(slots_.size()));
    chunk_layer_.push_back(c == 0 ? 0 : chunk_layer_.back() + slots_.back()->layers.size());
    const int copies = std::max(1, in_flight(ops_, c));
    for (int k = 0; k < copies; ++k)
      slots_.push_back(!owner_ && slots_.empty() ? build_model(cfg_.model, seq_len_, dtype, ex, seed, chunk)
                                      : build_replica(owner_ ? *owner_ : *slots_[0], cfg_.model, seq_len_, chunk));
  }
  chunk_slot_.push_back(static_cast<int>(slots_.size()));
  // One pass runs at a time on a stage: its copies and chunks share the
  // blocks' work buffers (and, under recomputation, what is remade), so a
  // copy keeps only what its backward reads (model/arena.h, Model::share_arena).
  if (slots_.size() > 1)
    for (auto& slot : slots_) slot->share_arena(slots_[0]->arena);
}

int Trainer::slot_of(int chunk, int micro) const {
  // A chunk's forwards and backwards each go in micro-batch order, so the
  // micro-batches it has in flight are consecutive: copy micro mod copies.
  return chunk_slot_[chunk] + micro % (chunk_slot_[chunk + 1] - chunk_slot_[chunk]);
}

std::vector<Trainer::Chunk> Trainer::chunks() {
  std::vector<Chunk> out;
  for (int c = 0; c < chunks_; ++c)
    out.push_back({slots_[chunk_slot_[c]].get(), chunk_layer_[c], chunk_slot_[c + 1] - chunk_slot_[c]});
  return out;
}

std::string Trainer::train_data() const { return per_replica_data(cfg_) ? "" : data_.train->describe(); }
std::string Trainer::val_data() const { return data_.val->describe(); }
int64_t Trainer::val_samples() const { return data_.val->size(); }

void Trainer::trace(const std::string& what) const {
  if (options_.trace)
    options_.trace(fmt::format("rank {} {} step {} {}", g_.world->rank(), g_.coord.str(), current_step_, what));
}

std::string Trainer::op_at(int micro, int chunk, int slot) const {
  return chunks_ > 1 ? fmt::format("mb {} chunk {} slot {}", micro, chunk, slot)
                     : fmt::format("mb {} slot {}", micro, slot);
}

int64_t Trainer::sample_offset(int64_t step, int64_t micro) const {
  // The step's global batch is samples [step * G, (step + 1) * G); it is cut
  // into dp * grad_accum micro-batches, data-parallel rank d taking the d-th
  // run of grad_accum of them. One process reads the same micro-batches in the
  // same order, so any layout sees the same samples with the same dropout.
  const TrainConfig& t = cfg_.train;
  // A file per replica (data.train lists dp files): the replica's share of
  // the step's batch is samples [step * G / dp, (step + 1) * G / dp) of its own file.
  if (per_replica_data(cfg_)) return step * (t.global_batch / g_.layout.dp) + micro * t.micro_batch;
  return step * t.global_batch + (g_.coord.dp * t.grad_accum + micro) * t.micro_batch;
}

void Trainer::upload(int slot, int64_t n) {
  const Exec& ex = runtime_->exec();
  ops::copy(ex, xh_[slot].narrow0(0, n), x_[slot].narrow0(0, n));
  ops::copy(ex, yh_[slot].narrow0(0, n), y_[slot].narrow0(0, n));
  gpu::event_record(uploaded_[slot], ex.stream);
}

void Trainer::wait_sends(int slot) {
  auto sends_from = [slot](const InFlight& f) {
    return slot < 0 || std::find(f.slots.begin(), f.slots.end(), slot) != f.slots.end();
  };
  if (std::none_of(sends_.begin(), sends_.end(), sends_from)) return;
  Profiler::Scope timed(options_.profiler, Profiler::Kind::pp_wait);
  for (auto it = sends_.begin(); it != sends_.end();) {
    if (!sends_from(*it)) {
      ++it;
      continue;
    }
    it->work->wait();
    it = sends_.erase(it);
  }
}

void Trainer::exchange(const PipeBatch& batch) {
  std::vector<P2POp> p2p;
  std::vector<int> from;
  bool receives = false;
  std::string what;  // the trace line's, built only when tracing
  for (const PipeTransfer& t : batch.transfers) {
    const PipeOp& op = ops_[t.op];
    const int slot = slot_of(op.chunk, op.micro);
    const bool fwd = op.kind == PipeOp::Kind::forward;
    const bool send = t.kind == PipeTransfer::Kind::send;
    if (send) {
      // Another copy's pass would overwrite it while it is sent (Model::handed_on_*).
      DTRAIN_CHECK(slots_.size() < 2 || !slots_[0]->arena->holds(outputs_[t.op]),
                   "pipeline: mb {} chunk {}: sending a tensor in the stage's shared buffers", op.micro, op.chunk);
      p2p.push_back({P2POp::Kind::send, std::move(outputs_[t.op]), t.peer, t.tag});
      outputs_[t.op] = Tensor{};
      from.push_back(slot);
    } else {
      p2p.push_back({P2POp::Kind::recv, fwd ? stage_in_[slot] : grad_in_[op.chunk], t.peer, t.tag});
      receives = true;
    }
    if (tracing())
      what += fmt::format("{}{} {} of mb {}{} {} pp {}", what.empty() ? "" : ", ", send ? "send" : "recv",
                          fwd ? "activations" : "gradients", op.micro,
                          chunks_ > 1 ? fmt::format(" chunk {}", op.chunk) : "", send ? "to" : "from", t.peer);
  }
  if (tracing()) trace(fmt::format("pipeline: {}", what));
  if (!receives) {  // waited for before its slots are overwritten, or at the step's end
    sends_.push_back({g_.pp->batch_p2p(std::move(p2p)), std::move(from)});
    return;
  }
  // Earlier sends first: a buffer received into is never one still being sent.
  wait_sends(-1);
  const int micro = batch.before < static_cast<int>(ops_.size()) ? ops_[batch.before].micro : -1;
  Profiler::Scope timed(options_.profiler, Profiler::Kind::pp_wait, -1, micro);
  g_.pp->batch_p2p(std::move(p2p))->wait();
}

void Trainer::forward_op(int i, const Ctx& ctx, int64_t then) {
  const int micro = ops_[i].micro, chunk = ops_[i].chunk;
  const int slot = slot_of(chunk, micro);
  Model& m = *slots_[slot];
  wait_sends(slot);  // this slot's buffers are about to be overwritten
  const int64_t mb = cfg_.train.micro_batch;
  if (m.first_stage() || m.last_stage()) {
    Profiler::Scope timed(options_.profiler, Profiler::Kind::data, -1, micro);
    if (xh_.empty()) {
      data_.train->fill(ctx.sample_offset, mb, x_[slot], y_[slot]);
    } else {
      gpu::event_sync(uploaded_[slot]);  // the slot's previous upload has read the staging
      data_.train->fill(ctx.sample_offset, mb, xh_[slot], yh_[slot]);
      upload(slot, mb);
    }
  }
  const Tensor in = m.first_stage() ? x_[slot] : stage_in_[slot];  // received by exchange()
  const size_t base = chunk_layer_[chunk];
  if (m.last_stage()) {
    const Tensor logits = forward_stage(m, in, ctx, micro, base, true, then);
    Profiler::Scope timed(options_.profiler, Profiler::Kind::forward, static_cast<int>(base + m.layers.size()), micro);
    m.loss->accumulate(logits, y_[slot]);  // read once, at the end of the step
    if (tracing())
      trace(fmt::format("F {} samples [{}, +{}): loss", op_at(micro, chunk, slot), ctx.sample_offset, mb));
  } else {
    outputs_[i] = forward_stage(m, in, ctx, micro, base, true, then);
    if (tracing())
      trace(fmt::format("F {} samples [{}, +{}): activations out", op_at(micro, chunk, slot), ctx.sample_offset, mb));
  }
}

void Trainer::backward_op(int op, const Ctx& step_ctx, double scale, bool last, int64_t then) {
  const int micro = ops_[op].micro, chunk = ops_[op].chunk;
  const int slot = slot_of(chunk, micro);
  const size_t base = chunk_layer_[chunk];
  Model& m = *slots_[slot];
  Ctx ctx = step_ctx;
  // The chunk's last backward of the step (every schedule runs a chunk's
  // backwards in micro-batch order): sequence parallelism's layer norms
  // all-reduce their gradients over tp then.
  // Under ZeRO-2 each micro-batch's gradients leave for their shard after
  // its own backward, so every backward is final.
  ctx.grads_final = zero_stage() >= 2 || micro + 1 == static_cast<int>(cfg_.train.grad_accum);
  Tensor g;
  if (m.last_stage()) {
    Profiler::Scope timed(options_.profiler, Profiler::Kind::backward, static_cast<int>(base + m.layers.size()), micro);
    g = m.loss->backward(scale);
  } else {
    g = grad_in_[chunk];  // received by exchange()
  }
  // The step's last backward completes the gradients: buckets start as the
  // layers finish.
  if (last && tracing()) {
    if (zero_)
      trace(fmt::format("B {}: ZeRO-{} gradient reduce-scatter over dp", op_at(micro, chunk, slot), zero_->stage()));
    else if (!local_)
      trace(fmt::format("B {}: gradient reduction over dp in {} buckets", op_at(micro, chunk, slot),
                        reducer_->buckets()));
  }
  if (last) {
    if (reducer_ && !local_) reducer_->begin();
    if (options_.profiler) options_.profiler->mark_reduction_begin();  // --- profiler hook
  }
  for (size_t i = m.layers.size(); i-- > 0;) {
    // ZeRO-3 gathers layer i's parameters (again: the forward's were freed)
    // and starts the gather of the layer whose backward follows.
    if (zero_) zero_->before_backward(base + i, last, i > 0 ? static_cast<int64_t>(base + i - 1) : then);
    {
      Profiler::Scope timed(options_.profiler, Profiler::Kind::backward, static_cast<int>(base + i), micro);
      g = m.handed_on_backward(i, m.layers[i]->backward(g, ctx));
    }
    // The owner's parameters are laid out chunk by chunk: when the step's last
    // backward (chunk 0's) has passed layer i, every later chunk is done too.
    if (zero_)
      zero_->after_backward(base + i, last, cfg_.parallel.overlap);
    else if (last && cfg_.parallel.overlap && !local_)
      reducer_->ready_from(reducer_->offset_of_param(model().first_param_of(base + i)));
  }
  if (!m.first_stage()) {
    outputs_[op] = g;
    if (tracing()) trace(fmt::format("B {}: gradients out", op_at(micro, chunk, slot)));
  } else if (tracing()) {
    trace(fmt::format("B {}", op_at(micro, chunk, slot)));
  }
}

Tensor Trainer::forward_stage(Model& m, const Tensor& in, const Ctx& ctx, int micro, size_t base, bool timed,
                              int64_t then) {
  const bool gathers = zero_stage() == 3;
  Profiler* prof = timed ? options_.profiler : nullptr;
  if (!prof && !gathers) return m.forward_layers(in, ctx);
  Tensor h = in;
  for (size_t i = 0; i < m.layers.size(); ++i) {
    // ZeRO-3: layer i's parameters gathered; the next layer's gather started.
    if (gathers) zero_->before_forward(base + i, i + 1 < m.layers.size() ? static_cast<int64_t>(base + i + 1) : then);
    Profiler::Scope scope(prof, Profiler::Kind::forward, static_cast<int>(base + i), micro);
    h = m.handed_on_forward(i, m.layers[i]->forward(h, ctx));
  }
  return h;
}

void Trainer::gather_full_params() {
  refresh_loaded();  // a load's ranges first
  if (zero_) zero_->gather_full();
}

void Trainer::release_full_params() {
  if (zero_) zero_->release_full();
}

Tensor Trainer::master_shard() { return zero_ ? zero_->master_shard() : Tensor{}; }

FlatRange Trainer::checkpoint_range() const {
  const std::vector<int64_t> counts = checkpoint_counts();
  const size_t me = counts.size() > 1 ? static_cast<size_t>(g_.dp->rank()) : 0;
  FlatRange r{0, 0};
  for (size_t d = 0; d < me; ++d) r.begin += counts[d];
  r.end = r.begin + counts[me];
  return r;
}

std::vector<int64_t> Trainer::checkpoint_counts() const {
  if (zero_) return zero_->counts();
  const int64_t total = (owner_ ? *owner_ : *slots_[0]).params.flat_numel();
  const int dp = local_ ? 1 : g_.layout.dp;
  std::vector<int64_t> counts;
  for (int d = 0; d < dp; ++d) counts.push_back(total * (d + 1) / dp - total * d / dp);
  return counts;
}

void Trainer::range_loaded(bool state) {
  const bool ranges = checkpoint_counts().size() > 1;
  if (zero_ && zero_->master_shard().defined())
    zero_->shards_loaded();
  else if (ranges)
    gather_masters_ = true;
  else
    model().params.sync_compute();  // the bf16 compute copy of the loaded masters
  if (ranges && state && !zero_) gather_state_ = true;
}

void Trainer::refresh_loaded() {
  if (gather_masters_ || gather_state_) {
    Profiler::Scope timed(options_.profiler, Profiler::Kind::dp_wait);
    if (tracing())
      trace(fmt::format("checkpoint load: all-gather over dp of what was loaded by ranges (masters {}, optimizer "
                        "state {})", gather_masters_, gather_state_));
    Model& m = model();
    const FlatRange r = checkpoint_range();
    const std::vector<int64_t> counts = checkpoint_counts();
    std::vector<int64_t> starts{0};  // of each rank's range
    for (int64_t c : counts) starts.push_back(starts.back() + c);
    const auto me = static_cast<size_t>(g_.dp->rank());
    // In windows (TrainerOptions::load_gather_window).
    const int64_t window = std::max<int64_t>(1, options_.load_gather_window);
    const auto gather = [&](Tensor& flat) {
      for (int64_t w0 = 0; w0 < flat.numel(); w0 += window) {
        const int64_t w1 = std::min(flat.numel(), w0 + window);
        std::vector<int64_t> part(counts.size());
        for (size_t d = 0; d < counts.size(); ++d)
          part[d] = std::max<int64_t>(0, std::min(w1, starts[d + 1]) - std::max(w0, starts[d]));
        const int64_t from = std::clamp(r.begin, w0, w1);
        g_.dp->all_gather(flat.flat_range(from, part[me]),
                          flat.flat_range(w0, w1 - w0), part)->wait();
      }
    };
    if (gather_masters_) {
      gather(m.params.values());
      m.params.sync_compute();  // the bf16 compute copy of the gathered masters
    }
    if (gather_state_)
      for (auto& [name, flat] : opt_->state()) gather(flat);
    gather_masters_ = gather_state_ = false;
  }
  if (zero_) zero_->refresh();
}

double Trainer::agree_loss(double local_sum, int64_t count) {
  // The last stage has the loss; data-parallel ranks average theirs; the
  // pipeline's last stage tells the others.
  double* s = scalars_.data<double>();
  s[0] = model().last_stage() ? local_sum / static_cast<double>(count) : 0.0;
  Tensor one = scalars_.flat_range(0, 1);
  g_.dp->all_reduce(one, ReduceOp::sum)->wait();
  s[0] /= g_.layout.dp;
  g_.pp->broadcast(one, g_.layout.pp - 1)->wait();
  return s[0];
}

double Trainer::global_grad_norm() {
  // Gradients are equal across data-parallel ranks after the reduction; the
  // tensor- and pipeline-parallel ranks each hold a part of them (parameters
  // replicated across tp counted on tp rank 0 only).
  double* s = scalars_.data<double>();
  // ZeRO: each data-parallel rank holds its shard of the reduced gradients;
  // the shards' sums are summed over dp first.
  s[0] = zero_ ? zero_->grad_sum_squares(g_.coord.tp == 0) : grad_sum_squares(model().params, g_.coord.tp == 0);
  Tensor one = scalars_.flat_range(0, 1);
  g_.tp->all_reduce(one, ReduceOp::sum)->wait();
  g_.pp->all_reduce(one, ReduceOp::sum)->wait();
  return std::sqrt(s[0]);
}

double Trainer::buffer_sum_squares() {
  double* s = scalars_.data<double>();
  Tensor& b = model().params.buffers();
  s[0] = b.numel() > 0 ? ops::sum_squares(model().exec, {b}) : 0.0;
  Tensor one = scalars_.flat_range(0, 1);
  g_.dp->all_reduce(one, ReduceOp::sum)->wait();
  g_.pp->all_reduce(one, ReduceOp::sum)->wait();
  return s[0];
}

std::string Trainer::nonfinite_buffer() {
  for (const auto& p : model().params.all()) {
    if (p->trainable) continue;
    const Tensor h = p->value.to_host();
    for (int64_t i = 0; i < h.numel(); ++i)
      if (!std::isfinite(h.dtype() == DType::f64 ? h.data<double>()[i] : h.data<float>()[i])) return p->name;
  }
  return "";
}

void Trainer::sync_buffers() {
  // Batch-norm running statistics, r <- (1 - m) r + m s once per micro-batch
  // of batch statistics s. Each data-parallel rank updated them over its own
  // M micro-batches from the step's r0: r_k = a r0 + (its part), a = (1-m)^M.
  // One process updates them over all dp x M in the global batch's order,
  // rank 0's run first (sample_offset), which comes to
  //   r = a^dp r0 + sum_k a^(dp-1-k) (r_k - a r0)
  //     = a^(dp-1) r_0 + sum_{k>0} a^(dp-1-k) r_k - a^(dp-k) r0:
  // each rank's term, summed over dp, gives every replica one process's
  // statistics (to rounding), so evaluation matches too. Rank 0's term needs
  // no r0.
  Tensor& b = model().params.buffers();
  if (g_.layout.dp == 1 || b.numel() == 0) return;
  const Exec& ex = model().exec;
  const double a = std::pow(1.0 - BatchNorm2d::kMomentum, static_cast<double>(cfg_.train.grad_accum));
  const int k = g_.coord.dp, dp = g_.layout.dp;
  ops::scale(ex, b, std::pow(a, dp - 1 - k));
  if (k > 0) {
    ops::scale(ex, buffers_at_start_, -std::pow(a, dp - k));
    ops::add(ex, b, buffers_at_start_, b);
  }
  g_.dp->all_reduce(b, ReduceOp::sum)->wait();
}

double Trainer::comm_wait_total() const {
  double s = 0;
  for (const Communicator* c : {g_.dp, g_.tp, g_.pp, g_.embed}) s += c->stats().wait_seconds;
  return s;
}

StepResult Trainer::train_step(int64_t step) {
  const auto t0 = Clock::now();
  const double comm0 = comm_wait_total();
  current_step_ = step;
  const TrainConfig& t = cfg_.train;
  Model& m = model();
  if (!grads_zeroed_) m.params.zero_grads();
  grads_zeroed_ = false;  // until this step's update zeroes them again
  refresh_loaded();  // a checkpoint load's ranges
  if (zero_) zero_->begin_step();
  if (m.params.buffers().numel() > 0)  // sync_buffers' r0, and what a skipped step puts back
    ops::copy(m.exec, m.params.buffers(), buffers_at_start_);
  const int micro_batches = static_cast<int>(t.grad_accum);
  const std::vector<PipeOp>& ops = ops_;
  // The mean over the step's global batch; under local sync over the
  // replica's own share of it (no gradient all-reduce).
  const double scale = 1.0 / static_cast<double>(micro_batches * (local_ ? 1 : g_.layout.dp));
  Ctx ctx{.training = true, .seed = static_cast<uint64_t>(t.seed), .step = step, .sample_offset = 0};
  // ZeRO-3: the layer operation i + 1 starts with (its chunk's first going
  // forward, its last going backward); none after the step's last (the
  // update changes every parameter).
  const auto then = [&](size_t i) -> int64_t {
    if (zero_stage() != 3 || i + 1 >= ops.size()) return -1;
    const PipeOp& o = ops[i + 1];
    const auto n = static_cast<int64_t>(slots_[chunk_slot_[o.chunk]]->layers.size());
    return static_cast<int64_t>(chunk_layer_[o.chunk]) + (o.kind == PipeOp::Kind::forward ? 0 : n - 1);
  };
  // The pipeline's transfers go in batches between the ops (see
  // pipeline_transfers: what keeps NCCL's blocking sends from deadlocking).
  size_t batch = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    const PipeOp& op = ops[i];
    if (batch < transfers_.size() && transfers_[batch].before == static_cast<int>(i)) exchange(transfers_[batch++]);
    ctx.sample_offset = sample_offset(step, op.micro);
    if (op.kind == PipeOp::Kind::forward)
      forward_op(static_cast<int>(i), ctx, then(i));
    else
      backward_op(static_cast<int>(i), ctx, scale, i + 1 == ops.size(), then(i));
  }
  if (batch < transfers_.size()) exchange(transfers_[batch++]);
  DTRAIN_CHECK(batch == transfers_.size(), "pipeline stage {}: {} of {} transfer batches issued", g_.coord.pp, batch,
               transfers_.size());
  wait_sends(-1);
  StepResult r;
  {
    Profiler::Scope timed(options_.profiler, Profiler::Kind::dp_wait);
    r.dp_wait_seconds = zero_ ? zero_->finish() : local_ ? 0.0 : reducer_->finish();  // ZeRO: tied parameters too
  }
  if (g_.layout.pp > 1 && !zero_) {
    // Tied parameters (the embedding and the head's copy, on the first and
    // the last stage) sum their gradients.
    for (const auto& p : m.params.all())
      if (p->tied) {
        if (tracing())
          trace(fmt::format("embed: all_reduce of {}'s gradient between the first and last stage", p->name));
        g_.embed->all_reduce(p->grad, ReduceOp::sum)->wait();
      }
  }
  // The step's one read of the loss statistics (the sum of its micro-batches' means).
  double loss_sum = 0;
  for (auto& slot : slots_)
    if (slot->last_stage()) loss_sum += slot->loss->take_stats().mean_sum;
  r.loss = agree_loss(loss_sum, micro_batches);
  if (options_.inject_nan_at_step == step + 1) r.loss = std::nan("");
  // The loss, the norm and the running statistics' check are agreed values:
  // every rank takes the same branch. Batch norm's running statistics are
  // the forward's, not the update's: one can overflow with a finite loss
  // (the batch's own statistics normalise it), and would stay in the model
  // until a save refused it.
  r.grad_norm = std::isfinite(r.loss) ? global_grad_norm() : std::nan("");
  const bool buffers_ok = cfg_.model.type != "cnn" || std::isfinite(buffer_sum_squares());
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm) || !buffers_ok) {
    std::string what;
    if (!std::isfinite(r.loss)) what = fmt::format("training loss became {}", r.loss);
    else if (!std::isfinite(r.grad_norm)) what = fmt::format("gradient norm became {}", r.grad_norm);
    else if (const std::string name = nonfinite_buffer(); !name.empty())
      what = fmt::format("batch norm's running statistic {} became non-finite", name);
    else
      what = "a batch norm running statistic (on another rank) became non-finite";
    if (!cfg_.train.skip_nonfinite) {
      const std::string msg = fmt::format("{} at step {}; stopping before the update (no checkpoint is written "
                                          "with it; train.skip_nonfinite = true skips such steps)",
                                          what, step + 1);
      // Under local sync each replica has its own gradients, and their norm is
      // not agreed over dp: one replica's is its own failure (the job ends from it).
      if (local_ && std::isfinite(r.loss) && buffers_ok) throw RuntimeError(msg);
      throw AgreedRuntimeError(msg);
    }
    if (g_.world->rank() == 0)
      log_(fmt::format("step {}: {}; update skipped (train.skip_nonfinite)", step + 1, what));
    r.skipped = true;
    // The step did not happen: its running statistics go too (equal over dp
    // as they began, so there is nothing to sync).
    if (m.params.buffers().numel() > 0) ops::copy(m.exec, buffers_at_start_, m.params.buffers());
    if (local_ && local_->due(step, t.steps)) outer_sync();  // the replicas sync on schedule whatever each skipped
    r.seconds = seconds_since(t0);
    r.comm_seconds = comm_wait_total() - comm0;
    return r;
  }
  {
    Profiler::Scope timed(options_.profiler, Profiler::Kind::optimizer);
    // Without ZeRO the update reads every gradient once: on the CPU it zeroes
    // them in the same pass, for the next step (one pass over them fewer; the
    // CUDA update would zero span by span, slower than one memset).
    const bool fuse = !zero_ && opt_->zeroes_all_grads() && !m.exec.on_cuda();
    opt_->step(learning_rate(cfg_.optim, t.steps, step), clip_scale(r.grad_norm, cfg_.optim.grad_clip), fuse);
    grads_zeroed_ = fuse;
  }
  if (zero_) {
    // ZeRO: every rank updated its range; gather the others' into place.
    if (tracing()) trace("zero: all_gather of the updated parameters over dp");
    zero_->gather_params();
  }
  if (!local_)
    sync_buffers();
  else if (local_->due(step, t.steps))
    outer_sync();
  runtime_->sync();  // the step's work done on the device before its time is taken
  if (options_.profiler) options_.profiler->flush();  // --- profiler hook: the step's device-timed scopes
  if (options_.comm_check) options_.comm_check();
  r.seconds = seconds_since(t0);
  r.comm_seconds = comm_wait_total() - comm0;
  return r;
}

void Trainer::outer_sync() {
  Profiler::Scope timed(options_.profiler, Profiler::Kind::dp_wait);
  if (tracing())
    trace(fmt::format("local sync {}: all_reduce of the parameter changes over dp, outer {}", local_->syncs() + 1,
                      cfg_.parallel.outer_optim));
  local_->sync();
}

EvalResult Trainer::evaluate(const std::function<bool()>& stop) {
  refresh_loaded();  // a checkpoint load's ranges
  // Local sync: the replicas' agreed model (the last synced parameters).
  if (local_) {
    local_->swap_in_anchor();
    struct Back {
      LocalSync& l;
      ~Back() { l.swap_back(); }
    } back{*local_};
    return evaluate_now(stop);
  }
  return evaluate_now(stop);
}

EvalResult Trainer::evaluate_now(const std::function<bool()>& stop) {
  const int64_t micro = cfg_.train.micro_batch;
  const int64_t total = data_.val->size();
  int64_t batches = (total + micro - 1) / micro;
  if (cfg_.train.eval_batches > 0) batches = std::min(batches, cfg_.train.eval_batches);
  Ctx ctx{.training = false, .seed = static_cast<uint64_t>(cfg_.train.seed), .step = 0, .sample_offset = 0};
  double loss_sum = 0, items = 0, correct = 0;
  const int pp = g_.layout.pp, vstages = pp * chunks_, prev = (g_.coord.pp + pp - 1) % pp, next = (g_.coord.pp + 1) % pp;
  // Batch b goes to data-parallel rank b mod dp, through every stage (and
  // every chunk: the last stage's chunk c hands it to the first's chunk c + 1).
  // ZeRO-3's gathers are collectives over dp: every data-parallel rank runs
  // as many forwards, those past the last batch on batch 0, uncounted.
  // The transfers go one at a time, each waited for, and still cannot
  // deadlock where a send completes only once its receive is posted (NCCL
  // past its buffers): evaluation runs forward only, so every transfer is
  // (batch, virtual stage v -> v + 1) and every rank issues its transfers,
  // and its gathers, in that one global order; the earliest unfinished
  // transfer always has both its ranks waiting on it. (Training's 1F1B has
  // neighbours sending to each other at once: its transfers go in
  // pipeline_transfers' batches.) tests/train/rendezvous_test.cpp evaluates
  // under those semantics.
  const int64_t rounds = zero_stage() == 3 ? (batches + g_.layout.dp - 1) / g_.layout.dp * g_.layout.dp : batches;
  // A requested stop is asked for before every `every`-th batch that every
  // data-parallel rank has (a collective: the same points on every rank,
  // before any transfer of that batch, so no rank waits on one that asks).
  // Each ask drains a pipeline (no stage starts the next batch before the
  // last has finished this one): with pp stages, every 16 pp batches, a
  // drain of (pp - 1) batch-times each, a few percent.
  const int64_t asked = rounds / g_.layout.dp, every = g_.layout.pp == 1 ? 1 : 16 * g_.layout.pp;
  for (int64_t b = g_.coord.dp; b < rounds; b += g_.layout.dp) {
    const int64_t i = (b - g_.coord.dp) / g_.layout.dp;
    if (stop && i < asked && i % every == 0 && stop()) {
      Model& last = *slots_[chunk_slot_[chunks_ - 1]];
      if (last.last_stage()) last.loss->take_stats();  // the abandoned batches' sums
      return EvalResult{.abandoned = true};
    }
    const bool counted = b < batches;
    const int64_t first = counted ? b * micro : 0, n = std::min(micro, total - first);
    for (int c = 0; c < chunks_; ++c) {
      const int slot = chunk_slot_[c];
      Model& m = *slots_[slot];
      Tensor x = x_[slot].narrow0(0, n), y = y_[slot].narrow0(0, n);
      if (m.first_stage() || m.last_stage()) {
        if (xh_.empty()) {
          data_.val->fill(first, n, x, y);
        } else {
          gpu::event_sync(uploaded_[slot]);
          Tensor xh = xh_[slot].narrow0(0, n), yh = yh_[slot].narrow0(0, n);
          data_.val->fill(first, n, xh, yh);
          upload(slot, n);
        }
      }
      Tensor in = x;
      if (!m.first_stage()) {
        in = stage_in_[slot].narrow0(0, n);
        g_.pp->recv(in, prev, pipeline_tag(static_cast<int>(b), vstage(c) - 1, vstages, false))->wait();
      }
      const Tensor out = forward_stage(m, in, ctx, static_cast<int>(b), chunk_layer_[c], false);
      if (m.last_stage()) {
        if (counted) m.loss->accumulate(out, y);
      } else {
        g_.pp->send(out, next, pipeline_tag(static_cast<int>(b), vstage(c), vstages, false))->wait();
      }
    }
  }
  Model& last = *slots_[chunk_slot_[chunks_ - 1]];
  if (last.last_stage()) {  // one read of the statistics for the whole evaluation
    const LossStats st = last.loss->take_stats();
    loss_sum = st.weighted_sum;
    items = static_cast<double>(st.count);
    correct = static_cast<double>(st.correct);
  }
  double* s = scalars_.data<double>();
  s[0] = loss_sum;
  s[1] = items;
  s[2] = correct;
  Tensor three = scalars_.flat_range(0, 3);
  g_.dp->all_reduce(three, ReduceOp::sum)->wait();
  g_.pp->broadcast(three, g_.layout.pp - 1)->wait();
  EvalResult r;
  r.items = static_cast<int64_t>(s[1]);
  r.loss = r.items ? s[0] / s[1] : 0.0;
  r.accuracy = r.items ? s[2] / s[1] : 0.0;
  return r;
}

TrainSummary Trainer::run(const RunOptions& opts) {
  namespace fs = std::filesystem;
  const auto& t = cfg_.train;
  const bool classifier = cfg_.model.classifier();
  const bool writer = g_.world->rank() == 0;
  auto log = [&](const std::string& line) {
    if (writer) log_(line);
  };
  const std::string out = cfg_.log.out_dir;
  if (writer) {
    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec) throw RuntimeError(fmt::format("cannot create output directory '{}': {}", out, ec.message()));
    write_regular_file((fs::path(out) / "config.toml").string(), to_toml(cfg_), "the run's resolved config");
  }
  MetricsWriter* mw = nullptr;
  std::unique_ptr<MetricsWriter> owned;
  if (writer) {
    // The run's directory removed under it: its metrics made again whole, its
    // config too (checkpoints are made again by the next save).
    owned = std::make_unique<MetricsWriter>(
        (fs::path(out) / "metrics.jsonl").string(), opts.start_step > 0, [&, out](bool made, const std::string& what) {
          if (made)
            write_regular_file((fs::path(out) / "config.toml").string(), to_toml(cfg_), "the run's resolved config");
          log("warning: " + what + (made ? ", and config.toml with it" : ""));
        });
    mw = owned.get();
  }
  auto record = [&](std::initializer_list<std::pair<const char*, MetricsWriter::Value>> fields) {
    if (mw) mw->write(fields);
  };

  const int64_t items_per_step = t.global_batch * slots_[0]->items_per_sample();
  const char* unit = classifier ? "img/s" : "tok/s";
  const Cost cost = describe_model(cfg_.model, seq_len_)->cost(t.micro_batch);
  log(fmt::format("model {}: {:.2f}M parameters, {:.2f} GFLOP per step; batch {} = {} x {} "
                  "micro-batches x {} dp; {} thread{} per rank, precision {}, {}; output {}",
                  cfg_.model.type, static_cast<double>(cost.params) / 1e6,
                  (cost.fwd_flops + cost.bwd_flops) * static_cast<double>(t.global_batch / t.micro_batch) / 1e9,
                  t.global_batch, t.micro_batch, t.grad_accum, g_.layout.dp, cpu::num_threads(),
                  cpu::num_threads() == 1 ? "" : "s", t.precision, ops::matmul_path(slots_[0]->exec, slots_[0]->dtype), out));
  if (runtime_->exec().on_cuda()) log(fmt::format("device {} (rank {}'s GPU; train.tf32 {})", runtime_->describe(),
                                                   g_.world->rank(), t.tf32 ? "on" : "off"));
  if (g_.layout.world() > 1) {
    std::string stages;
    for (size_t s = 0; s + 1 < bounds_.size(); ++s) stages += fmt::format(" [{}, {})", bounds_[s], bounds_[s + 1]);
    log(fmt::format("layout {} on {} ranks; pipeline {}stages (top-level layers):{}; schedule {}{}; "
                    "{} micro-batch cop{} on stage 0; ZeRO-{}",
                    g_.layout.str(), g_.layout.world(), chunks_ > 1 ? "virtual " : "", stages,
                    g_.layout.pp > 1 ? cfg_.parallel.schedule : "-",
                    chunks_ > 1 ? fmt::format(" (v = {}: stage s holds virtual stages s + {} c)", chunks_, g_.layout.pp) : "",
                    slots_.size(), slots_.size() == 1 ? "y" : "ies", zero_stage()));
  }
  if (local_sync_is_dp(cfg_.parallel))
    log(fmt::format("parallel.sync = local with sync_every = 1 and plain averaging is data parallelism: gradients "
                    "are averaged every step{}",
                    per_replica_data(cfg_) ? "; each replica reads its own data.train file" : ""));
  if (local_)
    log(fmt::format("sync local: the {} data-parallel replicas sync every {} steps (and after the last), outer "
                    "optimizer {} (lr {}{}){}", g_.layout.dp, cfg_.parallel.sync_every, cfg_.parallel.outer_optim,
                    cfg_.parallel.outer_lr,
                    local_->momentum().defined() ? fmt::format(", momentum {}", cfg_.parallel.outer_momentum) : "",
                    per_replica_data(cfg_) ? "; each replica reads its own data.train file" : ""));

  auto report_eval = [&](int64_t step, const EvalResult& e) {
    if (classifier) {
      record({{"step", step}, {"eval_loss", e.loss}, {"eval_accuracy", e.accuracy}});
      log(fmt::format("eval  step {:>6}/{} | loss {:.4f} | accuracy {:.2f}%", step, t.steps, e.loss,
                      100.0 * e.accuracy));
    } else {
      record({{"step", step}, {"eval_loss", e.loss}});
      log(fmt::format("eval  step {:>6}/{} | loss {:.4f}", step, t.steps, e.loss));
    }
  };

  TrainSummary summary;
  // A resumed run evaluated before its checkpoint, unless a stop skipped it
  // (at an eval_every step, or at the last one, which a run always evaluates).
  const bool due_at_start = opts.eval_missing && ((t.eval_every > 0 && opts.start_step % t.eval_every == 0) ||
                                                  opts.start_step == t.steps);
  // A stop requested during an evaluation abandons it (a long evaluation
  // would outlast the grace a preemption gives): the run ends at that step
  // boundary, and a resume evaluates that step first (eval_missing).
  auto stop_during = [&](int64_t done) -> std::function<bool()> {
    if (!opts.hooks) return {};
    return [&opts, done] { return opts.hooks->stop_requested(done); };
  };
  if (opts.start_step == 0 || due_at_start) {
    summary.first_eval = evaluate(stop_during(opts.start_step));
    if (summary.first_eval.abandoned) {  // before any step: nothing new to save
      summary.steps = opts.start_step;
      summary.stopped = true;
      log(fmt::format("stopped before step {}: 0 steps", opts.start_step + 1));
      return summary;
    }
    report_eval(opts.start_step, summary.first_eval);
  }

  double train_seconds = 0, window_seconds = 0;
  int64_t window_steps = 0, step = opts.start_step;
  // --- profiler hook: log.profile times the layers, data and optimizer and
  // adds the interval's shares to each progress line.
  Profiler light;
  double window_comm = 0;
  struct Restore {
    Profiler*& p;
    Profiler* was;
    ~Restore() { p = was; }
  } restore{options_.profiler, options_.profiler};
  if (cfg_.log.profile && !options_.profiler) {
    options_.profiler = &light;
    if (runtime_->exec().on_cuda()) light.set_device_timer(make_cuda_event_timer(runtime_->exec().stream));
  }
  for (; step < t.steps; ++step) {
    const double lr = learning_rate(cfg_.optim, t.steps, step);
    const StepResult r = train_step(step);
    train_seconds += r.seconds;
    window_seconds += r.seconds;
    window_comm += r.comm_seconds;
    ++window_steps;
    const int64_t done = step + 1;
    if (r.skipped) {
      ++summary.skipped;
      record({{"step", done}, {"skipped", std::string("non-finite loss, gradient norm or running statistic")},
              {"step_seconds", r.seconds}});
    } else {
      summary.last_loss = r.loss;
      record({{"step", done}, {"loss", r.loss}, {"lr", lr}, {"grad_norm", r.grad_norm},
              {"step_seconds", r.seconds}, {"dp_wait_seconds", r.dp_wait_seconds},
              {"comm_seconds", r.comm_seconds}});
    }
    bool stopping = opts.hooks && opts.hooks->should_stop(done);
    if (done % cfg_.log.every == 0 || done == t.steps) {
      const double rate = static_cast<double>(items_per_step * window_steps) / window_seconds;
      const double eta = train_seconds / static_cast<double>(done - opts.start_step) *
                         static_cast<double>(t.steps - done);
      // A skipped step's norm was not taken (its loss was not finite) or is not finite: not a number to read.
      const std::string norm = r.skipped ? "update skipped" : fmt::format("norm {:.3f}", r.grad_norm);
      log(fmt::format("step {:>6}/{} | loss {:.4f} | lr {:.3e} | {} | {} {} | eta {}", done, t.steps, r.loss, lr,
                      norm, format_rate(rate), unit, format_duration(eta)) +
          (options_.profiler == &light ? breakdown_line(light, window_seconds, window_comm) : ""));
      if (options_.profiler == &light) light.reset();  // --- profiler hook
      window_comm = 0;
      window_seconds = 0;
      window_steps = 0;
    }
    const bool last = done == t.steps;
    if (!stopping && (last || (t.eval_every > 0 && done % t.eval_every == 0))) {
      EvalResult e = evaluate(stop_during(done));
      if (e.abandoned) {
        stopping = true;
      } else {
        report_eval(done, e);
        if (last) summary.last_eval = e;
      }
    }
    if (opts.hooks) opts.hooks->after_step(done, stopping);
    if (stopping) {
      // At the last step too: its evaluation was skipped or abandoned, and
      // the resume (requeued on the stop's exit status) evaluates it.
      summary.stopped = true;
      ++step;
      break;
    }
  }
  summary.steps = step;
  summary.seconds = train_seconds;
  const int64_t ran = step - opts.start_step;
  summary.items_per_second =
      train_seconds > 0 ? static_cast<double>(items_per_step * ran) / train_seconds : 0.0;
  log(fmt::format("{}: {} step{} in {}, {} {} on average", summary.stopped ? "stopped" : "done", ran,
                  ran == 1 ? "" : "s", format_duration(train_seconds), format_rate(summary.items_per_second), unit));
  return summary;
}

}  // namespace dtrain
