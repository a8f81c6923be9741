// pipeline.cpp — the stage workers: persistent threads fed one job per step, the per-step channels between stages
// (queues in this process, the transport to a stage in another), transfers on copy streams with events, failure
// propagation and the statistics. Not the schedule (schedule.cpp), the partition flags (partition.cpp), micro-batch
// arithmetic (microbatch.cpp) or the MPI calls (mpi_transport.cpp).
#include "pipeline/pipeline.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "pipeline/queue.h"
#include "pipeline/transport.h"
#include "pipeline/wire.h"

namespace ep::pipeline {

namespace {

using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Streams live as long as the process: tensors allocated on a stage's stream (parameter gradients, outputs) are
// freed on that stream, possibly after the Pipeline that made them is gone. Keyed by (device, stage, role), so
// pipelines built one after another reuse them instead of leaking new ones.
enum class Role { compute, copy };
const Stream& stage_stream(Device d, int stage, Role role) {
  static std::mutex mu;
  static std::map<std::tuple<int, int, int>, std::unique_ptr<Stream>> streams;
  std::lock_guard<std::mutex> lock(mu);
  auto& s = streams[{d.index, stage, int(role)}];
  if (!s) s = std::make_unique<Stream>(d);
  return *s;
}

// One boundary crossing: the hook's message, already on the receiver's device, and the event the receiver's compute
// stream must wait for (null on the CPU or when the copy was synchronous).
struct Packet {
  Message msg;
  std::shared_ptr<Event> arrived;
  int micro = 0;
};

// One direction of one boundary. push false / pop nullopt once closed (the step failed).
class Channel {
 public:
  virtual ~Channel() = default;
  virtual bool push(Packet p) = 0;
  virtual std::optional<Packet> pop() = 0;
  virtual void close() = 0;
};

// Both stages in this process: the packet itself through a blocking queue.
class LocalChannel final : public Channel {
 public:
  explicit LocalChannel(size_t capacity) : queue_(capacity) {}
  bool push(Packet p) override { return queue_.push(std::move(p)); }
  std::optional<Packet> pop() override { return queue_.pop(); }
  void close() override { queue_.close(); }

 private:
  BlockingQueue<Packet> queue_;
};

// The other stage in another process: the hook's wire bytes + [micro-batch (u64)] through the transport (a trailer,
// so the bytes are not copied to make room). A closed channel stops popping; a pop already waiting ends with the
// transport's timeout (a failed process ends the job).
class RemoteChannel final : public Channel {
 public:
  RemoteChannel(Transport& t, BoundaryHook& hook, int peer, Pass dir, Device device)
      : t_(t), hook_(hook), peer_(peer), dir_(dir), device_(device) {}
  bool push(Packet p) override {
    if (closed_) return false;
    std::vector<uint8_t> bytes = hook_.to_wire(p.msg, dir_, p.micro);
    put_u64(bytes, uint64_t(p.micro));
    t_.send(peer_, kind(), std::move(bytes));
    return true;
  }
  std::optional<Packet> pop() override {
    if (closed_) return std::nullopt;
    const std::vector<uint8_t> bytes = t_.receive(peer_, kind());
    EP_CHECK(bytes.size() >= 8, Error, "[pipeline] boundary message of ", bytes.size(), " bytes has no trailer");
    size_t trailer = bytes.size() - 8;
    const size_t body = trailer;
    Packet p;
    p.micro = int(get_u64(bytes.data(), bytes.size(), trailer, "boundary message"));
    p.msg = hook_.from_wire(bytes.data(), body, dir_, p.micro);
    if (p.msg.tensor.defined()) {
      NoGradGuard no_grad;
      p.msg.tensor = p.msg.tensor.to(device_);  // arrives on the host; the stage's compute stream is current
    }
    return p;
  }
  void close() override { closed_ = true; }

 private:
  MessageKind kind() const { return dir_ == Pass::forward ? MessageKind::forward : MessageKind::backward; }
  Transport& t_;
  BoundaryHook& hook_;
  int peer_;
  Pass dir_;
  Device device_;
  std::atomic<bool> closed_{false};
};

}  // namespace

std::vector<uint8_t> BoundaryHook::to_wire(const Message& msg, Pass, int) { return tensor_to_wire(msg.tensor); }

Message BoundaryHook::from_wire(const uint8_t* data, size_t size, Pass, int) {
  Tensor t = tensor_from_wire(data, size, "boundary message");
  const uint64_t bytes = uint64_t(t.nbytes());
  return {std::move(t), nullptr, bytes};
}

struct Pipeline::Impl {
  struct StageRuntime {
    Stage stage;
    int index = 0;
    const Stream* compute = nullptr;  // null on the CPU
    const Stream* copy = nullptr;
  };

