#include "smoe/eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/core/log.h"
#include "smoe/core/output.h"
#include "smoe/core/numbers.h"
#include "smoe/core/process.h"
#include "smoe/eval/statistics.h"
#include "smoe/io/json.h"
#include "smoe/io/outputs.h"

namespace smoe {

namespace fs = std::filesystem;

namespace {

constexpr double kZ95 = 1.959963984540054;  // the normal 97.5% point
const double kNaN = std::nan("");

// One evaluated model on one task.
struct Row {
  std::string date;  // label "date" of nightly runs; "" otherwise
  std::string task, method;
  int64_t experts = 0;  // the model's pretrained expert count (scratch: its own)
  double factor = 1;
  std::map<std::string, Estimate> metrics;
  TaskSamples samples;
  bool has_samples = false;
  // Cost (smoe.cost of the results file; tokens_per_second from the label of that name).
  double expert_parameters = kNaN, checkpoint_bytes = kNaN, tokens_per_second = kNaN;
  std::vector<double> expert_parameters_per_layer;
  std::string file;
};

using Key = std::tuple<std::string, int64_t, std::string, double>;  // task, experts, method, factor
using Model = std::tuple<int64_t, std::string, double>;              // experts, method, factor

std::string short_name(const std::string& metric) { return metric.substr(0, metric.find(',')); }

std::string fmt(double v) {
  if (std::isnan(v)) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Numbers in report.csv: enough digits to recompute from.
std::string num(double v) {
  if (std::isnan(v)) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string label(const nlohmann::json& labels, const char* key, const std::string& fallback, const std::string& path) {
  if (!labels.contains(key)) return fallback;
  SMOE_CHECK_INPUT(labels[key].is_string(), path, ": label '", key, "' must be a string, found ", json_quote(labels[key]));
  return labels[key].get<std::string>();
}

nlohmann::json object_at(const nlohmann::json& parent, const char* key, const std::string& where) {
  if (!parent.contains(key)) return nlohmann::json::object();
  SMOE_CHECK_INPUT(parent[key].is_object(), where, ": '", key, "' must be an object");
  return parent[key];
}

// A column of per-example scores: finite numbers, `n` of them (n < 0: any count).
std::vector<double> column(const nlohmann::json& kind, const char* key, int64_t n, const std::string& where) {
  SMOE_CHECK_INPUT(kind.contains(key) && kind[key].is_array(), where, ": '", key, "' must be a list of numbers");
  std::vector<double> v;
  for (const auto& x : kind[key]) {
    SMOE_CHECK_INPUT(x.is_number() && std::isfinite(x.get<double>()) && x.get<double>() >= 0, where, ": '", key,
                     "' holds ", json_quote(x), ", not a finite number >= 0");
    v.push_back(x.get<double>());
  }
  SMOE_CHECK_INPUT(n < 0 || static_cast<int64_t>(v.size()) == n, where, ": '", key, "' holds ", v.size(),
                   " numbers, 'line' ", n);
  return v;
}

std::vector<int64_t> lines_of(const nlohmann::json& kind, const std::string& where) {
  SMOE_CHECK_INPUT(kind.contains("line") && kind["line"].is_array(), where, ": 'line' must be a list of line numbers");
  std::vector<int64_t> v;
  for (const auto& x : kind["line"]) v.push_back(json_to_int(x, where, "a line number"));
  return v;
}

// The per-example scores of one task (the "samples" smoe eval writes).
TaskSamples parse_samples(const nlohmann::json& j, const std::string& where) {
  TaskSamples s;
  const nlohmann::json text = object_at(j, "text", where), choice = object_at(j, "multiple_choice", where),
                       generate = object_at(j, "generate", where);
  if (!text.empty()) {
    s.text_line = lines_of(text, where + " text");
    const auto n = static_cast<int64_t>(s.text_line.size());
    s.nll = column(text, "nll", n, where + " text");
    s.tokens = column(text, "tokens", n, where + " text");
    s.bytes = column(text, "bytes", n, where + " text");
  }
  if (!choice.empty()) {
    s.choice_line = lines_of(choice, where + " multiple_choice");
    const auto n = static_cast<int64_t>(s.choice_line.size());
    s.acc = column(choice, "acc", n, where + " multiple_choice");
    s.acc_norm = column(choice, "acc_norm", n, where + " multiple_choice");
  }
  if (!generate.empty()) {
    s.generate_line = lines_of(generate, where + " generate");
    s.exact_match = column(generate, "exact_match", static_cast<int64_t>(s.generate_line.size()), where + " generate");
  }
  return s;
}

// A number of smoe.cost, or NaN when absent.
double cost_number(const nlohmann::json& cost, const char* key, const std::string& path) {
  if (!cost.contains(key)) return kNaN;
  SMOE_CHECK_INPUT(cost[key].is_number() && std::isfinite(cost[key].get<double>()) && cost[key].get<double>() >= 0,
                   path, ": smoe.cost '", key, "' must be a finite number >= 0, found ", json_quote(cost[key]));
  return cost[key].get<double>();
}

// The task's metrics as the file states them, with their standard errors where
// numbers (smoe eval computes both from the samples it writes beside them).
std::map<std::string, Estimate> metrics_of(const nlohmann::json& result) {
  std::map<std::string, Estimate> m;
  for (const std::string& metric : metric_names()) {
    if (!result.contains(metric) || !result[metric].is_number() || !std::isfinite(result[metric].get<double>())) continue;
    Estimate e;
    e.defined = true;
    e.value = result[metric].get<double>();
    const std::string se = short_name(metric) + "_stderr,none";
    e.se = result.contains(se) && result[se].is_number() ? result[se].get<double>() : kNaN;
    m[metric] = e;
  }
  return m;
}

Row base_row(const nlohmann::json& j, const std::string& path) {
  const nlohmann::json smoe = object_at(j, "smoe", path);
  const nlohmann::json labels = object_at(smoe, "labels", path);
  const nlohmann::json plan = object_at(smoe, "plan", path);
  const nlohmann::json cost = object_at(smoe, "cost", path);
  int64_t experts_now = 0;
  if (smoe.contains("experts_per_layer")) {
    SMOE_CHECK_INPUT(smoe["experts_per_layer"].is_array(), path, ": 'experts_per_layer' must be a list");
    for (const auto& e : smoe["experts_per_layer"])
      experts_now = std::max<int64_t>(experts_now, json_to_int(e, path, "an 'experts_per_layer' entry"));
  }
  Row base;
  base.file = path;
  base.method = label(labels, "method", json_string(plan, "smoe_plan_method", "full", path + ": smoe.plan"), path);
  base.date = label(labels, "date", "", path);
  base.factor = parse_number(label(labels, "factor", json_string(plan, "smoe_plan_factor", "1", path + ": smoe.plan"), path),
                             path + ": label 'factor'");
  SMOE_CHECK_INPUT(base.factor >= 1 && base.factor <= 1e6, path, ": label 'factor' ", base.factor,
                   " outside [1, 1e6]");
  base.experts = parse_int(label(labels, "experts", std::to_string(static_cast<int64_t>(std::llround(
                                                        static_cast<double>(experts_now) * base.factor))), path),
                           path + ": label 'experts'");
  SMOE_CHECK_INPUT(base.experts >= 1 && base.experts <= 1 << 20, path, ": label 'experts' ", base.experts,
                   " outside [1, 2^20]");
  if (labels.contains("tokens_per_second")) {
    base.tokens_per_second = parse_number(label(labels, "tokens_per_second", "", path), path + ": label 'tokens_per_second'");
    SMOE_CHECK_INPUT(base.tokens_per_second >= 0, path, ": label 'tokens_per_second' is negative");
  }
  base.expert_parameters = cost_number(cost, "expert_parameters", path);
  base.checkpoint_bytes = cost_number(cost, "checkpoint_bytes", path);
  if (cost.contains("expert_parameters_per_layer"))
    base.expert_parameters_per_layer = column(cost, "expert_parameters_per_layer", -1, path + ": smoe.cost");
  return base;
}

std::vector<Row> read_rows(const std::string& path) {
  const nlohmann::json j = read_json_file(path);
  SMOE_CHECK_INPUT(j.is_object() && j.contains("results") && j["results"].is_object(), path,
                   ": not a results file (no 'results' object)");
  const Row base = base_row(j, path);
  const nlohmann::json samples = object_at(j, "samples", path);
  std::vector<Row> rows;
  for (auto it = j["results"].begin(); it != j["results"].end(); ++it) {
    Row r = base;
    r.task = it.key();
    SMOE_CHECK_INPUT(it.value().is_object(), path, ": results of task '", clip(it.key()), "' must be an object");
    if (samples.contains(it.key())) {
      SMOE_CHECK_INPUT(samples[it.key()].is_object(), path, ": samples of task '", clip(it.key()), "' must be an object");
      r.samples = parse_samples(samples[it.key()], path + ": samples of task '" + clip(it.key()) + "'");
      r.has_samples = true;
    }
    r.metrics = metrics_of(it.value());
    rows.push_back(std::move(r));
  }
  return rows;
}

// A comparison of a pruned model with the from-scratch model of equal size on the
// same examples (one task, or every task pooled).
struct Comparison {
  Estimate baseline;
  PairedDifference d;
  std::string verdict;  // worse, better, no significant difference; "" when not compared
};

std::string verdict_of(const std::string& metric, const PairedDifference& d) {
  if (!d.defined) return "";
  if (significantly_worse(metric, d)) return "worse";
  const bool better = lower_is_better(metric) ? d.high < 0 : d.low > 0;
  return better ? "better" : "no significant difference";
}

// The study's rows of the latest night, and every comparison the report makes.
class Study {
 public:
  Study(std::map<Key, Row> rows, const ReportOptions& o) : rows_(std::move(rows)), o_(o) {
    for (const auto& [key, r] : rows_) {
      tasks_.insert(r.task);
      if (r.method == "scratch") scratch_.insert(r.experts);
      if (pruned(r)) {
        pretrained_.insert(r.experts);
        methods_.insert(r.method);
        models_.insert({r.experts, r.method, r.factor});
      }
    }
  }

  static bool pruned(const Row& r) { return r.method != "scratch" && r.method != "full"; }

  const Row* find(const std::string& task, int64_t experts, const std::string& method, double factor) const {
    auto it = rows_.find({task, experts, method, factor});
    return it == rows_.end() ? nullptr : &it->second;
  }
  // The from-scratch model with experts / factor experts, on the row's task.
  const Row* baseline(const Row& r) const {
    const double size = static_cast<double>(r.experts) / r.factor;
    if (size < 1 || size != std::floor(size)) return nullptr;
    return find(r.task, static_cast<int64_t>(size), "scratch", 1.0);
  }
  // The unpruned model of `experts` experts: labelled "full", or trained from scratch.
  const Row* full(const std::string& task, int64_t experts) const {
    const Row* r = find(task, experts, "full", 1.0);
    return r ? r : find(task, experts, "scratch", 1.0);
  }

  // A against B on every task where both exist (stratified paired bootstrap).
  Comparison compare(const std::vector<std::pair<const Row*, const Row*>>& pairs, const std::string& what) const {
    Comparison c;
    std::vector<std::pair<const TaskSamples*, const TaskSamples*>> samples;
    std::vector<const TaskSamples*> b;
    for (const auto& [x, y] : pairs)
      if (x && y && x->has_samples && y->has_samples) {
        samples.emplace_back(&x->samples, &y->samples);
        b.push_back(&y->samples);
      }
    if (samples.empty()) return c;
    c.baseline = estimate(o_.metric, b);
    c.d = paired_bootstrap(o_.metric, samples, o_.bootstrap, o_.seed, what);
    c.verdict = verdict_of(o_.metric, c.d);
    return c;
  }
  Comparison against_scratch(const Row& r) const {
    const Key key{r.task, r.experts, r.method, r.factor};
    auto it = task_cache_.find(key);
    if (it == task_cache_.end())
      it = task_cache_.emplace(key, compare({{&r, baseline(r)}}, r.file + " against its from-scratch model")).first;
    return it->second;
  }
  // A model (pretrained experts, method, factor) over every task against `other`.
  Comparison pooled(const Model& m, const std::function<const Row*(const Row&)>& other) const {
    std::vector<std::pair<const Row*, const Row*>> pairs;
    for (const auto& t : tasks_)
      if (const Row* r = find(t, std::get<0>(m), std::get<1>(m), std::get<2>(m))) pairs.emplace_back(r, other(*r));
    return compare(pairs, str(std::get<0>(m), " experts, ", std::get<1>(m), ", factor ", fmt(std::get<2>(m))));
  }
  Comparison pooled_against_scratch(const Model& m) const {
    auto it = pooled_cache_.find(m);
    if (it == pooled_cache_.end()) it = pooled_cache_.emplace(m, pooled(m, [&](const Row& r) { return baseline(r); })).first;
    return it->second;
  }
  // The metric over every task of one model.
  Estimate pooled_estimate(int64_t experts, const std::string& method, double factor) const {
    std::vector<const TaskSamples*> s;
    for (const auto& t : tasks_)
      if (const Row* r = find(t, experts, method, factor); r && r->has_samples) s.push_back(&r->samples);
    return s.empty() ? Estimate{} : estimate(o_.metric, s);
  }
  // The mean over tasks of a cost figure (pruned models of one (experts, method,
  // factor) differ by task only in which experts they keep).
  double pooled_cost(const Model& m, double Row::*field) const {
    double sum = 0;
    int n = 0;
    for (const auto& t : tasks_)
      if (const Row* r = find(t, std::get<0>(m), std::get<1>(m), std::get<2>(m)); r && !std::isnan(r->*field)) {
        sum += r->*field;
        ++n;
      }
    return n ? sum / n : kNaN;
  }
  // Threshold factor of (pretrained experts, method), from the pooled comparisons.
  double threshold(int64_t experts, const std::string& method) const {
    std::vector<std::pair<double, bool>> worse_at;
    for (const auto& m : models_)
      if (std::get<0>(m) == experts && std::get<1>(m) == method) {
        const Comparison c = pooled_against_scratch(m);
        if (c.d.defined) worse_at.emplace_back(std::get<2>(m), c.verdict == "worse");
      }
    return worse_at.empty() ? kNaN : threshold_factor(worse_at);
  }

  const std::map<Key, Row>& rows() const { return rows_; }
  const std::set<std::string>& tasks() const { return tasks_; }
  const std::set<int64_t>& pretrained() const { return pretrained_; }
  const std::set<int64_t>& scratch() const { return scratch_; }
  const std::set<std::string>& methods() const { return methods_; }
  const std::set<Model>& models() const { return models_; }
  const ReportOptions& options() const { return o_; }

 private:
  std::map<Key, Row> rows_;
  const ReportOptions& o_;
  std::set<std::string> tasks_, methods_;
  std::set<int64_t> pretrained_, scratch_;
  std::set<Model> models_;
  // Each bootstrap once: the tables and figures ask for the same comparisons.
  mutable std::map<Key, Comparison> task_cache_;
  mutable std::map<Model, Comparison> pooled_cache_;
};

std::string interval(const Estimate& e) {
  if (!e.defined) return "";
  if (std::isnan(e.se)) return fmt(e.value);
  return fmt(e.value) + " [" + fmt(e.value - kZ95 * e.se) + ", " + fmt(e.value + kZ95 * e.se) + "]";
}

std::string interval(const PairedDifference& d) {
  return d.defined ? fmt(d.difference) + " [" + fmt(d.low) + ", " + fmt(d.high) + "]" : "";
}

// ---- report.csv ---------------------------------------------------------------

std::string csv_header(const std::string& metric) {
  std::string h = "task,experts,method,factor";
  for (const std::string& m : metric_names()) {
    const std::string s = short_name(m);
    h += "," + s + "," + s + "_stderr," + s + "_low," + s + "_high";
  }
  h += ",expert_parameters,expert_parameters_per_layer,checkpoint_bytes,tokens_per_second";
  return h + ",scratch_" + short_name(metric) + ",difference,difference_low,difference_high,vs_scratch\n";
}

std::string csv_estimate(const Estimate* e) {
  if (!e || !e->defined) return ",,,";
  if (std::isnan(e->se)) return num(e->value) + ",,,";
  return num(e->value) + "," + num(e->se) + "," + num(e->value - kZ95 * e->se) + "," + num(e->value + kZ95 * e->se);
}

std::string csv_tail(double params, const std::vector<double>& per_layer, double bytes, double tps, const Comparison& c) {
  std::string layers;
  for (double p : per_layer) layers += (layers.empty() ? "" : ";") + num(p);
  std::string s = "," + num(params) + "," + layers + "," + num(bytes) + "," + num(tps) + ",";
  s += c.baseline.defined ? num(c.baseline.value) : "";
  if (c.d.defined) s += "," + num(c.d.difference) + "," + num(c.d.low) + "," + num(c.d.high);
  else s += ",,,";
  return s + "," + c.verdict + "\n";
}

// One row per task and model, then one per model with every task pooled (task "all").
std::string report_csv(const Study& st, size_t* rows) {
  const std::string& metric = st.options().metric;
  std::ostringstream csv;
  csv << csv_header(metric);
  for (const auto& [key, r] : st.rows()) {
    csv << r.task << "," << r.experts << "," << r.method << "," << fmt(r.factor);
    for (const std::string& m : metric_names()) {
      auto it = r.metrics.find(m);
      csv << "," << csv_estimate(it == r.metrics.end() ? nullptr : &it->second);
    }
    const Comparison c = Study::pruned(r) ? st.against_scratch(r) : Comparison{};
    csv << csv_tail(r.expert_parameters, r.expert_parameters_per_layer, r.checkpoint_bytes, r.tokens_per_second, c);
    ++*rows;
  }
  std::set<Model> all;
  for (const auto& [key, r] : st.rows()) all.insert({r.experts, r.method, r.factor});
  for (const Model& m : all) {
    const auto& [experts, method, factor] = m;
    csv << "all," << experts << "," << method << "," << fmt(factor);
    for (const std::string& name : metric_names()) {
      std::vector<const TaskSamples*> s;
      for (const auto& t : st.tasks())
        if (const Row* r = st.find(t, experts, method, factor); r && r->has_samples) s.push_back(&r->samples);
      const Estimate e = s.empty() ? Estimate{} : estimate(name, s);
      csv << "," << csv_estimate(&e);
    }
    const Comparison c = st.models().count(m) ? st.pooled_against_scratch(m) : Comparison{};
    std::vector<double> per_layer;
    for (const auto& t : st.tasks())
      if (const Row* r = st.find(t, experts, method, factor); r && per_layer.empty()) per_layer = r->expert_parameters_per_layer;
    csv << csv_tail(st.pooled_cost(m, &Row::expert_parameters), per_layer, st.pooled_cost(m, &Row::checkpoint_bytes),
                    st.pooled_cost(m, &Row::tokens_per_second), c);
    ++*rows;
  }
  return csv.str();
}

// ---- report.md ----------------------------------------------------------------

// For each method, in words: how its threshold moves with the pretrained expert count.
std::string threshold_words(const Study& st, const std::string& method) {
  std::vector<std::pair<int64_t, double>> t;
  for (int64_t e : st.pretrained())
    if (double f = st.threshold(e, method); !std::isnan(f)) t.emplace_back(e, f);
  std::string list;
  for (const auto& [e, f] : t) list += (list.empty() ? "" : ", ") + fmt(f) + " at " + std::to_string(e);
  if (t.size() < 2) return method + ": threshold " + list + " (one pretrained expert count; no trend).";
  bool rising = true, equal = true;
  for (size_t i = 1; i < t.size(); ++i) {
    rising = rising && t[i].second >= t[i - 1].second;
    equal = equal && t[i].second == t[i - 1].second;
  }
  const std::string how = equal ? "stays the same" : rising ? "grows with the pretrained expert count"
                                                           : "does not grow steadily with the pretrained expert count";
  return method + ": the threshold " + how + " (" + list + " experts).";
}

std::string thresholds_md(const Study& st) {
  std::ostringstream md;
  md << "## Threshold pruning factor\n\nThe largest factor before the first at which the pruned model is "
        "significantly worse than the model of equal size trained from scratch (all tasks pooled; 1 when it is "
        "worse at the smallest factor).\n\n| experts | method | threshold factor |\n|---|---|---|\n";
  for (int64_t e : st.pretrained())
    for (const auto& m : st.methods())
      if (double f = st.threshold(e, m); !std::isnan(f)) md << "| " << e << " | " << m << " | " << fmt(f) << " |\n";
  md << "\n";
  for (const auto& m : st.methods()) md << "- " << threshold_words(st, m) << "\n";
  return md.str();
}

std::string scratch_md(const Study& st) {
  const std::string s = short_name(st.options().metric);
  std::ostringstream md;
  md << "## Models trained from scratch\n\n" << s << " over all tasks with its 95% interval, and the paired "
     << "difference to the next smaller model.\n\n| experts | " << s << " | difference to the next smaller |\n|---|---|---|\n";
  int64_t previous = 0;
  for (int64_t e : st.scratch()) {
    md << "| " << e << " | " << interval(st.pooled_estimate(e, "scratch", 1.0)) << " | ";
    if (previous) {
      const Comparison c = st.pooled({e, "scratch", 1.0}, [&](const Row& r) { return st.find(r.task, previous, "scratch", 1.0); });
      md << interval(c.d);
    }
    md << " |\n";
    previous = e;
  }
  return md.str();
}

std::string pooled_md(const Study& st) {
  const std::string s = short_name(st.options().metric);
  std::ostringstream md;
  md << "## Pruned models against training from scratch (all tasks pooled)\n\n| experts | method | factor | " << s
     << " | scratch | difference | verdict | expert parameters | checkpoint bytes | tokens/s |\n"
     << "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Model& m : st.models()) {
    const Comparison c = st.pooled_against_scratch(m);
    md << "| " << std::get<0>(m) << " | " << std::get<1>(m) << " | " << fmt(std::get<2>(m)) << " | "
       << interval(st.pooled_estimate(std::get<0>(m), std::get<1>(m), std::get<2>(m))) << " | " << interval(c.baseline)
       << " | " << interval(c.d) << " | " << c.verdict << " | " << fmt(st.pooled_cost(m, &Row::expert_parameters))
       << " | " << fmt(st.pooled_cost(m, &Row::checkpoint_bytes)) << " | " << fmt(st.pooled_cost(m, &Row::tokens_per_second))
       << " |\n";
  }
  return md.str();
}

// Each method against frequency pruning at equal pretrained experts and factor, task by task.
std::string against_frequency_md(const Study& st) {
  if (!st.methods().count("frequency")) return "";
  std::ostringstream md;
  md << "## Against frequency pruning at equal factor\n\nTask by task (paired bootstrap, 95%): in how many "
        "(task, pretrained experts, factor) cases each method is significantly better than frequency pruning, "
        "significantly worse, or neither.\n\n| method | better | worse | neither |\n|---|---|---|---|\n";
  for (const auto& method : st.methods()) {
    if (method == "frequency") continue;
    int better = 0, worse = 0, neither = 0;
    for (const auto& [key, r] : st.rows()) {
      if (r.method != method) continue;
      const Comparison c = st.compare({{&r, st.find(r.task, r.experts, "frequency", r.factor)}},
                                      r.file + " against frequency pruning");
      if (c.verdict == "better") ++better;
      else if (c.verdict == "worse") ++worse;
      else if (!c.verdict.empty()) ++neither;
    }
    md << "| " << method << " | " << better << " | " << worse << " | " << neither << " |\n";
  }
  return md.str();
}

std::string tasks_md(const Study& st) {
  const std::string s = short_name(st.options().metric);
  std::ostringstream md;
  md << "## Task by task\n\n| task | experts | method | factor | " << s
     << " | scratch | difference | verdict |\n|---|---|---|---|---|---|---|---|\n";
  for (const auto& [key, r] : st.rows()) {
    auto it = r.metrics.find(st.options().metric);
    const Comparison c = Study::pruned(r) ? st.against_scratch(r) : Comparison{};
    md << "| " << r.task << " | " << r.experts << " | " << r.method << " | " << fmt(r.factor) << " | "
       << (it == r.metrics.end() ? "" : interval(it->second)) << " | " << interval(c.baseline) << " | "
       << interval(c.d) << " | " << c.verdict << " |\n";
  }
  return md.str();
}

std::string trend_md(const std::vector<Row>& all, const std::string& metric) {
  std::map<Model, std::map<std::string, std::vector<double>>> trend;
  std::set<std::string> dates;
  for (const auto& r : all)
    if (!r.date.empty() && r.metrics.count(metric)) {
      trend[{r.experts, r.method, r.factor}][r.date].push_back(r.metrics.at(metric).value);
      dates.insert(r.date);
    }
  if (dates.size() < 2) return "";
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  std::ostringstream md;
  md << "## Trend over nights (" << short_name(metric) << ", mean over tasks)\n\n| experts | method | factor |";
  for (const auto& d : dates) md << " " << d << " |";
  md << "\n|---|---|---|";
  for (size_t i = 0; i < dates.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& [model, by_date] : trend) {
    md << "| " << std::get<0>(model) << " | " << std::get<1>(model) << " | " << fmt(std::get<2>(model)) << " |";
    for (const auto& d : dates) md << " " << (by_date.count(d) ? fmt(mean(by_date.at(d))) : "") << " |";
    md << "\n";
  }
  return md.str();
}

std::string report_md(const Study& st, const std::vector<Row>& all, const std::string& latest) {
  const ReportOptions& o = st.options();
  std::ostringstream md;
  md << "# Study report\n\nPrimary metric: " << short_name(o.metric) << " ("
     << (lower_is_better(o.metric) ? "lower" : "higher") << " is better). Intervals are 95%: a metric's is its value "
     << "± 1.96 standard errors; a difference's is the percentile interval of a paired bootstrap (" << o.bootstrap
     << " replicates, the same examples drawn for both models, stratified by task). A pruned model is called worse "
     << "than the from-scratch model of equal size only when the whole interval of the difference lies on the worse "
     << "side of 0.\n\n";
  md << thresholds_md(st) << "\n" << scratch_md(st) << "\n" << pooled_md(st) << "\n" << against_frequency_md(st)
     << "\n" << tasks_md(st) << "\n" << trend_md(all, o.metric);
  if (!latest.empty()) md << "\nThe tables above the trend are of " << latest << ".\n";
  return md.str();
}

// ---- figures ------------------------------------------------------------------

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : separator) + p;
  return s;
}

// `text` as a gnuplot string constant: single-quoted (gnuplot substitutes
// nothing inside single quotes), a quote doubled, control characters and
// backquotes (gnuplot's command substitution) replaced.
std::string gnuplot_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += "''";
    else if (static_cast<unsigned char>(c) < 0x20 || c == '`') out += ' ';
    else out += c;
  }
  return out + "'";
}

