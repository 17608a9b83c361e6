// Signed checkpoints (checkpoint/signing.h): key files and their checks, the
// Ed25519 signature and BLAKE2b hashes in the manifest, a reader given a
// verify key refusing an unsigned checkpoint, another key's and a changed
// one; the run and checkpoint directories' permissions, and the paths a run
// may write through.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <memory>

#include "checkpoint/checksum.h"
#include "checkpoint/manifest.h"
#include "checkpoint/signing.h"
#include "checkpoint/store.h"
#include "core/error.h"
#include "helpers.h"

using namespace dtrain;
using namespace dtrain::testing;
namespace sign = dtrain::ckpt_sign;

namespace {

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// The message of `f()`'s ConfigError ("" if it throws none).
template <class F>
std::string config_error(F f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

struct Saved {
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> opt;
  std::string dir;
};

Saved save(const fs::path& root, std::shared_ptr<const sign::SecretKey> key, int64_t step = 2) {
  Saved s;
  s.model = build_model(tiny_gpt(), 8, DType::f32, Device::cpu(), 5);
  s.opt = make_optimizer(optim("adamw"), s.model->params);
  take_steps(*s.model, *s.opt, 2, 5);
  auto world = make_self_communicator("world");
  SaveOptions so;
  so.sign_key = std::move(key);
  CheckpointMeta meta = test_meta(step);
  meta.run_id = "00112233aabbccdd";
  s.dir = save_checkpoint(root.string(), meta, collect_pieces(*s.model, *s.opt), *world, so).dir;
  return s;
}

// The problem of the CheckpointSignatureError that `f()` throws ("" if none; "OTHER: ..." for another error).
template <class F>
std::string refusal(F f) {
  try {
    f();
  } catch (const CheckpointSignatureError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("OTHER: ") + e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("keygen writes an owner-only secret key and a public key, and never overwrites them") {
  TempDir dir;
  const std::string prefix = (dir.path / "ck").string();
  const std::string id = sign::write_key_pair(prefix);
  CHECK(id.size() == 16);
  CHECK(mode_of(prefix + ".key") == 0600);
  CHECK(mode_of(prefix + ".pub") == 0644);
  const sign::SecretKey sk = sign::read_secret_key(prefix + ".key", "checkpoint.sign_key_file");
  const sign::PublicKey pk = sign::read_public_key(prefix + ".pub", "checkpoint.verify_key_file");
  CHECK(sk.public_key().id() == id);
  CHECK(pk.id() == id);
  CHECK(sign::read_public_key(prefix + ".key", "--verify-key").id() == id);  // a secret key verifies too
  CHECK(read_file(prefix + ".key").size() == 28 + 129);
  CHECK(config_error([&] { sign::write_key_pair(prefix); }).find("never overwritten") != std::string::npos);
}

TEST_CASE("key files are checked: missing, not a file, permissions, length, kind, a damaged secret key") {
  TempDir dir;
  const std::string prefix = (dir.path / "k").string();
  sign::write_key_pair(prefix);
  const std::string key = prefix + ".key", pub = prefix + ".pub";
  auto secret_err = [](const std::string& path) {
    return config_error([&] { sign::read_secret_key(path, "checkpoint.sign_key_file"); });
  };
  auto public_err = [](const std::string& path) {
    return config_error([&] { sign::read_public_key(path, "checkpoint.verify_key_file"); });
  };
  const std::string missing = secret_err((dir.path / "nope.key").string());
  CHECK(missing.find("checkpoint.sign_key_file: '") == 0);
  CHECK(missing.find("does not exist") != std::string::npos);
  CHECK(secret_err(dir.str()).find("is not a regular file") != std::string::npos);
  ::chmod(key.c_str(), 0640);
  const std::string perms = secret_err(key);
  CHECK(perms.find("group or others may read or write it (mode 0640)") != std::string::npos);
  CHECK(perms.find("chmod 600") != std::string::npos);
  CHECK(public_err(key).find("mode 0640") != std::string::npos);  // verifying with it is refused too
  ::chmod(key.c_str(), 0400);
  CHECK(secret_err(key).empty());  // read-only for the owner is fine
  ::chmod(pub.c_str(), 0664);
  CHECK(public_err(pub).find("may be changed by group or others (mode 0664)") != std::string::npos);
  ::chmod(pub.c_str(), 0644);
  CHECK(public_err(pub).empty());
  // Wrong kind and length: a public key where a secret one belongs, a truncated file, extra bytes.
  const std::string text = read_file(pub);
  const fs::path pub_as_secret = dir.path / "pub_as.key";
  write_file(pub_as_secret, text);
  ::chmod(pub_as_secret.c_str(), 0600);
  CHECK(secret_err(pub_as_secret.string()).find("pub_as.key' is a public key; this needs the secret key") !=
        std::string::npos);
  // Named as such before its mode (0644, right for a public key) is blamed; a .pub suggests its .key.
  CHECK(secret_err(pub).find("is a public key; this needs the secret key ('" +
                                      (dir.path / "k.key").string() + "', beside it)") != std::string::npos);
  const fs::path cut = dir.path / "cut.pub", longer = dir.path / "long.pub";
  write_file(cut, text.substr(0, text.size() - 3));
  write_file(longer, text + "x\n");
  ::chmod(cut.c_str(), 0644);
  ::chmod(longer.c_str(), 0644);
  CHECK(public_err(cut.string()).find("a line of 64 hex digits, 93 bytes in all") != std::string::npos);
  CHECK(public_err(longer.string()).find("is not a dtrain Ed25519 public key file") != std::string::npos);
  // A secret key whose public half is not its own.
  std::string s = read_file(key);
  s[s.size() - 2] = s[s.size() - 2] == '0' ? '1' : '0';
  const fs::path bad = dir.path / "bad.key";
  write_file(bad, s);
  ::chmod(bad.c_str(), 0600);
  CHECK(secret_err(bad.string()).find("is damaged") != std::string::npos);
  // Through a symbolic link (as Kubernetes mounts secrets) to a regular file: fine.
  fs::create_symlink(pub, dir.path / "link.pub");
  CHECK(public_err((dir.path / "link.pub").string()).empty());
}

TEST_CASE("signatures: a changed message or another key does not verify") {
  TempDir dir;
  sign::write_key_pair((dir.path / "a").string());
  sign::write_key_pair((dir.path / "b").string());
  const auto a = sign::read_secret_key((dir.path / "a.key").string(), "a");
  const auto b = sign::read_public_key((dir.path / "b.pub").string(), "b");
  const std::string sig = sign::sign(a, "step 10\n");
  CHECK(sig.size() == 128);
  CHECK(sign::verify(a.public_key(), "step 10\n", sig));
  CHECK_FALSE(sign::verify(a.public_key(), "step 11\n", sig));
  CHECK_FALSE(sign::verify(b, "step 10\n", sig));
  // One hex digit changed. (Not "the last byte := 00": an Ed25519 signature
  // ends in S's top byte, which is below 0x20, so it is 00 one time in 16.)
  std::string changed = sig;
  changed[0] = changed[0] == '0' ? '1' : '0';
  CHECK_FALSE(sign::verify(a.public_key(), "step 10\n", changed));
  CHECK_FALSE(sign::verify(a.public_key(), "step 10\n", "not hex"));
  // BLAKE2b-256 as Python's hashlib.blake2b(b"abc", digest_size=32) gives it.
  sign::Hasher h;
  h.update("abc", 3);
  CHECK(h.hex() == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
}

TEST_CASE("a signed checkpoint loads with its key, and unsigned, another key's or changed ones are refused") {
  TempDir dir;
  sign::write_key_pair((dir.path / "mine").string());
  sign::write_key_pair((dir.path / "other").string());
  auto mine = std::make_shared<const sign::SecretKey>(sign::read_secret_key((dir.path / "mine.key").string(), "k"));
  const sign::PublicKey my_pub = mine->public_key();
  const sign::PublicKey other = sign::read_public_key((dir.path / "other.pub").string(), "--verify-key");

  Saved s = save(dir.path / "signed", mine);
  const auto m = ckpt_manifest::read(s.dir);
  REQUIRE(m);
  CHECK(m->key_id == my_pub.id());
  CHECK(m->signature.size() == 128);
  for (const auto& [name, sum] : m->files) CHECK(sum.blake2b.size() == 64);

  // The right key: loads bit for bit, verifies; without a key it reads as before.
  auto fresh = build_model(tiny_gpt(), 8, DType::f32, Device::cpu(), 77);
  auto fresh_opt = make_optimizer(optim("adamw"), fresh->params);
  std::vector<Piece> pieces = collect_pieces(*fresh, *fresh_opt);
  load_pieces(s.dir, pieces, &my_pub);
  CHECK(std::memcmp(fresh->params.values().raw(), s.model->params.values().raw(), s.model->params.values().bytes()) == 0);
  CHECK(verify_checkpoint(s.dir, &my_pub) > 0);
  CHECK(verify_checkpoint(s.dir) > 0);

  // Another key.
  const std::string wrong = refusal([&] { read_meta(s.dir, &other); });
  CHECK(wrong.find("manifest: signed with another key (key " + my_pub.id()) != std::string::npos);
  CHECK(wrong.find("is key " + other.id()) != std::string::npos);

  // Unsigned, and without a manifest at all.
  Saved u = save(dir.path / "unsigned", nullptr);
  CHECK(refusal([&] { read_meta(u.dir, &my_pub); }).find("manifest: not signed, and a verify key is configured") !=
        std::string::npos);
  fs::remove(fs::path(u.dir) / "manifest");
  CHECK(refusal([&] { read_meta(u.dir, &my_pub); }).find("manifest: missing, so the checkpoint is not signed") !=
        std::string::npos);

  // A changed line of the manifest, its own CRC recomputed: the signature no longer matches.
  const fs::path man = fs::path(s.dir) / "manifest";
  const std::string pristine = read_file(man);
  auto rewrite = [&](std::string text) {  // recompute the trailing crc32 line, as a careful editor would
    text = text.substr(0, text.rfind("crc32 "));
    write_file(man, text + fmt::format("crc32 {:08x}\n", crc32_of(text.data(), text.size())));
  };
  std::string t = pristine;
  t.replace(t.find("step 2\n"), 7, "step 3\n");
  rewrite(t);
  CHECK(refusal([&] { read_meta(s.dir, &my_pub); }).find("its signature does not match its contents") !=
        std::string::npos);
  // A line appended after the signature is not covered by it.
  t = pristine;
  t.insert(t.rfind("crc32 "), "run ffffffffffffffff\n");
  rewrite(t);
  CHECK(refusal([&] { read_meta(s.dir, &my_pub); }).find("lines after its signature") != std::string::npos);
  write_file(man, pristine);

  // A file whose bytes changed while its size and CRC-32 still match the manifest (a forged CRC):
  // only the signed hash tells. Simulated by a manifest whose signed hash differs.
  ckpt_manifest::Manifest forged = *m;
  forged.files["rank_00000.h5"].blake2b = std::string(64, '0');
  CHECK(refusal([&] { ckpt_manifest::verify(s.dir, forged, "rank_00000.h5", true); })
            .find("rank_00000.h5: the file's bytes do not match the signed manifest") != std::string::npos);
  CHECK(refusal([&] { ckpt_manifest::verify(s.dir, forged, "rank_00000.h5", false); }).empty());  // no key: CRC only
}

TEST_CASE("an asynchronous save (checkpoint.async) is signed as a synchronous one") {
  TempDir dir;
  sign::write_key_pair((dir.path / "k").string());
  auto key = std::make_shared<const sign::SecretKey>(sign::read_secret_key((dir.path / "k.key").string(), "k"));
  const sign::PublicKey pub = key->public_key();
  auto model = build_model(tiny_gpt(), 8, DType::f32, Device::cpu(), 5);
  auto opt = make_optimizer(optim("adamw"), model->params);
  auto world = make_self_communicator("world");
  SaveOptions so;
  so.sign_key = key;
  const PendingSave p = begin_save((dir.path / "ck").string(), test_meta(4), *world, so);
  CHECK(write_pending_part(p, collect_pieces(*model, *opt)).empty());
  const SaveResult r = publish_pending(p, 30.0);
  CHECK(ckpt_manifest::read(r.dir)->key_id == pub.id());
  CHECK(verify_checkpoint(r.dir, &pub) > 0);
  CHECK(mode_of(dir.path / "ck") == 0700);
}

TEST_CASE("run and checkpoint directories are created with log.dir_mode, whatever the umask") {
  TempDir dir;
  const mode_t old = ::umask(0);  // the most permissive umask: the mode must still hold
  store::create_dir(dir.path / "runs" / "a", 0700);
  store::create_dir(dir.path / "runs" / "b/", 0750);
  ::umask(old);
  CHECK(mode_of(dir.path / "runs" / "a") == 0700);
  CHECK(mode_of(dir.path / "runs" / "b") == 0750);
  ::chmod((dir.path / "runs" / "a").c_str(), 0755);
  store::create_dir(dir.path / "runs" / "a", 0700);  // an existing directory is left as it is
  CHECK(mode_of(dir.path / "runs" / "a") == 0755);
  // A checkpoint save creates its directory so.
  Saved s = save(dir.path / "runs" / "c" / "checkpoints", nullptr);
  CHECK(mode_of(dir.path / "runs" / "c" / "checkpoints") == 0700);
}

TEST_CASE("paths a run writes through: links out of the directories and '..' out of the run directory") {
  TempDir dir;
  const fs::path out = dir.path / "run", outside = dir.path / "elsewhere";
  fs::create_directories(out);
  fs::create_directories(outside);
  CHECK(store::write_path_problems(out.string(), (out / "checkpoints").string()).empty());
  CHECK(store::write_path_problems(out.string(), outside.string()).empty());  // configured elsewhere: allowed
  // '..' leading a checkpoint directory written as inside the run directory out of it.
  auto p = store::write_path_problems(out.string(), (out / ".." / "elsewhere").string());
  REQUIRE(p.size() == 1);
  CHECK(p[0].find("checkpoint.dir: '") == 0);
  CHECK(p[0].find("'..' or a symbolic link leads it to") != std::string::npos);
  // A link in its place does the same.
  fs::create_directory_symlink(outside, out / "checkpoints");
  p = store::write_path_problems(out.string(), (out / "checkpoints").string());
  REQUIRE(p.size() == 1);
  CHECK(p[0].find("leads it to '" + fs::weakly_canonical(outside).string()) != std::string::npos);
  fs::remove(out / "checkpoints");
  // A file dtrain writes, planted as a link to a file elsewhere.
  fs::create_symlink(outside / "victim", out / "metrics.jsonl");
  fs::create_directories(out / "checkpoints");
  fs::create_symlink(outside / "victim", out / "checkpoints" / "latest");
  p = store::write_path_problems(out.string(), (out / "checkpoints").string());
  REQUIRE(p.size() == 2);
  CHECK(p[0].find("log.out_dir: '" + (out / "metrics.jsonl").string() + "' is a symbolic link (to '") == 0);
  CHECK(p[1].find("checkpoint.dir: '" + (out / "checkpoints" / "latest").string() + "' is a symbolic link") == 0);
  // The resolved config the run writes first.
  fs::create_symlink(outside / "victim", out / "config.toml");
  p = store::write_path_problems(out.string(), (out / "checkpoints").string());
  REQUIRE(p.size() == 3);
  CHECK(p[0].find("log.out_dir: '" + (out / "config.toml").string() + "' is a symbolic link (to '") == 0);
}