  // Everything one step shares between the driver and the workers.
  struct StepState {
    bool training = true;
    const LossFn* loss = nullptr;
    // This step's schedule: the Impl's orders, or fewer_orders for a short evaluation batch (mbs has its count).
    std::vector<std::vector<Task>> fewer_orders;
    const std::vector<std::vector<Task>>* orders = nullptr;
    std::vector<Tensor> inputs, masks;  // per micro-batch, on the caller's device
    std::vector<MicroBatch> mbs;
    std::vector<std::unique_ptr<Channel>> fwd, bwd;  // boundary b: stage b -> b+1, and b+1 -> b
    std::vector<Tensor> outputs;                     // last stage, detached
    std::vector<double> micro_losses;
    std::vector<StageStats> stats;
    PipelineStats result;  // filled by the driver once every worker is idle
    std::vector<std::atomic<uint64_t>> fwd_bytes, bwd_bytes;
    Clock::time_point start;

    std::atomic<bool> failed{false};
    std::mutex error_mu;
    std::exception_ptr first_error;

    // With a transport, the boundaries of the local stage are remote channels; every other channel is local (and,
    // in that case, unused).
    StepState(size_t stages, size_t chunks, Impl& pipe)
        : outputs(chunks), micro_losses(chunks, 0.0), stats(stages), fwd_bytes(stages ? stages - 1 : 0),
          bwd_bytes(stages ? stages - 1 : 0) {
      const int local = pipe.local;
      for (size_t b = 0; b + 1 < stages; ++b) {
        if (local >= 0 && (int(b) == local || int(b) + 1 == local)) {
          const bool sender = int(b) == local;  // this process runs stage b: it sends forward, receives backward
          const int peer = sender ? local + 1 : local - 1;
          const Device dev = pipe.stages[size_t(local)].stage.device;
          BoundaryHook& hook = *pipe.hooks[b];
          fwd.push_back(std::make_unique<RemoteChannel>(*pipe.transport, hook, peer, Pass::forward, dev));
          bwd.push_back(std::make_unique<RemoteChannel>(*pipe.transport, hook, peer, Pass::backward, dev));
          continue;
        }
        // At most `chunks` messages are ever in flight on a channel, so a sender never blocks on a full queue.
        fwd.push_back(std::make_unique<LocalChannel>(chunks));
        bwd.push_back(std::make_unique<LocalChannel>(chunks));
      }
    }
    // Hold the first exception; closing every channel wakes the stages blocked on a message that will never come.
    void fail(std::exception_ptr e) {
      {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!first_error) first_error = e;
      }
      failed = true;
      for (auto& c : fwd) c->close();
      for (auto& c : bwd) c->close();
    }
  };

  std::vector<StageRuntime> stages;
  PipelineOptions options;
  std::vector<std::shared_ptr<BoundaryHook>> hooks;  // one per boundary, never null
  std::vector<std::vector<Task>> orders;
  std::shared_ptr<Transport> transport;  // null: every stage runs here
  int local = -1;                        // with a transport: the one stage this process runs

  std::vector<std::unique_ptr<BlockingQueue<std::function<void()>>>> jobs;  // one per worker
  BlockingQueue<int> done;
  std::vector<std::thread> workers;
  std::mutex step_mu;  // one step at a time

