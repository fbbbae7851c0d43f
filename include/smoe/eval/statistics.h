// The statistics of evaluation (DESIGN.md §8): each metric from per-example
// scores, its standard error, the paired bootstrap that decides whether one model
// is worse than another on the same examples, and the threshold rule of the study.
// Torch-free: `smoe eval` writes these numbers, `smoe report` reads them back.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace smoe {

// One task's per-example scores, in the order of the eval file. Text records
// give a summed negative log-likelihood over their predicted tokens (and their
// UTF-8 bytes when given as text, else 0); multiple-choice records 0/1 for acc
// and acc_norm; prompt records 0/1 for exact match. `*_line` is each record's
// line in the eval file, so that two models' scores can be paired.
struct TaskSamples {
  std::vector<int64_t> text_line;
  std::vector<double> nll, tokens, bytes;
  std::vector<int64_t> choice_line;
  std::vector<double> acc, acc_norm;
  std::vector<int64_t> generate_line;
  std::vector<double> exact_match;
  std::vector<std::vector<int64_t>> generated;  // per prompt: the greedy tokens (as many as its answer has)
};

// The metrics smoe computes, in lm-evaluation-harness's names.
const std::vector<std::string>& metric_names();  // perplexity,none bits_per_byte,none acc,none ...
bool is_metric(const std::string& metric);
bool lower_is_better(const std::string& metric);

struct Estimate {
  double value = 0, se = 0;  // the estimate and its standard error
  bool defined = false;  // the tasks hold records of the metric's kind
};

// The metric over the examples of all `tasks` pooled, and its standard error:
// acc, acc_norm, exact_match: the mean of 0/1 outcomes, stderr = sample standard
// deviation / sqrt(n) (lm-evaluation-harness's mean_stderr).
// perplexity: exp(sum nll / sum tokens), stderr by the delta method on the ratio
// over documents: se(R) = sqrt(sum (nll_i - R tokens_i)^2 / (n (n - 1))) / mean(tokens),
// se(exp R) = exp(R) se(R). bits_per_byte: sum nll / sum bytes / ln 2, the same way.
Estimate estimate(const std::string& metric, const std::vector<const TaskSamples*>& tasks);

// A against B on the same examples: the difference of the metric (A - B), pooled
// over the tasks as `estimate` pools them, and its 95% percentile interval from a
// paired bootstrap: `replicates` times, draw each task's examples with replacement
// (the same draw for A and B; stratified by task), recompute both metrics. Each
// pair of tasks must hold the same examples (equal lines), else InputError naming `what`.
struct PairedDifference {
  double difference = 0, low = 0, high = 0;
  bool defined = false;
};
PairedDifference paired_bootstrap(const std::string& metric,
                                  const std::vector<std::pair<const TaskSamples*, const TaskSamples*>>& pairs,
                                  int64_t replicates, uint64_t seed, const std::string& what);

// Whether A is significantly worse than B at 95%: the whole interval of A - B
// lies on the worse side of 0 (above it for perplexity, below for accuracy).
bool significantly_worse(const std::string& metric, const PairedDifference& d);

// The study's threshold: the pruning factors tested (any order) and whether the
// pruned model was significantly worse than the from-scratch model at each. The
// largest factor before the first one at which it is worse; 1 when it is worse at
// the smallest; the largest tested when it is never worse. Factors must be >= 1
// and distinct (InputError otherwise); an empty list gives 1.
double threshold_factor(std::vector<std::pair<double, bool>> worse_at);

}  // namespace smoe
