#include "smoe/eval/statistics.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "smoe/core/error.h"

namespace smoe {

namespace {

enum class Kind { Text, Choice, Generate };

struct MetricSpec {
  const char* name;
  Kind kind;
};

const MetricSpec kSpecs[] = {{"perplexity,none", Kind::Text},    {"bits_per_byte,none", Kind::Text},
                             {"acc,none", Kind::Choice},         {"acc_norm,none", Kind::Choice},
                             {"exact_match,none", Kind::Generate}};

const MetricSpec& spec_of(const std::string& metric) {
  for (const auto& s : kSpecs)
    if (metric == s.name) return s;
  throw InputError(str("unknown metric '", clip(metric), "'"));
}

// The per-example numerator and denominator of a metric in one task: the metric
// is exp(sum num / sum den) for perplexity, sum num / sum den / ln 2 for bits
// per byte, and sum num / sum den (den = 1 each) for the 0/1 metrics.
struct Columns {
  const std::vector<double>* num = nullptr;
  const std::vector<double>* den = nullptr;  // nullptr: 1 per example
  const std::vector<int64_t>* line = nullptr;
};

Columns columns(const std::string& metric, const TaskSamples& t) {
  if (metric == "perplexity,none") return {&t.nll, &t.tokens, &t.text_line};
  if (metric == "bits_per_byte,none") return {&t.nll, &t.bytes, &t.text_line};
  if (metric == "acc,none") return {&t.acc, nullptr, &t.choice_line};
  if (metric == "acc_norm,none") return {&t.acc_norm, nullptr, &t.choice_line};
  if (metric == "exact_match,none") return {&t.exact_match, nullptr, &t.generate_line};
  throw InputError(str("unknown metric '", clip(metric), "'"));
}

double den_at(const Columns& c, size_t i) { return c.den ? (*c.den)[i] : 1.0; }

// The metric from pooled sums.
double finish(const std::string& metric, double num, double den) {
  const double ratio = num / den;
  if (metric == "perplexity,none") return std::exp(ratio);
  if (metric == "bits_per_byte,none") return ratio / std::log(2.0);
  return ratio;
}

// Bits per byte counts only records given as text (bytes > 0).
bool counts(const std::string& metric, const Columns& c, size_t i) {
  return metric != "bits_per_byte,none" || den_at(c, i) > 0;
}

}  // namespace

const std::vector<std::string>& metric_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& s : kSpecs) n.push_back(s.name);
    return n;
  }();
  return names;
}

bool is_metric(const std::string& metric) {
  return std::find(metric_names().begin(), metric_names().end(), metric) != metric_names().end();
}

bool lower_is_better(const std::string& metric) {
  return metric == "perplexity,none" || metric == "bits_per_byte,none";
}

Estimate estimate(const std::string& metric, const std::vector<const TaskSamples*>& tasks) {
  spec_of(metric);
  double num = 0, den = 0;
  int64_t n = 0;
  for (const TaskSamples* t : tasks) {
    const Columns c = columns(metric, *t);
    for (size_t i = 0; i < c.num->size(); ++i)
      if (counts(metric, c, i)) {
        num += (*c.num)[i];
        den += den_at(c, i);
        ++n;
      }
  }
  Estimate e;
  if (n == 0 || den <= 0) return e;
  e.defined = true;
  const double ratio = num / den;
  e.value = finish(metric, num, den);
  if (n < 2) return e;
  // The ratio's residuals; for 0/1 metrics (den 1) this is the sample variance / n.
  double ss = 0;
  for (const TaskSamples* t : tasks) {
    const Columns c = columns(metric, *t);
    for (size_t i = 0; i < c.num->size(); ++i)
      if (counts(metric, c, i)) {
        const double r = (*c.num)[i] - ratio * den_at(c, i);
        ss += r * r;
      }
  }
  const double mean_den = den / static_cast<double>(n);
  const double se_ratio = std::sqrt(ss / (static_cast<double>(n) * static_cast<double>(n - 1))) / mean_den;
  if (metric == "perplexity,none") e.se = e.value * se_ratio;
  else if (metric == "bits_per_byte,none") e.se = se_ratio / std::log(2.0);
  else e.se = se_ratio;
  return e;
}