  Impl(std::vector<Stage> st, PipelineOptions opt, std::vector<std::shared_ptr<BoundaryHook>> hk,
       std::shared_ptr<Transport> tr)
      : options(opt), transport(std::move(tr)), done(st.empty() ? 1 : st.size()) {
    EP_CHECK(!st.empty(), ValueError, "[pipeline] need at least one stage");
    EP_CHECK(opt.chunks >= 1, ValueError, "--chunks ", opt.chunks, ": need at least one micro-batch");
    const size_t S = st.size();
    if (transport) {
      EP_CHECK(transport->size() == int(S), ValueError, "[pipeline] ", S, " stages need ", S, " processes (one per "
               "stage, e.g. mpirun -np ", S, "), this job has ", transport->size());
      local = transport->rank();
    }
    EP_CHECK(hk.empty() || hk.size() == S - 1, ValueError, "[pipeline] ", hk.size(), " boundary hooks for ", S,
             " stages (give none, or one per boundary: ", S - 1, ")");
    // A tensor that units of two stages compute with (tied weights) would get gradients from two worker threads at
    // once. A model's units own disjoint modules (tested); this guards models put together otherwise.
    std::map<const void*, std::pair<size_t, std::string>> owner;  // storage -> (stage, "unit (key)")
    for (size_t s = 0; s < S; ++s)
      for (const nn::Unit& u : st[s].units)
        if (u.visit_owned)
          u.visit_owned([&](const std::string& key, Tensor& t, bool) {
            if (!t.defined() || t.numel() == 0) return;
            auto [it, fresh] = owner.try_emplace(t.raw_data(), s, u.name + " (" + key + ")");
            EP_CHECK(fresh || it->second.first == s, ValueError, "[pipeline] stages ", it->second.first, " and ", s,
                     " compute with one tensor, ", it->second.second, " and ", u.name, " (", key,
                     "): it would get gradients from two threads at once; keep a shared tensor in one stage");
          });
    for (size_t s = 0; s < S; ++s) {
      EP_CHECK(!st[s].units.empty(), ValueError, "[pipeline] stage ", s, " has no units");
      StageRuntime rt;
      rt.index = int(s);
      rt.stage = std::move(st[s]);
      if (rt.stage.device.is_cuda() && (local < 0 || int(s) == local)) {  // another process's device is not ours
        rt.compute = &stage_stream(rt.stage.device, int(s), Role::compute);
        rt.copy = &stage_stream(rt.stage.device, int(s), Role::copy);
      }
      stages.push_back(std::move(rt));
    }
    for (size_t b = 0; b + 1 < S; ++b) {
      hooks.push_back(hk.empty() || !hk[b] ? std::make_shared<IdentityHook>() : hk[b]);
      hooks.back()->connect(stages[b].stage.device, stages[b + 1].stage.device, local < 0);
    }
    orders = stage_orders(opt.schedule, int(S), opt.chunks);
    for (size_t s = 0; s < S; ++s) jobs.push_back(std::make_unique<BlockingQueue<std::function<void()>>>(1));
    try {
      for (size_t s = 0; s < S; ++s)
        workers.emplace_back([q = jobs[s].get()] {
          while (auto job = q->pop()) (*job)();
        });
    } catch (...) {  // could not start a thread: stop the ones that did before the error leaves the constructor
      stop_workers();
      throw;
    }
  }

  void stop_workers() {
    for (auto& q : jobs) q->close();
    for (auto& t : workers)
      if (t.joinable()) t.join();
  }
  ~Impl() { stop_workers(); }

  // The copy stream used for a transfer touching CUDA device d on behalf of stage `stage`.
  const Stream& copy_stream_on(Device d, int stage) { return stage_stream(d, stage, Role::copy); }

  // Sender side: encode, move the tensor to the receiver's device on a copy stream, return what the receiver pops.
  Packet send(StageRuntime& from, StageRuntime& to, int boundary, Pass dir, const Tensor& x, int micro,
              StepState& st, std::vector<Tensor>& keep_alive) {
    Packet p;
    p.micro = micro;
    p.msg = hooks[size_t(boundary)]->encode(x, dir, micro);
    (dir == Pass::forward ? st.fwd_bytes : st.bwd_bytes)[size_t(boundary)] += p.msg.bytes;
    Tensor& t = p.msg.tensor;
    if (!t.defined()) {
      // A payload: complete when encode returned, or (sections left on this GPU for a receiver on it) once the
      // sender's compute stream gets past this point.
      if (!p.msg.device_sections.empty() && local < 0) {
        const Device src = p.msg.device_sections.front().device();
        EP_CHECK(src == to.stage.device, DeviceError, "[pipeline] boundary ", boundary, " left its payload on ",
                 src.str(), " for a stage on ", to.stage.device.str());
        p.arrived = std::make_shared<Event>(src);
        p.arrived->record(current_stream(src));
        keep_alive.insert(keep_alive.end(), p.msg.device_sections.begin(), p.msg.device_sections.end());
      }
      return p;
    }
    if (local >= 0) return p;    // the other stage is in another process: the channel sends the bytes
    const Device src = t.device(), dst = to.stage.device;
    if (src.is_cuda()) keep_alive.push_back(t);  // read by another stream after this task: keep until the step ends
    if (src == dst) {
      if (src.is_cuda()) {
        p.arrived = std::make_shared<Event>(src);
        p.arrived->record(current_stream(src));  // the sender's compute stream produced it
      }
      t = t.detach();
      return p;
    }
    // Cross-device: the copy stream first waits for the sender's compute stream, then copies; the receiver's compute
    // stream will wait for the copy (torchgpipe's Copy/Wait pair).
    std::optional<Event> ready;
    if (src.is_cuda()) {
      ready.emplace(src);
      ready->record(current_stream(src));
    }
    std::optional<StreamGuard> src_guard, dst_guard;
    if (src.is_cuda()) {
      const Stream& cs = copy_stream_on(src, from.index);
      ready->wait_on(cs.handle());
      src_guard.emplace(cs);
    }
    if (dst.is_cuda()) {
      const Stream& cs = copy_stream_on(dst, to.index);
      if (ready) ready->wait_on(cs.handle());
      dst_guard.emplace(cs);
    }
    {
      NoGradGuard no_grad;
      t = t.detach().to(dst);
    }
    if (dst.is_cuda()) {
      p.arrived = std::make_shared<Event>(dst);
      p.arrived->record(copy_stream_on(dst, to.index).handle());
    }
    return p;
  }

