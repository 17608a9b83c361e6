// The dist tests' main: MPI is up for the whole doctest run (every rank runs
// every test case, in the same order, so collectives match). Ranks other than
// 0 print only failures.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "dist/mpi_runtime.h"

int main(int argc, char** argv) {
  dtrain::MpiRuntime mpi(&argc, &argv);
  doctest::Context context(argc, argv);
  if (mpi.world_rank() != 0) context.setOption("minimal", true);
  return context.run();
}
