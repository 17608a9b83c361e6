#!/usr/bin/env bash
# tools/gpu/accept.sh is ready to run as it is: its syntax and bundle.sh's,
# and `dtrain validate` of every run its stages make (`accept.sh check`), on
# the build machine, so that the rare GPU session is not spent on a config
# error.
source "$(dirname "$0")/common.bash"
cd "$DTRAIN_SOURCE_DIR"
[ -f data/kjv_train.bin ] || { echo "skipped: no data/kjv_train.bin (tools/setup.sh makes it)"; exit 77; }
DTRAIN="$DTRAIN" bash tools/gpu/accept.sh check