  // Receiver side, part 1: wait for the message (not busy time). nullopt once the step has failed.
  std::optional<Packet> receive(StageRuntime& rt, Channel& ch, Pass dir, int micro, StepState& st) {
    std::optional<Packet> p = ch.pop();
    if (!p || st.failed) return std::nullopt;
    EP_CHECK(p->micro == micro, Error, "[pipeline] stage ", rt.index, " expected micro-batch ", micro, " on its ",
             dir == Pass::forward ? "forward" : "backward", " channel but received ", p->micro);
    return p;
  }

  // Receiver side, part 2 (after the compute stream was made to wait for the packet's arrival event): decode.
  // CUDA: the received tensor (or payload section) was allocated on another stream (the copy stream, or the sender's
  // compute stream) and is read on this stage's compute stream, so it stays referenced until this stage's final
  // synchronize; dropping it earlier would let that other stream's pool hand the memory out while kernels here still
  // read it.
  // TODO: a record_stream-style release would free boundary tensors right after their backward under 1F1B.
  Tensor decode(StageRuntime& rt, Packet&& p, int boundary, Pass dir, std::vector<Tensor>& keep_alive) {
    if (p.msg.tensor.defined() && p.msg.tensor.is_cuda()) keep_alive.push_back(p.msg.tensor);
    keep_alive.insert(keep_alive.end(), p.msg.device_sections.begin(), p.msg.device_sections.end());
    Tensor x = hooks[size_t(boundary)]->decode(std::move(p.msg), dir, rt.stage.device, p.micro);
    EP_CHECK(x.defined(), Error, "[pipeline] boundary ", boundary, " decoded an undefined tensor");
    EP_CHECK(x.device() == rt.stage.device, DeviceError, "[pipeline] boundary ", boundary, " decoded a tensor on ",
             x.device().str(), " for stage ", rt.index, " on ", rt.stage.device.str());
    if (x.is_cuda()) keep_alive.push_back(x);
    return x;
  }

