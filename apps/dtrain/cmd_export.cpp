// `dtrain export CHECKPOINT --format hf --out DIR`: a checkpoint of any
// layout as a Hugging Face directory (config.json, model.safetensors) that
// transformers' GPT2LMHeadModel.from_pretrained(DIR) loads (a GPT of GPT-2's
// parts), or LlamaForCausalLM's (one of LLaMA's parts), with GPT-2's
// tokenizer files for a run trained on its tokens. See lib/checkpoint/hf.h for
// the name and layout mapping.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "checkpoint/hf.h"
#include "checkpoint/load_model.h"
#include "data/tokenizer.h"
#include "commands.h"

namespace dtrain_cli {

namespace {

// A run trained on GPT-2's tokens: its tokenizer beside the model, under the
// names transformers' GPT2Tokenizer reads (vocab.json is encoder.json,
// merges.txt is vocab.bpe, byte for byte), so that AutoTokenizer and
// pipeline("text-generation", DIR) need nothing else. Never replaces a file.
// The sources (`from`: GPT-2's encoder.json and vocab.bpe, or an export's
// vocab.json and merges.txt) are checked before anything is written.
dtrain::Gpt2TokenizerFiles tokenizer_sources(const std::string& from, bool given) {
  namespace fs = std::filesystem;
  const dtrain::Gpt2TokenizerFiles f = dtrain::gpt2_tokenizer_files(from);
  for (const std::string& path : {f.vocab, f.merges})
    if (std::error_code ec; !fs::is_regular_file(path, ec))
      throw dtrain::ConfigError(fmt::format(
          "{}: '{}' is not a file: the run trained on GPT-2's tokens (data.tokenizer = \"gpt2\"), whose tokenizer the "
          "export includes; point --tokenizer-dir at GPT-2's encoder.json and vocab.bpe (or a Hugging Face "
          "directory's vocab.json and merges.txt)",
          given ? "--tokenizer-dir" : "the run's data.tokenizer_dir", path));
  return f;
}

std::string export_gpt2_tokenizer(const dtrain::Gpt2TokenizerFiles& sources, const std::string& out,
                                  int64_t context_length) {
  namespace fs = std::filesystem;
  const std::pair<std::string, const char*> files[] = {{sources.vocab, "vocab.json"}, {sources.merges, "merges.txt"}};
  std::vector<std::string> wrote, kept;
  for (const auto& [src, dst] : files) {
    std::error_code ec;
    if (fs::exists(fs::path(out) / dst, ec)) {
      kept.push_back(dst);
      continue;
    }
    if (!fs::copy_file(src, fs::path(out) / dst, fs::copy_options::none, ec))
      throw dtrain::RuntimeError(
          fmt::format("export: cannot copy '{}' to '{}': {}", src, (fs::path(out) / dst).string(), ec.message()));
    wrote.push_back(dst);
  }
  const fs::path config = fs::path(out) / "tokenizer_config.json";
  if (std::error_code ec; fs::exists(config, ec)) {
    kept.push_back("tokenizer_config.json");
  } else {
    const nlohmann::json j = {{"tokenizer_class", "GPT2Tokenizer"}, {"model_max_length", context_length},
                              {"bos_token", "<|endoftext|>"},      {"eos_token", "<|endoftext|>"},
                              {"unk_token", "<|endoftext|>"},      {"add_prefix_space", false}};
    std::ofstream f(config);
    f << j.dump(2) << "\n";
    if (!f) throw dtrain::RuntimeError(fmt::format("export: cannot write '{}'", config.string()));
    wrote.push_back("tokenizer_config.json");
  }
  return fmt::format("tokenizer (GPT-2, from {}): wrote {}{}", fs::path(sources.vocab).parent_path().string(),
                     fmt::join(wrote, ", "),
                     kept.empty() ? "" : fmt::format("; kept the {} already there", fmt::join(kept, ", ")));
}

// A run on a Hugging Face tokenizer: its tokenizer.json and
// tokenizer_config.json beside the model, as they are (never replacing a file).
std::string export_hf_tokenizer(const std::string& from, const std::string& out) {
  namespace fs = std::filesystem;
  std::vector<std::string> wrote, kept;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    const fs::path src = fs::path(from) / name, dst = fs::path(out) / name;
    std::error_code ec;
    if (!fs::is_regular_file(src, ec)) continue;  // tokenizer_config.json is optional
    if (fs::exists(dst, ec)) {
      kept.push_back(name);
      continue;
    }
    if (!fs::copy_file(src, dst, fs::copy_options::none, ec))
      throw dtrain::RuntimeError(
          fmt::format("export: cannot copy '{}' to '{}': {}", src.string(), dst.string(), ec.message()));
    wrote.push_back(name);
  }
  return fmt::format("tokenizer (Hugging Face, from {}): wrote {}{}", from, wrote.empty() ? "nothing" : fmt::format("{}", fmt::join(wrote, ", ")),
                     kept.empty() ? "" : fmt::format("; kept the {} already there", fmt::join(kept, ", ")));
}

}  // namespace

