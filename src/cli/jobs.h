// The jobs of the `smoe` binary; each takes argv with argv[0] = the job's name
// and returns the process exit status.
#pragma once

namespace smoe {

int run_score(int argc, char** argv);
int run_collect(int argc, char** argv);
int run_cluster(int argc, char** argv);
int run_prune(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_data(int argc, char** argv);
int run_train(int argc, char** argv);
int run_report(int argc, char** argv);
int run_plan_resources(int argc, char** argv);
int run_tokenize(int argc, char** argv);

}  // namespace smoe