  void run_stage(int s, StepState& st) {
    StageRuntime& rt = stages[size_t(s)];
    const int S = int(stages.size()), C = int(st.mbs.size());
    const bool last = s == S - 1;
    const Device dev = rt.stage.device;
    std::optional<StreamGuard> guard;
    std::optional<NoGradGuard> no_grad;
    const size_t chunks = static_cast<size_t>(C);
    std::vector<Tensor> inputs(chunks), outputs(chunks), loss_terms(chunks), keep_alive;
    // Activation recomputation: the generators' offsets before each micro-batch's first pass, and its context.
    const bool recompute = st.training && size_t(s) < options.checkpoint.size() && options.checkpoint[size_t(s)];
    std::vector<Generator*> gens;
    for (const nn::Unit& u : rt.stage.units) gens.insert(gens.end(), u.generators.begin(), u.generators.end());
    auto offsets = [&gens] {
      std::vector<uint64_t> o;
      for (Generator* g : gens) o.push_back(g->offset);
      return o;
    };
    auto rewind = [&gens](const std::vector<uint64_t>& o) {
      for (size_t k = 0; k < gens.size(); ++k) gens[k]->offset = o[k];
    };
    std::vector<std::vector<uint64_t>> rng_before(recompute ? chunks : 0);
    std::vector<nn::UnitContext> contexts(recompute ? chunks : 0);
    StageStats& stats = st.stats[size_t(s)];
    // CUDA busy time: events around each task on the compute stream, read after the final synchronize.
    std::vector<std::pair<Event, Event>> events;
    try {
      if (rt.compute) guard.emplace(*rt.compute);
      if (!st.training) no_grad.emplace();
      for (const Task& task : (*st.orders)[size_t(s)]) {
        if (st.failed) break;
        if (!st.training && task.pass == Pass::backward) continue;
        const int i = task.micro;
        std::optional<Packet> in;  // the activation (forward, s > 0) or gradient (backward, not last) this task needs
        if (task.pass == Pass::forward && s > 0) {
          in = receive(rt, *st.fwd[size_t(s - 1)], Pass::forward, i, st);
          if (!in) break;
        } else if (task.pass == Pass::backward && !last) {
          in = receive(rt, *st.bwd[size_t(s)], Pass::backward, i, st);
          if (!in) break;
        }
        // The compute stream waits for the copy before the task's start event, so busy time excludes the transfer.
        if (in && in->arrived && rt.compute) in->arrived->wait_on(rt.compute->handle());
        const Clock::time_point t0 = Clock::now();
        if (rt.compute) {
          events.emplace_back(Event(dev), Event(dev));
          events.back().first.record(rt.compute->handle());
        }
        Tensor x, g;
        if (in && task.pass == Pass::forward) x = decode(rt, std::move(*in), s - 1, Pass::forward, keep_alive);
        if (in && task.pass == Pass::backward) g = decode(rt, std::move(*in), s, Pass::backward, keep_alive);
        if (task.pass == Pass::forward) {
          if (s == 0) {
            NoGradGuard ng;
            x = st.inputs[size_t(i)].to(dev);
          } else {
            x = x.detach();
            if (st.training && is_floating(x.dtype())) x.requires_grad_();
          }
          nn::UnitContext ctx;
          if (st.masks[size_t(i)].defined()) {
            NoGradGuard ng;
            ctx.key_mask = st.masks[size_t(i)].to(dev);
          }
          Tensor y = x;
          {
            std::optional<NoGradGuard> first_pass_only;  // a checkpointed stage keeps no graph now
            if (recompute) {
              rng_before[size_t(i)] = offsets();
              contexts[size_t(i)] = ctx;
              first_pass_only.emplace();
            }
            for (const nn::Unit& u : rt.stage.units) y = u.forward(y, ctx);
          }
          EP_CHECK(y.defined(), Error, "[pipeline] stage ", s, " returned an undefined tensor");
          if (st.training) {
            inputs[size_t(i)] = x;
            outputs[size_t(i)] = recompute ? Tensor() : y;
          }
          if (last) {
            st.outputs[size_t(i)] = y.detach();
            if (st.training) {
              Tensor term = (*st.loss)(y, st.mbs[size_t(i)]);
              EP_CHECK(term.defined() && term.numel() == 1, ValueError, "[pipeline] the loss function returned ",
                       term.defined() ? term.str() : std::string("an undefined tensor"), " for micro-batch ", i,
                       "; expected one element");
              loss_terms[size_t(i)] = term;
            }
          } else {
            Packet p = send(rt, stages[size_t(s + 1)], s, Pass::forward, y.detach(), i, st, keep_alive);
            if (!st.fwd[size_t(s)]->push(std::move(p))) break;
          }
        } else {
          if (recompute) {
            // Redo the forward with a graph: the same inputs, the same dropout draws, BatchNorm without side effects.
            const std::vector<uint64_t> now = offsets();
            rewind(rng_before[size_t(i)]);
            Tensor y = inputs[size_t(i)];
            {
              nn::RecomputeGuard again;
              for (const nn::Unit& u : rt.stage.units) y = u.forward(y, contexts[size_t(i)]);
            }
            rewind(now);
            if (last) {
              Tensor term = (*st.loss)(y, st.mbs[size_t(i)]);
              if (term.requires_grad()) term.backward();
            } else if (y.requires_grad()) {
              y.backward(g);
            }
            contexts[size_t(i)] = nn::UnitContext{};
          } else if (last) {
            if (loss_terms[size_t(i)].requires_grad()) loss_terms[size_t(i)].backward();
            loss_terms[size_t(i)] = loss_terms[size_t(i)].detach();  // the value only: release the graph now
          } else if (outputs[size_t(i)].requires_grad()) {
            outputs[size_t(i)].backward(g);
          }
          if (s > 0) {
            Tensor gx = inputs[size_t(i)].grad();
            if (!gx.defined()) gx = zeros_like(inputs[size_t(i)]);  // the input did not influence the output
            Packet p = send(rt, stages[size_t(s - 1)], s - 1, Pass::backward, gx, i, st, keep_alive);
            if (!st.bwd[size_t(s - 1)]->push(std::move(p))) break;
          }
          // The graph of micro-batch i on this stage is no longer needed.
          inputs[size_t(i)] = Tensor();
          outputs[size_t(i)] = Tensor();
        }
        if (rt.compute) events.back().second.record(rt.compute->handle());
        const Clock::time_point t1 = Clock::now();
        stats.tasks.push_back({task, ms_between(st.start, t0), ms_between(st.start, t1)});
        if (!rt.compute) stats.busy_ms += ms_between(t0, t1);
      }
      if (rt.compute) {
        rt.compute->synchronize();
        rt.copy->synchronize();  // transfers into this stage
        for (auto& [a, b] : events) stats.busy_ms += a.elapsed_ms(b);
      }
      if (last && st.training && !st.failed)
        for (int i = 0; i < C; ++i)
          if (loss_terms[size_t(i)].defined()) st.micro_losses[size_t(i)] = loss_terms[size_t(i)].item();
    } catch (...) {
      st.fail(std::current_exception());
      // Let queued device work finish before its tensors are freed; a second error here changes nothing.
      try {
        if (rt.compute) {
          rt.compute->synchronize();
          rt.copy->synchronize();
        }
      } catch (...) {
      }
    }
  }