Subcommand add_export(CLI::App& app) {
  struct Opts {
    std::string path, format = "hf", out, tokenizer_dir;
    int64_t vocab_size = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Write a checkpoint's model in another format: --format hf = a Hugging Face GPT-2 "
                "or LLaMA directory (config.json, model.safetensors)");
  cmd->add_option("checkpoint", o->path, "A checkpoint, its checkpoint.h5, or a directory of them (the newest)")
      ->required();
  cmd->add_option("--format", o->format, "Output format")->check(CLI::IsMember({"hf"}));
  cmd->add_option("--out", o->out, "Output directory")->required()->check(output_dir());
  cmd->add_option("--vocab-size", o->vocab_size,
                  "Rows of the token embedding to export (default: the tokenizer's ids, 50257 for gpt2, "
                  "dropping padding rows; else all)")
      ->check(whole_number(1, INT32_MAX));
  cmd->add_option("--tokenizer-dir", o->tokenizer_dir,
                  "Tokenizer files to include, if not at the run's data.tokenizer_dir: for a run on GPT-2's tokens "
                  "(data.tokenizer = \"gpt2\") encoder.json and vocab.bpe (or an export's vocab.json and "
                  "merges.txt), for one on a Hugging Face tokenizer (\"hf\") its tokenizer.json; a byte-level run "
                  "has none")
      ->check(path_name());
  return {cmd, [o](Context& ctx) {
            if (ctx.world_rank != 0) return kExitOk;
            // An export never replaces files (the Hugging Face directory a run was started from, say).
            for (const char* name : {"config.json", "model.safetensors"})
              if (std::error_code ec; std::filesystem::exists(std::filesystem::path(o->out) / name, ec))
                throw dtrain::ConfigError(fmt::format("--out {}: it already holds {}, which an export does not replace: "
                                                      "export into a new directory (or move it away)",
                                                      o->out, name));
            // A directory that cannot be made is a bad --out (2, as dtrain run's), said before the
            // checkpoint is read; one made here and left empty by a failed export goes again.
            std::error_code ec;
            const bool existed = std::filesystem::exists(o->out, ec);
            if (std::filesystem::create_directories(o->out, ec); ec)
              throw dtrain::ConfigError(fmt::format("--out {}: cannot be created: {}", o->out, ec.message()));
            struct RemoveIfLeftEmpty {
              std::string dir;
              bool armed;
              ~RemoveIfLeftEmpty() {
                std::error_code e;
                if (armed && std::filesystem::is_empty(dir, e) && !e) std::filesystem::remove(dir, e);
              }
            } made{o->out, !existed};
            const dtrain::LoadedModel lm = dtrain::load_model(o->path);
            for (const std::string& s : lm.skipped) eprint("dtrain: warning: {}\n", printable(s));
            const bool gpt2 = lm.cfg.data.tokenizer == "gpt2", hf = lm.cfg.data.tokenizer == "hf";
            const std::string tokenizer_dir = o->tokenizer_dir.empty() ? lm.cfg.data.tokenizer_dir : o->tokenizer_dir;
            const dtrain::Gpt2TokenizerFiles sources =
                gpt2 ? tokenizer_sources(tokenizer_dir, !o->tokenizer_dir.empty()) : dtrain::Gpt2TokenizerFiles{};
            // The tokenizer is read before anything is written: a file it
            // cannot run is not copied, and a Hugging Face one's ids and
            // markers go into config.json.
            const std::string from = o->tokenizer_dir.empty() ? "data.tokenizer_dir" : "--tokenizer-dir";
            std::unique_ptr<dtrain::Tokenizer> tok;
            try {
              tok = dtrain::make_tokenizer(lm.cfg.data, o->tokenizer_dir);
            } catch (const dtrain::ConfigError& e) {  // a byte-level model's
              throw dtrain::ConfigError(fmt::format("--tokenizer-dir: {}", e.what()));
            } catch (const dtrain::InputError& e) {
              throw dtrain::ConfigError(fmt::format("{}: {} (the run trained on its ids, data.tokenizer = \"{}\"; "
                                                    "point --tokenizer-dir at {})",
                                                    from, e.what(), lm.cfg.data.tokenizer,
                                                    hf ? "its tokenizer.json" : "GPT-2's encoder.json and vocab.bpe"));
            }
            if (gpt2 || hf) dtrain::check_tokenizer_fits(*tok, lm.cfg.model.vocab_size, from, tokenizer_dir);
            const dtrain::HfExportResult r = dtrain::export_hf(*lm.model, lm.cfg, o->out, o->vocab_size, hf ? tok.get() : nullptr);
            for (const auto& n : r.notes) print_line(n);
            print_line(fmt::format("exported {} (step {}) to {}: config.json, model.safetensors ({} tensors, {} bytes)",
                       lm.dir, lm.meta.step, o->out, r.tensors, r.bytes));
            if (gpt2) print_line(export_gpt2_tokenizer(sources, o->out, lm.cfg.model.context_length));
            if (hf) print_line(export_hf_tokenizer(tokenizer_dir, o->out));
            made.armed = false;
            return kExitOk;
          }};
}

}  // namespace dtrain_cli
