#!/usr/bin/env python3
"""Converts a text file into llm.c token files for dtrain's GPT training.

The tokenizer is byte-level: each UTF-8 byte of the text is one token, so the
vocabulary is 256 (set model.vocab_size >= 256). The last --val-fraction of
the bytes become the validation split. Writes PREFIX_train.bin and
PREFIX_val.bin in llm.c's format: a header of 256 little-endian int32
(magic 20240520, version 1, token count), then the tokens as uint16.

    python3 tools/text_to_bin.py input.txt --out data/shakespeare
    cat input.txt | python3 tools/text_to_bin.py - --out data/shakespeare

Python 3 standard library only.
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
    """Writes byte tokens (a bytes object) as an llm.c .bin file."""
    header = [0] * HEADER_INTS
    header[0], header[1], header[2] = MAGIC, VERSION, len(tokens)
    body = bytearray(2 * len(tokens))  # uint16 little-endian: low byte, then a zero high byte
    body[0::2] = tokens
    with open(path, "wb") as f:
        f.write(struct.pack("<%di" % HEADER_INTS, *header))
        f.write(body)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert text to llm.c token files (byte-level tokens, vocab 256).")
    parser.add_argument("input", help="a text file, or - for standard input")
    parser.add_argument("--out", required=True,
                        help="output prefix: writes PREFIX_train.bin and PREFIX_val.bin")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="the fraction of the text, taken from its end, that becomes the "
                             "validation split (default 0.1)")
    args = parser.parse_args(argv)

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
    for name, tokens in splits:
        path = "%s_%s.bin" % (args.out, name)
        write_token_file(path, tokens)
        print("wrote %s: %d tokens" % (path, len(tokens)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