size_t method_index(const Study& st, const std::string& method) {
  size_t i = 0;
  for (const auto& m : st.methods()) {
    if (m == method) break;
    ++i;
  }
  return i;
}

// One colour per method (Okabe-Ito, distinguishable in colour-blind vision);
// the from-scratch reference is black and dashed.
std::string method_style(const Study& st, const std::string& method) {
  static const char* colours[] = {"#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#999999", "#F0E442"};
  const size_t i = method_index(st, method);
  return str("lc rgb '", colours[i % std::size(colours)], "' pt ", 5 + i % 8, " lw 2");
}

// A small factor per method (at most 3% either way) that moves its points apart
// on a log axis, so that methods with equal values stay visible.
double nudge(const Study& st, const std::string& method) {
  const double n = static_cast<double>(st.methods().size());
  return n < 2 ? 1.0 : 1.0 + 0.06 * (static_cast<double>(method_index(st, method)) / (n - 1) - 0.5);
}
const char* kScratchStyle = "lc rgb '#000000' dt 2 pt 7 lw 2";

// A panel that says why it is empty (gnuplot refuses to plot nothing at all).
std::string empty_plot(const std::string& why) {
  return "set label " + gnuplot_quote(why) + " at graph 0.5, 0.5 center\nunset logscale\nset xrange [1:2]\n"
         "set yrange [0:1]\nplot 2 notitle\nunset label\n";
}

