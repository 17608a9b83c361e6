// A checkpoint's model alone, built whole on one process: what `dtrain
// export` and `dtrain generate` read, whatever layout (dp, tp, pp) wrote it.
// The optimizer state stays on disk.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "config/config.h"
#include "model/model.h"

namespace dtrain {

struct LoadedModel {
  Config cfg;                    // the run's config, for one process
  CheckpointMeta meta;
  std::string dir;               // the checkpoint it came from
  std::unique_ptr<Model> model;  // fp32 on the CPU, every parameter whole; no gradients
  // Newer checkpoints passed over as damaged, each with why ("...; falling
  // back to DIR"): for the caller to warn of, as resume does.
  std::vector<std::string> skipped;
  std::vector<std::string> notes;  // hf:DIR: what the import adapted (vocabulary padding)
};

// `path`: a checkpoint, its checkpoint.h5, or a directory of them (then the
// newest complete one, falling back to older ones when it is damaged); or
// "hf:DIR", a Hugging Face GPT-2 or LLaMA directory (its config.json's
// shapes and tokenizer: hf_model_overrides; its weights: import_hf, whose
// notes are `notes`; meta.step 0).
// `seq_len` > 0 builds the model for sequences of that length (or
// model.context_length if shorter) instead of the run's train.seq_len. Throws
// CheckpointError or InputError.
LoadedModel load_model(const std::string& path, int64_t seq_len = 0);

}  // namespace dtrain
