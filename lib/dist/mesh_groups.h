// The bridge from a Mesh (MPI communicators) to the plain Groups the step
// loop takes, so that lib/train never needs to know whether its groups are
// MPI's, NCCL's or one-member ones.
#pragma once

#include "dist/mesh.h"
#include "parallel/layout.h"

namespace dtrain {

// Views of mesh's communicators (mesh must outlive the result).
Groups mesh_groups(Mesh& mesh);

}  // namespace dtrain