// A figure's data blocks (gnuplot `index`) and plot clauses.
struct Figure {
  std::ostringstream data;
  int blocks = 0;
  int add(const std::string& block) {
    data << block << "\n\n";
    return blocks++;
  }
};

std::string estimate_line(double x, const Estimate& e) {
  const double se = std::isnan(e.se) ? 0 : e.se;
  return str(x, " ", e.value, " ", e.value - kZ95 * se, " ", e.value + kZ95 * se, "\n");
}

// Small multiples: a panel per pretrained expert count; x the factor, y the
// metric over all tasks with its interval; a line per method, starting at
// factor 1 with the unpruned model; the from-scratch models of equal size.
std::string quality_plot(const Study& st, Figure& fig) {
  const std::string y = short_name(st.options().metric) + " (all tasks, 95% interval)";
  std::ostringstream gp;
  const size_t panels = std::max<size_t>(1, st.pretrained().size());
  gp << "set multiplot layout 1," << panels << "\nset logscale x 2\nset grid\nset key below horizontal maxrows 4 noenhanced font ',9'\n"
     << "set xlabel 'pruning factor'\nset ylabel " << gnuplot_quote(y) << "\n";
  if (st.pretrained().empty()) gp << empty_plot("no pruned results");
  for (int64_t e : st.pretrained()) {
    double max_factor = 1;
    std::vector<std::string> clauses;
    for (const auto& method : st.methods()) {
      std::string block;
      if (Estimate full = st.pooled_estimate(e, "full", 1.0); full.defined) block += estimate_line(1, full);
      else if (Estimate s = st.pooled_estimate(e, "scratch", 1.0); s.defined) block += estimate_line(1, s);
      int points = 0;
      for (const Model& m : st.models())
        if (std::get<0>(m) == e && std::get<1>(m) == method)
          if (Estimate q = st.pooled_estimate(e, method, std::get<2>(m)); q.defined) {
            block += estimate_line(std::get<2>(m), q);
            max_factor = std::max(max_factor, std::get<2>(m));
            ++points;
          }
      if (points) clauses.push_back(str("'quality.dat' index ", fig.add(block), " with yerrorlines ",
                                        method_style(st, method), " title ", gnuplot_quote(method)));
    }
    std::string block;
    for (int64_t s : st.scratch())
      if (e % s == 0 && static_cast<double>(e / s) <= max_factor)
        if (Estimate q = st.pooled_estimate(s, "scratch", 1.0); q.defined) block += estimate_line(static_cast<double>(e / s), q);
    if (!block.empty())
      clauses.push_back(str("'quality.dat' index ", fig.add(block), " with yerrorlines ", kScratchStyle,
                            " title 'from scratch, experts/factor'"));
    gp << "set title " << gnuplot_quote(str(e, " experts pretrained")) << "\nset logscale x 2\nset xrange [0.8:"
       << max_factor * 1.25 << "]\nset autoscale y\n";
    gp << (clauses.empty() ? empty_plot("no results with per-example scores") : "plot " + join(clauses, ", ") + "\n");
  }
  return gp.str() + "unset multiplot\n";
}