  // Runs one step (training or forward-only) on the workers; returns when every worker is idle again.
  std::unique_ptr<StepState> run(const Tensor& input, const nn::UnitContext& ctx, const LossFn* loss) {
    std::lock_guard<std::mutex> lock(step_mu);
    EP_CHECK(input.defined(), ValueError, "[pipeline] undefined input");
    const int64_t rows = input.dim() >= 1 ? input.size(0) : 0;
    // Evaluation of a batch shorter than --chunks (an epoch's last): one micro-batch per row. Every process of a
    // multi-process pipeline sees the same rows, so all shorten alike. Training keeps its count (deferred BatchNorm is
    // armed for it): the trainer reschedules before such a step, and micro_batches() refuses a count above the rows.
    const int C = loss == nullptr && rows >= 1 && rows < options.chunks ? int(rows) : options.chunks;
    auto st = std::make_unique<StepState>(stages.size(), size_t(C), *this);
    if (C != options.chunks) st->fewer_orders = stage_orders(options.schedule, int(stages.size()), C);
    st->orders = C != options.chunks ? &st->fewer_orders : &orders;
    st->start = Clock::now();
    st->training = loss != nullptr;
    st->loss = loss;
    st->mbs = micro_batches(rows, C);
    st->inputs = scatter(input, C);
    if (ctx.key_mask.defined()) {
      EP_CHECK(ctx.key_mask.dim() >= 1 && ctx.key_mask.size(0) == input.size(0), ShapeError,
               "[pipeline] key_mask ", shape_str(ctx.key_mask.shape()), " does not match the batch of ",
               shape_str(input.shape()));
      st->masks = scatter(ctx.key_mask, C);
    } else {
      st->masks.assign(size_t(C), Tensor());
    }
    // Scatter ran on the caller's stream; the workers read the chunks from their own streams.
    if (input.is_cuda()) synchronize(input.device());
    if (ctx.key_mask.defined() && ctx.key_mask.is_cuda()) synchronize(ctx.key_mask.device());
    // The caller's work queued on each stage's GPU (the last step's optimizer, writing the parameters and reading
    // gradients whose memory the stages freed on their own streams) comes before anything the stages queue now.
    std::map<int, Event> caller_done;
    for (const StageRuntime& rt : stages) {
      if (!rt.compute) continue;
      const Device dev = rt.stage.device;
      auto [it, fresh] = caller_done.try_emplace(dev.index);
      if (fresh) {
        it->second = Event(dev);
        it->second.record(current_stream(dev));
      }
      it->second.wait_on(rt.compute->handle());
      it->second.wait_on(rt.copy->handle());
    }
    StepState* raw = st.get();
    size_t dispatched = 0;
    for (size_t s = 0; s < stages.size(); ++s) {
      if (local >= 0 && int(s) != local) continue;  // another process runs it
      const bool queued = jobs[s]->push([this, s, raw] {
        try {
          run_stage(int(s), *raw);
        } catch (...) {  // run_stage catches its own errors; this covers its set-up (allocation failures)
          raw->fail(std::current_exception());
        }
        done.push(int(s));  // always, so the driver never waits for a worker that gave up
      });
      if (!queued) {
        raw->fail(std::make_exception_ptr(Error("[pipeline] worker queue closed")));
        break;
      }
      ++dispatched;
    }
    for (size_t k = 0; k < dispatched; ++k) done.pop();
    if (st->first_error) std::rethrow_exception(st->first_error);
    if (transport) exchange_results(*st);
    const Clock::time_point end = Clock::now();

    PipelineStats& ps = st->result;
    ps.stages = std::move(st->stats);
    for (size_t b = 0; b + 1 < stages.size(); ++b)
      ps.boundaries.push_back({st->fwd_bytes[b].load(), st->bwd_bytes[b].load()});
    ps.step_ms = ms_between(st->start, end);
    double busy = 0;
    for (const StageStats& s : ps.stages) busy += s.busy_ms;
    // With a transport, only the first process hears from every stage; the others know their own.
    const double stage_count = transport && local > 0 ? 1.0 : double(stages.size());
    ps.bubble_fraction = ps.step_ms > 0 ? std::max(0.0, 1.0 - busy / (stage_count * ps.step_ms)) : 0.0;
    return st;
  }

