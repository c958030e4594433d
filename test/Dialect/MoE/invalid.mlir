// RUN: moe-opt %s -split-input-file -verify-diagnostics

// One case per distinct verifier message of the moe dialect.

// expected-error @+1 {{storage file name is empty}}
moe.weight @w : tensor<2xf32> storage = <"", offset = 0, length = 8>

// -----

// expected-error @+1 {{is absolute; weight files must be relative to the model directory}}
moe.weight @w : tensor<2xf32> storage = <"/etc/passwd", offset = 0, length = 8>

// -----

// expected-error @+1 {{contains '..'; weight files must stay inside the model directory}}
moe.weight @w : tensor<2xf32> storage = <"data/../../secret.bin", offset = 0, length = 8>

// -----

// expected-error @+1 {{storage offset -4 and length 8 must not be negative}}
moe.weight @w : tensor<2xf32> storage = <"w.bin", offset = -4, length = 8>

// -----

// expected-error @+1 {{overflows a 64-bit file offset}}
moe.weight @w : tensor<2xf32> storage = <"w.bin", offset = 9223372036854775807, length = 8>

// -----

moe.weight @w : tensor<2x2xf32> storage = <"w.bin", offset = 0, length = 16>
func.func @f() {
// expected-error @+1 {{slice has 2 offsets but 1 sizes; give one of each per dimension}}
  %0 = moe.weight_ref @w slice = <offsets = [0, 0], sizes = [2]> : tensor<2x2xf32>
  return
}

// -----

moe.weight @w : tensor<2x2xf32> storage = <"w.bin", offset = 0, length = 16>
func.func @f() {
// expected-error @+1 {{slice offsets must be non-negative and sizes positive, got offset 0 and size 0}}
  %0 = moe.weight_ref @w slice = <offsets = [0, 0], sizes = [0, 2]> : tensor<0x2xf32>
  return
}

// -----

// expected-error @+1 {{element type 'index' cannot be stored in a weight file; use a float or integer type}}
moe.weight @w : tensor<2xindex> storage = <"w.bin", offset = 0, length = 16>

// -----

// expected-error @+1 {{storage length 12 does not match 'tensor<2x2xf32>', which needs 16 bytes}}
moe.weight @w : tensor<2x2xf32> storage = <"w.bin", offset = 0, length = 12>

// -----

moe.weight @w : tensor<4x8xf32> storage = <"w.bin", offset = 0, length = 128>
func.func @f() {
// expected-error @+1 {{'missing' does not name a moe.weight in an enclosing symbol table}}
  %0 = moe.weight_ref @missing : tensor<4x8xf32>
  return
}

// -----

moe.weight @w : tensor<4x8xf32> storage = <"w.bin", offset = 0, length = 128>
func.func @f() {
// expected-error @+1 {{result element type 'f16' differs from 'f32' of @w}}
  %0 = moe.weight_ref @w : tensor<4x8xf16>
  return
}

// -----

moe.weight @w : tensor<4x8xf32> storage = <"w.bin", offset = 0, length = 128>
func.func @f() {
// expected-error @+1 {{result shape 2x8 differs from 4x8 of @w; add a slice to read part of it}}
  %0 = moe.weight_ref @w : tensor<2x8xf32>
  return
}

// -----

moe.weight @w : tensor<4x8xf32> storage = <"w.bin", offset = 0, length = 128>
func.func @f() {
// expected-error @+1 {{slice has 1 dimensions but @w has rank 2}}
  %0 = moe.weight_ref @w slice = <offsets = [0], sizes = [2]> : tensor<2xf32>
  return
}

// -----

moe.weight @w : tensor<4x8xf32> storage = <"w.bin", offset = 0, length = 128>
func.func @f() {
// expected-error @+1 {{slice [3, 5) of dimension 0 exceeds size 4 of @w}}
  %0 = moe.weight_ref @w slice = <offsets = [3, 0], sizes = [2, 8]> : tensor<2x8xf32>
  return
}

