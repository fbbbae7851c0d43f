// The jobs of the `smoe` binary; each takes argv with argv[0] = the job's name
// and returns the process exit status.
#pragma once

#include <string>

#include "smoe/core/options.h"
#include "smoe/parallel/job.h"

namespace smoe {

// The context's set-up from a job's parsed options (--device and --threads where
// the job has them) and its arguments, for the provenance.
JobSetup job_setup(const std::string& job, int argc, char** argv, const po::variables_map& vm);

// --device (cpu or cuda) and --dtype (f32, bf16, or auto: bf16 on cuda, f32 on
// cpu), as every job that runs the model on a device declares them.
void add_device_option(po::options_description& opts);
void add_dtype_option(po::options_description& opts);
// --dtype's choice for the chosen --device; exit 2 naming the option otherwise.
ComputeDtype compute_dtype(const po::variables_map& vm);

int run_score(int argc, char** argv);
int run_collect(int argc, char** argv);
int run_cluster(int argc, char** argv);
int run_grid(int argc, char** argv);
int run_prune(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_data(int argc, char** argv);
int run_train(int argc, char** argv);
int run_report(int argc, char** argv);
int run_plan_resources(int argc, char** argv);
int run_tokenize(int argc, char** argv);

}  // namespace smoe
