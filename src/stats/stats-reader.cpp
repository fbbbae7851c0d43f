#include "smoe/stats/stats-reader.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "smoe/core/error.h"
#include "smoe/io/hdf5.h"
#include "smoe/stats/stats-file.h"

namespace smoe {

namespace {

void check_finite(const at::Tensor& t, const char* name, int64_t layer, const std::string& path) {
  SMOE_CHECK_INPUT(!t.defined() || t.numel() == 0 || at::isfinite(t).all().item<bool>(), path, ": layer ", layer, " '",
                   name, "' holds NaN or infinite values");
}

// One layer's group: its attributes, every summed statistic with its shape, the
// optional ones, each checked (whole non-negative counts, finite sums).
LayerStats read_layer(hid_t g, const std::string& name, const std::string& path) {
  LayerStats s;
  s.layer = h5::read_attr_int(g, "layer", path);
  s.num_experts = h5::read_attr_int(g, "num_experts", path);
  s.top_k = h5::read_attr_int(g, "top_k", path);
  s.tokens = h5::read_attr_int(g, "tokens", path);
  const int64_t E = s.num_experts;
  SMOE_CHECK_INPUT(s.layer >= 0 && s.layer < 65536, path, ": layer '", name, "' has layer number ", s.layer,
                   ", outside [0, 65536)");
  SMOE_CHECK_INPUT(E >= 1 && E <= 65536, path, ": layer ", s.layer, " has ", E, " experts; a MoE layer has 1 to 65536");
  SMOE_CHECK_INPUT(s.top_k >= 1 && s.top_k <= E, path, ": layer ", s.layer, " top_k ", s.top_k, " outside [1, ", E, "]");
  SMOE_CHECK_INPUT(s.tokens >= 0, path, ": layer ", s.layer, " counts ", s.tokens, " tokens");
  for (const SummedStat& f : summed_stats()) {
    at::Tensor t = h5::read_tensor(g, f.name, path);
    SMOE_CHECK_INPUT(f.pairs ? t.dim() == 2 && t.size(0) == E && t.size(1) == E : t.dim() == 1 && t.size(0) == E, path,
                     ": layer ", s.layer, " '", f.name, "' must ", f.pairs ? str("be ", E, " x ", E) : str("have ", E, " entries"));
    if (f.whole) {
      SMOE_CHECK_INPUT(!t.is_floating_point() || (at::isfinite(t).all().item<bool>() && at::equal(t, t.round())), path,
                       ": layer ", s.layer, " '", f.name, "' must hold whole counts, found NaN, infinite or fractional values");
      t = t.to(at::kLong);
      SMOE_CHECK_INPUT(t.numel() == 0 || t.min().item<int64_t>() >= 0, path, ": layer ", s.layer, " has negative counts");
    } else {
      t = t.to(at::kDouble);
    }
    s.*f.field = t;
  }
  if (h5::exists(g, "out_mean")) {
    s.out_mean = h5::read_tensor(g, "out_mean", path).to(at::kDouble);
    SMOE_CHECK_INPUT(s.out_mean.dim() == 2 && s.out_mean.size(0) == E, path, ": layer ", s.layer,
                     " 'out_mean' must have ", E, " rows");
  }
  if (h5::exists(g, "hidden_sample")) {
    s.hidden_sample = h5::read_tensor(g, "hidden_sample", path);
    SMOE_CHECK_INPUT(s.hidden_sample.dim() == 2, path, ": layer ", s.layer, " 'hidden_sample' must be rows x hidden");
  }
  for (const SummedStat& f : summed_stats())
    if (!f.whole) check_finite(s.*f.field, f.name, s.layer, path);
  check_finite(s.out_mean, "out_mean", s.layer, path);
  check_finite(s.hidden_sample, "hidden_sample", s.layer, path);
  return s;
}

}  // namespace

TaskStatsData read_task_stats(const std::string& path, const std::string& task) {
  h5::Handle file = h5::open_file(path);
  const hid_t root = file.get();
  SMOE_CHECK_INPUT(h5::has_attr(root, "format") && h5::read_attr_string(root, "format", path) == "smoe-stats", path,
                   ": not a smoe statistics file");
  const int64_t version = h5::read_attr_int(root, "schema_version", path);
  SMOE_CHECK_INPUT(version == kStatsSchemaVersion, path, ": schema version ", version, ", this smoe reads ",
                   kStatsSchemaVersion);
  SMOE_CHECK_INPUT(h5::read_attr_int(root, "complete", path) == 1, path, ": incomplete (its 'complete' flag is 0)");
  TaskStatsData out;
  out.path = path;
  out.task = task;
  for (const char* key : {"model", "model_type", "model_config_sha256", "created", "software", "options"})
    if (h5::has_attr(root, key)) out.attrs[key] = h5::read_attr_string(root, key, path);
  h5::Handle tasks = h5::open_group(root, "tasks", path);
  if (!h5::exists(tasks.get(), task)) {
    std::string present;
    for (const auto& n : h5::child_names(tasks.get(), path)) present += (present.empty() ? "" : ", ") + n;
    throw InputError(str(path, ": no task '", task, "' (present: ", present, ")"));
  }
  h5::Handle tg = h5::open_group(tasks.get(), task, path);
  h5::Handle layers = h5::open_group(tg.get(), "layers", path);
  for (const auto& name : h5::child_names(layers.get(), path)) {
    h5::Handle g = h5::open_group(layers.get(), name, path);
    LayerStats s = read_layer(g.get(), name, path);
    for (const auto& l : out.layers)
      SMOE_CHECK_INPUT(l.layer != s.layer, path, ": layer ", s.layer, " appears twice");
    out.layers.push_back(std::move(s));
  }
  std::sort(out.layers.begin(), out.layers.end(),
            [](const LayerStats& a, const LayerStats& b) { return a.layer < b.layer; });
  SMOE_CHECK_INPUT(!out.layers.empty(), path, ": task '", task, "' has no MoE layers");
  return out;
}

}  // namespace smoe