// -----

moe.weight @w : tensor<4x8xf32> storage = <"w.bin", offset = 0, length = 128>
func.func @f() {
// expected-error @+1 {{result shape 2x4 differs from the slice sizes 2x8}}
  %0 = moe.weight_ref @w slice = <offsets = [2, 0], sizes = [2, 8]> : tensor<2x4xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %b: tensor<4xf32>) {
// expected-error @+1 {{operand shapes do not broadcast: 4x8 and 4 differ in a dimension where neither is 1}}
  %0 = moe.add %a, %b : (tensor<4x8xf32>, tensor<4xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %b: tensor<8xf32>) {
// expected-error @+1 {{result shape 8 is not the broadcast shape 4x8 of the operands}}
  %0 = moe.mul %a, %b : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %b: tensor<8xf16>) {
// expected-error @+1 {{mixes element types 'f32' and 'f16'; ONNX requires one type, insert a moe.cast}}
  %0 = moe.sub %a, %b : (tensor<4x8xf32>, tensor<8xf16>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{axis 2 is out of range for a rank-2 operand; use a value in [-2, 1]}}
  %0 = moe.softmax %a axis = 2 : tensor<4x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %b: tensor<8x3xf32>) {
// expected-error @+1 {{'result' has rank 1; expected the matrix product shape (rank 2)}}
  %0 = moe.matmul %a, %b : (tensor<4x8xf32>, tensor<8x3xf32>) -> tensor<12xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %b: tensor<8x3xf32>) {
// expected-error @+1 {{'result' has shape 4x4; expected the matrix product shape = 4x3}}
  %0 = moe.matmul %a, %b : (tensor<4x8xf32>, tensor<8x3xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{'values' has element type 'f16' but 'f32' is expected; insert a moe.cast to convert it}}
  %0:2 = moe.top_k %a k = 2 axis = 1 : tensor<4x8xf32> -> tensor<4x2xf16>, tensor<4x2xi64>
  return
}

// -----

func.func @f(%a: tensor<f32>, %b: tensor<8x3xf32>) {
// expected-error @+1 {{operands must have rank 1 or more, not scalars}}
  %0 = moe.matmul %a, %b : (tensor<f32>, tensor<8x3xf32>) -> tensor<3xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %b: tensor<8x3xf16>) {
// expected-error @+1 {{operands and result must share one element type}}
  %0 = moe.matmul %a, %b : (tensor<4x8xf32>, tensor<8x3xf16>) -> tensor<4x3xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %b: tensor<7x3xf32>) {
// expected-error @+1 {{contracting dimensions differ: 4x8 times 7x3 needs the last dimension of the left operand (8) to equal the second to last of the right (7)}}
  %0 = moe.matmul %a, %b : (tensor<4x8xf32>, tensor<7x3xf32>) -> tensor<4x3xf32>
  return
}

// -----

func.func @f(%a: tensor<2x4x8xf32>, %b: tensor<3x8x3xf32>) {
// expected-error @+1 {{batch dimensions of 2x4x8 and 3x8x3 do not broadcast}}
  %0 = moe.matmul %a, %b : (tensor<2x4x8xf32>, tensor<3x8x3xf32>) -> tensor<2x4x3xf32>
  return
}

// -----

func.func @f(%a: tensor<2x4x8xf32>, %b: tensor<8x3xf32>) {
// expected-error @+1 {{A and B must be matrices, got 2x4x8 and 8x3; use moe.matmul for batched products}}
  %0 = moe.gemm %a, %b : (tensor<2x4x8xf32>, tensor<8x3xf32>) -> tensor<4x3xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %b: tensor<8x3xf32>) {
// expected-error @+1 {{contracting dimensions differ: op(A) has 8 columns but op(B) has 3 rows}}
  %0 = moe.gemm %a, %b trans_b : (tensor<4x8xf32>, tensor<8x3xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %b: tensor<8x3xf32>, %c: tensor<4xf32>) {
// expected-error @+1 {{C has shape 4, which does not broadcast to the result 4x3}}
  %0 = moe.gemm %a, %b, %c : (tensor<4x8xf32>, tensor<8x3xf32>, tensor<4xf32>) -> tensor<4x3xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{axis -1 is listed twice (after resolving negative axes); list each axis once}}
  %0 = moe.reduce sum %a axes = [1, -1] : tensor<4x8xf32> -> tensor<4xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{input and result must share one element type}}
  %0 = moe.reduce max %a axes = [1] : tensor<4x8xf32> -> tensor<4xf16>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{k = 9 must be in [1, 8], the size of axis -1}}
  %0:2 = moe.top_k %a k = 9 axis = -1 : tensor<4x8xf32> -> tensor<4x9xf32>, tensor<4x9xi64>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %s: tensor<8xf32>) {
// expected-error @+1 {{epsilon -1.000000e+00 must be >= 0}}
  %0 = moe.rms_norm %a, %s axis = -1 epsilon = -1.0 : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %i: tensor<2xi64>) {
// expected-error @+1 {{indices have rank 1 but data has rank 2; they must be equal}}
  %0 = moe.gather_elements %a[%i] axis = 1 : (tensor<4x8xf32>, tensor<2xi64>) -> tensor<2xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %i: tensor<5x?xi64>, %u: tensor<5x8xf32>) {
// expected-error @+1 {{indices must have a static last dimension (the index tuple length), got 5x?}}
  %0 = moe.scatter_nd %a[%i], %u : (tensor<4x8xf32>, tensor<5x?xi64>, tensor<5x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>, %i: tensor<5x3xi64>, %u: tensor<5xf32>) {
// expected-error @+1 {{index tuples have length 3 but data has rank 2; the length must be in [1, rank]}}
  %0 = moe.scatter_nd %a[%i], %u : (tensor<4x8xf32>, tensor<5x3xi64>, tensor<5xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{reshape cannot change the element type}}
  %0 = moe.reshape %a : (tensor<4x8xf32>) -> tensor<32xf16>
  return
}

// -----

func.func @f(%a: tensor<?x8xf32>) {
// expected-error @+1 {{has dynamic dimensions; pass the runtime shape as a second operand}}
  %0 = moe.reshape %a : (tensor<?x8xf32>) -> tensor<?xf32>
  return
}

// -----

func.func @f(%a: tensor<?x8xf32>, %s: tensor<2xi64>) {
// expected-error @+1 {{shape operand must be 1-D with 1 entries, got 2}}
  %0 = moe.reshape %a, %s : (tensor<?x8xf32>, tensor<2xi64>) -> tensor<?xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{cannot reshape 32 elements (4x8) into 30 (5x6)}}
  %0 = moe.reshape %a : (tensor<4x8xf32>) -> tensor<5x6xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{permutation has 1 entries but the input has rank 2}}
  %0 = moe.transpose %a permutation = [0] : tensor<4x8xf32> -> tensor<4xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{permutation [0, 0] must list each of 0 to 1 exactly once}}
  %0 = moe.transpose %a permutation = [0, 0] : tensor<4x8xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @f(%a: tensor<3x8xf32>) {
// expected-error @+1 {{input shape 3x8 does not broadcast to the result shape 4x8}}
  %0 = moe.expand %a : tensor<3x8xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{starts, ends, axes and steps must have one entry per sliced axis, got 1, 2, 1 and 1}}
  %0 = moe.slice %a starts = [0] ends = [2, 2] axes = [0] steps = [1] : tensor<4x8xf32> -> tensor<2x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{step of axis 0 is 0; steps must be non-zero}}
  %0 = moe.slice %a starts = [0] ends = [2] axes = [0] steps = [0] : tensor<4x8xf32> -> tensor<2x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{'result' has shape 2x8; expected the sliced input shape = 4x3}}
  %0 = moe.slice %a starts = [-3] ends = [100] axes = [1] steps = [1] : tensor<4x8xf32> -> tensor<2x8xf32>
  return
}

