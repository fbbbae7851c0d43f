// The one way every job writes its output (a file or a folder).
//
// Before the work starts, AtomicOutput checks the target and creates a unique temporary
// beside it, so an unwritable place fails at once; the job writes into temp();
// commit() fsyncs and renames it to the final name. Nothing else is ever removed:
// an existing target is replaced only when it is an earlier output of the same job
// (or with --overwrite), and a target that is, holds or lies inside an input is
// refused. The temporary is removed when the job fails or is stopped.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>
#include <vector>

namespace smoe {

// The file inside every output folder that says which job wrote it.
constexpr const char* kOutputMarker = ".smoe-output.json";

struct OutputSpec {
  std::string option = "--out";     // the option that names the target, for messages
  std::string path;                 // as given; trailing slashes are dropped
  std::string job;                  // the job that writes it: "prune"
  bool directory = false;           // a folder (with kOutputMarker) or a file
  bool overwrite = false;           // replace a target that is not an earlier output of this job
  std::vector<std::string> inputs;  // every file and folder the job reads
  // Files only: whether the file at a path is an earlier output of this job.
  std::function<bool(const std::string&)> is_own;
};

class AtomicOutput {
 public:
  // InputError naming the option and the path on every refusal (see above).
  explicit AtomicOutput(OutputSpec spec);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  const std::string& path() const { return path_; }
  // NAME.tmp.PID.RANDOM beside the target: an empty file, or a folder holding the marker.
  const std::string& temp() const { return temp_; }
  // fsyncs the temporary (every file of a folder), renames it to path() (an
  // earlier output swapped out and removed only then), fsyncs the parent folder.
  // Refuses a target that appeared, or was replaced, since the constructor looked,
  // unless it is an output of the same job; when the rename fails the result stays
  // in temp().
  void commit();

 private:
  // Whether the target (lstat'ed into `st`) is an earlier output of this job.
  bool is_own(const struct stat& st) const;

  OutputSpec spec_;
  std::string path_, temp_;
  bool existed_ = false;              // the target at the start, by device and inode
  unsigned long device_ = 0, inode_ = 0;
  bool committed_ = false;
  bool kept_ = false;                 // the work is done: the temporary outlives a failed commit
};

// Removes the temporaries of every AtomicOutput not yet committed or destroyed, and
// those registered with track_output_temporary (the signal thread calls it before
// ending a stopped job; a failing rank before it ends the others).
void remove_output_temporaries();

// fsync of a file or folder; RuntimeError naming it on failure.
void fsync_path(const std::string& path, bool directory);
// Registers another rank's temporary (one writer's output that every rank knows
// of), so that this rank removes it when it fails or is stopped.
void track_output_temporary(const std::string& temp);
// Forgets it again: every rank calls this before the writer commits.
void untrack_output_temporary(const std::string& temp);

// The target path as AtomicOutput uses it: trailing slashes dropped; InputError for an
// empty name, ".", ".." or "/".
std::string normalise_output_path(const std::string& path, const std::string& option);

// Whether `inner` is `outer` or lies inside it (after resolving both).
bool path_within(const std::string& inner, const std::string& outer);

}  // namespace smoe
