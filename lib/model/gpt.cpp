// Placeholder until the GPT layers land.
#include "model/model.h"
namespace dtrain {
void build_gpt(Model&, const ModelConfig&, int64_t) { throw InternalError("GPT not built yet"); }
}  // namespace dtrain
