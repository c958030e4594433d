//===- ProgramTest.cpp - program format and .npy files --------------------===//
//
// Part of moe-compiler's runtime.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Program.h"
#include "moe/Runtime/Npy.h"

#include "gtest/gtest.h"

#include <cstdio>
#include <fstream>

using namespace moe::rt;

namespace {

constexpr const char *kProgram = R"(moe-program 1
# A router and a weight slice.
weights-dir ../models
grid pp_ep_tp 2x1x2
pipeline pp_ep_tp 0
microbatches 4
input 0 x f32 4x8
weight 1 router.w f32 8x3 model.onnx 120 96
weight 2 experts%20up f32 4x8x16 model.onnx.data 0 2048 slice 2x0x0 2x8x16
const 3 i64 2 4,8
const 4 f32 4x3 0.5
op matmul 5:f32:4x3 = 0,1
op top_k 6:f32:4x2,7:i64:4x2 = 5 axis=i:-1 k=i:2
op layer_norm 8:f32:4x8 = 0,-,- axis=i:-1 epsilon=f:1.0000000000000001e-05 note=s:a%20b axes=a:0,1
output 6 weights
output 7 experts
)";

TEST(ProgramTest, ParsesEveryRecord) {
  Program program;
  Status status = parseProgram(kProgram, "test.moe", program);
  ASSERT_TRUE(status) << status.message;
  EXPECT_EQ(program.weightsDir, "../models");
  ASSERT_EQ(program.grids.size(), 1u);
  EXPECT_EQ(program.grids[0].name, "pp_ep_tp");
  EXPECT_EQ(program.grids[0].shape, (Shape{2, 1, 2}));
  ASSERT_TRUE(program.pipeline.has_value());
  EXPECT_EQ(program.pipeline->grid, "pp_ep_tp");
  EXPECT_EQ(program.pipeline->axis, 0);
  EXPECT_EQ(program.microbatches, 4);
  ASSERT_EQ(program.inputs.size(), 1u);
  EXPECT_EQ(program.inputs[0].type.shape, (Shape{4, 8}));
  ASSERT_EQ(program.weights.size(), 2u);
  EXPECT_EQ(program.weights[1].name, "experts up");
  EXPECT_EQ(program.weights[1].fullShape, (Shape{4, 8, 16}));
  EXPECT_EQ(program.weights[1].type.shape, (Shape{2, 8, 16}));
  EXPECT_EQ(*program.weights[1].sliceOffsets, (Shape{2, 0, 0}));
  ASSERT_EQ(program.constants.size(), 2u);
  EXPECT_EQ(program.constants[1].values.size(), 12u) << "splat expands";
  ASSERT_EQ(program.operations.size(), 3u);
  const Operation &topK = program.operations[1];
  EXPECT_EQ(topK.results, (std::vector<int>{6, 7}));
  EXPECT_EQ(topK.attrs.getInt("k"), 2);
  const Operation &norm = program.operations[2];
  EXPECT_EQ(norm.operands, (std::vector<int>{0, -1, -1}));
  EXPECT_EQ(norm.attrs.getString("note"), "a b");
  EXPECT_EQ(*norm.attrs.getArray("axes"), (std::vector<int64_t>{0, 1}));
  EXPECT_DOUBLE_EQ(norm.attrs.getFloat("epsilon"), 1e-5);
  EXPECT_EQ(program.numValues, 9);
}

TEST(ProgramTest, PrintThenParseIsTheIdentity) {
  Program program;
  ASSERT_TRUE(parseProgram(kProgram, "test.moe", program));
  std::string printed = printProgram(program);
  Program again;
  Status status = parseProgram(printed, "printed.moe", again);
  ASSERT_TRUE(status) << status.message << "\n" << printed;
  EXPECT_EQ(printProgram(again), printed);
}

struct BadProgram {
  const char *text;
  const char *message;
};

class ProgramErrorTest : public ::testing::TestWithParam<BadProgram> {};

TEST_P(ProgramErrorTest, NamesTheLineAndTheProblem) {
  Program program;
  Status status = parseProgram(GetParam().text, "bad.moe", program);
  ASSERT_FALSE(status);
  EXPECT_NE(status.message.find(GetParam().message), std::string::npos)
      << status.message;
}

INSTANTIATE_TEST_SUITE_P(
    Errors, ProgramErrorTest,
    ::testing::Values(
        BadProgram{"", "empty program"},
        BadProgram{"hello\n", "bad.moe:1: not a moe program"},
        BadProgram{"moe-program 9\n", "version 9 is not supported"},
        BadProgram{"moe-program 1\nfrobnicate 1\n",
                   "bad.moe:2: unknown record"},
        BadProgram{"moe-program 1\ninput 0 x f32 4\noutput 3 y\n",
                   "bad.moe:3: value '3' is used before it is defined"},
        BadProgram{"moe-program 1\ninput 0 x f32 4\ninput 0 y f32 4\n",
                   "value 0 is defined twice"},
        BadProgram{"moe-program 1\ninput 0 x q7 4\n",
                   "unknown element type 'q7'"},
        BadProgram{"moe-program 1\ninput 0 x f32 4x-2\n", "bad shape"},
        BadProgram{"moe-program 1\nweight 0 w f32 4 m.onnx 0 12\n",
                   "has length 12 but its type needs 16 bytes"},
        BadProgram{"moe-program 1\nweight 0 w f32 4x4 m 0 64 slice 3x0 2x4\n",
                   "slice exceeds dimension 0"},
        BadProgram{"moe-program 1\ninput 0 x f32 4\nop relu 1:f32:4 = 0 "
                   "axis=z:3\noutput 1 y\n",
                   "bad attribute type"},
        BadProgram{"moe-program 1\ngrid g 2x0\n",
                   "grid 'g' has a bad size in '2x0'"},
        BadProgram{"moe-program 1\ngrid g 2\ngrid g 4\n",
                   "bad.moe:3: grid 'g' is declared twice"},
        BadProgram{"moe-program 1\npipeline g\n",
                   "expected 'pipeline <grid> <axis>'"},
        BadProgram{"moe-program 1\nmicrobatches 0\n",
                   "expected 'microbatches <count>' with a count of 1 or "
                   "more"},
        BadProgram{"moe-program 1\ngpu-module k %2Eversion sm_90a Zm9v=\n",
                   "gpu-module 'k': the cubin must be a chip name and base64 "
                   "bytes"},
        BadProgram{"moe-program 1\ngpu-module k %2Eversion sm_90a\n",
                   "expected 'gpu-module <name> <ptx> [<chip> <cubin>]'"},
        BadProgram{"moe-program 1\ninput 0 x f32 4\n", "has no outputs"}));

