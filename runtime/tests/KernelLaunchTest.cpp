//===- KernelLaunchTest.cpp - launch lists of generated kernels -----------===//
//
// Part of moe-compiler's runtime.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/KernelLaunch.h"
#include "moe/Runtime/Program.h"

#include "gtest/gtest.h"

using namespace moe::rt;

namespace {

TEST(KernelLaunchTest, ParsesLaunchesAndArguments) {
  std::vector<KernelLaunch> launches;
  std::string error = parseKernelLaunches(
      "k3_kernel:k3_kernel 9,1,1 1,1,1 i64:1 tmp0;"
      "k3_kernel_0:k3_kernel 9,3,1 1,256,1 i64:-2 in1 tmp0 f32:0x3F800000 out0",
      2, 1, 1, launches);
  ASSERT_EQ(error, "");
  ASSERT_EQ(launches.size(), 2u);
  std::vector<KernelLaunch> copies;
  ASSERT_EQ(parseKernelLaunches("copy in1 out0 36", 2, 1, 0, copies), "");
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_TRUE(copies[0].module.empty());
  EXPECT_EQ(copies[0].copyBytes, 36);
  EXPECT_EQ(copies[0].arguments[0].kind, LaunchArgument::Input);
  EXPECT_EQ(copies[0].arguments[0].value, 1);
  EXPECT_EQ(copies[0].arguments[1].kind, LaunchArgument::Output);
  EXPECT_EQ(launches[0].module, "k3_kernel");
  EXPECT_EQ(launches[0].kernel, "k3_kernel");
  EXPECT_EQ(launches[1].module, "k3_kernel_0");
  EXPECT_EQ(launches[1].grid[1], 3);
  EXPECT_EQ(launches[1].block[1], 256);
  const std::vector<LaunchArgument> &args = launches[1].arguments;
  ASSERT_EQ(args.size(), 5u);
  EXPECT_EQ(args[0].kind, LaunchArgument::Int64);
  EXPECT_EQ(args[0].value, -2);
  EXPECT_EQ(args[1].kind, LaunchArgument::Input);
  EXPECT_EQ(args[1].value, 1);
  EXPECT_EQ(args[2].kind, LaunchArgument::Scratch);
  EXPECT_EQ(args[3].kind, LaunchArgument::Float32);
  EXPECT_EQ(args[3].value, 0x3F800000);
  EXPECT_EQ(args[4].kind, LaunchArgument::Output);
}

TEST(KernelLaunchTest, NamesWhatIsWrong) {
  std::vector<KernelLaunch> launches;
  struct Case {
    const char *text;
    const char *message;
  } cases[] = {
      {"", "no launches"},
      {"m:k 1,1,1", "launch 0: expected 'MODULE:KERNEL GX,GY,GZ BX,BY,BZ"},
      {"mk 1,1,1 1,1,1", "launch 0: 'mk' is not MODULE:KERNEL"},
      {"m:k 1,1,1 1,1,1;m:k 1,1 1,1,1", "launch 1: grid '1,1' is not three"},
      {"m:k 1,1,1 0,1,1", "launch 0: block '0,1,1' is not three positive"},
      {"m:k 1,1,1 1,1,1 in2", "launch 0: argument 'in2' is not inN"},
      {"m:k 1,1,1 1,1,1 out-1", "launch 0: argument 'out-1'"},
      {"m:k 1,1,1 1,1,1 f32:0x1FFFFFFFF", "argument 'f32:0x1FFFFFFFF'"},
      {"m:k 1,1,1 1,1,1 i64:x", "argument 'i64:x'"},
      {"copy in0 out0", "launch 0: expected 'copy SRC DST BYTES'"},
      {"copy in0 i64:3 8", "launch 0: argument 'i64:3' is not inN"},
      {"copy in0 out0 0", "launch 0: expected 'copy SRC DST BYTES'"},
  };
  for (const Case &c : cases) {
    std::string error = parseKernelLaunches(c.text, 2, 1, 0, launches);
    EXPECT_NE(error.find(c.message), std::string::npos)
        << "'" << c.text << "' gave '" << error << "'";
  }
}

TEST(KernelLaunchTest, ProgramsCarryGpuModules) {
  Program program;
  std::string text = "moe-program 1\n"
                     "gpu-module k0_kernel .version%208.0%0A.entry%20k0%28%29\n"
                     "input 0 x f32 4\n"
                     "op launch 1:f32:4 = 0 launches=s:k0_kernel%3Ak0%201%2C"
                     "1%2C1%204%2C1%2C1%20in0%20out0 scratch=a:\n"
                     "output 1 y\n";
  Status status = parseProgram(text, "t.moe", program);
  ASSERT_TRUE(status) << status.message;
  ASSERT_EQ(program.gpuModules.size(), 1u);
  EXPECT_EQ(program.gpuModules[0].name, "k0_kernel");
  EXPECT_EQ(program.gpuModules[0].ptx, ".version 8.0\n.entry k0()");
  EXPECT_EQ(program.operations[0].attrs.getString("launches"),
            "k0_kernel:k0 1,1,1 4,1,1 in0 out0");
  Program again;
  status = parseProgram(printProgram(program), "printed.moe", again);
  ASSERT_TRUE(status) << status.message;
  ASSERT_EQ(again.gpuModules.size(), 1u);
  EXPECT_EQ(again.gpuModules[0].ptx, program.gpuModules[0].ptx);

  Program twice;
  std::string duplicate = "moe-program 1\ngpu-module a x\ngpu-module a y\n";
  status = parseProgram(duplicate, "dup.moe", twice);
  ASSERT_FALSE(status);
  EXPECT_NE(status.message.find("dup.moe:3: gpu-module 'a' is declared twice"),
            std::string::npos)
      << status.message;
}

} // namespace
