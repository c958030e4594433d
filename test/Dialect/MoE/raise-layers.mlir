// RUN: moe-opt %s -moe-raise-layers -split-input-file | FileCheck %s

// The batched_mm form of a Mixtral block as the dynamo exporter writes it
// (after import): softmax router, renormalised top-2, gathered SwiGLU experts,
// weighted sum over the slots. T = 4 tokens, H = 8, E = 4 experts, I = 6.
// CHECK-LABEL: func.func @mixtral_gathered
// CHECK-SAME: (%[[X:.*]]: tensor<4x8xf32>, %[[WR:.*]]: tensor<4x8xf32>, %[[WGU:.*]]: tensor<4x12x8xf32>, %[[WD:.*]]: tensor<4x8x6xf32>)
// CHECK-DAG: %[[ROUTER:.*]] = moe.transpose %[[WR]] permutation = [1, 0] : tensor<4x8xf32> -> tensor<8x4xf32>
// CHECK-DAG: %[[GS:.*]] = moe.slice %[[WGU]] starts = [0] ends = [6] axes = [1] steps = [1] : tensor<4x12x8xf32> -> tensor<4x6x8xf32>
// CHECK-DAG: %[[GATE:.*]] = moe.transpose %[[GS]] permutation = [0, 2, 1] : tensor<4x6x8xf32> -> tensor<4x8x6xf32>
// CHECK-DAG: %[[US:.*]] = moe.slice %[[WGU]] starts = [6] ends = [12] axes = [1] steps = [1]
// CHECK-DAG: %[[UP:.*]] = moe.transpose %[[US]] permutation = [0, 2, 1]
// CHECK-DAG: %[[DOWN:.*]] = moe.transpose %[[WD]] permutation = [0, 2, 1] : tensor<4x8x6xf32> -> tensor<4x6x8xf32>
// CHECK: %[[Y:.*]] = moe.layer %[[X]] router(%[[ROUTER]]) experts(up %[[UP]] down %[[DOWN]] gate %[[GATE]]) top_k = 2 score = softmax normalize activation = swiglu
// CHECK-NOT: moe.gather
// CHECK-NOT: moe.top_k
// CHECK: return %[[Y]]
func.func @mixtral_gathered(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>,
                            %wgu: tensor<4x12x8xf32>, %wd: tensor<4x8x6xf32>)
    -> tensor<4x8xf32> {
  %logits = moe.gemm %x, %wr trans_b : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x4xf32>
  %p = moe.softmax %logits axis = -1 : tensor<4x4xf32>
  %v, %i = moe.top_k %p k = 2 axis = -1 : tensor<4x4xf32> -> tensor<4x2xf32>, tensor<4x2xi64>
  %s = moe.reduce sum %v axes = [-1] keep_dims : tensor<4x2xf32> -> tensor<4x1xf32>
  %w = moe.div %v, %s : (tensor<4x2xf32>, tensor<4x1xf32>) -> tensor<4x2xf32>
  %x3 = moe.reshape %x : (tensor<4x8xf32>) -> tensor<4x1x8xf32>
  %xe = moe.expand %x3 : tensor<4x1x8xf32> -> tensor<4x2x8xf32>
  %xr = moe.reshape %xe : (tensor<4x2x8xf32>) -> tensor<8x8xf32>
  %xc = moe.reshape %xr : (tensor<8x8xf32>) -> tensor<8x8x1xf32>
  %ie = moe.reshape %i : (tensor<4x2xi64>) -> tensor<8xi64>
  %gu = moe.gather %wgu[%ie] axis = 0 : (tensor<4x12x8xf32>, tensor<8xi64>) -> tensor<8x12x8xf32>
  %h3 = moe.matmul %gu, %xc : (tensor<8x12x8xf32>, tensor<8x8x1xf32>) -> tensor<8x12x1xf32>
  %h = moe.reshape %h3 : (tensor<8x12x1xf32>) -> tensor<8x12xf32>
  %g, %u = moe.split %h axis = 1 : tensor<8x12xf32> -> tensor<8x6xf32>, tensor<8x6xf32>
  %sg = moe.sigmoid %g : tensor<8x6xf32>
  %silu = moe.mul %g, %sg : (tensor<8x6xf32>, tensor<8x6xf32>) -> tensor<8x6xf32>
  %a = moe.mul %silu, %u : (tensor<8x6xf32>, tensor<8x6xf32>) -> tensor<8x6xf32>
  %ac = moe.reshape %a : (tensor<8x6xf32>) -> tensor<8x6x1xf32>
  %d = moe.gather %wd[%ie] axis = 0 : (tensor<4x8x6xf32>, tensor<8xi64>) -> tensor<8x8x6xf32>
  %y3 = moe.matmul %d, %ac : (tensor<8x8x6xf32>, tensor<8x6x1xf32>) -> tensor<8x8x1xf32>
  %y = moe.reshape %y3 : (tensor<8x8x1xf32>) -> tensor<8x8xf32>
  %wf = moe.reshape %w : (tensor<4x2xf32>) -> tensor<8x1xf32>
  %yw = moe.mul %y, %wf : (tensor<8x8xf32>, tensor<8x1xf32>) -> tensor<8x8xf32>
  %yk = moe.reshape %yw : (tensor<8x8xf32>) -> tensor<4x2x8xf32>
  %out = moe.reduce sum %yk axes = [1] : tensor<4x2x8xf32> -> tensor<4x8xf32>
  return %out : tensor<4x8xf32>
}