// -----

func.func @f() {
// expected-error @+1 {{needs at least one input}}
  %0 = moe.concat axis = 0 : () -> tensor<4xf32>
  return
}

// -----

func.func @f(%a: tensor<4x4xf32>, %b: tensor<3x4xf32>) {
// expected-error @+1 {{input 1 has shape 3x4, which differs from 4x4 outside the concatenation axis}}
  %0 = moe.concat %a, %b axis = 1 : (tensor<4x4xf32>, tensor<3x4xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{needs at least one result}}
  "moe.split"(%a) <{axis = 0 : i64}> : (tensor<4x8xf32>) -> ()
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
// expected-error @+1 {{result sizes along axis 1 add up to 6 but the input has 8}}
  %0:2 = moe.split %a axis = 1 : tensor<4x8xf32> -> tensor<4x3xf32>, tensor<4x3xf32>
  return
}

// -----

func.func @f(%a: tensor<8xf32>) {
// expected-error @+1 {{input must have rank 2 or more (the triangle is taken over the last two dimensions)}}
  %0 = moe.trilu %a upper k = 0 : tensor<8xf32>
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>, %wg: tensor<8x64x128xf32>, %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>, %b: tensor<8x128xf32>, %sg: tensor<64x256xf32>, %sd: tensor<256x64xf32>) {
// expected-error @+1 {{activation swiglu is gated and needs a gate weight; add 'gate' or use an ungated activation}}
  %0 = moe.layer %x router(%wr) experts(up %wu down %wd) top_k = 2 score = softmax activation = swiglu : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>, %wg: tensor<8x64x128xf32>, %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>, %b: tensor<8x128xf32>, %sg: tensor<64x256xf32>, %sd: tensor<256x64xf32>) {
// expected-error @+1 {{activation relu is not gated but a gate weight is given; use swiglu or geglu, or drop the gate weight}}
  %0 = moe.layer %x router(%wr) experts(up %wu down %wd gate %wg) top_k = 2 score = softmax activation = relu : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>, %wg: tensor<8x64x128xf32>, %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>, %b: tensor<8x128xf32>, %sg: tensor<64x256xf32>, %sd: tensor<256x64xf32>) {
// expected-error @+1 {{a gate bias needs a gated activation}}
  %0 = moe.layer %x router(%wr) experts(up %wu down %wd gate_bias %b) top_k = 2 score = softmax activation = gelu : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>, tensor<8x128xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>, %wu: tensor<8x64x100xf32>, %wd: tensor<8x128x64xf32>) {
// expected-error @+1 {{'down_weight' has shape 8x128x64; expected [experts, inter, hidden] = 8x100x64}}
  %0 = moe.layer %x router(%wr) experts(up %wu down %wd) top_k = 2 score = softmax activation = gelu : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x100xf32>, tensor<8x128x64xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @f(%x: tensor<2x8x64xf32>, %wr: tensor<64x8xf32>, %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>) {
// expected-error @+1 {{input must be [tokens, hidden], got shape 2x8x64; reshape leading dimensions into one}}
  %0 = moe.layer %x router(%wr) experts(up %wu down %wd) top_k = 2 score = softmax activation = gelu : (tensor<2x8x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x?xf32>) {
// expected-error @+1 {{router_weight must be [hidden, experts] with a static expert count, got shape 64x?}}
  %0:2 = moe.router %x, %wr top_k = 2 score = softmax : (tensor<16x64xf32>, tensor<64x?xf32>) -> (tensor<16x2xf32>, tensor<16x2xi64>)
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>) {
// expected-error @+1 {{top_k = 9 must be in [1, 8], the number of experts}}
  %0:2 = moe.router %x, %wr top_k = 9 score = softmax : (tensor<16x64xf32>, tensor<64x8xf32>) -> (tensor<16x9xf32>, tensor<16x9xi64>)
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>) {
// expected-error @+1 {{num_groups = 3 must be positive and divide the 8 experts}}
  %0:2 = moe.router %x, %wr top_k = 2 score = sigmoid {num_groups = 3 : i64} : (tensor<16x64xf32>, tensor<64x8xf32>) -> (tensor<16x2xf32>, tensor<16x2xi64>)
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>) {
// expected-error @+1 {{top_k_groups = 5 must be in [1, num_groups = 4]}}
  %0:2 = moe.router %x, %wr top_k = 2 score = sigmoid {num_groups = 4 : i64, top_k_groups = 5 : i64} : (tensor<16x64xf32>, tensor<64x8xf32>) -> (tensor<16x2xf32>, tensor<16x2xi64>)
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>) {
// expected-error @+1 {{top_k = 4 exceeds the 2 experts in the top_k_groups = 1 selected groups}}
  %0:2 = moe.router %x, %wr top_k = 4 score = sigmoid {num_groups = 4 : i64, top_k_groups = 1 : i64} : (tensor<16x64xf32>, tensor<64x8xf32>) -> (tensor<16x4xf32>, tensor<16x4xi64>)
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>) {
// expected-error @+1 {{routed_scaling_factor 0.000000e+00 must be positive}}
  %0:2 = moe.router %x, %wr top_k = 2 score = sigmoid {routed_scaling_factor = 0.0} : (tensor<16x64xf32>, tensor<64x8xf32>) -> (tensor<16x2xf32>, tensor<16x2xi64>)
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>, %wg: tensor<8x64x128xf32>, %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>, %b: tensor<8x128xf32>, %sg: tensor<64x256xf32>, %sd: tensor<256x64xf32>) {
// expected-error @+1 {{shared experts need both 'shared_up' and 'shared_down' weights}}
  %0 = moe.layer %x router(%wr) experts(up %wu down %wd) shared_up %sg top_k = 2 score = softmax activation = gelu : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>, tensor<64x256xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>, %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>, %seg: tensor<64x1xf32>) {
// expected-error @+1 {{'shared_gate' and 'shared_expert_gate' need shared expert weights ('shared_up', 'shared_down')}}
  %0 = moe.layer %x router(%wr) experts(up %wu down %wd) shared_expert_gate %seg top_k = 2 score = softmax activation = gelu : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>, tensor<64x1xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>, %wg: tensor<8x64x128xf32>, %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>, %b: tensor<8x128xf32>, %sg: tensor<64x256xf32>, %sd: tensor<256x64xf32>) {
// expected-error @+1 {{capacity_factor -1.000000e+00 must be positive and finite; omit it for dropless routing}}
  %0 = moe.layer %x router(%wr) experts(up %wu down %wd) top_k = 2 score = softmax activation = gelu {capacity_factor = -1.0} : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>, %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>) {
// expected-error @+1 {{capacity_factor INF must be positive and finite; omit it for dropless routing}}
  %0 = moe.layer %x router(%wr) experts(up %wu down %wd) top_k = 2 score = softmax activation = gelu {capacity_factor = 0x7FF0000000000000 : f64} : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @f(%x: tensor<64xf32>, %e: tensor<16x2xi64>) {
// expected-error @+1 {{input must be [tokens, hidden], got shape 64}}
  %0:3 = moe.dispatch %x, %e num_experts = 8 : (tensor<64xf32>, tensor<16x2xi64>) -> (tensor<32x64xf32>, tensor<8xi64>, tensor<32xi64>)
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %e: tensor<16x2xi64>) {
// expected-error @+1 {{num_experts = 0 must be positive}}
  %0:3 = moe.dispatch %x, %e num_experts = 0 : (tensor<16x64xf32>, tensor<16x2xi64>) -> (tensor<32x64xf32>, tensor<8xi64>, tensor<32xi64>)
  return
}

// -----

func.func @f(%x: tensor<16x64xf32>, %e: tensor<16x2xi64>) {
// expected-error @+1 {{capacity = 0 must be positive; omit it for dropless dispatch}}
  %0:3 = moe.dispatch %x, %e num_experts = 8 capacity = 0 : (tensor<16x64xf32>, tensor<16x2xi64>) -> (tensor<32x64xf32>, tensor<8xi64>, tensor<32xi64>)
  return
}

// -----

func.func @f(%r: tensor<32xf32>, %c: tensor<8xi64>, %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>) {
// expected-error @+1 {{rows must be [rows, hidden], got shape 32}}
  %0 = moe.expert_ffn %r, %c up %wu down %wd activation = gelu : (tensor<32xf32>, tensor<8xi64>, tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<32xf32>
  return
}

// -----

func.func @f(%r: tensor<32x64xf32>, %c: tensor<?xi64>, %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>) {
// expected-error @+1 {{counts must be 1-D with one static entry per expert, got shape ?}}
  %0 = moe.expert_ffn %r, %c up %wu down %wd activation = gelu : (tensor<32x64xf32>, tensor<?xi64>, tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<32x64xf32>
  return
}

// -----

func.func @f(%o: tensor<32xf32>, %s: tensor<32xi64>, %w: tensor<16x2xf32>) {
// expected-error @+1 {{expert_out must be [rows, hidden], got shape 32}}
  %0 = moe.combine %o, %s, %w : (tensor<32xf32>, tensor<32xi64>, tensor<16x2xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @f(%o: tensor<32x64xf32>, %s: tensor<32xi64>, %w: tensor<32xf32>) {
// expected-error @+1 {{weights must be [tokens, top_k], got shape 32}}
  %0 = moe.combine %o, %s, %w : (tensor<32x64xf32>, tensor<32xi64>, tensor<32xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @f(%x: tensor<f32>, %u: tensor<64x256xf32>, %d: tensor<256x64xf32>) {
// expected-error @+1 {{input must be [..., hidden], not a scalar}}
  %0 = moe.ffn %x up %u down %d activation = relu : (tensor<f32>, tensor<64x256xf32>, tensor<256x64xf32>) -> tensor<f32>
  return
}

// -----

shard.grid @ep(shape = 2x4)
func.func @f(%x: tensor<f32>, %c: tensor<4xi64>) {
// expected-error @+1 {{input must have rank 1 or more (rows first)}}
  %0:2 = moe.ragged_all_to_all %x, %c on @ep grid_axes = [1] : (tensor<f32>, tensor<4xi64>) -> (tensor<f32>, tensor<4xi64>)
  return
}

// -----

shard.grid @ep(shape = 2x4)
func.func @f(%x: tensor<?x8xf32>, %c: tensor<2x2xi64>) {
// expected-error @+1 {{send_counts must be 1-D (one count per peer), got shape 2x2}}
  %0:2 = moe.ragged_all_to_all %x, %c on @ep grid_axes = [1] : (tensor<?x8xf32>, tensor<2x2xi64>) -> (tensor<?x8xf32>, tensor<2x2xi64>)
  return
}

// -----

shard.grid @ep(shape = 2x4)
func.func @f(%x: tensor<?x8xf32>, %c: tensor<4xi64>) {
// expected-error @+1 {{'nowhere' does not name a shard.grid}}
  %0:2 = moe.ragged_all_to_all %x, %c on @nowhere grid_axes = [1] : (tensor<?x8xf32>, tensor<4xi64>) -> (tensor<?x8xf32>, tensor<4xi64>)
  return
}

// -----

shard.grid @ep(shape = 2x4)
func.func @f(%x: tensor<?x8xf32>, %c: tensor<4xi64>) {
// expected-error @+1 {{grid axis 2 is out of range for @ep of rank 2}}
  %0:2 = moe.ragged_all_to_all %x, %c on @ep grid_axes = [2] : (tensor<?x8xf32>, tensor<4xi64>) -> (tensor<?x8xf32>, tensor<4xi64>)
  return
}

// -----

shard.grid @ep(shape = 2x4)
func.func @f(%x: tensor<?x8xf32>, %c: tensor<16xi64>) {
// expected-error @+1 {{grid axis 1 is listed twice}}
  %0:2 = moe.ragged_all_to_all %x, %c on @ep grid_axes = [1, 1] : (tensor<?x8xf32>, tensor<16xi64>) -> (tensor<?x8xf32>, tensor<16xi64>)
  return
}

// -----

shard.grid @ep(shape = 2x4)
func.func @f(%x: tensor<?x8xf32>, %c: tensor<4xi64>) {
// expected-error @+1 {{send_counts has 4 entries but the device group along grid_axes has 2 devices}}
  %0:2 = moe.ragged_all_to_all %x, %c on @ep grid_axes = [0] : (tensor<?x8xf32>, tensor<4xi64>) -> (tensor<?x8xf32>, tensor<4xi64>)
  return
}

// -----

func.func @f(%q: tensor<8x16x32xui8>, %s: tensor<8x16xf32>) {
  // expected-error @+1 {{bits = 3 must be 2, 4 or 8}}
  %0 = moe.dequantize %q, %s bits = 3 : (tensor<8x16x32xui8>, tensor<8x16xf32>) -> tensor<8x16x64xf32>
  return
}

// -----

func.func @f(%q: tensor<8x16x32xui8>, %s: tensor<8x16xf32>) {
  // expected-error @+1 {{codes and result must be [experts, rows, columns] with a static result shape}}
  %0 = moe.dequantize %q, %s bits = 4 : (tensor<8x16x32xui8>, tensor<8x16xf32>) -> tensor<8x1024xf32>
  return
}

// -----

func.func @f(%q: tensor<8x16x32xui8>, %s: tensor<8x16x3xf32>) {
  // expected-error @+1 {{block_size = 24 must be positive and divide the 64 columns}}
  %0 = moe.dequantize %q, %s bits = 4 block_size = 24 : (tensor<8x16x32xui8>, tensor<8x16x3xf32>) -> tensor<8x16x64xf32>
  return
}

// -----

func.func @f(%q: tensor<8x16x32xui8>, %s: tensor<8x16xf32>) {
  // expected-error @+1 {{'codes' has shape 8x16x32; expected [experts, rows, packed columns] = 8x16x64}}
  %0 = moe.dequantize %q, %s bits = 8 : (tensor<8x16x32xui8>, tensor<8x16xf32>) -> tensor<8x16x64xf32>
  return
}

// -----

func.func @f(%x: tensor<f32>, %c: tensor<2x2xi64>) {
// expected-error @+1 {{rows must have rank 1 or more (rows first)}}
  %0 = moe.transpose_chunks %x, %c : (tensor<f32>, tensor<2x2xi64>) -> tensor<f32>
  return
}

// -----

func.func @f(%x: tensor<8x4xf32>, %c: tensor<4xi64>) {
// expected-error @+1 {{chunk_counts must be 2-D ([A, B] chunks), got shape 4}}
  %0 = moe.transpose_chunks %x, %c : (tensor<8x4xf32>, tensor<4xi64>) -> tensor<8x4xf32>
  return
}

// -----

func.func @f(%x: tensor<8x4xf32>, %c: tensor<2x2xi64>) {
// expected-error @+1 {{'result' has element type 'f16' but 'f32' is expected}}
  %0 = moe.transpose_chunks %x, %c : (tensor<8x4xf32>, tensor<2x2xi64>) -> tensor<8x4xf16>
  return
}

// -----

func.func @f(%x: tensor<8x4xf32>, %c: tensor<2x2xi64>) {
// expected-error @+1 {{'result' has shape 6x4; expected the rows shape = 8x4}}
  %0 = moe.transpose_chunks %x, %c : (tensor<8x4xf32>, tensor<2x2xi64>) -> tensor<6x4xf32>
  return
}

// -----

shard.grid @pp(shape = 2x2)
func.func @f(%x: tensor<8xf32>) {
// expected-error @+1 {{result type 'tensor<8xf16>' differs from the input type 'tensor<8xf32>'}}
  %0 = moe.stage_transfer %x on @pp grid_axes = [0] from = 0 to = [1] : tensor<8xf32> -> tensor<8xf16>
  return
}

// -----

shard.grid @pp(shape = 2x2)
func.func @f(%x: tensor<8xf32>) {
// expected-error @+1 {{needs exactly one grid axis (the stages), got 2}}
  %0 = moe.stage_transfer %x on @pp grid_axes = [0, 1] from = 0 to = [1] : tensor<8xf32> -> tensor<8xf32>
  return
}

// -----

shard.grid @pp(shape = 2x2)
func.func @f(%x: tensor<8xf32>) {
// expected-error @+1 {{sends to no stage}}
  %0 = moe.stage_transfer %x on @pp grid_axes = [0] from = 0 to = [] : tensor<8xf32> -> tensor<8xf32>
  return
}

// -----

shard.grid @pp(shape = 2x2)
func.func @f(%x: tensor<8xf32>) {
// expected-error @+1 {{sends from stage 1 to stage 1; every receiver is another stage}}
  %0 = moe.stage_transfer %x on @pp grid_axes = [0] from = 1 to = [1] : tensor<8xf32> -> tensor<8xf32>
  return
}

// -----

shard.grid @pp(shape = 2x2)
func.func @f(%x: tensor<8xf32>) {
// expected-error @+1 {{'nowhere' does not name a shard.grid}}
  %0 = moe.stage_transfer %x on @nowhere grid_axes = [0] from = 0 to = [1] : tensor<8xf32> -> tensor<8xf32>
  return
}

// -----

shard.grid @pp(shape = 2x2)
func.func @f(%x: tensor<8xf32>) {
// expected-error @+1 {{grid axis 2 is out of range for @pp of rank 2}}
  %0 = moe.stage_transfer %x on @pp grid_axes = [2] from = 0 to = [1] : tensor<8xf32> -> tensor<8xf32>
  return
}

// -----

shard.grid @pp(shape = 2x2)
func.func @f(%x: tensor<8xf32>) {
// expected-error @+1 {{sends to stage 2 but @pp has 2 along axis 0}}
  %0 = moe.stage_transfer %x on @pp grid_axes = [0] from = 0 to = [2] : tensor<8xf32> -> tensor<8xf32>
  return
}

// -----

func.func @f(%x: tensor<8xf32>) -> tensor<8xf32> {
// expected-error @+1 {{has a scratch buffer of 0 bytes; sizes must be positive}}
  %0 = moe.launch "m:k 1,1,1 8,1,1 in0 out0" scratch = [0] ins(%x) : (tensor<8xf32>) -> tensor<8xf32>
  return %0 : tensor<8xf32>
}

// -----

func.func @f(%x: tensor<8xf32>) -> tensor<8xf32> {
// expected-error @+1 {{has a malformed launch list: launch 1: argument 'tmp0' is not inN, outN or tmpN within the op's 1 operands, 1 results and 0 scratch buffers, nor i64:V or f32:0xBITS}}
  %0 = moe.launch "m:k 1,1,1 8,1,1 in0 out0;m:k2 1,1,1 8,1,1 tmp0" scratch = [] ins(%x) : (tensor<8xf32>) -> tensor<8xf32>
  return %0 : tensor<8xf32>
}

// -----

func.func @f(%x: tensor<8xf32>) -> tensor<8xf32> {
// expected-error @+1 {{has a malformed launch list: launch 0: grid '1,0,1' is not three positive sizes}}
  %0 = moe.launch "m:k 1,0,1 8,1,1 in0 out0" scratch = [] ins(%x) : (tensor<8xf32>) -> tensor<8xf32>
  return %0 : tensor<8xf32>
}
