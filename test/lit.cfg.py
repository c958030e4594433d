# -*- Python -*-
# lit configuration for moe-compiler's FileCheck tests.

import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "MOE"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moe_obj_root, "test")
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.moe_tools_dir, config.llvm_tools_dir]
tools = [
    ToolSubst("moe-opt", unresolved="fatal"),
    ToolSubst("moe-translate", unresolved="fatal"),
    ToolSubst("moe-compile", unresolved="fatal"),
    # Upstream's, from the LLVM 22 the project builds against (the CUDA
    # lowering tests use its gpu -> NVVM pipeline).
    ToolSubst("mlir-opt", unresolved="fatal"),
]
llvm_config.add_tool_substitutions(tools, tool_dirs)
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
config.substitutions.append(("%moe_src_root", config.moe_src_root))

# LLVM's NVPTX backend, which the gpu -> NVVM -> PTX tests need; Debian's
# LLVM 22 has it, other builds may not.
import subprocess

try:
    llc_version = subprocess.run(
        [os.path.join(config.llvm_tools_dir, "llc"), "--version"],
        capture_output=True, text=True, check=False).stdout
except OSError:
    llc_version = ""
if "nvptx64" in llc_version:
    config.available_features.add("nvptx")
else:
    lit_config.note("LLVM has no NVPTX backend (llc --version): "
                    "PTX generation tests are unsupported")

# CUDA's ptxas (the toolkit is under /usr/local/cuda on the project's
# machines); tests that assemble PTX are UNSUPPORTED, and say so, without it.
import shutil

ptxas = shutil.which("ptxas") or "/usr/local/cuda/bin/ptxas"
if os.access(ptxas, os.X_OK):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", ptxas))
    # gpu-module-to-binary finds libdevice (math functions) through it.
    cuda_home = os.path.dirname(os.path.dirname(os.path.realpath(ptxas)))
    config.environment["CUDA_HOME"] = cuda_home
    config.substitutions.append(("%cuda_home", cuda_home))
else:
    lit_config.note("ptxas not found (install the CUDA toolkit): "
                    "PTX assembly tests are unsupported")
