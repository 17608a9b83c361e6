# Acceptance: the default GPT config lowers the validation loss on the shipped
# text well below its starting value (uniform over 256 bytes: ln 256 = 5.5).
source "$(dirname "$0")/common.bash"
cd "$DTRAIN_SOURCE_DIR"
expect_exit 0 "$DTRAIN" run configs/gpt.toml --out "$WORK/run"
tail -3 "$WORK/out"
python3 - "$WORK/run/metrics.jsonl" <<'PY' || fail "validation loss did not fall enough"
import json, sys
ev = [json.loads(l)["eval_loss"] for l in open(sys.argv[1]) if "eval_loss" in l]
print("validation loss", ev[0], "->", ev[-1])
assert ev[-1] < 0.4 * ev[0] and ev[-1] < 2.0, ev
PY

# The trained model continues "In the beginning" greedily with Bible-like
# English: printable text, mostly words, several of the Bible's commonest.
expect_exit 0 "$DTRAIN" generate "$WORK/run/checkpoints" --prompt "In the beginning" --temperature 0 --tokens 200
cat "$WORK/out"
python3 - "$WORK/out" <<'PY' || fail "the greedy continuation does not look like English"
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
assert text.startswith("In the beginning"), text
assert all(c.isprintable() or c in "\n\t" for c in text), repr(text)
words = re.findall(r"[A-Za-z]+", text[len("In the beginning"):])
assert len(words) >= 20, words
common = {"the", "and", "of", "unto", "he", "his", "lord", "god", "that", "in", "shall", "to", "be", "said",
          "was", "is", "for", "them", "they", "it", "with", "all", "not", "i", "thou", "thee", "him", "my",
          "which", "upon", "me", "will", "thy", "a", "their", "ye", "were", "there", "hath", "this", "from"}
hits = {w.lower() for w in words} & common
assert len(hits) >= 5, (hits, text)
assert sum(w.lower() in common for w in words) >= 0.3 * len(words), text
print("generate: %d words, common ones: %s" % (len(words), sorted(hits)))
PY
