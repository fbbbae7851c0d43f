#include "smoe/eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/core/numbers.h"
#include "smoe/core/process.h"
#include "smoe/io/json.h"

namespace smoe {

namespace fs = std::filesystem;

namespace {

const char* kMetrics[] = {"perplexity,none", "bits_per_byte,none", "acc,none", "acc_norm,none", "exact_match,none"};

bool lower_is_better(const std::string& metric) {
  return metric.rfind("perplexity", 0) == 0 || metric.rfind("bits_per_byte", 0) == 0 || metric.rfind("nll", 0) == 0;
}

// One evaluated model on one task.
struct Row {
  std::string date;  // label "date" of nightly runs; "" otherwise
  std::string task, method;
  int64_t experts = 0;  // the model's pretrained expert count (scratch: its own)
  double factor = 1;
  std::map<std::string, double> metrics;
  std::string file;
};

using Key = std::tuple<std::string, int64_t, std::string, double>;  // task, experts, method, factor

std::string label(const nlohmann::json& labels, const char* key, const std::string& fallback, const std::string& path) {
  if (!labels.contains(key)) return fallback;
  SMOE_CHECK_INPUT(labels[key].is_string(), path, ": label '", key, "' must be a string, found ", json_quote(labels[key]));
  return labels[key].get<std::string>();
}

std::vector<Row> read_rows(const std::string& path) {
  const nlohmann::json j = read_json_file(path);
  SMOE_CHECK_INPUT(j.is_object() && j.contains("results") && j["results"].is_object(), path,
                   ": not a results file (no 'results' object)");
  auto object = [&](const nlohmann::json& parent, const char* key) {
    if (!parent.contains(key)) return nlohmann::json::object();
    SMOE_CHECK_INPUT(parent[key].is_object(), path, ": '", key, "' must be an object");
    return parent[key];
  };
  const nlohmann::json smoe = object(j, "smoe");
  const nlohmann::json labels = object(smoe, "labels");
  const nlohmann::json plan = object(smoe, "plan");
  int64_t experts_now = 0;
  if (smoe.contains("experts_per_layer")) {
    SMOE_CHECK_INPUT(smoe["experts_per_layer"].is_array(), path, ": 'experts_per_layer' must be a list");
    for (const auto& e : smoe["experts_per_layer"])
      experts_now = std::max<int64_t>(experts_now, json_to_int(e, path, "an 'experts_per_layer' entry"));
  }
  Row base;
  base.file = path;
  base.method = label(labels, "method", plan.value("smoe_plan_method", std::string("full")), path);
  base.date = label(labels, "date", "", path);
  base.factor = parse_number(label(labels, "factor", plan.value("smoe_plan_factor", std::string("1")), path),
                             path + ": label 'factor'");
  SMOE_CHECK_INPUT(base.factor >= 1 && base.factor <= 1e6, path, ": label 'factor' ", base.factor,
                   " outside [1, 1e6]");
  base.experts = parse_int(label(labels, "experts", std::to_string(static_cast<int64_t>(std::llround(
                                                        static_cast<double>(experts_now) * base.factor))), path),
                           path + ": label 'experts'");
  SMOE_CHECK_INPUT(base.experts >= 1 && base.experts <= 1 << 20, path, ": label 'experts' ", base.experts,
                   " outside [1, 2^20]");
  std::vector<Row> rows;
  for (auto it = j["results"].begin(); it != j["results"].end(); ++it) {
    Row r = base;
    r.task = it.key();
    SMOE_CHECK_INPUT(it.value().is_object(), path, ": results of task '", clip(it.key()), "' must be an object");
    for (const char* m : kMetrics)
      if (it.value().contains(m) && it.value()[m].is_number() && std::isfinite(it.value()[m].get<double>()))
        r.metrics[m] = it.value()[m].get<double>();
    rows.push_back(r);
  }
  return rows;
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

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
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
  SMOE_CHECK_INPUT(std::find(std::begin(kMetrics), std::end(kMetrics), o.metric) != std::end(kMetrics),
                   "--metric must be one of perplexity,none bits_per_byte,none acc,none acc_norm,none exact_match,none");
  SMOE_CHECK_INPUT(o.plot_format == "svg" || o.plot_format == "png", "--plot-format must be svg or png");
}

size_t write_report(const ReportOptions& o) {
  check_report_options(o);
  const std::vector<std::string>& files = o.results;
  // Nightly runs label their results with a date: the table shows the latest
  // night, the trend section every night.
  std::vector<Row> all;
  std::string latest;
  for (const auto& f : files)
    for (auto& r : read_rows(f)) {
      latest = std::max(latest, r.date);
      all.push_back(std::move(r));
    }
  std::map<Key, Row> rows;
  std::map<std::tuple<int64_t, std::string, double>, std::map<std::string, std::vector<double>>> trend;
  for (const auto& r : all) {
    if (r.date == latest) rows[{r.task, r.experts, r.method, r.factor}] = r;
    if (!r.date.empty() && r.metrics.count(o.metric)) trend[{r.experts, r.method, r.factor}][r.date].push_back(r.metrics.at(o.metric));
  }

  // The from-scratch baseline beside each row: a scratch model with experts / factor experts.
  auto baseline = [&](const Row& r) -> const Row* {
    const int64_t target = static_cast<int64_t>(std::llround(static_cast<double>(r.experts) / r.factor));
    auto it = rows.find({r.task, target, "scratch", 1.0});
    return it == rows.end() ? nullptr : &it->second;
  };

  fs::create_directories(o.out);
  std::ostringstream md, csv;
  md << "| task | experts | method | factor |";
  csv << "task,experts,method,factor";
  for (const char* m : kMetrics) {
    md << " " << std::string(m).substr(0, std::string(m).find(',')) << " |";
    csv << "," << std::string(m).substr(0, std::string(m).find(','));
  }
  const std::string short_metric = o.metric.substr(0, o.metric.find(','));
  md << " scratch " << short_metric << " | vs scratch |\n|---|---|---|---|";
  csv << ",scratch_" << short_metric << ",vs_scratch\n";
  for (size_t i = 0; i < std::size(kMetrics) + 2; ++i) md << "---|";
  md << "\n";
  for (const auto& [key, r] : rows) {
    md << "| " << r.task << " | " << r.experts << " | " << r.method << " | " << fmt(r.factor) << " |";
    csv << r.task << "," << r.experts << "," << r.method << "," << fmt(r.factor);
    for (const char* m : kMetrics) {
      const auto it = r.metrics.find(m);
      md << " " << (it == r.metrics.end() ? "" : fmt(it->second)) << " |";
      csv << "," << (it == r.metrics.end() ? "" : fmt(it->second));
    }
    const Row* b = r.method == "scratch" ? nullptr : baseline(r);
    std::string bv, verdict;
    if (b && b->metrics.count(o.metric) && r.metrics.count(o.metric)) {
      const double ours = r.metrics.at(o.metric), theirs = b->metrics.at(o.metric);
      bv = fmt(theirs);
      const bool better = lower_is_better(o.metric) ? ours <= theirs : ours >= theirs;
      verdict = better ? "at least as good" : "worse";
    }
    md << " " << bv << " | " << verdict << " |\n";
    csv << "," << bv << "," << verdict << "\n";
  }

  // Per (experts, method): the quality (mean over tasks) at each factor, and where
  // the pruned model first falls behind the from-scratch baseline.
  std::map<std::pair<int64_t, std::string>, std::map<double, std::vector<double>>> lines;
  std::map<std::pair<int64_t, std::string>, std::map<double, std::vector<double>>> gaps;
  for (const auto& [key, r] : rows) {
    if (r.method == "scratch" || r.method == "full" || !r.metrics.count(o.metric)) continue;
    lines[{r.experts, r.method}][r.factor].push_back(r.metrics.at(o.metric));
    if (const Row* b = baseline(r); b && b->metrics.count(o.metric))
      gaps[{r.experts, r.method}][r.factor].push_back(r.metrics.at(o.metric) - b->metrics.at(o.metric));
  }
  // Each line starts at factor 1 with the unpruned model; beside them, the models
  // trained from scratch at factor = pretrained experts / their experts.
  std::set<int64_t> pretrained;
  for (const auto& [line, by_factor] : lines) pretrained.insert(line.first);
  for (const auto& [key, r] : rows) {
    if (!r.metrics.count(o.metric)) continue;
    // The unpruned model: labelled "full", or the scratch model of that size.
    if (r.method == "full" || (r.method == "scratch" && pretrained.count(r.experts)))
      for (auto& [line, by_factor] : lines)
        if (line.first == r.experts && line.second != "from scratch") by_factor[1.0].push_back(r.metrics.at(o.metric));
    if (r.method == "scratch")
      for (int64_t e : pretrained)
        if (r.experts <= e && e % r.experts == 0)
          lines[{e, "from scratch"}][static_cast<double>(e / r.experts)].push_back(r.metrics.at(o.metric));
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / static_cast<double>(v.size());
  };
  md << "\n## Where pruning falls behind training from scratch (" << short_metric << ", mean over tasks)\n\n"
     << "| experts | method | factors at least as good as scratch | first factor worse than scratch |\n|---|---|---|---|\n";
  for (const auto& [line, by_factor] : gaps) {
    std::string good, first_worse = "none";
    for (const auto& [f, g] : by_factor) {
      const double gap = mean(g);
      const bool worse = lower_is_better(o.metric) ? gap > 0 : gap < 0;
      if (!worse) good += (good.empty() ? "" : ", ") + fmt(f);
      if (worse && first_worse == "none") first_worse = fmt(f);
    }
    md << "| " << line.first << " | " << line.second << " | " << good << " | " << first_worse << " |\n";
  }
  std::set<std::string> dates;
  for (const auto& [line, by_date] : trend)
    for (const auto& [d, v] : by_date) dates.insert(d);
  if (dates.size() > 1) {
    md << "\n## Trend over nights (" << short_metric << ", mean over tasks)\n\n| experts | method | factor |";
    for (const auto& d : dates) md << " " << d << " |";
    md << "\n|---|---|---|";
    for (size_t i = 0; i < dates.size(); ++i) md << "---|";
    md << "\n";
    for (const auto& [line, by_date] : trend) {
      md << "| " << std::get<0>(line) << " | " << std::get<1>(line) << " | " << fmt(std::get<2>(line)) << " |";
      for (const auto& d : dates) md << " " << (by_date.count(d) ? fmt(mean(by_date.at(d))) : "") << " |";
      md << "\n";
    }
  }
  if (!latest.empty()) md << "\nThe tables above the trend are of " << latest << ".\n";
  write_file_atomic(o.out + "/report.md", md.str());
  write_file_atomic(o.out + "/report.csv", csv.str());

  // The plot, with gnuplot: one line per (pretrained experts, method). gnuplot
  // runs in the output folder on file names of its own; the only data in its
  // script are line titles, quoted for gnuplot.
  std::ofstream d(o.out + "/quality.dat");
  std::vector<std::string> titles;
  for (const auto& [line, by_factor] : lines) {
    d << "# experts " << line.first << "\n";
    for (const auto& [f, v] : by_factor) d << f << " " << mean(v) << "\n";
    d << "\n\n";
    titles.push_back(std::to_string(line.first) + " experts, " + line.second);
  }
  d.close();
  SMOE_CHECK_SYS(d.fail() ? -1 : 0, o.out, "/quality.dat: write failed");
  const std::string plot = "quality." + o.plot_format;
  std::ostringstream gp;
  gp << "set terminal " << (o.plot_format == "svg" ? "svg size 900,600" : "pngcairo size 900,600") << "\n"
     << "set output '" << plot << "'\n"
     << "set logscale x 2\nset xlabel 'pruning factor'\nset ylabel " << gnuplot_quote(short_metric + " (mean over tasks)")
     << "\nset key outside right noenhanced\nset grid\n";
  if (titles.empty()) {
    gp << "set label 'no pruned results' at graph 0.5, 0.5 center\nplot [1:2] NaN notitle\n";
  } else {
    gp << "plot ";
    for (size_t i = 0; i < titles.size(); ++i)
      gp << (i ? ", " : "") << "'quality.dat' index " << i << " with linespoints title " << gnuplot_quote(titles[i]);
    gp << "\n";
  }
  write_file_atomic(o.out + "/quality.gp", gp.str());
  run_program({"gnuplot", "quality.gp"}, o.out, o.out + "/quality.log");
  return rows.size();
}

}  // namespace smoe
