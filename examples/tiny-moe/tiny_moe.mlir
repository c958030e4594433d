// A tiny two-layer MoE decoder stack (no attention) in the moe dialect:
// embedding lookup, then per layer RMSNorm -> MoE layer (8 experts, top-2,
// SwiGLU, one shared expert) -> residual add, then a final RMSNorm.
// Weights are referenced by name, offset and length; no bytes are inline.
//
// Try: moe-opt examples/tiny-moe/tiny_moe.mlir -moe-decompose-layers

moe.weight @embed : tensor<256x64xf32>
    storage = <"tiny_moe.weights", offset = 0, length = 65536>
moe.weight @layer0.norm : tensor<64xf32>
    storage = <"tiny_moe.weights", offset = 65536, length = 256>
moe.weight @layer0.router : tensor<64x8xf32>
    storage = <"tiny_moe.weights", offset = 65792, length = 2048>
moe.weight @layer0.gate : tensor<8x64x128xf32>
    storage = <"tiny_moe.weights", offset = 67840, length = 262144>
moe.weight @layer0.up : tensor<8x64x128xf32>
    storage = <"tiny_moe.weights", offset = 329984, length = 262144>
moe.weight @layer0.down : tensor<8x128x64xf32>
    storage = <"tiny_moe.weights", offset = 592128, length = 262144>
moe.weight @layer0.shared_up : tensor<64x256xf32>
    storage = <"tiny_moe.weights", offset = 854272, length = 65536>
moe.weight @layer0.shared_gate : tensor<64x256xf32>
    storage = <"tiny_moe.weights", offset = 919808, length = 65536>
moe.weight @layer0.shared_down : tensor<256x64xf32>
    storage = <"tiny_moe.weights", offset = 985344, length = 65536>
moe.weight @layer1.norm : tensor<64xf32>
    storage = <"tiny_moe.weights", offset = 1050880, length = 256>
moe.weight @layer1.router : tensor<64x8xf32>
    storage = <"tiny_moe.weights", offset = 1051136, length = 2048>
moe.weight @layer1.gate : tensor<8x64x128xf32>
    storage = <"tiny_moe.weights", offset = 1053184, length = 262144>
moe.weight @layer1.up : tensor<8x64x128xf32>
    storage = <"tiny_moe.weights", offset = 1315328, length = 262144>
moe.weight @layer1.down : tensor<8x128x64xf32>
    storage = <"tiny_moe.weights", offset = 1577472, length = 262144>
moe.weight @layer1.shared_up : tensor<64x256xf32>
    storage = <"tiny_moe.weights", offset = 1839616, length = 65536>
moe.weight @layer1.shared_gate : tensor<64x256xf32>
    storage = <"tiny_moe.weights", offset = 1905152, length = 65536>
moe.weight @layer1.shared_down : tensor<256x64xf32>
    storage = <"tiny_moe.weights", offset = 1970688, length = 65536>
moe.weight @final_norm : tensor<64xf32>
    storage = <"tiny_moe.weights", offset = 2036224, length = 256>

func.func @forward(%ids: tensor<16xi64>) -> tensor<16x64xf32> {
  %embed = moe.weight_ref @embed : tensor<256x64xf32>
  %h0 = moe.gather %embed[%ids] axis = 0 : (tensor<256x64xf32>, tensor<16xi64>) -> tensor<16x64xf32>
  // Layer 0
  %l0_norm_w = moe.weight_ref @layer0.norm : tensor<64xf32>
  %l0_router = moe.weight_ref @layer0.router : tensor<64x8xf32>
  %l0_gate = moe.weight_ref @layer0.gate : tensor<8x64x128xf32>
  %l0_up = moe.weight_ref @layer0.up : tensor<8x64x128xf32>
  %l0_down = moe.weight_ref @layer0.down : tensor<8x128x64xf32>
  %l0_sgate = moe.weight_ref @layer0.shared_gate : tensor<64x256xf32>
  %l0_sup = moe.weight_ref @layer0.shared_up : tensor<64x256xf32>
  %l0_sdown = moe.weight_ref @layer0.shared_down : tensor<256x64xf32>
  %l0_x = moe.rms_norm %h0, %l0_norm_w axis = -1 epsilon = 1.0e-06
      : (tensor<16x64xf32>, tensor<64xf32>) -> tensor<16x64xf32>
  %l0_moe = moe.layer %l0_x router(%l0_router)
      experts(up %l0_up down %l0_down gate %l0_gate)
      shared_gate %l0_sgate shared_up %l0_sup shared_down %l0_sdown
      top_k = 2 score = softmax normalize activation = swiglu
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>,
         tensor<8x64x128xf32>, tensor<8x128x64xf32>, tensor<64x256xf32>,
         tensor<64x256xf32>, tensor<256x64xf32>) -> tensor<16x64xf32>
  %l0_out = moe.add %h0, %l0_moe
      : (tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
  // Layer 1
  %l1_norm_w = moe.weight_ref @layer1.norm : tensor<64xf32>
  %l1_router = moe.weight_ref @layer1.router : tensor<64x8xf32>
  %l1_gate = moe.weight_ref @layer1.gate : tensor<8x64x128xf32>
  %l1_up = moe.weight_ref @layer1.up : tensor<8x64x128xf32>
  %l1_down = moe.weight_ref @layer1.down : tensor<8x128x64xf32>
  %l1_sgate = moe.weight_ref @layer1.shared_gate : tensor<64x256xf32>
  %l1_sup = moe.weight_ref @layer1.shared_up : tensor<64x256xf32>
  %l1_sdown = moe.weight_ref @layer1.shared_down : tensor<256x64xf32>
  %l1_x = moe.rms_norm %l0_out, %l1_norm_w axis = -1 epsilon = 1.0e-06
      : (tensor<16x64xf32>, tensor<64xf32>) -> tensor<16x64xf32>
  %l1_moe = moe.layer %l1_x router(%l1_router)
      experts(up %l1_up down %l1_down gate %l1_gate)
      shared_gate %l1_sgate shared_up %l1_sup shared_down %l1_sdown
      top_k = 2 score = softmax normalize activation = swiglu
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>,
         tensor<8x64x128xf32>, tensor<8x128x64xf32>, tensor<64x256xf32>,
         tensor<64x256xf32>, tensor<256x64xf32>) -> tensor<16x64xf32>
  %l1_out = moe.add %l0_out, %l1_moe
      : (tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
  %final_w = moe.weight_ref @final_norm : tensor<64xf32>
  %y = moe.rms_norm %l1_out, %final_w axis = -1 epsilon = 1.0e-06
      : (tensor<16x64xf32>, tensor<64xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}
