#pragma once
// Adaptive explicit Runge–Kutta integration of y' = f(t, y) for the ODE-based simulators (sir,
// lotka_volterra): the Dormand–Prince 5(4) pair with its 4th-order dense output.
//
//   auto decay = [](double, std::span<const double> y, std::span<double> dydt) {
//     dydt[0] = -0.5 * y[0];
//   };
//   const std::vector<double> t_eval = {0, 1, 2, 4};
//   std::vector<double> out(t_eval.size() * 1);  // row i = y(t_eval[i])
//   sbi::solve_ode(decay, std::vector<double>{1.0}, 0.0, t_eval, out, {.rtol = 1e-8});
//
// Method (Hairer, Nørsett & Wanner, "Solving ODEs I", 2nd ed., §II.4-II.6; Dormand & Prince,
// "A family of embedded Runge-Kutta formulae", J. Comput. Appl. Math. 6, 1980, RK5(4)7M;
// tableau as printed in HNW table II.5.2):
//  * 7 stages, the 7th evaluated at the new point, so it is the next step's 1st (FSAL):
//    6 evaluations per step. The 5th-order solution propagates (local extrapolation).
//  * Error estimate y5 - y4 measured in the mixed norm
//    err = sqrt(mean_i (e_i / (atol + rtol·max(|y_i|, |y_new,i|)))²); a step is accepted when
//    err <= 1 (HNW eq. II.4.11).
//  * PI step-size control as in Hairer's DOPRI5 code (Hairer & Wanner, "Solving ODEs II",
//    §IV.2): h_new = h · clamp(0.9 · err^-(1/5 - 0.75β) · err_prev^β, 0.2, 10), β = 0.04. A
//    rejected step shrinks by 0.9 · err^-(1/5 - 0.75β) (at least ×0.2), and the step after a
//    rejection may not grow. The small β damps the step-size oscillation that plain control
//    shows where stability, not accuracy, limits the step.
//  * Initial step by Hairer's algorithm (HNW §II.4, "Starting step size", in the RMS norm
//    above), unless given: one extra evaluation.
//  * Output at t_eval by the 4th-order continuous extension used in DOPRI5 (Shampine, "Some
//    practical Runge-Kutta formulas", Math. Comp. 46, 1986; HNW §II.6), so requested times
//    never shorten the steps: y(t) is the same whichever other times are requested, as long
//    as the last one (the end of the integration) is the same.
//  * Forward integration only, explicit method: stiff problems are not its job; max_steps
//    turns them into an OdeError instead of a hang.
//
// Thread safety: no global state; each call allocates one work buffer. The right-hand side is
// called from the calling thread only.
#include <concepts>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>

#include "core/error.hpp"

namespace asbi::sbi {

class OdeRhs;

// What OdeRhs accepts: anything callable as f(t, y, dydt), other than an OdeRhs itself.
template <typename F>
concept OdeRhsCallable = !std::same_as<std::remove_cvref_t<F>, OdeRhs> &&
                         std::invocable<F&, double, std::span<const double>, std::span<double>>;

// A non-owning reference to a callable void(double t, span<const double> y, span<double> dydt)
// (like C++26 std::function_ref): no allocation, one indirect call per evaluation. It refers to
// the callable, so it must not outlive it: build it in the call to solve_ode.
class OdeRhs {
 public:
  template <OdeRhsCallable F>
  OdeRhs(F&& f) noexcept {  // NOLINT(google-explicit-constructor): lambdas convert implicitly
    using Target = std::remove_reference_t<F>;
    if constexpr (std::is_function_v<Target>) {
      // A plain function has no object address to keep; its pointer round-trips through
      // void (*)() (any function pointer may be cast to another and back).
      target_.function = reinterpret_cast<void (*)()>(&f);
      call_ = [](Erased target, double t, std::span<const double> y, std::span<double> dydt) {
        reinterpret_cast<Target*>(target.function)(t, y, dydt);
      };
    } else {
      target_.object = const_cast<void*>(static_cast<const void*>(std::addressof(f)));
      call_ = [](Erased target, double t, std::span<const double> y, std::span<double> dydt) {
        (*static_cast<Target*>(target.object))(t, y, dydt);
      };
    }
  }

  void operator()(double t, std::span<const double> y, std::span<double> dydt) const {
    call_(target_, t, y, dydt);
  }

 private:
  union Erased {
    void* object;
    void (*function)();
  };
  Erased target_{};
  void (*call_)(Erased, double, std::span<const double>, std::span<double>) = nullptr;
};

struct OdeOptions {
  double rtol = 1e-6;  // relative tolerance, >= 0
  double atol = 1e-9;  // absolute tolerance, > 0 (a pure relative test fails where y crosses 0)
  std::int64_t max_steps = 100000;  // accepted + rejected steps before giving up
  double initial_step = 0;          // 0: chosen by Hairer's algorithm
  double max_step = 0;              // 0: no limit beyond the integration interval
};

struct OdeStats {
  std::int64_t steps = 0;        // accepted
  std::int64_t rejected = 0;     // rejected by the error test or for non-finite values
  std::int64_t evaluations = 0;  // calls of the right-hand side
};

// A failed integration (max_steps reached, step-size underflow, non-finite values); simulators
// catch it and report the row as NaN. Bad arguments throw ValueError/ShapeError instead.
class OdeError : public core::Error {
 public:
  using core::Error::Error;
};

// Integrates y' = rhs(t, y) forward from y(t0) = y0 and writes y(t_eval[i]) to
// out[i·dim, (i+1)·dim), dim = y0.size(). t_eval must be finite, non-decreasing and >= t0
// (entries equal to t0 get y0 itself). Throws ShapeError when out.size() != t_eval.size()·dim,
// ValueError for bad options, non-finite y0 or unsorted t_eval, and OdeError when the
// integration fails (the message gives t, the step size and the reason).
void solve_ode(OdeRhs rhs, std::span<const double> y0, double t0, std::span<const double> t_eval,
               std::span<double> out, const OdeOptions& options = {}, OdeStats* stats = nullptr);

}  // namespace asbi::sbi
