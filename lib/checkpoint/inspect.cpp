#include "checkpoint/inspect.h"

#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/manifest.h"
#include "checkpoint/resume.h"
#include "checkpoint/store.h"

namespace dtrain {
namespace {

// How the data-parallel replicas agreed (the config's parallel.sync), and
// where a local-sync checkpoint keeps its outer state (checkpoint/session.cpp).
std::string describe_sync(const CheckpointMeta& m, const std::vector<TensorInfo>& tensors) {
  ParallelConfig p;
  try {
    p = parse_config(m.config, "the checkpoint's config", {}, static_cast<int>(m.layout.world())).parallel;
  } catch (const Error& e) {
    return fmt::format("unknown (the stored config does not parse: {})", e.what());
  }
  if (p.sync != "local") return "step (gradients all-reduced every step)";
  if (local_sync_is_dp(p))
    return "local with sync_every = 1 and plain averaging: data parallelism (gradients averaged every step; "
           "no outer state)";
  const bool replicas = std::any_of(tensors.begin(), tensors.end(),
                                    [](const TensorInfo& t) { return t.key.rfind("replica/", 0) == 0; });
  return fmt::format("local every {} steps, outer {} (lr {}{}); model/* is the last synced model{}{}", p.sync_every,
                     p.outer_optim, p.outer_lr,
                     p.outer_optim == "nesterov" ? fmt::format(", momentum {}", p.outer_momentum) : "",
                     p.outer_optim == "nesterov" ? ", outer/momentum/* the outer momentum" : "",
                     replicas ? ", replica/<d>/* each replica's own state" : "");
}

}  // namespace

std::string describe_checkpoint(const std::string& path, bool verify, const std::string& verify_key_file) {
  std::optional<ckpt_sign::PublicKey> key;
  if (!verify_key_file.empty()) key = ckpt_sign::read_public_key(verify_key_file, "--verify-key");
  Candidates c = find_checkpoints(path);
  // A directory: the newest checkpoint that reads, as a resume takes it, with
  // the damaged newer ones said; a checkpoint named exactly: that one, its
  // damage the error. A signature that fails stops there, as for a resume.
  std::string dir;
  CheckpointMeta m;
  std::vector<TensorInfo> tensors;
  for (size_t i = 0; i < c.dirs.size(); ++i) {
    try {
      m = read_meta(c.dirs[i], key ? &*key : nullptr);
      tensors = list_tensors(c.dirs[i], key ? &*key : nullptr);
      // The rank files too (their presence and sizes; --verify reads them):
      // a resume falls back past a checkpoint one of them fails.
      if (const auto man = ckpt_manifest::read(c.dirs[i])) ckpt_manifest::check_sizes(c.dirs[i], *man);
      dir = c.dirs[i];
      break;
    } catch (const CheckpointSignatureError&) {
      throw;
    } catch (const CheckpointError& e) {
      if (c.exact || i + 1 == c.dirs.size()) throw;
      c.skipped.push_back(fmt::format("{}; a resume falls back to {}", e.what(), c.dirs[i + 1]));
    }
  }
  // What the manifest says about a signature (verified above when a key was given).
  std::string signature = "none (unsigned)";
  try {
    if (const auto man = ckpt_manifest::read(dir); man && !man->signature.empty())
      signature = key ? fmt::format("Ed25519, key {}: the signature verifies with '{}'{}", man->key_id, key->path,
                                    verify ? "" : " (the rank files' hashes are checked by --verify)")
                      : fmt::format("Ed25519, key {} (not checked: give --verify-key FILE)", man->key_id);
  } catch (const CheckpointError&) {
    signature = "unreadable manifest";
  }
  const char* unit = m.model_type == "cnn" ? "images" : "tokens";
  std::string out;
  out += fmt::format("checkpoint   {}{}\n", dir,
                     c.exact                   ? ""
                     : dir == c.dirs.front()   ? " (the newest complete one)"
                                               : " (the newest that reads: the one a resume loads)");
  for (const std::string& s : c.skipped) out += fmt::format("             ({})\n", s);
  out += fmt::format("step         {}\n", m.step);
  out += fmt::format("seen         {} {} ({} samples)\n", m.items_seen, unit, m.samples_seen);
  out += fmt::format("optimizer    {} ({} updates)\n", m.optimizer, m.optimizer_steps);
  out += fmt::format("seed         {}\n", m.seed);
  out += fmt::format("layout       {} ({} rank{})\n", m.layout.str(), m.layout.world(),
                     m.layout.world() == 1 ? "" : "s");
  static const char* const kZero[] = {"none (every rank held all optimizer state and gradients)",
                                      "ZeRO-1 (optimizer state sharded over dp)",
                                      "ZeRO-2 (optimizer state and gradients sharded over dp)",
                                      "ZeRO-3 (optimizer state, gradients and parameters sharded over dp)"};
  out += fmt::format("sharding     {}; read back as full tensors by any layout\n",
                     m.zero >= 0 && m.zero <= 3 ? kZero[m.zero] : fmt::format("ZeRO-{}", m.zero));
  out += fmt::format("sync         {}\n", describe_sync(m, tensors));
  out += fmt::format("written      {} by dtrain {} (format {}, id {})\n", m.written_at,
                     m.program_version, m.format_version, m.id);
  out += fmt::format("run          {}\n", m.run_id.empty() ? "(not recorded: written before run ids)" : m.run_id);
  if (!m.data.empty())
    out += fmt::format("data         {} ({} as the run read it)\n", m.data,
                       m.model_type == "cnn" ? "data.train_images" : "data.train");
  out += fmt::format("signature    {}\n", signature);
  out += fmt::format("size         {} bytes\n", store::dir_bytes(dir));
  out += "\nconfig:\n";
  size_t pos = 0;
  for (size_t nl; (nl = m.config.find('\n', pos)) != std::string::npos; pos = nl + 1)
    out += "  " + m.config.substr(pos, nl - pos) + "\n";
  size_t width = 6;
  int64_t elements = 0;
  std::vector<std::string> shapes;
  for (const TensorInfo& t : tensors) {
    width = std::max(width, t.key.size());
    shapes.push_back(fmt::format("({})", fmt::join(t.shape, ", ")));
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    elements += n;
  }
  size_t swidth = 5;
  for (const auto& s : shapes) swidth = std::max(swidth, s.size());
  out += fmt::format("\ntensors: {} ({} elements)\n", tensors.size(), elements);
  out += fmt::format("  {:<{}}  {:<{}}  {:<5}  {}\n", "name", width, "shape", swidth, "dtype", "pieces");
  for (size_t i = 0; i < tensors.size(); ++i)
    out += fmt::format("  {:<{}}  {:<{}}  {:<5}  {}\n", tensors[i].key, width, shapes[i], swidth,
                       tensors[i].dtype, tensors[i].pieces);
  if (verify) {
    const int64_t bytes = verify_checkpoint(dir, key ? &*key : nullptr);
    out += fmt::format("\nverified: every stored piece read back ({} bytes), checksums match{}\n", bytes,
                       key ? fmt::format("; signed by key {}, every file's hash matches", key->id()) : "");
  }
  return out;
}

}  // namespace dtrain
