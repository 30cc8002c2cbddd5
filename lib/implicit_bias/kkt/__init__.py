"""Approximate-KKT certificates for the margin problem of a homogeneous model in a norm.

The margin problem for a norm ``‖·‖`` (see the reference, §0) is

    min ½‖θ‖²   s.t.   q_i(θ) = y_i f(x_i; θ) ≥ 1,

with KKT conditions: ``λ ≥ 0``, ``Σ_i λ_i ∇q_i(θ) ∈ ‖θ‖ ∂‖θ‖`` and ``λ_i (q_i − 1) = 0``,
where ``∂‖θ‖ = {v : ‖v‖_* ≤ 1, ⟨v, θ⟩ = ‖θ‖}``. :func:`kkt_certificate` measures how far
a trained model's direction is from being a KKT direction of that problem by solving the
small convex program

    ε = min_{λ ≥ 0, ‖v‖_* ≤ 1}  ‖Jᵀλ − ‖θ‖ v‖_* / ‖θ‖  +  (1 − ⟨v, θ⟩ / ‖θ‖)

over the multipliers λ of the (near-)active points and a dual-ball vector v, where J holds
the margin gradients ``∇q_i`` of the near-active points. The first term is the
*stationarity* residual (in the dual norm, relative to ‖θ‖, as in Lyu & Li's (ε, δ)-KKT
notion); the second, the *subgradient gap*, is ≥ 0 and vanishes exactly when
``v ∈ ∂‖θ‖``. Relaxing the subdifferential this way keeps the certificate continuous: for
ℓ∞ or spectral norms a nearly converged θ has several coordinates / singular values
*almost* at the maximum, and insisting on the exact subdifferential would make the value
jump. ``ε = 0`` with ``δ = 0`` is exactly the KKT condition; both are invariant to
rescaling θ (θ is first rescaled so that ``min_i q_i = 1``).

Reading the numbers. ``ε ≤ 1`` always (λ = 0, v = 0 is feasible), so ε near 1 means "no
evidence of stationarity" and ε → 0 at a KKT direction. Duality gives a geometric reading:

    ε = 1 − min { ‖θ/‖θ‖ + z‖ : ‖z‖ ≤ 1, ⟨∇q_i, z⟩ ≥ 0 for the near-active i },

so ε > 0 exactly when a step z that does not decrease any near-active margin (to first
order) shortens θ, and ε measures by how much. For ℓ2 this is ``ε = 1 − cos φ ≈ φ²/2``
with φ the angle between θ and the cone spanned by the near-active gradients, while the
residual of Lyu & Li's ``θ ≈ Σλ_i ∇q_i`` (``method='nnls'``) is ``sin φ ≈ φ``: the relaxed
certificate is roughly the *square* of the fixed-subgradient residual for smooth norms,
so compare ε across optimizers within one norm, not against residuals of another kind.
ε must be read together with ``delta_relative`` (see ``active_tol``).

Costs (2 CPU cores). The gradients are computed with ``torch.func.vmap`` over samples
(:mod:`.jacobian`; O(k·p) memory, about a second for k = 350, p ≈ 17k). The fast paths
below are taken by the norm's ``lp`` (2 or ∞); any other norm, a user's own included, goes
to cvxpy through its ``dual_expr`` (:mod:`.solve_cvxpy`).

* ℓ2: the program is reduced *exactly* to k + 1 dimensions (everything lives in the span
  of the gradients and θ, see :mod:`.solve_l2`): milliseconds after a QR.
* ℓ∞ (dual ℓ1): an LP with p rows and k dense columns. Generic sparse solvers handle
  dense columns badly (Clarabel: ~20 s, HiGHS: minutes, for p ≈ 17k and k = 350), so
  large programs (p·k ≥ :data:`IPM_MIN_SIZE`) use a dedicated interior-point method
  (:mod:`.solve_linf`, a few seconds there) that stops at a relative duality gap of
  about 1e-6 to 1e-8 on such problems; small ones use Clarabel (gap 1e-8). Its residuals
  can understate its error: on one 200-digit instance it ended "optimal_inaccurate" with
  residuals of 9e-7 but ε 2.2e-5 above Clarabel's, so use ``method='cvxpy'`` when ε must be
  exact beyond 1e-4.
  ``method='cvxpy'`` forces Clarabel.
* ℓ1 (dual ℓ∞): an LP through cvxpy/Clarabel; slow for large p·k (like ℓ∞ above).
* max-spectral (dual: a sum of nuclear norms) and hybrid norms with a spectral block:
  semidefinite programs. Each matrix is first projected exactly onto the column and row
  spaces of its gradients and θ (:mod:`.reduce`), so an (m × n) layer becomes at most
  ``min(m, k + n) × min(n, k + m)`` and the PSD blocks have that side sum; the columns of
  the gradient block are equilibrated and SCS starts from ``scale = 1`` (together 5–30×
  fewer iterations than SCS's defaults here). SCS solves it at ``eps = 1e-5``
  (:data:`SDP_DEFAULTS`; ε comes out within about 1e-5–1e-4 of the optimum; small
  programs, ``p·k ≤`` :data:`SMALL_SDP` after the reduction, go to Clarabel instead and
  are accurate to about 1e-8): for the
  256 × 64 layer of the benchmark about 2–6 s with 2 near-active points, 7–11 s with 16
  and 25–40 s with 75; with k ≥ 192 nothing is left to reduce (PSD side 320) and it
  takes minutes. Cap the active set (``max_points``) or loosen ``solver_options`` for
  big layers; interior-point solvers (Clarabel) are far slower on these SDPs (minutes
  for k = 2).

Whatever the solver's accuracy, the reported numbers are evaluated at a *feasible*
(λ, v) (λ clipped to ≥ 0, v scaled into the dual ball, and never worse than λ = 0,
v = 0), so the reported ε is always a valid upper bound on the program's minimum: an
inaccurate solve makes the certificate looser, never wrong.
"""

from .certificate import IPM_MIN_SIZE, KKTCertificate, kkt_certificate
from .constrained import ConstrainedCertificate, constrained_certificate
from .jacobian import margin_jacobian
from .solve_cvxpy import SDP_DEFAULTS, SMALL_SDP, dual_norm_expr

__all__ = ["KKTCertificate", "kkt_certificate", "ConstrainedCertificate", "constrained_certificate",
           "margin_jacobian", "dual_norm_expr", "SDP_DEFAULTS", "IPM_MIN_SIZE", "SMALL_SDP"]