  // With a transport, after the local stage's work:
  //  * every stage but the first sends stage 0 its statistics: [busy_ms, tasks, then per task micro, pass, start,
  //    end; the bytes it sent forward (0 for the last stage) and backward], so the first process's statistics (its
  //    metrics.jsonl and summary.json) cover every stage and boundary;
  //  * the last stage sends [chunks (u64), each micro-batch's loss (as f64 bits), the outputs gathered (wire tensor)]
  //    to every other process, which takes them as its own, so every process returns the same result.
  // Then every send of this step is made sure to have been delivered.
  void exchange_results(StepState& st) {
    const int last = int(stages.size()) - 1;
    const size_t C = st.micro_losses.size();
    auto f64 = [](std::vector<uint8_t>& b, double v) { put_u64(b, std::bit_cast<uint64_t>(v)); };
    if (local > 0) {
      const StageStats& mine = st.stats[size_t(local)];
      std::vector<uint8_t> bytes;
      f64(bytes, mine.busy_ms);
      put_u64(bytes, mine.tasks.size());
      for (const TaskTiming& t : mine.tasks) {
        put_u64(bytes, uint64_t(t.task.micro));
        put_u64(bytes, uint64_t(t.task.pass));
        f64(bytes, t.start_ms);
        f64(bytes, t.end_ms);
      }
      put_u64(bytes, local < last ? st.fwd_bytes[size_t(local)].load() : 0);
      put_u64(bytes, st.bwd_bytes[size_t(local - 1)].load());
      transport->send(0, MessageKind::results, std::move(bytes));
    } else {
      for (int r = 1; r <= last; ++r) {
        const std::vector<uint8_t> bytes = transport->receive(r, MessageKind::results);
        size_t at = 0;
        auto next = [&] { return get_u64(bytes.data(), bytes.size(), at, "stage statistics"); };
        StageStats& theirs = st.stats[size_t(r)];
        theirs.busy_ms = std::bit_cast<double>(next());
        const uint64_t tasks = next();
        EP_CHECK(tasks <= (*st.orders)[size_t(r)].size(), Error, "[pipeline] stage ", r, " reports ", tasks,
                 " tasks; its schedule has ", (*st.orders)[size_t(r)].size());
        for (uint64_t k = 0; k < tasks; ++k) {
          TaskTiming t;
          t.task.stage = r;
          t.task.micro = int(next());
          t.task.pass = next() == uint64_t(Pass::forward) ? Pass::forward : Pass::backward;
          t.start_ms = std::bit_cast<double>(next());
          t.end_ms = std::bit_cast<double>(next());
          theirs.tasks.push_back(t);
        }
        const uint64_t fwd = next(), bwd = next();
        if (r < last) st.fwd_bytes[size_t(r)] += fwd;
        st.bwd_bytes[size_t(r - 1)] += bwd;
      }
    }
    if (local == last) {
      Tensor out;
      {
        NoGradGuard no_grad;
        out = gather(st.outputs);
      }
      std::vector<uint8_t> bytes;
      put_u64(bytes, C);
      for (double l : st.micro_losses) put_u64(bytes, std::bit_cast<uint64_t>(l));
      const std::vector<uint8_t> t = tensor_to_wire(out);
      bytes.insert(bytes.end(), t.begin(), t.end());
      for (int r = 0; r < last; ++r) transport->send(r, MessageKind::results, bytes);
      st.outputs.assign(1, out);
    } else {
      const std::vector<uint8_t> bytes = transport->receive(last, MessageKind::results);
      size_t offset = 0;
      const uint64_t n = get_u64(bytes.data(), bytes.size(), offset, "step results");
      EP_CHECK(n == C, Error, "[pipeline] stage ", local, " expected the results of ", C, " micro-batches, got ", n);
      for (size_t i = 0; i < C; ++i)
        st.micro_losses[i] = std::bit_cast<double>(get_u64(bytes.data(), bytes.size(), offset, "step results"));
      st.outputs.assign(1, tensor_from_wire(bytes.data() + offset, bytes.size() - offset, "step results"));
    }
    transport->flush();
  }
};

