// XC-2026: load a TorchScript model from C++, predict on an input saved by Python, time it.
//
// usage: lablib_infer MODEL.pt INPUT.pt WARMUP RUNS DEVICE THREADS
//   MODEL.pt  torch.jit.save'd module (e.g. the scripted ResNet-18 of C7)
//   INPUT.pt  torch.save'd float tensor, B x 3 x 32 x 32, already normalised
//   WARMUP    untimed forward passes of one image before timing
//   RUNS      timed forward passes of one image (1 x 3 x 32 x 32)
//   DEVICE    cpu | cuda
//   THREADS   intra-op CPU threads (match Python's torch.get_num_threads())
// Prints one JSON object on stdout: the logits (B x classes) and predicted classes
// for the whole input, each timed run in ms, and the library's version.
// Eval mode and no autograd, as in Python's model.eval() + torch.no_grad().

#include <torch/script.h>
#include <ATen/Parallel.h>
#include <torch/version.h>
#ifndef LABLIB_CPU_ONLY
#include <torch/cuda.h>
#endif

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace {

std::vector<char> read_file(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) throw std::runtime_error("cannot open " + path);
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

// Wait for queued GPU work, so a timestamp means "finished", not "launched".
void synchronize(const torch::Device& device) {
#ifndef LABLIB_CPU_ONLY
  if (device.is_cuda()) torch::cuda::synchronize();
#else
  (void)device;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::cerr << "usage: " << argv[0] << " MODEL.pt INPUT.pt WARMUP RUNS DEVICE THREADS\n";
    return 2;
  }
  const std::string model_path = argv[1], input_path = argv[2], device_name = argv[5];
  const int warmup = std::stoi(argv[3]), runs = std::stoi(argv[4]), threads = std::stoi(argv[6]);
  try {
    if (threads > 0) at::set_num_threads(threads);
    const torch::Device device(device_name);
    torch::jit::Module module = torch::jit::load(model_path, device);
    module.eval();
    torch::Tensor input = torch::jit::pickle_load(read_file(input_path)).toTensor().to(device);
    torch::NoGradGuard no_grad;

    // Prediction on the whole input: B x classes logits, argmax per row.
    torch::Tensor logits = module.forward({input}).toTensor().to(torch::kCPU, torch::kDouble).contiguous();
    torch::Tensor predicted = logits.argmax(1);

    // Latency of one image, 1 x 3 x 32 x 32, as in C10.
    std::vector<torch::jit::IValue> single{input.slice(0, 0, 1)};
    for (int i = 0; i < warmup; ++i) module.forward(single);
    synchronize(device);
    std::vector<double> times_ms;
    times_ms.reserve(runs);
    for (int i = 0; i < runs; ++i) {
      synchronize(device);
      const auto start = std::chrono::steady_clock::now();
      module.forward(single);
      synchronize(device);
      const auto end = std::chrono::steady_clock::now();
      times_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
    }

    // One JSON object; %.17g keeps every digit of a double.
    const auto rows = logits.size(0), columns = logits.size(1);
    const double* values = logits.data_ptr<double>();
    std::printf("{\"torch_version\": \"%s\", \"device\": \"%s\", \"threads\": %d, \"warmup\": %d, "
                "\"input_shape\": [%lld, %lld, %lld, %lld], \"logits\": [",
                TORCH_VERSION, device.str().c_str(), at::get_num_threads(), warmup,
                (long long)input.size(0), (long long)input.size(1), (long long)input.size(2),
                (long long)input.size(3));
    for (int64_t r = 0; r < rows; ++r) {
      std::printf(r ? ", [" : "[");
      for (int64_t c = 0; c < columns; ++c) std::printf(c ? ", %.17g" : "%.17g", values[r * columns + c]);
      std::printf("]");
    }
    std::printf("], \"predicted\": [");
    for (int64_t r = 0; r < rows; ++r) std::printf(r ? ", %lld" : "%lld", (long long)predicted[r].item<int64_t>());
    std::printf("], \"times_ms\": [");
    for (size_t i = 0; i < times_ms.size(); ++i) std::printf(i ? ", %.6f" : "%.6f", times_ms[i]);
    std::printf("]}\n");
    return 0;
  } catch (const std::exception& error) {
    std::cerr << "lablib_infer: " << error.what() << "\n";
    return 1;
  }
}
