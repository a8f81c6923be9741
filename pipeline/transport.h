// transport.h — how boundary messages cross between pipeline stages that run in different processes (one stage per
// process, `mpirun -np S ... --distributed mpi`): ordered point-to-point byte messages with a timeout, so a dead peer
// becomes an error instead of a hang. Not the in-process path (pipeline.cpp hands tensors over in memory).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/check.h"

namespace ep::pipeline {

// What a transport reports when a peer stays silent past the timeout or the network layer fails.
struct TransportError : Error {
  using Error::Error;
};

// What a message carries; between one pair of ranks, messages of one kind arrive in the order they were sent.
enum class MessageKind : int { forward = 0, backward = 1, results = 2, reduce = 3 };

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;  // this process's stage
  virtual int size() const = 0;  // stages (processes)
  // Returns at once: the transport owns the bytes until they are delivered.
  virtual void send(int peer, MessageKind kind, std::vector<uint8_t> bytes) = 0;
  // The next message of `kind` from `peer`; TransportError naming the peer after the timeout.
  virtual std::vector<uint8_t> receive(int peer, MessageKind kind) = 0;
  // Waits until every send so far has been delivered (TransportError after the timeout).
  virtual void flush() = 0;
  // Ends the whole job at once (every rank), for a failure in this one: the others would wait for it otherwise.
  [[noreturn]] virtual void abort(int code) = 0;
};

// The job's MPI transport when this build has MPI and the process was started by mpirun (or as a single rank);
// initializes MPI on first use (threads: the stage worker calls it) and finalizes at exit. `timeout_s` bounds every
// wait for a peer. UsageError-style ValueError when the build has no MPI.
std::shared_ptr<Transport> mpi_transport(double timeout_s);
bool mpi_built();

// The element-wise sum of every process's `values` (all of one length), the same bits in each process: each sends its
// vector to all the others, then adds the size() vectors in rank order. For the few numbers the stages of a step must
// agree on (the gradient norm's per-parameter sums of squares), not for tensors. Error when the lengths differ.
std::vector<double> sum_over_processes(Transport& transport, const std::vector<double>& values);
// An app's exit status, passed through; a failure (rc != 0) while an MPI job runs ends every rank of it at once,
// since the others would wait for this one (DESIGN.md §6: a dead peer makes every survivor exit).
int end_processes(int rc);

}  // namespace ep::pipeline