TEST(ProgramTest, GpuModulesKeepTheirCubinBytes) {
  Program program;
  std::string cubin = std::string("\x7f"
                                  "ELF\x02\x01",
                                  6) +
                      '\0' + "\xbe\xff";
  program.gpuModules.push_back(
      {"k0", ".version 8.0\n.target sm_80\n", "sm_90a", cubin});
  program.gpuModules.push_back({"k1", ".version 8.0\n", "", ""});
  program.inputs.push_back({0, "x", {DType::F32, {4}}});
  program.outputs.push_back({0, "y"});
  program.numValues = 1;
  Program again;
  Status status = parseProgram(printProgram(program), "gpu.moe", again);
  ASSERT_TRUE(status) << status.message;
  ASSERT_EQ(again.gpuModules.size(), 2u);
  EXPECT_EQ(again.gpuModules[0].ptx, program.gpuModules[0].ptx);
  EXPECT_EQ(again.gpuModules[0].cubinChip, "sm_90a");
  EXPECT_EQ(again.gpuModules[0].cubin, cubin);
  EXPECT_TRUE(again.gpuModules[1].cubin.empty());
}

TEST(Base64Test, KnownVectorsAndAnyBytes) {
  // RFC 4648's test vectors.
  const char *vectors[][2] = {{"", ""},
                              {"f", "Zg=="},
                              {"fo", "Zm8="},
                              {"foo", "Zm9v"},
                              {"foob", "Zm9vYg=="},
                              {"fooba", "Zm9vYmE="},
                              {"foobar", "Zm9vYmFy"}};
  for (const auto &[bytes, text] : vectors) {
    EXPECT_EQ(encodeBase64(bytes), text);
    std::string decoded;
    ASSERT_TRUE(decodeBase64(text, decoded)) << text;
    EXPECT_EQ(decoded, bytes);
  }
  std::string all;
  for (int c = 0; c < 256; ++c)
    all += static_cast<char>(c);
  for (size_t length = 0; length <= all.size(); length += 37) {
    std::string decoded;
    ASSERT_TRUE(decodeBase64(encodeBase64(all.substr(0, length)), decoded));
    EXPECT_EQ(decoded, all.substr(0, length));
  }
  std::string decoded;
  for (const char *bad : {"Zm9", "Zm=v", "Z!==", "====", "Zg==Zg==", "Zm9v\n"})
    EXPECT_FALSE(decodeBase64(bad, decoded)) << bad;
}

TEST(NameEncodingTest, RoundTripsAnyBytes) {
  std::string name = std::string("a b/%c\n\x01.") + '\0' + "z";
  std::string decoded;
  ASSERT_TRUE(decodeName(encodeName(name), decoded));
  EXPECT_EQ(decoded, name);
  EXPECT_EQ(encodeName("layers.0/mlp+x-y_z"), "layers.0/mlp+x-y_z");
  EXPECT_FALSE(decodeName("%G1", decoded));
  EXPECT_FALSE(decodeName("a b", decoded));
}

TEST(NpyTest, WriteThenReadKeepsShapeTypeAndValues) {
  Tensor tensor(DType::F32, {2, 3});
  for (int i = 0; i < 6; ++i)
    tensor.as<float>()[i] = i * 0.5f;
  std::string path = ::testing::TempDir() + "/tensor.npy";
  ASSERT_TRUE(writeNpy(path, tensor));
  Tensor read;
  Status status = readNpy(path, read);
  ASSERT_TRUE(status) << status.message;
  EXPECT_EQ(read.dtype(), DType::F32);
  EXPECT_EQ(read.shape(), (Shape{2, 3}));
  EXPECT_EQ(read.as<float>()[5], 2.5f);
  std::remove(path.c_str());
}

TEST(NpyTest, TruncatedFileIsAnErrorNamingIt) {
  Tensor tensor(DType::I64, {4});
  std::string path = ::testing::TempDir() + "/truncated.npy";
  ASSERT_TRUE(writeNpy(path, tensor));
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  in.close();
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      << bytes.substr(0, bytes.size() - 5);
  Tensor read;
  Status status = readNpy(path, read);
  ASSERT_FALSE(status);
  EXPECT_NE(status.message.find("truncated"), std::string::npos)
      << status.message;
  EXPECT_NE(status.message.find(path), std::string::npos);
  std::remove(path.c_str());
}

} // namespace