// The headline: threshold factor against pretrained expert count, a line per method.
std::string thresholds_plot(const Study& st, Figure& fig) {
  std::vector<std::string> clauses;
  for (const auto& method : st.methods()) {
    std::string block;
    for (int64_t e : st.pretrained())
      if (double f = st.threshold(e, method); !std::isnan(f)) block += str(e, " ", f * nudge(st, method), "\n");
    if (!block.empty())
      clauses.push_back(str("'thresholds.dat' index ", fig.add(block), " with linespoints ", method_style(st, method),
                            " title ", gnuplot_quote(method)));
  }
  std::ostringstream gp;
  gp << "set logscale xy 2\nset grid\nset key top left noenhanced\nset xlabel 'experts the model was pretrained with'\n"
     << "set ylabel 'threshold pruning factor (methods nudged apart)'\n"
     << "set title 'Up to which factor pruning keeps up with training from scratch'\n";
  if (clauses.empty()) gp << empty_plot("no thresholds");
  else gp << "set offsets graph 0.05, graph 0.05, graph 0.1, graph 0.1\nplot " << join(clauses, ", ") << "\n";
  return gp.str();
}

// Quality against size: every pruned model (x its routed-expert parameters), and
// the from-scratch models as the reference line.
std::string pareto_plot(const Study& st, Figure& fig) {
  std::vector<std::string> clauses;
  auto params = [&](const Model& m) { return st.pooled_cost(m, &Row::expert_parameters); };
  for (const auto& method : st.methods()) {
    std::string block;
    for (const Model& m : st.models())
      if (std::get<1>(m) == method && !std::isnan(params(m)))
        if (Estimate q = st.pooled_estimate(std::get<0>(m), method, std::get<2>(m)); q.defined)
          block += estimate_line(params(m) * nudge(st, method), q);
    if (!block.empty())
      clauses.push_back(str("'pareto.dat' index ", fig.add(block), " with yerrorbars ", method_style(st, method),
                            " title ", gnuplot_quote(method)));
  }
  std::string block;
  for (int64_t s : st.scratch())
    if (double p = params({s, "scratch", 1.0}); !std::isnan(p))
      if (Estimate q = st.pooled_estimate(s, "scratch", 1.0); q.defined) block += estimate_line(p, q);
  if (!block.empty())
    clauses.push_back(str("'pareto.dat' index ", fig.add(block), " with yerrorlines ", kScratchStyle,
                          " title 'trained from scratch'"));
  std::ostringstream gp;
  gp << "set logscale x 2\nset grid\nset key top left noenhanced\nset xlabel 'routed-expert parameters (methods nudged apart)'\n"
     << "set ylabel " << gnuplot_quote(short_name(st.options().metric) + " (all tasks, 95% interval)")
     << "\nset title 'Quality against size'\n";
  if (clauses.empty()) gp << empty_plot("no models with a stated size");
  else gp << "plot " << join(clauses, ", ") << "\n";
  return gp.str();
}

