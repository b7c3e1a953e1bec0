// What tch 0.26 does not expose of a TorchScript module: its buffers (batch norm's
// running statistics), which a checkpoint must hold. Mirrors torch-sys's
// `atm_named_parameters` (libtch/torch_api.cpp): a callback per (name, new tensor handle).
#include <torch/script.h>
#include <cstring>

extern "C" {
// Returns nullptr, or a malloc'ed message (freed by the caller) when libtorch throws.
char *phasetop_named_buffers(void *module, void *data, void (*f)(void *, const char *, void *)) {
  try {
    auto m = static_cast<torch::jit::Module *>(module);
    for (const auto &b : m->named_buffers()) f(data, b.name.c_str(), new torch::Tensor(b.value));
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}
}
