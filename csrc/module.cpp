// The Python module fastperc._C: loading it registers the ops; build_info() says what was compiled.
#include <pybind11/pybind11.h>

#include "cpu/cpu_isa.h"

#ifndef FASTPERC_CUDA_ARCHS
#define FASTPERC_CUDA_ARCHS ""
#endif

namespace py = pybind11;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastperc compiled kernels (ops are registered under torch.ops.fastperc)";
  m.def("build_info", [] {
    py::dict info;
#ifdef FASTPERC_WITH_CUDA
    info["cuda"] = true;
#else
    info["cuda"] = false;
#endif
    info["cuda_archs"] = FASTPERC_CUDA_ARCHS;
#ifdef _OPENMP
    info["openmp"] = true;
#else
    info["openmp"] = false;
#endif
    info["cpu_isa_best"] = fastperc::cpu::isa_name(fastperc::cpu::best_supported_isa());
    info["cpu_isa_active"] = fastperc::cpu::isa_name(fastperc::cpu::active_isa());
    info["cpu_isas"] = fastperc::cpu::supported_isa_names();
    return info;
  });
  m.def("set_cpu_isa", &fastperc::cpu::set_active_isa, py::arg("name"),
        "Use the micro-kernels of a lower ISA (generic, avx2, avx512 on x86-64; generic, neon on aarch64) for "
        "testing and comparison.");
  m.def("cpu_isa", [] { return std::string(fastperc::cpu::isa_name(fastperc::cpu::active_isa())); });
}
