// Placeholder until the CNN layers land.
#include "model/model.h"
namespace dtrain {
void build_cnn(Model&, const ModelConfig&, const ModelParallel&) { throw InternalError("CNN not built yet"); }
}  // namespace dtrain