PairedDifference paired_bootstrap(const std::string& metric,
                                  const std::vector<std::pair<const TaskSamples*, const TaskSamples*>>& pairs,
                                  int64_t replicates, uint64_t seed, const std::string& what) {
  spec_of(metric);
  SMOE_CHECK_INPUT(replicates >= 1, "the bootstrap needs at least one replicate");
  struct Stratum {
    Columns a, b;
    std::vector<size_t> rows;  // examples that count for the metric
  };
  std::vector<Stratum> strata;
  double a_num = 0, a_den = 0, b_num = 0, b_den = 0;
  for (const auto& [a, b] : pairs) {
    Stratum s{columns(metric, *a), columns(metric, *b), {}};
    SMOE_CHECK_INPUT(*s.a.line == *s.b.line, what, ": the two models were not scored on the same examples (",
                     s.a.line->size(), " and ", s.b.line->size(), " records of the metric's kind, or other lines)");
    for (size_t i = 0; i < s.a.num->size(); ++i)
      if (counts(metric, s.a, i)) {
        s.rows.push_back(i);
        a_num += (*s.a.num)[i];
        a_den += den_at(s.a, i);
        b_num += (*s.b.num)[i];
        b_den += den_at(s.b, i);
      }
    if (!s.rows.empty()) strata.push_back(std::move(s));
  }
  PairedDifference d;
  if (strata.empty() || a_den <= 0 || b_den <= 0) return d;
  d.defined = true;
  d.difference = finish(metric, a_num, a_den) - finish(metric, b_num, b_den);
  std::mt19937_64 rng(seed);
  std::vector<double> diffs(static_cast<size_t>(replicates));
  for (auto& out : diffs) {
    double an = 0, ad = 0, bn = 0, bd = 0;
    for (const Stratum& s : strata) {
      std::uniform_int_distribution<size_t> pick(0, s.rows.size() - 1);
      for (size_t k = 0; k < s.rows.size(); ++k) {
        const size_t i = s.rows[pick(rng)];
        an += (*s.a.num)[i];
        ad += den_at(s.a, i);
        bn += (*s.b.num)[i];
        bd += den_at(s.b, i);
      }
    }
    out = finish(metric, an, ad) - finish(metric, bn, bd);
  }
  std::sort(diffs.begin(), diffs.end());
  // Percentile interval: the 2.5% and 97.5% points, linearly interpolated (numpy's default).
  auto quantile = [&](double q) {
    const double pos = q * static_cast<double>(diffs.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, diffs.size() - 1);
    return diffs[lo] + (pos - static_cast<double>(lo)) * (diffs[hi] - diffs[lo]);
  };
  d.low = quantile(0.025);
  d.high = quantile(0.975);
  return d;
}

bool significantly_worse(const std::string& metric, const PairedDifference& d) {
  if (!d.defined) return false;
  return lower_is_better(metric) ? d.low > 0 : d.high < 0;
}

double threshold_factor(std::vector<std::pair<double, bool>> worse_at) {
  std::sort(worse_at.begin(), worse_at.end());
  for (size_t i = 0; i < worse_at.size(); ++i) {
    SMOE_CHECK_INPUT(std::isfinite(worse_at[i].first) && worse_at[i].first >= 1, "a pruning factor ",
                     worse_at[i].first, " is not a finite number >= 1");
    SMOE_CHECK_INPUT(i == 0 || worse_at[i].first != worse_at[i - 1].first, "pruning factor ", worse_at[i].first,
                     " given twice");
  }
  double threshold = 1;
  for (const auto& [factor, worse] : worse_at) {
    if (worse) break;
    threshold = factor;
  }
  return threshold;
}

}  // namespace smoe
