// ArrivalBoard: how a communicator learns which members reached a collective,
// so that a timeout can name the ranks that did not arrive.
//
// Every member, on issuing collective number s of its group, posts a tiny
// non-blocking message (the notice: s and the collective's signature) to each
// other member on a private duplicate of the group's communicator, and drains
// the notices that came to it. MPI keeps messages from one sender in order, so
// the latest notice from member m says how far m has got: on a timeout at
// collective s, the members whose latest notice is older than s are the ones
// that did not arrive, and a member whose notice for s carries another
// signature called a different collective. Cost: size()-1 sends of 32 bytes
// per collective and a test of size()-1 persistent receives (see
// apps/bench/comm_bench.cpp for the measurement). Used only from the thread
// that calls MPI (MPI_THREAD_FUNNELED).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace dtrain::detail {

// What a member announces on issuing a collective (all int64, 32 bytes).
struct Notice {
  int64_t seq = 0;     // the group's collective number, from 1; 0 = nothing yet
  int64_t kind = 0;    // the collective (CollKind)
  int64_t count = 0;   // elements that identify it (the same on every member)
  int64_t detail = 0;  // (dtype << 8) | reduce op or root
  bool same_call(const Notice& o) const {
    return kind == o.kind && count == o.count && detail == o.detail;
  }
};

class ArrivalBoard {
 public:
  // How many recent collectives of each member are remembered for comparison.
  static constexpr int kHistory = 64;

  // Two members that announced different collectives under one number.
  struct Mismatch {
    int member = -1;  // the other member
    Notice mine, theirs;
  };

  // comm: a communicator the board owns from now on (a duplicate of the group's).
  ArrivalBoard(MPI_Comm comm, int rank, int size);
  ~ArrivalBoard();
  ArrivalBoard(const ArrivalBoard&) = delete;
  ArrivalBoard& operator=(const ArrivalBoard&) = delete;

  // Tells every other member that this one issued n (MPI errors throw).
  void announce(const Notice& n);
  // Takes in every notice that has come; frees completed sends.
  void drain();
  // How long the destructor waits for every member's closing notice.
  static constexpr double kCloseWaitSeconds = 0.5;
  // Tells every other member that this one is still waiting in collective
  // `seq` (sent about once a second by a wait that blocks): what lets a
  // member that is stopped or dead mid-transfer, after every member arrived,
  // be told apart from those waiting with it (silent_seconds).
  void heartbeat(int64_t seq);
  // Seconds since anything came from member m (its first notice, a
  // heartbeat), or since the board was made; at the last drain.
  double silent_seconds(int m) const;
  // The latest notice from member m (seq 0: none yet).
  const Notice& latest(int m) const { return latest_[m]; }
  // Member m's notice for collective seq, if it came and is still remembered.
  const Notice* received(int m, int64_t seq) const;
  // The first disagreement seen between this member's collectives and
  // another's, compared as soon as both notices are known; null if none.
  const Mismatch* mismatch() const { return mismatch_.member >= 0 ? &mismatch_ : nullptr; }

 private:
  struct Batch {
    Notice notice;
    std::vector<MPI_Request> sends;
  };
  void compare(int m, const Notice& theirs);
  // Takes in one member's notice (the closing one ends its receives).
  void take(int m);
  // The close before the duplicate is freed (see the destructor).
  void close();

  MPI_Comm comm_;
  int rank_;
  int size_;
  std::vector<Notice> inbox_;          // receive buffer per member
  std::vector<MPI_Request> receives_;  // persistent receive per member (null for self)
  std::vector<Notice> latest_;
  std::vector<Notice> history_;        // member m's notice for seq s at [m * kHistory + s % kHistory]
  std::vector<int> ready_;             // MPI_Testsome's output
  std::vector<char> closed_;           // member m's closing notice came (its receive is over)
  std::vector<double> heard_;          // MPI_Wtime when member m's last message came (or the board's start)
  void send_all(const Notice& n, const char* what);
  std::deque<Batch> sending_;          // deque: a batch's notice stays put while sent
  Mismatch mismatch_;
};

}  // namespace dtrain::detail
