// mpi_transport.cpp — the Transport over MPI: MPI_Isend with the buffer kept until MPI_Test says delivered, receives
// by MPI_Iprobe polling against a deadline (MPI's blocking calls cannot time out), MPI_Abort for failures.
// Not NCCL: GPU stages in different processes send through host memory (the boundary message is host bytes anyway).
#include "pipeline/transport.h"

#if EP_MPI
#include <mpi.h>
#endif

#include <chrono>
#include <cstdio>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

namespace ep::pipeline {

#if EP_MPI

namespace {

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, size_t(len));
}

#define EP_MPI_CHECK(call)                                                                                     \
  do {                                                                                                         \
    const int ep_mpi_rc = (call);                                                                              \
    EP_CHECK(ep_mpi_rc == MPI_SUCCESS, TransportError, "[mpi] ", #call, " failed at ", __FILE__, ":", __LINE__, \
             ": ", mpi_error(ep_mpi_rc));                                                                      \
  } while (0)

class MpiTransport final : public Transport {
 public:
  explicit MpiTransport(double timeout_s) : timeout_(timeout_s) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      // The stage's worker thread sends and receives while the main thread waits: serialized calls are enough, but
      // ask for full multithreading so the two may overlap safely where the library offers it.
      EP_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
      EP_CHECK(provided >= MPI_THREAD_SERIALIZED, TransportError,
               "[mpi] the MPI library offers no thread support (level ", provided, "); the pipeline needs MPI_THREAD_SERIALIZED");
      std::atexit([] {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
      });
    }
    // Errors come back as codes (checked above), not as MPI's default abort without a message.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    progress_ = std::thread([this] { progress_loop(); });
  }
  ~MpiTransport() override {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    progress_.join();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void send(int peer, MessageKind kind, std::vector<uint8_t> bytes) override {
    check_peer(peer);
    EP_CHECK(bytes.size() <= size_t(INT32_MAX), TransportError, "[mpi] a message of ", bytes.size(),
             " bytes exceeds MPI's int count");
    std::lock_guard<std::mutex> g(mu_);
    complete_sends();
    pending_.push_back({std::move(bytes), MPI_REQUEST_NULL, peer});
    Pending& p = pending_.back();
    EP_MPI_CHECK(MPI_Isend(p.bytes.data(), int(p.bytes.size()), MPI_BYTE, peer, int(kind), MPI_COMM_WORLD,
                           &p.request));
    wake_.notify_all();
  }

  std::vector<uint8_t> receive(int peer, MessageKind kind) override {
    check_peer(peer);
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_);
    MPI_Status status;
    // Spin briefly (messages usually follow quickly in a pipeline), then back off to at most 1 ms between probes.
    std::chrono::microseconds nap(0);
    for (;;) {
      int ready = 0;
      {
        std::lock_guard<std::mutex> g(mu_);
        complete_sends();
        EP_MPI_CHECK(MPI_Iprobe(peer, int(kind), MPI_COMM_WORLD, &ready, &status));
        if (ready) {
          int count = 0;
          EP_MPI_CHECK(MPI_Get_count(&status, MPI_BYTE, &count));
          std::vector<uint8_t> bytes(static_cast<size_t>(count));
          EP_MPI_CHECK(MPI_Recv(bytes.data(), count, MPI_BYTE, peer, int(kind), MPI_COMM_WORLD, MPI_STATUS_IGNORE));
          return bytes;
        }
      }
      EP_CHECK(Clock::now() < deadline, TransportError, "[mpi] rank ", rank_, ": no ", kind_name(kind),
               " message from rank ", peer, " within ", timeout_, " s (is that process alive?)");
      if (nap.count() > 0) std::this_thread::sleep_for(nap);
      nap = std::min(std::chrono::microseconds(1000), nap + std::chrono::microseconds(20));
    }
  }

  void flush() override {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_);
    for (;;) {
      size_t left = 0;
      int to = -1;  // the receiver of the oldest undelivered message: sends complete in order
      {
        std::lock_guard<std::mutex> g(mu_);
        complete_sends();
        left = pending_.size();
        if (left > 0) to = pending_.front().peer;
      }
      if (left == 0) return;
      EP_CHECK(Clock::now() < deadline, TransportError, "[mpi] rank ", rank_, ": ", left, " message(s) to rank ", to,
               " not delivered within ", timeout_, " s (is the receiver alive?)");
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this is for the compiler and for broken launchers
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    std::vector<uint8_t> bytes;
    MPI_Request request;
    int peer;
  };

  static const char* kind_name(MessageKind k) {
    switch (k) {
      case MessageKind::forward: return "forward";
      case MessageKind::backward: return "backward";
      case MessageKind::results: return "results";
      case MessageKind::reduce: return "reduce";
    }
    return "?";
  }
  void check_peer(int peer) const {
    EP_CHECK(peer >= 0 && peer < size_ && peer != rank_, ValueError, "[mpi] rank ", rank_, ": bad peer ", peer,
             " (", size_, " ranks)");
  }
  // Drops the sends MPI has finished with (their buffers may go); call with mu_ held. Sends complete in order per
  // peer, so testing from the front is enough to keep the queue short.
  void complete_sends() {
    while (!pending_.empty()) {
      int done = 0;
      EP_MPI_CHECK(MPI_Test(&pending_.front().request, &done, MPI_STATUS_IGNORE));
      if (!done) return;
      pending_.pop_front();
    }
  }

  // MPI moves a large message (rendezvous protocol) only while the sender is inside an MPI call, and a stage computes
  // for long stretches between calls: this thread keeps testing the pending sends so they travel during compute.
  void progress_loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (pending_.empty()) {
        wake_.wait(lock);
        continue;
      }
      try {
        complete_sends();
      } catch (const std::exception&) {
        // The worker's next send, receive or flush reports the failure with its context.
      }
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      lock.lock();
    }
  }

  double timeout_;
  int rank_ = 0, size_ = 1;
  std::mutex mu_;  // one MPI call at a time from this object (MPI_THREAD_SERIALIZED is all we rely on)
  std::condition_variable wake_;
  bool stop_ = false;
  std::deque<Pending> pending_;
  std::thread progress_;
};

}  // namespace

bool mpi_built() { return true; }

int end_processes(int rc) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (rc != 0 && initialized && !finalized) {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, rc);
  }
  return rc;
}

std::shared_ptr<Transport> mpi_transport(double timeout_s) {
  EP_CHECK(timeout_s > 0, ValueError, "[mpi] the peer timeout must be positive, got ", timeout_s);
  static std::mutex mu;
  static std::weak_ptr<Transport> current;
  std::lock_guard<std::mutex> g(mu);
  if (auto t = current.lock()) return t;
  auto t = std::make_shared<MpiTransport>(timeout_s);
  current = t;
  return t;
}

#else

bool mpi_built() { return false; }
int end_processes(int rc) { return rc; }

std::shared_ptr<Transport> mpi_transport(double) {
  EP_THROW(ValueError, "[mpi] this build has no MPI (install libopenmpi-dev, then rebuild: `make deps all`)");
}

#endif

}  // namespace ep::pipeline