// -----

// Without renormalisation (Qwen2-MoE, OLMoE) the raw top-k probabilities
// weight the slots; a MatMul router keeps its [H, E] weight.
// CHECK-LABEL: func.func @no_renormalisation
// CHECK: moe.layer %{{.*}} router(%{{.*}}) experts({{.*}}) top_k = 2 score = softmax activation = swiglu
func.func @no_renormalisation(%x: tensor<4x8xf32>, %wr: tensor<8x4xf32>,
                              %wgu: tensor<4x12x8xf32>, %wd: tensor<4x8x6xf32>)
    -> tensor<4x8xf32> {
  %logits = moe.matmul %x, %wr : (tensor<4x8xf32>, tensor<8x4xf32>) -> tensor<4x4xf32>
  %p = moe.softmax %logits axis = -1 : tensor<4x4xf32>
  %v, %i = moe.top_k %p k = 2 axis = -1 : tensor<4x4xf32> -> tensor<4x2xf32>, tensor<4x2xi64>
  %x3 = moe.reshape %x : (tensor<4x8xf32>) -> tensor<4x1x8xf32>
  %xe = moe.expand %x3 : tensor<4x1x8xf32> -> tensor<4x2x8xf32>
  %xc = moe.reshape %xe : (tensor<4x2x8xf32>) -> tensor<8x8x1xf32>
  %ie = moe.reshape %i : (tensor<4x2xi64>) -> tensor<8xi64>
  %gu = moe.gather %wgu[%ie] axis = 0 : (tensor<4x12x8xf32>, tensor<8xi64>) -> tensor<8x12x8xf32>
  %h3 = moe.matmul %gu, %xc : (tensor<8x12x8xf32>, tensor<8x8x1xf32>) -> tensor<8x12x1xf32>
  %h = moe.reshape %h3 : (tensor<8x12x1xf32>) -> tensor<8x12xf32>
  %g, %u = moe.split %h axis = 1 : tensor<8x12xf32> -> tensor<8x6xf32>, tensor<8x6xf32>
  %silu = moe.silu %g : tensor<8x6xf32>
  %a = moe.mul %silu, %u : (tensor<8x6xf32>, tensor<8x6xf32>) -> tensor<8x6xf32>
  %ac = moe.reshape %a : (tensor<8x6xf32>) -> tensor<8x6x1xf32>
  %d = moe.gather %wd[%ie] axis = 0 : (tensor<4x8x6xf32>, tensor<8xi64>) -> tensor<8x8x6xf32>
  %y3 = moe.matmul %d, %ac : (tensor<8x8x6xf32>, tensor<8x6x1xf32>) -> tensor<8x8x1xf32>
  %y = moe.reshape %y3 : (tensor<8x8x1xf32>) -> tensor<8x8xf32>
  %wf = moe.reshape %v : (tensor<4x2xf32>) -> tensor<8x1xf32>
  %yw = moe.mul %wf, %y : (tensor<8x1xf32>, tensor<8x8xf32>) -> tensor<8x8xf32>
  %yk = moe.reshape %yw : (tensor<8x8xf32>) -> tensor<4x2x8xf32>
  %out = moe.reduce sum %yk axes = [1] : tensor<4x2x8xf32> -> tensor<4x8xf32>
  return %out : tensor<4x8xf32>
}

