// The arrival notices of arrival_board.h: persistent receives, one per peer,
// restarted as notices come in; sends kept until MPI reports them done.
#include "dist/arrival_board.h"

#include "core/error.h"
#include "dist/mpi_runtime.h"

namespace dtrain::detail {

namespace {
constexpr int kNoticeTag = 7;
constexpr int kNoticeInts = sizeof(Notice) / sizeof(int64_t);
static_assert(sizeof(Notice) == 4 * sizeof(int64_t));
}  // namespace

ArrivalBoard::ArrivalBoard(MPI_Comm comm, int rank, int size)
    : comm_(comm), rank_(rank), size_(size), inbox_(size), receives_(size, MPI_REQUEST_NULL),
      latest_(size), history_(static_cast<size_t>(size) * kHistory), ready_(size) {
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
  for (MPI_Request& r : receives_) {
    if (r == MPI_REQUEST_NULL) continue;
    MPI_Cancel(&r);
    MPI_Wait(&r, MPI_STATUS_IGNORE);
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

const Notice* ArrivalBoard::received(int m, int64_t seq) const {
  const Notice& n = history_[static_cast<size_t>(m) * kHistory + seq % kHistory];
  return n.seq == seq ? &n : nullptr;
}

void ArrivalBoard::compare(int m, const Notice& theirs) {
  const Notice* mine = received(rank_, theirs.seq);
  if (mismatch_.member < 0 && mine && !mine->same_call(theirs)) mismatch_ = {m, *mine, theirs};
}

void ArrivalBoard::announce(const Notice& n) {
  drain();
  history_[static_cast<size_t>(rank_) * kHistory + n.seq % kHistory] = n;
  for (int m = 0; m < size_; ++m)
    if (const Notice* theirs = m != rank_ ? received(m, n.seq) : nullptr) compare(m, *theirs);
  Batch& b = sending_.emplace_back();
  b.notice = n;
  b.sends.assign(size_ - 1, MPI_REQUEST_NULL);
  int k = 0;
  for (int m = 0; m < size_; ++m) {
    if (m == rank_) continue;
    mpi_check(MPI_Isend(&b.notice, kNoticeInts, MPI_INT64_T, m, kNoticeTag, comm_, &b.sends[k++]),
              "MPI_Isend (arrival notice)");
  }
}

void ArrivalBoard::drain() {
  for (;;) {
    int count = 0;
    mpi_check(MPI_Testsome(size_, receives_.data(), &count, ready_.data(), MPI_STATUSES_IGNORE),
              "MPI_Testsome (arrival notices)");
    if (count == MPI_UNDEFINED || count == 0) break;
    for (int i = 0; i < count; ++i) {
      int m = ready_[i];
      const Notice& n = inbox_[m];
      latest_[m] = n;
      history_[static_cast<size_t>(m) * kHistory + n.seq % kHistory] = n;
      compare(m, n);
      mpi_check(MPI_Start(&receives_[m]), "MPI_Start");
    }
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
