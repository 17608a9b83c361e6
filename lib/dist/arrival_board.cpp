// The arrival notices of arrival_board.h: persistent receives, one per peer,
// restarted as notices come in; sends kept until MPI reports them done.
#include "dist/arrival_board.h"

#include "core/error.h"
#include "dist/mpi_runtime.h"

namespace dtrain::detail {

namespace {
constexpr int kNoticeTag = 7;
constexpr int kNoticeInts = sizeof(Notice) / sizeof(int64_t);
constexpr int64_t kClosing = -1;  // Notice::seq of the last notice a member sends
constexpr int64_t kWaiting = -2;  // Notice::seq of a heartbeat (count: the collective it waits in)
static_assert(sizeof(Notice) == 4 * sizeof(int64_t));
}  // namespace

ArrivalBoard::ArrivalBoard(MPI_Comm comm, int rank, int size)
    : comm_(comm), rank_(rank), size_(size), inbox_(size), receives_(size, MPI_REQUEST_NULL),
      latest_(size), history_(static_cast<size_t>(size) * kHistory), ready_(size), closed_(size, 0),
      heard_(size, MPI_Wtime()) {
  for (int m = 0; m < size_; ++m) {
    if (m == rank_) continue;
    mpi_check(MPI_Recv_init(&inbox_[m], kNoticeInts, MPI_INT64_T, m, kNoticeTag, comm_,
                            &receives_[m]),
              "MPI_Recv_init");
    mpi_check(MPI_Start(&receives_[m]), "MPI_Start");
  }
}

ArrivalBoard::~ArrivalBoard() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (finalised) return;
  close();
  for (int m = 0; m < size_; ++m) {
    MPI_Request& r = receives_[m];
    if (r == MPI_REQUEST_NULL) continue;
    if (!closed_[m]) {  // still active: a member that did not close in time
      MPI_Cancel(&r);
      MPI_Wait(&r, MPI_STATUS_IGNORE);
    }
    MPI_Request_free(&r);
  }
  while (!sending_.empty()) {
    Batch& b = sending_.front();
    int done = 0;
    MPI_Testall(static_cast<int>(b.sends.size()), b.sends.data(), &done, MPI_STATUSES_IGNORE);
    if (!done) {
      // A peer that never drained (it died or hung): MPI may still read these
      // 32-byte buffers, so they are left allocated rather than freed under it.
      new std::deque<Batch>(std::move(sending_));
      break;
    }
    sending_.pop_front();
  }
  MPI_Comm_free(&comm_);
}

// A notice still unreceived when the duplicate is freed stays queued under
// its context id, which MPI hands to a later duplicate: a group made after
// this one (another mesh in the same process) would read it as its own
// notice, and report a mismatch between members that agree. So every member
// sends a closing notice and takes in notices until each other member's
// closing one has come: MPI keeps one sender's messages in order, so then
// all of that member's notices have been received. A member that does not
// close within kCloseWaitSeconds (dead, hung, or still busy elsewhere) is
// left as before.
void ArrivalBoard::close() {
  try {
    announce(Notice{kClosing, 0, 0, 0});
    const double deadline = MPI_Wtime() + kCloseWaitSeconds;
    auto all_closed = [&] {
      for (int m = 0; m < size_; ++m)
        if (m != rank_ && !closed_[m]) return false;
      return true;
    };
    while (!all_closed() && MPI_Wtime() < deadline) drain();
  } catch (const Error&) {
    // MPI failed under a destructor: the receives are cancelled below.
  }
}

const Notice* ArrivalBoard::received(int m, int64_t seq) const {
  const Notice& n = history_[static_cast<size_t>(m) * kHistory + seq % kHistory];
  return n.seq == seq ? &n : nullptr;
}

void ArrivalBoard::compare(int m, const Notice& theirs) {
  const Notice* mine = received(rank_, theirs.seq);
  if (mismatch_.member < 0 && mine && !mine->same_call(theirs)) mismatch_ = {m, *mine, theirs};
}

void ArrivalBoard::send_all(const Notice& n, const char* what) {
  Batch& b = sending_.emplace_back();
  b.notice = n;
  b.sends.assign(size_ - 1, MPI_REQUEST_NULL);
  int k = 0;
  for (int m = 0; m < size_; ++m)
    if (m != rank_)
      mpi_check(MPI_Isend(&b.notice, kNoticeInts, MPI_INT64_T, m, kNoticeTag, comm_, &b.sends[k++]), what);
}

void ArrivalBoard::announce(const Notice& n) {
  drain();
  if (n.seq == kClosing) {
    send_all(n, "MPI_Isend (closing notice)");
    return;
  }
  history_[static_cast<size_t>(rank_) * kHistory + n.seq % kHistory] = n;
  for (int m = 0; m < size_; ++m)
    if (const Notice* theirs = m != rank_ ? received(m, n.seq) : nullptr) compare(m, *theirs);
  send_all(n, "MPI_Isend (arrival notice)");
}

void ArrivalBoard::heartbeat(int64_t seq) {
  drain();
  send_all(Notice{kWaiting, 0, seq, 0}, "MPI_Isend (waiting notice)");
}

double ArrivalBoard::silent_seconds(int m) const { return MPI_Wtime() - heard_[m]; }

void ArrivalBoard::take(int m) {
  const Notice& n = inbox_[m];
  heard_[m] = MPI_Wtime();
  if (n.seq == kClosing) {  // its last: the receive stays inactive
    closed_[m] = 1;
    return;
  }
  if (n.seq == kWaiting) {  // alive and waiting: nothing else to record
    mpi_check(MPI_Start(&receives_[m]), "MPI_Start");
    return;
  }
  latest_[m] = n;
  history_[static_cast<size_t>(m) * kHistory + n.seq % kHistory] = n;
  compare(m, n);
  mpi_check(MPI_Start(&receives_[m]), "MPI_Start");
}

void ArrivalBoard::drain() {
  for (;;) {
    int count = 0;
    mpi_check(MPI_Testsome(size_, receives_.data(), &count, ready_.data(), MPI_STATUSES_IGNORE),
              "MPI_Testsome (arrival notices)");
    if (count == MPI_UNDEFINED || count == 0) break;
    for (int i = 0; i < count; ++i) take(ready_[i]);
  }
  while (!sending_.empty()) {
    Batch& b = sending_.front();
    int done = 0;
    mpi_check(MPI_Testall(static_cast<int>(b.sends.size()), b.sends.data(), &done,
                          MPI_STATUSES_IGNORE),
              "MPI_Testall (arrival notices)");
    if (!done) break;
    sending_.pop_front();
  }
}

}  // namespace dtrain::detail
