#include "dist/mesh_groups.h"

namespace dtrain {

Groups mesh_groups(Mesh& mesh) {
  Groups g;
  const MeshLayout& l = mesh.layout();
  g.layout = Layout{.dp = l.dp, .tp = l.tp, .pp = l.pp};
  g.coord = Coord{.dp = mesh.coord().dp, .tp = mesh.coord().tp, .pp = mesh.coord().pp};
  g.world = &mesh.world();
  g.dp = &mesh.dp_group();
  g.tp = &mesh.tp_group();
  g.pp = &mesh.pp_group();
  g.embed = &mesh.embed_group();
  return g;
}

}  // namespace dtrain
