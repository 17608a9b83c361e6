#include "dist/mesh_groups.h"

namespace dtrain {

Groups mesh_groups(Mesh& mesh) {
  Groups g;
  g.layout = mesh.layout();
  g.coord = mesh.coord();
  g.world = &mesh.world();
  g.dp = &mesh.dp_group();
  g.tp = &mesh.tp_group();
  g.pp = &mesh.pp_group();
  g.embed = &mesh.embed_group();
  return g;
}

}  // namespace dtrain
