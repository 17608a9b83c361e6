#!/usr/bin/env bash
# Drives fault_rank (FAULT_RANK) under mpirun (MPIRUN) in one mode and checks
# that the job fails rather than hangs: a non-zero exit status, within a
# bounded time, and for the timeouts a message naming the collective, the
# group, its number and the rank that did not arrive. `timeout` is the net.
set -u
mode=$1
# How the ranks that caught the failure end: abort | return; or "recover":
# mpirun --enable-recovery does not end the job when a rank dies, so the
# survivors must find out by themselves (a 2 s timeout), then abort.
ending=${2:-abort}
np=2
case $mode in late|skip) np=3 ;; esac
launcher_args=()
program_args=("$mode" "$ending")
if [ "$ending" = recover ]; then
  launcher_args=(--enable-recovery)
  program_args=("$mode" abort 2)
fi
fail() { echo "FAIL ($mode $ending): $*"; exit 1; }

start=$(date +%s%N)
out=$(timeout -k 5 60 "$MPIRUN" --allow-run-as-root --oversubscribe "${launcher_args[@]}" \
  -np $np "$FAULT_RANK" "${program_args[@]}" 2>&1)
rc=$?
elapsed=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
echo "$out"
echo "-- exit status $rc after $elapsed s"

below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
[ $rc -ne 124 ] && below "$elapsed" 60 || fail "the job hung until timeout killed it"
# (Open MPI 4.1's mpirun --enable-recovery exits 0 even after an MPI_Abort:
# there the message is the evidence.)
[ $rc -ne 0 ] || [ "$ending" = recover ] || fail "the job exited 0"

case $mode in
  late|skip)
    # With "abort" the first survivor to time out ends the job, so the other
    # may not get to print: one report is required, both only otherwise.
    line=$(grep -m1 -E '^rank [01] caught after' <<<"$out") || fail "no surviving rank reported the timeout"
    for part in "all_reduce of 1024 fp32 (sum) on group 'dp'" "collective #2" \
                "world ranks 0, 1, 2" "did not complete within 1 s" \
                "world rank 2 (last here at #1) did not arrive"; do
      grep -qF "$part" <<<"$line" || fail "the message lacks: $part"
    done
    if [ "$ending" != abort ]; then
      grep -q '^rank 0 caught after' <<<"$out" || fail "rank 0 did not report the timeout"
      grep -q '^rank 1 caught after' <<<"$out" || fail "rank 1 did not report the timeout"
    fi
    waited=$(sed -E 's/^rank [01] caught after ([0-9.]+) s.*/\1/' <<<"$line")
    below "$waited" 5 || fail "a survivor waited $waited s for a 1 s timeout"
    below "$elapsed" 20 || fail "the job took $elapsed s"
    ;;
  mismatch)
    # Whichever rank compares the notices first reports both calls.
    line=$(grep -m1 '^rank [01] caught after' <<<"$out") || fail "no rank reported the mismatch"
    for part in "broadcast of 1024 fp32 from member 0 (world rank 0)" "all_reduce of 1024 fp32 (sum)" \
                "on group 'dp' (collective #2;" "as #2: the ranks disagree on the order of collectives"; do
      grep -qF "$part" <<<"$line" || fail "the message lacks: $part"
    done
    below "$elapsed" 20 || fail "the job took $elapsed s"
    ;;
  kill|exit)
    if [ "$ending" = recover ]; then
      line=$(grep -m1 '^rank 0 caught after' <<<"$out") || fail "rank 0 did not report the dead rank"
      for part in "all_reduce of 1024 fp32 (sum) on group 'dp' (collective #2" \
                  "world rank 1 (last here at #1) did not arrive"; do
        grep -qF "$part" <<<"$line" || fail "the message lacks: $part"
      done
    fi
    # Otherwise mpirun notices the lost rank and ends the job; the survivors'
    # 60 s timeout is never reached.
    below "$elapsed" 20 || fail "the job took $elapsed s to end after a rank died"
    ;;
esac
echo "PASS ($mode $ending)"
