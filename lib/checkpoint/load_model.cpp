#include "checkpoint/load_model.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "checkpoint/hf.h"
#include "checkpoint/resume.h"
#include "config/schema.h"
#include "core/error.h"

namespace dtrain {

namespace {

LoadedModel load_hf_model(const std::string& dir, int64_t seq_len) {
  if (dir.empty()) throw ConfigError("hf:DIR: expected a Hugging Face directory after 'hf:'");
  LoadedModel out;
  out.dir = "hf:" + dir;
  std::vector<std::string> keys = hf_model_overrides(dir);
  // No data is read: the keys a config requires name the model's own file.
  const std::string placeholder = config::toml_string((std::filesystem::path(dir) / "config.json").string());
  keys.push_back("data.train=" + placeholder);
  keys.push_back("data.val=" + placeholder);
  for (const char* k : {"train.micro_batch=1", "train.grad_accum=1", "train.steps=1"}) keys.push_back(k);
  out.cfg = parse_hf_config(keys, "hf:DIR: its config.json's model", out.dir + " [config.json]");
  const int64_t T = seq_len > 0 ? std::min(seq_len, out.cfg.model.context_length) : out.cfg.train.seq_len;
  out.model = build_inference_model(out.cfg.model, T);
  out.notes = hf_import_as(out.dir, [&] { return import_hf(*out.model, out.cfg.model, dir, out.cfg.data.tokenizer); });
  out.model->params.sync_compute();
  return out;
}

}  // namespace

LoadedModel load_model(const std::string& path, int64_t seq_len) {
  if (path.rfind("hf:", 0) == 0) return load_hf_model(path.substr(3), seq_len);
  const Candidates c = find_checkpoints(path);
  std::vector<std::string> damage, skipped;
  for (size_t i = 0; i < c.dirs.size(); ++i) {
    const std::string& dir = c.dirs[i];
    try {
      LoadedModel out;
      out.skipped = skipped;
      out.dir = dir;
      out.meta = read_meta(dir);
      out.cfg = resume_config(out.meta, dir, {}, "", 1).cfg;
      const int64_t T = seq_len > 0 ? std::min(seq_len, out.cfg.model.context_length) : out.cfg.train.seq_len;
      out.model = build_inference_model(out.cfg.model, T);  // every parameter loaded next
      std::vector<Piece> pieces = collect_pieces(*out.model, NamedTensors{});
      load_pieces(dir, pieces);
      out.model->params.sync_compute();
      return out;
    } catch (const CheckpointError& e) {
      if (c.exact) throw;
      damage.push_back(e.what());
      if (i + 1 < c.dirs.size()) skipped.push_back(fmt::format("{}; falling back to {}", e.what(), c.dirs[i + 1]));
    }
  }
  // One line, each checkpoint tried newest first.
  throw InputError(fmt::format("no checkpoint under '{}' could be read: {}", path, fmt::join(damage, "; ")));
}

}  // namespace dtrain