nlohmann::json to_json(const PipelineStats& stats) {
  nlohmann::json j;
  j["step_ms"] = stats.step_ms;
  j["bubble_fraction"] = stats.bubble_fraction;
  j["stages"] = nlohmann::json::array();
  for (const StageStats& s : stats.stages) j["stages"].push_back({{"busy_ms", s.busy_ms}, {"tasks", s.tasks.size()}});
  j["boundaries"] = nlohmann::json::array();
  for (const BoundaryStats& b : stats.boundaries)
    j["boundaries"].push_back({{"forward_bytes", b.forward_bytes}, {"backward_bytes", b.backward_bytes}});
  return j;
}

std::vector<bool> parse_checkpoint(const std::string& mode, int stages) {
  EP_CHECK(stages >= 1, ValueError, "--checkpoint: ", stages, " stages");
  if (mode == "never") return std::vector<bool>(size_t(stages), false);
  if (mode == "always") return std::vector<bool>(size_t(stages), true);
  if (mode == "except-last") {
    std::vector<bool> c(size_t(stages), true);
    c.back() = false;  // torchgpipe's default: the last stage's backward follows its forward at once anyway
    return c;
  }
  EP_THROW(ValueError, "--checkpoint: expected never, except-last or always, got '", mode, "'");
}

Pipeline::Pipeline(std::vector<Stage> stages, PipelineOptions options, std::vector<std::shared_ptr<BoundaryHook>> hooks,
                   std::shared_ptr<Transport> transport)
    : impl_(std::make_unique<Impl>(std::move(stages), options, std::move(hooks), std::move(transport))) {}
Pipeline::~Pipeline() = default;

StepResult Pipeline::train_step(const Tensor& input, const LossFn& loss, const nn::UnitContext& ctx) {
  EP_CHECK(static_cast<bool>(loss), ValueError, "[pipeline] train_step needs a loss function");
  auto st = impl_->run(input, ctx, &loss);
  StepResult r;
  r.micro_losses = st->micro_losses;
  for (double l : r.micro_losses) r.loss += l;
  {
    NoGradGuard no_grad;
    r.output = gather(st->outputs);
  }
  r.stats = std::move(st->result);
  return r;
}

Tensor Pipeline::forward(const Tensor& input, const nn::UnitContext& ctx, PipelineStats* stats) {
  auto st = impl_->run(input, ctx, nullptr);
  NoGradGuard no_grad;
  Tensor out = gather(st->outputs);
  if (stats) *stats = std::move(st->result);
  return out;
}

void Pipeline::reschedule(int chunks, ScheduleKind schedule, bool every_process) {
  std::lock_guard<std::mutex> g(impl_->step_mu);
  EP_CHECK(chunks >= 1, ValueError, "[pipeline] reschedule to ", chunks, " micro-batches: need at least one");
  EP_CHECK(!impl_->transport || every_process, ValueError,
           "[pipeline] a multi-process pipeline cannot change its micro-batches mid-run");
  impl_->orders = stage_orders(schedule, int(impl_->stages.size()), chunks);
  impl_->options.chunks = chunks;
  impl_->options.schedule = schedule;
}

int Pipeline::stages() const { return int(impl_->stages.size()); }
int Pipeline::local_stage() const { return impl_->local; }
const PipelineOptions& Pipeline::options() const { return impl_->options; }
const std::vector<std::vector<Task>>& Pipeline::orders() const { return impl_->orders; }

}  // namespace ep::pipeline
