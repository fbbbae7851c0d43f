// The named choices of job options (--dtype, --device, --schedule, --executor):
// each enum lists its names once, and parsing, the list in --help and the error
// message all come from that list.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "smoe/core/error.h"

namespace smoe {

template <class E>
using ChoiceNames = std::vector<std::pair<E, const char*>>;

// "a or b", "a, b or c".
template <class E>
std::string choice_list(const ChoiceNames<E>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += std::string(i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i].second;
  return out;
}

// The value named `text`; InputError "OPTION must be a or b, found 'x'" otherwise.
template <class E>
E parse_choice(const ChoiceNames<E>& names, const std::string& option, const std::string& text) {
  for (const auto& [value, name] : names)
    if (text == name) return value;
  throw InputError(str(option, " must be ", choice_list(names), ", found '", clip(text), "'"));
}

template <class E>
const char* choice_name(const ChoiceNames<E>& names, E value) {
  for (const auto& [v, name] : names)
    if (v == value) return name;
  SMOE_ASSERT(false, "a choice without a name");
  return "";
}

// Compute dtype of the model's activations and weights.
enum class ComputeDtype { F32, BF16 };
inline const ChoiceNames<ComputeDtype>& dtype_names() {
  static const ChoiceNames<ComputeDtype> names{{ComputeDtype::F32, "f32"}, {ComputeDtype::BF16, "bf16"}};
  return names;
}

enum class DeviceKind { Cpu, Cuda };
inline const ChoiceNames<DeviceKind>& device_names() {
  static const ChoiceNames<DeviceKind> names{{DeviceKind::Cpu, "cpu"}, {DeviceKind::Cuda, "cuda"}};
  return names;
}

// collect's schedules: the whole model loaded, or one layer's experts at a time.
enum class Schedule { Default, Layerwise };
inline const ChoiceNames<Schedule>& schedule_names() {
  static const ChoiceNames<Schedule> names{{Schedule::Default, "default"}, {Schedule::Layerwise, "layerwise"}};
  return names;
}

// How score runs the experts.
enum class ExecutorKind { Auto, Local, ExpertParallel };
inline const ChoiceNames<ExecutorKind>& executor_names() {
  static const ChoiceNames<ExecutorKind> names{
      {ExecutorKind::Auto, "auto"}, {ExecutorKind::Local, "local"}, {ExecutorKind::ExpertParallel, "expert-parallel"}};
  return names;
}

}  // namespace smoe
