#include "checkpoint/load_model.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "checkpoint/resume.h"

namespace dtrain {

LoadedModel load_model(const std::string& path, int64_t seq_len) {
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