// -----

// Gate and up swapped (silu applied to the second half): a different
// function, so nothing is raised.
// CHECK-LABEL: func.func @swapped_halves_stay
// CHECK-NOT: moe.layer
// CHECK: moe.top_k
func.func @swapped_halves_stay(%x: tensor<4x8xf32>, %wr: tensor<8x4xf32>,
                               %wgu: tensor<4x12x8xf32>, %wd: tensor<4x8x6xf32>)
    -> tensor<4x8xf32> {
  %logits = moe.matmul %x, %wr : (tensor<4x8xf32>, tensor<8x4xf32>) -> tensor<4x4xf32>
  %p = moe.softmax %logits axis = -1 : tensor<4x4xf32>
  %v, %i = moe.top_k %p k = 2 axis = -1 : tensor<4x4xf32> -> tensor<4x2xf32>, tensor<4x2xi64>
  %x3 = moe.reshape %x : (tensor<4x8xf32>) -> tensor<4x1x8xf32>
  %xe = moe.expand %x3 : tensor<4x1x8xf32> -> tensor<4x2x8xf32>
  %xc = moe.reshape %xe : (tensor<4x2x8xf32>) -> tensor<8x8x1xf32>
  %ie = moe.reshape %i : (tensor<4x2xi64>) -> tensor<8xi64>
  %gu = moe.gather %wgu[%ie] axis = 0 : (tensor<4x12x8xf32>, tensor<8xi64>) -> tensor<8x12x8xf32>
  %h3 = moe.matmul %gu, %xc : (tensor<8x12x8xf32>, tensor<8x8x1xf32>) -> tensor<8x12x1xf32>
  %h = moe.reshape %h3 : (tensor<8x12x1xf32>) -> tensor<8x12xf32>
  %g, %u = moe.split %h axis = 1 : tensor<8x12xf32> -> tensor<8x6xf32>, tensor<8x6xf32>
  %silu = moe.silu %u : tensor<8x6xf32>
  %a = moe.mul %silu, %g : (tensor<8x6xf32>, tensor<8x6xf32>) -> tensor<8x6xf32>
  %ac = moe.reshape %a : (tensor<8x6xf32>) -> tensor<8x6x1xf32>
  %d = moe.gather %wd[%ie] axis = 0 : (tensor<4x8x6xf32>, tensor<8xi64>) -> tensor<8x8x6xf32>
  %y3 = moe.matmul %d, %ac : (tensor<8x8x6xf32>, tensor<8x6x1xf32>) -> tensor<8x8x1xf32>
  %y = moe.reshape %y3 : (tensor<8x8x1xf32>) -> tensor<8x8xf32>
  %wf = moe.reshape %v : (tensor<4x2xf32>) -> tensor<8x1xf32>
  %yw = moe.mul %wf, %y : (tensor<8x1xf32>, tensor<8x8xf32>) -> tensor<8x8xf32>
  %yk = moe.reshape %yw : (tensor<8x8xf32>) -> tensor<4x2x8xf32>
  %out = moe.reduce sum %yk axes = [1] : tensor<4x2x8xf32> -> tensor<4x8xf32>
  return %out : tensor<4x8xf32>
}

// -----

