// `dtrain keygen PREFIX`: an Ed25519 key pair for signed checkpoints,
// PREFIX.key (secret, mode 0600: checkpoint.sign_key_file) and PREFIX.pub
// (public: checkpoint.verify_key_file, resume/inspect --verify-key). Never
// overwrites a key (checkpoint/signing.h).
#include <memory>
#include <string>

#include <fmt/format.h>

#include "checkpoint/signing.h"
#include "commands.h"

namespace dtrain_cli {

Subcommand add_keygen(CLI::App& app) {
  auto prefix = std::make_shared<std::string>();
  auto* keygen = app.add_subcommand(
      "keygen", "Create an Ed25519 key pair for signed checkpoints: PREFIX.key (secret) and PREFIX.pub");
  keygen->add_option("prefix", *prefix, "File name prefix, e.g. keys/ckpt -> keys/ckpt.key, keys/ckpt.pub")
      ->required();
  return {keygen, [prefix](Context& ctx) {
            if (ctx.world_rank != 0) return kExitOk;  // one pair, not one per rank
            const std::string id = dtrain::ckpt_sign::write_key_pair(*prefix);
            print_line(fmt::format("wrote {0}.key (secret, mode 0600: checkpoint.sign_key_file) and {0}.pub "
                                   "(public: checkpoint.verify_key_file, --verify-key); key {1}",
                                   *prefix, id));
            return kExitOk;
          }};
}

}  // namespace dtrain_cli
