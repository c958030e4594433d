// moe-compile --machine plans the raised layers: the report names the
// chosen degrees, the module records them (moe.plan), and planning reads
// shapes only.

// RUN: moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx --dim-params=batch=8,seq=64 --machine=cpu:4 --emit=mlir -o - 2>/dev/null | FileCheck %s --check-prefix=TEXT
// TEXT: note: attention: 4 heads of width 8
// TEXT: Plan for main_graph on cpu:4
// TEXT: model: 2 layers (2 MoE), {{.*}} 8 x 64 tokens per step
// On CPU ranks the search keeps to the plans the partitioner applies
// (pipeline stages and micro-batches, data-parallel replicas, ep x tp
// inside the MoE layers with etp = tp), and the module is partitioned by
// the winner: for 8 sequences on 4 ranks, 4 replicas (nothing computed
// twice, no exchange), ahead of 2 stages of 2 replicas (the bubble).
// TEXT: Chosen: pp=1 dp=4 tp=1 ep=1 etp=1 microbatches=1
// TEXT: Runners-up
// TEXT-NEXT: 2. pp=2 dp=2 tp=1 ep=1 etp=1 microbatches=4 {{.*}} slower: pipeline bubble
// TEXT: module attributes {moe.plan = "pp=1 dp=4 tp=1 ep=1 etp=1 microbatches=1 extra_slots=0"
// TEXT: shard.grid @pp_dp_ep_tp(shape = 1x4x1x1)
// TEXT: func.func @main_graph(%{{.*}}: tensor<8x64xi64>
// TEXT: shard.all_slice %{{.*}} on @pp_dp_ep_tp grid_axes = [1] slice_axis = 0 : tensor<8x64xi64> -> tensor<2x64xi64>
// TEXT: shard.all_gather %{{.*}} on @pp_dp_ep_tp grid_axes = [1] gather_axis = 0 : tensor<2x64x128xf32> -> tensor<8x64x128xf32>

// For GPU machines the whole space is searched and reported.
// RUN: moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx --dim-params=batch=8,seq=64 --machine=8xH200 --emit=mlir -o - 2>/dev/null | FileCheck %s --check-prefix=GPU
// GPU: Chosen: pp={{[0-9]+}} dp={{[0-9]+}} tp={{[0-9]+}} ep={{[0-9]+}}
// GPU: Runners-up
// GPU: module attributes {moe.plan = "pp={{[0-9]+}} dp={{[0-9]+}} tp={{[0-9]+}} ep={{[0-9]+}}
// GPU-NOT: shard.grid

// RUN: moe-compile %moe_src_root/test/ONNX/models/hf/qwen2_moe-batched_mm-dynamo.onnx --dim-params=batch=8,seq=64 --machine=8xH200 --expert-load=zipf:1.0 --report=%t.json -o %t.moe
// RUN: FileCheck %s --check-prefix=JSON < %t.json
// JSON: "expert_load": "zipf:1
// JSON: "machine":
// JSON: "name": "8xH200"

// RUN: not moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx --dim-params=batch=8,seq=64 --plan="ep=4" -o %t.none 2>&1 | FileCheck %s --check-prefix=NEEDS-MACHINE
// NEEDS-MACHINE: --plan and --report need --machine

// RUN: not moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx --dim-params=batch=8,seq=64 --machine=9xQ100 -o %t.none 2>&1 | FileCheck %s --check-prefix=BAD-MACHINE
// BAD-MACHINE: moe-compile: {{.*}}9xQ100

// Capacity mode: the report estimates the pairs each layer drops with every
// expert at its mean load under the load model (a lower bound). 8 experts,
// top-2, 512 tokens: 1024 pairs. Partitioned over ep=4, each rank applies
// the capacity to its 128 tokens: ceil(1.0 * 128 * 2 / 8) = 32 per expert.
// Uniform load drops nothing; under zipf:1 the two hottest experts get
// 256/H_8 = 94.2 and 47.1 of a rank's 256 pairs, so each rank drops
// 62.2 + 15.1 and the four 309.2.
// RUN: moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx --dim-params=batch=8,seq=64 --machine=cpu:4 --plan="ep=4 microbatches=1" --expert-load=uniform --capacity-factor=1.0 -o %t.moe 2>&1 | FileCheck %s --check-prefix=CAP-UNIFORM
// CAP-UNIFORM: capacity mode, MoE layer 0: capacity 32 pairs per expert on each of 4 expert-parallel ranks; at mean load under uniform, 0.0 of 1024 pairs (0.00 %) are dropped (a lower bound
// RUN: moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx --dim-params=batch=8,seq=64 --machine=cpu:4 --plan="ep=4 microbatches=1" --expert-load=zipf:1.0 --capacity-factor=1.0 --report=%t.cap.json -o %t.moe
// RUN: FileCheck %s --check-prefix=CAP-JSON < %t.cap.json
// CAP-JSON: "capacity_mode": {
// CAP-JSON: "capacity_factor": 1,
// CAP-JSON: "capacity": 32,
// CAP-JSON: "mean_load_dropped_pairs": 309.15

// A capacity factor that is not a positive finite number is refused before
// anything is written.
// RUN: not moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx --dim-params=batch=8,seq=64 --capacity-factor=nan -o %t.nan.moe 2>&1 | FileCheck %s --check-prefix=CAP-NAN
// RUN: not test -e %t.nan.moe
// CAP-NAN: moe-compile: --capacity-factor=nan must be a positive finite number

// Micro-batches: the program computes one micro-batch (the first input's
// symbolic batch dimension divided) and says how many make a step.
// RUN: moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx --dim-params=batch=4,seq=8 --machine=cpu:2 --plan="pp=2 microbatches=2" -o %t.mb.moe 2>&1 | FileCheck %s --check-prefix=MICRO
// RUN: FileCheck %s --check-prefix=MICRO-PROGRAM < %t.mb.moe
// MICRO: moe-compile: compiling one of 2 micro-batches
// MICRO-PROGRAM: microbatches 2
// MICRO-PROGRAM: input 0 input_ids i64 2x8
// RUN: not moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx --dim-params=batch=1,seq=8 --machine=cpu:2 --plan="pp=2 microbatches=2" -o %t.mb1.moe 2>&1 | FileCheck %s --check-prefix=MICRO-ONE
// MICRO-ONE: microbatches=2 exceed the 1 sequences per data shard