// A layer plus a Qwen2-MoE shared expert (SwiGLU linears on the same tokens,
// scaled by sigmoid of a [H, 1] linear) becomes one layer with shared
// experts; Gemm transB weights are transposed to [in, out].
// CHECK-LABEL: func.func @shared_expert
// CHECK-SAME: %[[SG:[^:]*]]: tensor<16x8xf32>, %[[SU:[^:]*]]: tensor<16x8xf32>, %[[SD:[^:]*]]: tensor<8x16xf32>, %[[GW:[^:]*]]: tensor<1x8xf32>
// CHECK-DAG: %[[SGT:.*]] = moe.transpose %[[SG]] permutation = [1, 0] : tensor<16x8xf32> -> tensor<8x16xf32>
// CHECK-DAG: %[[SUT:.*]] = moe.transpose %[[SU]] permutation = [1, 0] : tensor<16x8xf32> -> tensor<8x16xf32>
// CHECK-DAG: %[[SDT:.*]] = moe.transpose %[[SD]] permutation = [1, 0] : tensor<8x16xf32> -> tensor<16x8xf32>
// CHECK-DAG: %[[GWT:.*]] = moe.transpose %[[GW]] permutation = [1, 0] : tensor<1x8xf32> -> tensor<8x1xf32>
// CHECK: %[[Y:.*]] = moe.layer {{.*}} shared_gate %[[SGT]] shared_up %[[SUT]] shared_down %[[SDT]] shared_expert_gate %[[GWT]] top_k = 2
// CHECK-NOT: moe.gemm
// CHECK: return %[[Y]]
func.func @shared_expert(%x: tensor<4x8xf32>, %wr: tensor<8x4xf32>,
                         %wg: tensor<4x8x6xf32>, %wu: tensor<4x8x6xf32>,
                         %wd: tensor<4x6x8xf32>, %sg: tensor<16x8xf32>,
                         %su: tensor<16x8xf32>, %sd: tensor<8x16xf32>,
                         %gw: tensor<1x8xf32>) -> tensor<4x8xf32> {
  %routed = moe.layer %x router(%wr) experts(up %wu down %wd gate %wg)
      top_k = 2 score = softmax activation = swiglu
      : (tensor<4x8xf32>, tensor<8x4xf32>, tensor<4x8x6xf32>, tensor<4x8x6xf32>,
         tensor<4x6x8xf32>) -> tensor<4x8xf32>
  %g = moe.gemm %x, %sg trans_b : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  %u = moe.gemm %x, %su trans_b : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  %silu = moe.silu %g : tensor<4x16xf32>
  %a = moe.mul %silu, %u : (tensor<4x16xf32>, tensor<4x16xf32>) -> tensor<4x16xf32>
  %s = moe.gemm %a, %sd trans_b : (tensor<4x16xf32>, tensor<8x16xf32>) -> tensor<4x8xf32>
  %gl = moe.gemm %x, %gw trans_b : (tensor<4x8xf32>, tensor<1x8xf32>) -> tensor<4x1xf32>
  %gs = moe.sigmoid %gl : tensor<4x1xf32>
  %scaled = moe.mul %gs, %s : (tensor<4x1xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %y = moe.add %routed, %scaled : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// -----

// Gate and up halves taken by two Slices (TorchScript's chunk) raise like a
// Split.
// CHECK-LABEL: func.func @slice_halves
// CHECK: moe.layer {{.*}} top_k = 2 score = softmax activation = swiglu
func.func @slice_halves(%x: tensor<4x8xf32>, %wr: tensor<8x4xf32>,
                        %wgu: tensor<4x12x8xf32>, %wd: tensor<4x8x6xf32>)
    -> tensor<4x8xf32> {
  %logits = moe.matmul %x, %wr : (tensor<4x8xf32>, tensor<8x4xf32>) -> tensor<4x4xf32>
  %p = moe.softmax %logits axis = -1 : tensor<4x4xf32>
  %v, %i = moe.top_k %p k = 2 axis = -1 : tensor<4x4xf32> -> tensor<4x2xf32>, tensor<4x2xi64>
  %x3 = moe.reshape %x : (tensor<4x8xf32>) -> tensor<4x1x8xf32>
  %xe = moe.expand %x3 : tensor<4x1x8xf32> -> tensor<4x2x8xf32>
  %xc = moe.reshape %xe : (tensor<4x2x8xf32>) -> tensor<8x8x1xf32>
  %ie = moe.reshape %i : (tensor<4x2xi64>) -> tensor<8xi64>
  %gu = moe.gather %wgu[%ie] axis = 0 : (tensor<4x12x8xf32>, tensor<8xi64>) -> tensor<8x12x8xf32>
  %h3 = moe.matmul %gu, %xc : (tensor<8x12x8xf32>, tensor<8x8x1xf32>) -> tensor<8x12x1xf32>
  %h = moe.reshape %h3 : (tensor<8x12x1xf32>) -> tensor<8x12xf32>
  %g = moe.slice %h starts = [0] ends = [6] axes = [-1] steps = [1] : tensor<8x12xf32> -> tensor<8x6xf32>
  %u = moe.slice %h starts = [6] ends = [12] axes = [-1] steps = [1] : tensor<8x12xf32> -> tensor<8x6xf32>
  %silu = moe.silu %g : tensor<8x6xf32>
  %a = moe.mul %silu, %u : (tensor<8x6xf32>, tensor<8x6xf32>) -> tensor<8x6xf32>
  %ac = moe.reshape %a : (tensor<8x6xf32>) -> tensor<8x6x1xf32>
  %d = moe.gather %wd[%ie] axis = 0 : (tensor<4x8x6xf32>, tensor<8xi64>) -> tensor<8x8x6xf32>
  %y3 = moe.matmul %d, %ac : (tensor<8x8x6xf32>, tensor<8x6x1xf32>) -> tensor<8x8x1xf32>
  %y = moe.reshape %y3 : (tensor<8x8x1xf32>) -> tensor<8x8xf32>
  %wf = moe.reshape %v : (tensor<4x2xf32>) -> tensor<8x1xf32>
  %yw = moe.mul %wf, %y : (tensor<8x1xf32>, tensor<8x8xf32>) -> tensor<8x8xf32>
  %yk = moe.reshape %yw : (tensor<8x8xf32>) -> tensor<4x2x8xf32>
  %out = moe.reduce sum %yk axes = [1] : tensor<4x2x8xf32> -> tensor<4x8xf32>
  return %out : tensor<4x8xf32>
}

// -----

// DeepSeek-V3's router as both torch.onnx exporters write it: sigmoid
// scores; the choice adds the correction bias; groups of 2 experts are rated
// by their two best choices, the best group's experts compete (the others
// masked with -inf); the selected experts' plain scores are normalised
// (the TorchScript export adds 1e-20 to the sum, which an fp32 sum of
// sigmoids cannot feel) and scaled by 2.5. The shared expert is added after
// the routed output is reshaped back to [B, S, H], which the fused layer
// does too. E = 4 experts, 2 groups, top-1 group, top-2.
// CHECK-LABEL: func.func @deepseek
// CHECK-SAME: (%[[X:[^:]*]]: tensor<1x4x8xf32>, %[[WR:[^:]*]]: tensor<4x8xf32>, %[[B:[^:]*]]: tensor<4xf32>
// CHECK: %[[Y:.*]] = moe.layer %{{.*}} router(%{{.*}} correction %[[B]]) experts(up %{{.*}} down %{{.*}} gate %{{.*}}) shared_gate %{{.*}} shared_up %{{.*}} shared_down %{{.*}} top_k = 2 score = sigmoid normalize activation = swiglu {num_groups = 2 : i64, routed_scaling_factor = 2.500000e+00 : f64}
// CHECK-NEXT: %[[OUT:.*]] = moe.reshape %[[Y]] : (tensor<4x8xf32>) -> tensor<1x4x8xf32>
// CHECK-NOT: moe.top_k
// CHECK-NOT: moe.scatter_elements
// CHECK: return %[[OUT]]
func.func @deepseek(%x3d: tensor<1x4x8xf32>, %wr: tensor<4x8xf32>,
                    %bias: tensor<4xf32>, %wgu: tensor<4x12x8xf32>,
                    %wd: tensor<4x8x6xf32>, %sg: tensor<8x6xf32>,
                    %su: tensor<8x6xf32>, %sd: tensor<6x8xf32>)
    -> tensor<1x4x8xf32> {
  %x = moe.reshape %x3d : (tensor<1x4x8xf32>) -> tensor<4x8xf32>
  %logits = moe.gemm %x, %wr trans_b : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x4xf32>
  %scores = moe.sigmoid %logits : tensor<4x4xf32>
  %choice = moe.add %scores, %bias : (tensor<4x4xf32>, tensor<4xf32>) -> tensor<4x4xf32>
  %grouped = moe.reshape %choice : (tensor<4x4xf32>) -> tensor<4x2x2xf32>
  %best, %bi = moe.top_k %grouped k = 2 axis = -1 : tensor<4x2x2xf32> -> tensor<4x2x2xf32>, tensor<4x2x2xi64>
  %rating = moe.reduce sum %best axes = [-1] : tensor<4x2x2xf32> -> tensor<4x2xf32>
  %gv, %gi = moe.top_k %rating k = 1 axis = -1 : tensor<4x2xf32> -> tensor<4x1xf32>, tensor<4x1xi64>
  %zeros = arith.constant dense<0.0> : tensor<4x2xf32>
  %ones = arith.constant dense<1.0> : tensor<4x1xf32>
  %groupmask = moe.scatter_elements %zeros[%gi], %ones axis = 1 : (tensor<4x2xf32>, tensor<4x1xi64>, tensor<4x1xf32>) -> tensor<4x2xf32>
  %gm3 = moe.reshape %groupmask : (tensor<4x2xf32>) -> tensor<4x2x1xf32>
  %em3 = moe.expand %gm3 : tensor<4x2x1xf32> -> tensor<4x2x2xf32>
  %em = moe.reshape %em3 : (tensor<4x2x2xf32>) -> tensor<4x4xf32>
  %keep = moe.cast %em : tensor<4x4xf32> to tensor<4x4xi1>
  %drop = moe.not %keep : tensor<4x4xi1>
  %ninf = arith.constant dense<0xFF800000> : tensor<f32>
  %masked = moe.where %drop, %ninf, %choice : (tensor<4x4xi1>, tensor<f32>, tensor<4x4xf32>) -> tensor<4x4xf32>
  %v, %i = moe.top_k %masked k = 2 axis = -1 : tensor<4x4xf32> -> tensor<4x2xf32>, tensor<4x2xi64>
  %picked = moe.gather_elements %scores[%i] axis = 1 : (tensor<4x4xf32>, tensor<4x2xi64>) -> tensor<4x2xf32>
  %sum = moe.reduce sum %picked axes = [-1] keep_dims : tensor<4x2xf32> -> tensor<4x1xf32>
  %eps = arith.constant dense<1.0e-20> : tensor<f32>
  %denominator = moe.add %sum, %eps : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %norm = moe.div %picked, %denominator : (tensor<4x2xf32>, tensor<4x1xf32>) -> tensor<4x2xf32>
  %scale = arith.constant dense<2.5> : tensor<f32>
  %w = moe.mul %norm, %scale : (tensor<4x2xf32>, tensor<f32>) -> tensor<4x2xf32>
  %x3 = moe.reshape %x : (tensor<4x8xf32>) -> tensor<4x1x8xf32>
  %xe = moe.expand %x3 : tensor<4x1x8xf32> -> tensor<4x2x8xf32>
  %xr = moe.reshape %xe : (tensor<4x2x8xf32>) -> tensor<8x8xf32>
  %xc = moe.reshape %xr : (tensor<8x8xf32>) -> tensor<8x8x1xf32>
  %ie = moe.reshape %i : (tensor<4x2xi64>) -> tensor<8xi64>
  %gu = moe.gather %wgu[%ie] axis = 0 : (tensor<4x12x8xf32>, tensor<8xi64>) -> tensor<8x12x8xf32>
  %h3 = moe.matmul %gu, %xc : (tensor<8x12x8xf32>, tensor<8x8x1xf32>) -> tensor<8x12x1xf32>
  %h = moe.reshape %h3 : (tensor<8x12x1xf32>) -> tensor<8x12xf32>
  %g, %u = moe.split %h axis = 1 : tensor<8x12xf32> -> tensor<8x6xf32>, tensor<8x6xf32>
  %sgm = moe.sigmoid %g : tensor<8x6xf32>
  %silu = moe.mul %g, %sgm : (tensor<8x6xf32>, tensor<8x6xf32>) -> tensor<8x6xf32>
  %a = moe.mul %silu, %u : (tensor<8x6xf32>, tensor<8x6xf32>) -> tensor<8x6xf32>
  %ac = moe.reshape %a : (tensor<8x6xf32>) -> tensor<8x6x1xf32>
  %d = moe.gather %wd[%ie] axis = 0 : (tensor<4x8x6xf32>, tensor<8xi64>) -> tensor<8x8x6xf32>
  %y3 = moe.matmul %d, %ac : (tensor<8x8x6xf32>, tensor<8x6x1xf32>) -> tensor<8x8x1xf32>
  %y = moe.reshape %y3 : (tensor<8x8x1xf32>) -> tensor<8x8xf32>
  %wf = moe.reshape %w : (tensor<4x2xf32>) -> tensor<8x1xf32>
  %yw = moe.mul %y, %wf : (tensor<8x8xf32>, tensor<8x1xf32>) -> tensor<8x8xf32>
  %yk = moe.reshape %yw : (tensor<8x8xf32>) -> tensor<4x2x8xf32>
  %routed = moe.reduce sum %yk axes = [1] : tensor<4x2x8xf32> -> tensor<4x8xf32>
  %routed3 = moe.reshape %routed : (tensor<4x8xf32>) -> tensor<1x4x8xf32>
  %sgate = moe.matmul %x3d, %sg : (tensor<1x4x8xf32>, tensor<8x6xf32>) -> tensor<1x4x6xf32>
  %sup = moe.matmul %x3d, %su : (tensor<1x4x8xf32>, tensor<8x6xf32>) -> tensor<1x4x6xf32>
  %ssig = moe.sigmoid %sgate : tensor<1x4x6xf32>
  %ssilu = moe.mul %sgate, %ssig : (tensor<1x4x6xf32>, tensor<1x4x6xf32>) -> tensor<1x4x6xf32>
  %sact = moe.mul %ssilu, %sup : (tensor<1x4x6xf32>, tensor<1x4x6xf32>) -> tensor<1x4x6xf32>
  %shared = moe.matmul %sact, %sd : (tensor<1x4x6xf32>, tensor<6x8xf32>) -> tensor<1x4x8xf32>
  %out = moe.add %routed3, %shared : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  return %out : tensor<1x4x8xf32>
}

// -----

// A group mask filled with 0.0 instead of -inf is another selection (a
// masked expert could outrank a negative choice): it stays as it is.
// CHECK-LABEL: func.func @deepseek_zero_fill_stays
// CHECK-NOT: moe.layer
// CHECK: moe.top_k
func.func @deepseek_zero_fill_stays(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>,
                    %bias: tensor<4xf32>, %wgu: tensor<4x12x8xf32>,
                    %wd: tensor<4x8x6xf32>) -> tensor<4x8xf32> {
  %logits = moe.gemm %x, %wr trans_b : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x4xf32>
  %scores = moe.sigmoid %logits : tensor<4x4xf32>
  %choice = moe.add %scores, %bias : (tensor<4x4xf32>, tensor<4xf32>) -> tensor<4x4xf32>
  %grouped = moe.reshape %choice : (tensor<4x4xf32>) -> tensor<4x2x2xf32>
  %best, %bi = moe.top_k %grouped k = 2 axis = -1 : tensor<4x2x2xf32> -> tensor<4x2x2xf32>, tensor<4x2x2xi64>
  %rating = moe.reduce sum %best axes = [-1] : tensor<4x2x2xf32> -> tensor<4x2xf32>
  %gv, %gi = moe.top_k %rating k = 1 axis = -1 : tensor<4x2xf32> -> tensor<4x1xf32>, tensor<4x1xi64>
  %zeros = arith.constant dense<0.0> : tensor<4x2xf32>
  %ones = arith.constant dense<1.0> : tensor<4x1xf32>
  %groupmask = moe.scatter_elements %zeros[%gi], %ones axis = 1 : (tensor<4x2xf32>, tensor<4x1xi64>, tensor<4x1xf32>) -> tensor<4x2xf32>
  %gm3 = moe.reshape %groupmask : (tensor<4x2xf32>) -> tensor<4x2x1xf32>
  %em3 = moe.expand %gm3 : tensor<4x2x1xf32> -> tensor<4x2x2xf32>
  %em = moe.reshape %em3 : (tensor<4x2x2xf32>) -> tensor<4x4xf32>
  %keep = moe.cast %em : tensor<4x4xf32> to tensor<4x4xi1>
  %drop = moe.not %keep : tensor<4x4xi1>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %masked = moe.where %drop, %zero, %choice : (tensor<4x4xi1>, tensor<f32>, tensor<4x4xf32>) -> tensor<4x4xf32>
  %v, %i = moe.top_k %masked k = 2 axis = -1 : tensor<4x4xf32> -> tensor<4x2xf32>, tensor<4x2xi64>
  %w = moe.gather_elements %scores[%i] axis = 1 : (tensor<4x4xf32>, tensor<4x2xi64>) -> tensor<4x2xf32>
  %x3 = moe.reshape %x : (tensor<4x8xf32>) -> tensor<4x1x8xf32>
  %xe = moe.expand %x3 : tensor<4x1x8xf32> -> tensor<4x2x8xf32>
  %xr = moe.reshape %xe : (tensor<4x2x8xf32>) -> tensor<8x8xf32>
  %xc = moe.reshape %xr : (tensor<8x8xf32>) -> tensor<8x8x1xf32>
  %ie = moe.reshape %i : (tensor<4x2xi64>) -> tensor<8xi64>
  %gu = moe.gather %wgu[%ie] axis = 0 : (tensor<4x12x8xf32>, tensor<8xi64>) -> tensor<8x12x8xf32>
  %h3 = moe.matmul %gu, %xc : (tensor<8x12x8xf32>, tensor<8x8x1xf32>) -> tensor<8x12x1xf32>
  %h = moe.reshape %h3 : (tensor<8x12x1xf32>) -> tensor<8x12xf32>
  %g, %u = moe.split %h axis = 1 : tensor<8x12xf32> -> tensor<8x6xf32>, tensor<8x6xf32>
  %sgm = moe.sigmoid %g : tensor<8x6xf32>
  %silu = moe.mul %g, %sgm : (tensor<8x6xf32>, tensor<8x6xf32>) -> tensor<8x6xf32>
  %a = moe.mul %silu, %u : (tensor<8x6xf32>, tensor<8x6xf32>) -> tensor<8x6xf32>
  %ac = moe.reshape %a : (tensor<8x6xf32>) -> tensor<8x6x1xf32>
  %d = moe.gather %wd[%ie] axis = 0 : (tensor<4x8x6xf32>, tensor<8xi64>) -> tensor<8x8x6xf32>
  %y3 = moe.matmul %d, %ac : (tensor<8x8x6xf32>, tensor<8x6x1xf32>) -> tensor<8x8x1xf32>
  %y = moe.reshape %y3 : (tensor<8x8x1xf32>) -> tensor<8x8xf32>
  %wf = moe.reshape %w : (tensor<4x2xf32>) -> tensor<8x1xf32>
  %yw = moe.mul %y, %wf : (tensor<8x8xf32>, tensor<8x1xf32>) -> tensor<8x8xf32>
  %yk = moe.reshape %yw : (tensor<8x8xf32>) -> tensor<4x2x8xf32>
  %out = moe.reduce sum %yk axes = [1] : tensor<4x2x8xf32> -> tensor<4x8xf32>
  return %out : tensor<4x8xf32>
}
