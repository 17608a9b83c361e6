// torchvision's ResNet BasicBlock as one top-level layer:
//   y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))
// conv1 is 3x3 with the block's stride, conv2 3x3 stride 1, both without bias.
// The shortcut is the identity, or a 1x1 convolution with the stride followed
// by batch norm when the shape changes (stride or channels). The ReLUs and
// the residual add are fused into the batch norms before them, and the
// shortcut's gradient is added into conv1's input gradient in its col2im pass.
#pragma once

#include <memory>

#include "model/batchnorm.h"
#include "model/conv2d.h"

namespace dtrain {

class BasicBlock : public Layer {
 public:
  // Parameters "<name>.conv1.weight", "<name>.bn1.*", "<name>.conv2.weight",
  // "<name>.bn2.*" and, when the shape changes, "<name>.shortcut.conv.weight",
  // "<name>.shortcut.bn.*".
  BasicBlock(ParamStore& ps, const std::string& name, int64_t in, int64_t out, int64_t stride);

  Shape output_shape(const Shape& in) const override;  // (B, in, H, W) -> (B, out, H/s, W/s)
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;
  void list_convolutions(const Shape& in, std::vector<std::pair<std::string, ops::ConvGeom>>& out) const override;

  bool has_shortcut() const { return sc_conv_ != nullptr; }

 private:
  Conv2d conv1_;
  BatchNorm2d bn1_;  // + ReLU
  Conv2d conv2_;
  BatchNorm2d bn2_;  // + shortcut + ReLU
  std::unique_ptr<Conv2d> sc_conv_;
  std::unique_ptr<BatchNorm2d> sc_bn_;
};

}  // namespace dtrain
