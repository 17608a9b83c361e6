// `dtrain export CHECKPOINT --format hf --out DIR`: a checkpoint of any
// layout as a Hugging Face GPT-2 directory (config.json, model.safetensors)
// that transformers' GPT2LMHeadModel.from_pretrained(DIR) loads. See
// lib/checkpoint/hf.h for the name and layout mapping.
#include <filesystem>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "checkpoint/hf.h"
#include "checkpoint/load_model.h"
#include "commands.h"

namespace dtrain_cli {

Subcommand add_export(CLI::App& app) {
  struct Opts {
    std::string path, format = "hf", out;
    int64_t vocab_size = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Write a checkpoint's model in another format: --format hf = a Hugging Face GPT-2 "
                "directory (config.json, model.safetensors)");
  cmd->add_option("checkpoint", o->path, "A checkpoint, its checkpoint.h5, or a directory of them (the newest)")
      ->required();
  cmd->add_option("--format", o->format, "Output format")->check(CLI::IsMember({"hf"}));
  cmd->add_option("--out", o->out, "Output directory")->required()->check(output_dir());
  cmd->add_option("--vocab-size", o->vocab_size,
                  "Rows of the token embedding to export (default: the tokenizer's ids, 50257 for gpt2, "
                  "dropping padding rows; else all)")
      ->check(whole_number(1, INT32_MAX));
  return {cmd, [o](Context& ctx) {
            if (ctx.world_rank != 0) return kExitOk;
            // An export never replaces files (the Hugging Face directory a run was started from, say).
            for (const char* name : {"config.json", "model.safetensors"})
              if (std::error_code ec; std::filesystem::exists(std::filesystem::path(o->out) / name, ec))
                throw dtrain::ConfigError(fmt::format("--out {}: it already holds {}, which an export does not replace: "
                                                      "export into a new directory (or move it away)",
                                                      o->out, name));
            const dtrain::LoadedModel lm = dtrain::load_model(o->path);
            const dtrain::HfExportResult r = dtrain::export_hf(*lm.model, lm.cfg, o->out, o->vocab_size);
            for (const auto& n : r.notes) fmt::print("{}\n", n);
            fmt::print("exported {} (step {}) to {}: config.json, model.safetensors ({} tensors, {} bytes)\n",
                       lm.dir, lm.meta.step, o->out, r.tensors, r.bytes);
            return kExitOk;
          }};
}

}  // namespace dtrain_cli