// Writes NAME.dat and NAME.gp and draws NAME.png and NAME.svg with gnuplot, which
// runs in the output folder on file names of its own.
void draw(const std::string& dir, const std::string& name, const std::string& body, const Figure& fig, int width,
          int height) {
  write_file(dir + "/" + name + ".dat", fig.data.str());
  std::ostringstream gp;
  gp << "set terminal pngcairo size " << width << "," << height << "\nset output '" << name << ".png'\n" << body
     << "reset\nset terminal svg size " << width << "," << height << "\nset output '" << name << ".svg'\n" << body;
  write_file(dir + "/" + name + ".gp", gp.str());
  run_program({"gnuplot", name + ".gp"}, dir, dir + "/" + name + ".log");
}

}  // namespace


std::vector<std::string> find_results(const std::vector<std::string>& results) {
  std::vector<std::string> files;
  for (const auto& r : results) {
    std::error_code ec;
    if (fs::is_directory(r, ec)) {
      for (auto it = fs::recursive_directory_iterator(r, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        const fs::path& p = it->path();
        if (it->is_regular_file(ec) && p.extension() == ".json" && p.filename().string().find("result") != std::string::npos &&
            p.string().find(".tmp.") == std::string::npos)
          files.push_back(p.string());
      }
      SMOE_CHECK_INPUT(!ec, r, ": cannot read the results folder: ", ec.message());
    } else {
      check_input_file(r, "results file");
      files.push_back(r);
    }
  }
  std::sort(files.begin(), files.end());
  SMOE_CHECK_INPUT(!files.empty(), "no results files found in the given --results");
  return files;
}

void check_report_options(const ReportOptions& o) {
  SMOE_CHECK_INPUT(is_metric(o.metric), "--metric must be one of perplexity,none bits_per_byte,none acc,none "
                   "acc_norm,none exact_match,none; found '", clip(o.metric), "'");
  SMOE_CHECK_INPUT(o.bootstrap >= 100 && o.bootstrap <= 1000000, "--bootstrap must lie in [100, 1e6], found ",
                   o.bootstrap);
}

size_t write_report(const ReportOptions& o, const std::string& dir) {
  check_report_options(o);
  // Nightly runs label their results with a date: the tables show the latest
  // night, the trend section every night.
  std::vector<Row> all;
  std::string latest;
  for (const auto& f : o.results)
    for (auto& r : read_rows(f)) {
      latest = std::max(latest, r.date);
      all.push_back(std::move(r));
    }
  std::map<Key, Row> rows;
  for (const auto& r : all)
    if (r.date == latest) rows[{r.task, r.experts, r.method, r.factor}] = r;
  const Study st(std::move(rows), o);

    size_t written = 0;
  write_file(dir + "/report.csv", report_csv(st, &written));
  std::string thresholds = "experts,method,threshold_factor\n";
  for (int64_t e : st.pretrained())
    for (const auto& m : st.methods())
      if (double f = st.threshold(e, m); !std::isnan(f)) thresholds += str(e, ",", m, ",", fmt(f), "\n");
  write_file(dir + "/thresholds.csv", thresholds);
  write_file(dir + "/report.md", report_md(st, all, latest));

  Figure quality, headline, pareto;
  const std::string q = quality_plot(st, quality);
  draw(dir, "quality", q, quality, 420 * static_cast<int>(std::max<size_t>(1, st.pretrained().size())), 480);
  const std::string h = thresholds_plot(st, headline);
  draw(dir, "thresholds", h, headline, 720, 520);
  const std::string p = pareto_plot(st, pareto);
  draw(dir, "pareto", p, pareto, 720, 520);
  return written;
}

void report(const ReportOptions& options) {
  check_report_options(options);
  ReportOptions o = options;
  o.results = find_results(o.results);
  OutputSpec spec = folder_output(o.out, "report");
  spec.overwrite = o.overwrite;
  spec.inputs = o.results;
  spec.inputs.insert(spec.inputs.end(), o.inputs.begin(), o.inputs.end());
  AtomicOutput output(spec);
  const size_t rows = write_report(o, output.temp());
  output.commit();
  log_info(str("report: ", rows, " rows; wrote ", output.path(), "/report.md, report.csv, thresholds.csv and the "
               "figures quality, thresholds and pareto (.png, .svg)"));
}

}  // namespace smoe
