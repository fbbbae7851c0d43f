// Job options: Boost.Program_options over the command line and an optional
// `--config FILE.ini` (the command line wins). Every job gets --help and --config.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <utility>
#include <vector>

namespace smoe {

namespace po = boost::program_options;

struct JobUsage {
  std::string job;       // "score"
  std::string synopsis;  // "--model DIR --corpus FILE [options]"
  std::string summary;   // one paragraph on what the job does
};

// Fills `vm` from argv (argv[0] is the job name) and the INI file named by
// --config. Returns false after printing help for --help. InputError on bad usage
// (unknown option, bad value, missing required option, unreadable config).
bool parse_job_options(int argc, char** argv, const JobUsage& usage, po::options_description& options,
                       po::variables_map& vm);

// The files a job reads that options name directly (`names`, when given, and
// --config): the inputs an output must never be. "byte" (the byte tokenizer) is no file.
std::vector<std::string> option_inputs(const po::variables_map& vm, const std::vector<std::string>& names);
// The same, and the files of NAME=FILE options, each checked to be a regular file
// (`what`: "corpus") before any work.
std::vector<std::string> option_inputs(const po::variables_map& vm, const std::vector<std::string>& names,
                                       const std::vector<std::pair<std::string, std::string>>& named,
                                       const std::string& what);

// The help of every job's --tokenizer.
constexpr const char* kTokenizerHelp =
    "a tokenizer.json, a tiktoken.model, a SentencePiece .model, or byte; default: the model folder's own "
    "(tokenizer.json, tiktoken.model, tokenizer.model; byte for models smoe trained)";

// The help of every job's --overwrite.
constexpr const char* kOverwriteHelp =
    "replace an existing output that is not an earlier output of this job (never an input)";

// NAME=VALUE options, in order: InputError naming `option` for a missing '=', a
// name that is not plain (letters, digits, _ - .; at most 128), a name given twice,
// or an empty value where `value_required`. `form` names the shape in messages.
std::vector<std::pair<std::string, std::string>> parse_named_values(const std::vector<std::string>& specs,
                                                                    const std::string& option, const std::string& form,
                                                                    bool value_required);
// NAME=FILE options (--task): parse_named_values with a value required.
std::vector<std::pair<std::string, std::string>> parse_named_files(const std::vector<std::string>& specs,
                                                                   const std::string& option);

// Number of threads for LibTorch's intra-op pool: the option's value, or every
// core of the machine (LibTorch's own default assumes hyper-threading and takes half).
int resolve_threads(int requested);

}  // namespace smoe
