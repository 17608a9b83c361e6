#!/usr/bin/env python3
"""Converts a text file into llm.c token files for dtrain's GPT training.

Two tokenizers:
  byte (the default): each UTF-8 byte of the text is one token, vocabulary 256
       (set model.vocab_size >= 256);
  gpt2: GPT-2's byte-level BPE with its own vocabulary and merges
       (tools/gpt2_bpe.py; encoder.json and vocab.bpe from --tokenizer-dir,
       data/gpt2 by default), vocabulary 50257 (set data.tokenizer = "gpt2" and
       model.vocab_size = 50304, GPT-2's padded to a multiple of 64). As in
       llm.c, the text is one document: it starts with <|endoftext|> (50256).
The last --val-fraction of the tokens become the validation split. Writes
PREFIX_train.bin and PREFIX_val.bin in llm.c's format: a header of 256
little-endian int32 (magic 20240520, version 1, token count), then the tokens
as uint16. With --shard-tokens N the training split is written as shards of at
most N tokens each, PREFIX_train_000000.bin, PREFIX_train_000001.bin, ..., as
llm.c writes large datasets: train on them with data.train =
"PREFIX_train_*.bin" (a window of seq_len + 1 tokens never spans two shards).

    python3 tools/text_to_bin.py input.txt --out data/shakespeare
    cat input.txt | python3 tools/text_to_bin.py - --out data/shakespeare
    python3 tools/text_to_bin.py data/kjv.txt --tokenizer gpt2 --out data/kjv_gpt2

Python 3 standard library only. `dtrain tokenize` writes the same files for
these two tokenizers (byte for byte), and also with a Hugging Face
tokenizer.json (LLaMA's, Qwen's, ...), from .jsonl datasets, on every core.
"""

import argparse
import os
import struct
import sys

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
MIN_TOKENS = 2  # a token file holds at least one input and its target


def write_token_file(path, tokens):
    """Writes tokens (bytes, or a list of ids < 65536) as an llm.c .bin file."""
    header = [0] * HEADER_INTS
    header[0], header[1], header[2] = MAGIC, VERSION, len(tokens)
    if isinstance(tokens, (bytes, bytearray)):
        body = bytearray(2 * len(tokens))  # uint16 little-endian: low byte, then a zero high byte
        body[0::2] = tokens
    else:
        body = struct.pack("<%dH" % len(tokens), *tokens)
    with open(path, "wb") as f:
        f.write(struct.pack("<%di" % HEADER_INTS, *header))
        f.write(body)


def main(argv=None):
    class OneLineParser(argparse.ArgumentParser):
        def error(self, message):  # one line, not argparse's usage block
            sys.stderr.write("text_to_bin: error: %s (--help for usage)\n" % message)
            sys.exit(2)

    parser = OneLineParser(
        description="Convert text to llm.c token files (byte-level tokens, vocab 256, or GPT-2 BPE).")
    parser.add_argument("input", help="a text file, or - for standard input")
    parser.add_argument("--out", required=True,
                        help="output prefix: writes PREFIX_train.bin and PREFIX_val.bin")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="the fraction of the text, taken from its end, that becomes the "
                             "validation split (default 0.1)")
    parser.add_argument("--tokenizer", choices=("byte", "gpt2"), default="byte",
                        help="byte (default): one token per UTF-8 byte; gpt2: GPT-2's BPE")
    parser.add_argument("--tokenizer-dir",
                        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gpt2"),
                        help="gpt2: the directory of encoder.json and vocab.bpe (default: data/gpt2)")
    parser.add_argument("--shard-tokens", type=int, default=0,
                        help="write the training split as shards of at most this many tokens "
                             "(PREFIX_train_NNNNNN.bin; default 0: one file)")
    args = parser.parse_args(argv)

    prefix = os.path.basename(args.out)
    if not prefix or os.path.isdir(args.out):
        parser.error("--out %r: expected a file name prefix such as data/kjv (writes data/kjv_train.bin and "
                     "data/kjv_val.bin), not a directory" % args.out)
    if args.shard_tokens != 0 and args.shard_tokens < MIN_TOKENS:
        parser.error("--shard-tokens must be 0 (one file) or at least %d, got %d" % (MIN_TOKENS, args.shard_tokens))
    if not 0.0 < args.val_fraction < 1.0:
        parser.error("--val-fraction must be between 0 and 1 (exclusive), got %g"
                     % args.val_fraction)
    try:
        if args.input == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.input, "rb") as f:
                data = f.read()
    except OSError as e:
        parser.error("cannot read %s: %s" % (args.input, e.strerror))
    if len(data) >= 2**31:
        parser.error("%s has %d bytes; a token file holds at most 2^31 - 1 tokens"
                     % (args.input, len(data)))

    if args.tokenizer == "gpt2":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from gpt2_bpe import EOT, Gpt2Bpe
        try:
            bpe = Gpt2Bpe(args.tokenizer_dir)
        except OSError as e:
            parser.error("cannot read the GPT-2 tokenizer in %s: %s (tools/setup.sh installs it)"
                         % (args.tokenizer_dir, e))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            parser.error("%s is not UTF-8 text: %s" % (args.input, e))
        data = [EOT] + bpe.encode(text)
    n_val = int(len(data) * args.val_fraction)
    splits = [("train", data[:len(data) - n_val]), ("val", data[len(data) - n_val:])]
    for name, tokens in splits:
        if len(tokens) < MIN_TOKENS:
            parser.error("the %s split would have %d token(s), a token file needs at least %d: "
                         "use a longer text or another --val-fraction"
                         % (name, len(tokens), MIN_TOKENS))

    out_dir = os.path.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    files = []
    for name, tokens in splits:
        if name == "train" and args.shard_tokens:
            n = args.shard_tokens
            cuts = [tokens[i:i + n] for i in range(0, len(tokens), n)]
            if len(cuts) > 1 and len(cuts[-1]) < MIN_TOKENS:  # a lone last token joins the shard before
                cuts[-2] = cuts[-2] + cuts[-1]
                cuts.pop()
            files += [("%s_train_%06d.bin" % (args.out, i), cut) for i, cut in enumerate(cuts)]
        else:
            files.append(("%s_%s.bin" % (args.out, name), tokens))
    for path, tokens in files:
        write_token_file(path, tokens)
        print("wrote %s: %d tokens" % (path, len(tokens)))
    if args.shard_tokens:
        print("train on them with data.train = \"%s_train_*.bin\"" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
