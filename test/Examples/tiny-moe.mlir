// RUN: moe-opt %moe_src_root/examples/tiny-moe/tiny_moe.mlir -moe-decompose-layers | FileCheck %s

// The bundled example decomposes into one routed pipeline per layer.
// CHECK-LABEL: func.func @forward
// CHECK-COUNT-2: moe.router
// CHECK-NOT: moe.layer
// CHECK: return
