// Hugging Face's tokenizers.js (npm @huggingface/tokenizers, which
// tools/setup.sh installs in data/npm) on text files: the reference encoder
// of tests/apps/hf_tokenizer.sh and tools/bench/tokenize_bench.py. Each file
// is encoded whole, as transformers' encode with add_special_tokens=False;
// with --jsonl MARKER, each line of the first file is a JSON object whose
// "text" is a document, written after the id MARKER.
//   node tools/hf_tokenize_js.mjs TOKENIZER_DIR OUT [--int32] [--jsonl MARKER] FILE...
// OUT: the ids, one per line, or with --int32 as little-endian int32.
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const { Tokenizer } = await import(path.join(root, "data/npm/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs"));
const args = process.argv.slice(2);
const flag = (name, value) => {
  const at = args.indexOf(name);
  if (at < 0) return undefined;
  return args.splice(at, value ? 2 : 1)[value ? 1 : 0];
};
const int32 = flag("--int32", false) !== undefined;
const marker = flag("--jsonl", true);
const [dir, out, ...files] = args;
const read = (f) => JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
const tok = new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json"));
const encode = (text) => tok.encode(text, { add_special_tokens: false }).ids;
const ids = [];
files.forEach((file, i) => {
  const text = fs.readFileSync(file, "utf8");
  if (marker !== undefined && i === 0) {
    for (const line of text.split("\n").filter((l) => l.trim())) ids.push(Number(marker), ...encode(JSON.parse(line).text));
  } else {
    for (const id of encode(text)) ids.push(id);
  }
});
fs.writeFileSync(out, int32 ? Buffer.from(Int32Array.from(ids).buffer) : ids.join("\n") + "\n");
