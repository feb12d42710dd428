#include "sbi/simulator.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <vector>

#include "core/error.hpp"

extern char** environ;

namespace asbi::sbi {

namespace {

void check_batch(const char* who, const Simulator& sim, const Tensor& theta, const Tensor& x) {
  if (!theta.defined() || theta.rank() != 2 || theta.dim(1) != sim.theta_dim())
    throw core::ShapeError(core::str(who, ": expected theta [B, ", sim.theta_dim(), "], got ",
                                     theta.defined() ? theta.shape() : core::Shape{}));
  if (!x.defined() || x.rank() != 2 || x.dim(0) != theta.dim(0) || x.dim(1) != sim.x_dim())
    throw core::ShapeError(core::str(who, ": expected x [", theta.dim(0), ", ", sim.x_dim(),
                                     "], got ", x.defined() ? x.shape() : core::Shape{}));
}

}  // namespace

Tensor Simulator::simulate(const Tensor& theta, std::uint64_t seed, std::uint64_t first_row) const {
  if (!theta.defined() || theta.rank() != 2)
    throw core::ShapeError(core::str("Simulator::simulate: expected theta [B, ", theta_dim(),
                                     "], got ", theta.defined() ? theta.shape() : core::Shape{}));
  Tensor x = Tensor::zeros({theta.dim(0), x_dim()}, theta.dtype(), theta.device());
  simulate(theta, x, seed, first_row);
  return x;
}

void RowSimulator::simulate(const Tensor& theta, Tensor& x, std::uint64_t seed,
                            std::uint64_t first_row) const {
  check_batch("Simulator::simulate", *this, theta, x);
  const std::int64_t b = theta.dim(0), d = theta_dim(), xd = x_dim();
  const std::vector<double> th = theta.to_vector();
  std::vector<double> out(static_cast<std::size_t>(b * xd));
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 16)
  for (std::int64_t i = 0; i < b; ++i) {
    try {
      core::Rng rng(seed, first_row + static_cast<std::uint64_t>(i));
      simulate_row(std::span<const double>(th).subspan(static_cast<std::size_t>(i * d),
                                                       static_cast<std::size_t>(d)),
                   std::span<double>(out).subspan(static_cast<std::size_t>(i * xd),
                                                  static_cast<std::size_t>(xd)),
                   rng);
    } catch (...) {
      // Exceptions must not cross the parallel region; the first one is rethrown after it.
#pragma omp critical(asbi_sbi_simulate_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  x.copy_from(Tensor::from(out, x.shape(), x.dtype()));
}

CallableSimulator::CallableSimulator(std::int64_t theta_dim, std::int64_t x_dim, RowFn row,
                                     BatchFn batch)
    : theta_dim_(theta_dim), x_dim_(x_dim), row_(std::move(row)), batch_(std::move(batch)) {
  if (theta_dim <= 0 || x_dim <= 0)
    throw core::ValueError(
        core::str("CallableSimulator: expected theta_dim > 0 and x_dim > 0, "
                  "got ",
                  theta_dim, " and ", x_dim));
  if (!row_ && !batch_) throw core::ValueError("CallableSimulator: expected a callable, got none");
}

CallableSimulator CallableSimulator::per_row(std::int64_t theta_dim, std::int64_t x_dim, RowFn fn) {
  if (!fn) throw core::ValueError("CallableSimulator::per_row: expected a callable, got none");
  return CallableSimulator(theta_dim, x_dim, std::move(fn), nullptr);
}

CallableSimulator CallableSimulator::per_batch(std::int64_t theta_dim, std::int64_t x_dim,
                                               BatchFn fn) {
  if (!fn) throw core::ValueError("CallableSimulator::per_batch: expected a callable, got none");
  return CallableSimulator(theta_dim, x_dim, nullptr, std::move(fn));
}

void CallableSimulator::simulate_row(std::span<const double> theta, std::span<double> x,
                                     core::Rng& rng) const {
  if (row_) {
    row_(theta, x, rng);
    return;
  }
  // A batch callable asked for one row: run it on a one-row batch at the Rng's stream.
  Tensor t =
      Tensor::from(std::vector<double>(theta.begin(), theta.end()), {1, theta_dim_}, DType::f64);
  Tensor out = Tensor::zeros({1, x_dim_}, DType::f64);
  batch_(t, out, rng.seed(), rng.stream());
  const std::vector<double> v = out.to_vector();
  for (std::size_t j = 0; j < x.size(); ++j) x[j] = v[j];
}

void CallableSimulator::simulate(const Tensor& theta, Tensor& x, std::uint64_t seed,
                                 std::uint64_t first_row) const {
  if (row_) {
    RowSimulator::simulate(theta, x, seed, first_row);
    return;
  }
  check_batch("CallableSimulator::simulate", *this, theta, x);
  batch_(theta, x, seed, first_row);
}

std::uint64_t simulator_seed(std::uint64_t seed) {
  // SplitMix64 finaliser: a well-mixed seed distinct from the prior's.
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Dataset simulate_dataset(const Prior& prior, const Simulator& simulator, std::int64_t n,
                         std::uint64_t seed, DType dtype, std::int64_t batch_size) {
  if (n <= 0) throw core::ValueError(core::str("simulate_dataset: expected n > 0, got ", n));
  if (prior.dim() != simulator.theta_dim())
    throw core::ValueError(core::str("simulate_dataset: prior has dimension ", prior.dim(),
                                     ", simulator expects theta_dim ", simulator.theta_dim()));
  core::Rng rng(seed, /*stream=*/0);
  return simulate_at(prior.sample(n, rng, DType::f64), simulator, simulator_seed(seed), dtype,
                     batch_size);
}

Dataset simulate_at(const Tensor& theta, const Simulator& simulator, std::uint64_t seed,
                    DType dtype, std::int64_t batch_size) {
  if (batch_size <= 0)
    throw core::ValueError(core::str("simulate: expected batch_size > 0, got ", batch_size));
  if (theta.rank() != 2 || theta.dim(1) != simulator.theta_dim() || theta.dim(0) == 0)
    throw core::ShapeError(core::str("simulate: expected theta [n > 0, ", simulator.theta_dim(),
                                     "], got ", theta.shape()));
  const std::int64_t n = theta.dim(0), d = theta.dim(1), xd = simulator.x_dim();
  std::vector<double> theta_keep, x_keep;
  std::int64_t invalid = 0;
  for (std::int64_t start = 0; start < n; start += batch_size) {
    const std::int64_t end = std::min(n, start + batch_size);
    const Tensor tb = theta.rows(start, end);
    Tensor xb = Tensor::zeros({end - start, xd}, DType::f64);
    simulator.simulate(tb, xb, seed, static_cast<std::uint64_t>(start));
    const std::vector<double> tv = tb.to_vector(), xv = xb.to_vector();
    for (std::int64_t i = 0; i < end - start; ++i) {
      const auto xr = xv.begin() + i * xd;
      bool ok = true;
      for (std::int64_t j = 0; j < xd; ++j) ok = ok && std::isfinite(xr[j]);
      if (!ok) {
        ++invalid;
        continue;
      }
      theta_keep.insert(theta_keep.end(), tv.begin() + i * d, tv.begin() + (i + 1) * d);
      x_keep.insert(x_keep.end(), xr, xr + xd);
    }
  }
  if (invalid == n)
    throw core::ValueError(core::str("simulate: all ", n,
                                     " simulations returned NaN or "
                                     "Inf; expected at least one finite x"));
  const std::int64_t kept = n - invalid;
  return Dataset{Tensor::from(theta_keep, {kept, d}, dtype),
                 Tensor::from(x_keep, {kept, xd}, dtype), invalid};
}

ExternalSimulator::ExternalSimulator(std::vector<std::string> command, std::int64_t theta_dim,
                                     std::int64_t x_dim, double timeout_seconds)
    : command_(std::move(command)),
      theta_dim_(theta_dim),
      x_dim_(x_dim),
      timeout_seconds_(timeout_seconds) {
  if (command_.empty() || command_[0].empty())
    throw core::ValueError("ExternalSimulator: expected a command (program and arguments)");
  if (theta_dim <= 0 || x_dim <= 0)
    throw core::ValueError(
        core::str("ExternalSimulator: expected theta_dim > 0 and x_dim > 0, "
                  "got ",
                  theta_dim, " and ", x_dim));
  if (!(timeout_seconds > 0))
    throw core::ValueError(
        core::str("ExternalSimulator: expected timeout_seconds > 0, got ", timeout_seconds));
}

namespace {

// Blocks SIGPIPE on this thread while talking to a child, so a child that exits without reading
// its stdin makes write() fail with EPIPE instead of killing the host; a pending SIGPIPE is
// consumed before the mask is restored.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_, old_;
};

}  // namespace

void ExternalSimulator::simulate(const Tensor& theta, Tensor& x, std::uint64_t seed,
                                 std::uint64_t first_row) const {
  check_batch("ExternalSimulator::simulate", *this, theta, x);
  const std::string& program = command_[0];
  const std::int64_t b = theta.dim(0);
  std::string input;
  {
    const std::vector<double> th = theta.to_vector();
    std::ostringstream out;
    out.precision(17);
    for (std::int64_t i = 0; i < b; ++i)
      for (std::int64_t j = 0; j < theta_dim_; ++j)
        out << th[static_cast<std::size_t>(i * theta_dim_ + j)]
            << (j + 1 == theta_dim_ ? '\n' : ',');
    input = out.str();
  }
  // Everything the child needs is built before fork: between fork and exec only
  // async-signal-safe calls are allowed.
  std::vector<std::string> env_strings = {core::str("ASBI_SEED=", seed),
                                          core::str("ASBI_FIRST_ROW=", first_row)};
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, "ASBI_SEED=", 10) != 0 && std::strncmp(*e, "ASBI_FIRST_ROW=", 15) != 0)
      envp.push_back(*e);
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args_copy = command_;
  std::vector<char*> argv;
  for (std::string& a : args_copy) argv.push_back(a.data());
  argv.push_back(nullptr);

  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) throw core::Error("ExternalSimulator: pipe() failed");
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    throw core::Error("ExternalSimulator: pipe() failed");
  }
  SigpipeGuard guard;
  const pid_t pid = fork();
  if (pid < 0) {
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1]}) close(fd);
    throw core::Error(core::str("ExternalSimulator: cannot start ", program, " (fork failed)"));
  }
  if (pid == 0) {
    dup2(in_pipe[0], STDIN_FILENO);
    dup2(out_pipe[1], STDOUT_FILENO);
    execvpe(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  int to_child = in_pipe[1];
  const int from_child = out_pipe[0];
  fcntl(to_child, F_SETFL, O_NONBLOCK);
  if (input.empty()) {
    close(to_child);
    to_child = -1;
  }
  std::string output;
  std::size_t written = 0;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds_);
  bool timed_out = false;
  for (bool open_out = true; open_out;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[2] = {{from_child, POLLIN, 0}, {to_child, POLLOUT, 0}};
    const int nfds = to_child >= 0 ? 2 : 1;
    if (poll(fds, static_cast<nfds_t>(nfds), static_cast<int>(left.count())) < 0) continue;
    if (nfds == 2 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t n = write(to_child, input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<std::size_t>(n);
      if (n < 0 || written == input.size()) {  // done, or the child stopped reading
        close(to_child);
        to_child = -1;
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      const ssize_t n = read(from_child, buf, sizeof buf);
      if (n > 0) output.append(buf, static_cast<std::size_t>(n));
      if (n == 0) open_out = false;
    }
  }
  if (to_child >= 0) close(to_child);
  close(from_child);
  // A child that closed stdout may still run: it gets the rest of the timeout, then is killed.
  int status = 0;
  while (true) {
    if (timed_out) kill(pid, SIGKILL);
    const pid_t r = waitpid(pid, &status, timed_out ? 0 : WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) break;
    if (r == 0) {
      if (std::chrono::steady_clock::now() >= deadline)
        timed_out = true;
      else
        usleep(1000);
    }
  }
  if (timed_out)
    throw core::Error(core::str("ExternalSimulator: ", program, " timed out after ",
                                timeout_seconds_, " s and was killed"));
  if (WIFSIGNALED(status))
    throw core::Error(
        core::str("ExternalSimulator: ", program, " was killed by signal ", WTERMSIG(status)));
  if (WEXITSTATUS(status) == 127)
    throw core::Error(core::str("ExternalSimulator: cannot run ", program,
                                " (exit status 127: not found or not executable)"));
  if (WEXITSTATUS(status) != 0)
    throw core::Error(core::str("ExternalSimulator: ", program, " exited with status ",
                                WEXITSTATUS(status), "; expected 0"));
  std::vector<double> values;
  values.reserve(static_cast<std::size_t>(b * x_dim_));
  std::istringstream lines(output);
  std::string line;
  std::int64_t line_no = 0;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    ++line_no;
    if (line_no > b)
      throw core::IoError(core::str("ExternalSimulator: ", program, " printed more than the ", b,
                                    " expected rows"));
    std::int64_t count = 0;
    const char* p = line.c_str();
    while (true) {
      char* end = nullptr;
      const double v = std::strtod(p, &end);
      if (end == p || (*end != ',' && *end != '\0' && *end != ' '))
        throw core::IoError(core::str("ExternalSimulator: ", program, " output line ", line_no,
                                      ": expected ", x_dim_, " comma-separated numbers, got '",
                                      line, "'"));
      values.push_back(v);
      ++count;
      while (*end == ' ') ++end;
      if (*end == '\0') break;
      p = end + 1;
    }
    if (count != x_dim_)
      throw core::IoError(core::str("ExternalSimulator: ", program, " output line ", line_no,
                                    ": expected ", x_dim_, " values, got ", count));
  }
  if (line_no != b)
    throw core::IoError(
        core::str("ExternalSimulator: ", program, " printed ", line_no, " rows; expected ", b));
  x.copy_from(Tensor::from(values, x.shape(), x.dtype()));
}

}  // namespace asbi::sbi
