"""Main + auxiliary PCGrad (MTRec, Bi et al. 2022, as in the kit's report C): PCGrad between two gradients.

g_main is the main task's gradient and g_aux = aux_weight * (sum of the other tasks' gradients). With the
(2, K) mixing matrix A of ``mtkit.surgery.pcgrad.main_aux_mixing`` ([g_main; g_aux] = A @ rows), their Gram
is A G A.T, PCGrad on it gives the (2, 2) weights W2, and the update g_main^PC + g_aux^PC has coefficients
W2.sum(0) @ A over the K tasks. "mean" halves it. A main task absent this step counts as a zero gradient
(the update is then g_aux). No ``per_task``: the auxiliaries are projected as one combined gradient.
"""
from __future__ import annotations

from mtkit.surgery.methods.base import GramWeighting, Step, Weights
from mtkit.surgery.pcgrad import DEFAULT_EPS, REDUCTIONS, main_aux_mixing, pcgrad_weights, visit_orders
from mtkit.surgery.registry import MethodError, check_choice, check_number

__all__ = ["MainAux"]


class MainAux(GramWeighting):
    """``main_task``: one of the run's tasks; ``aux_weight``: lambda on the sum of the others (0.3 in
    report C); ``reduction`` and ``eps`` as in PCGrad."""

    name = "main_aux"
    summary = "PCGrad between the main task and aux_weight x (sum of the auxiliary tasks)"
    paper = "Bi et al. 2022 (MTRec); Yu et al. 2020"
    stochastic = True

    def __init__(self, tasks, main_task: str, aux_weight: float = 0.3, reduction: str = "sum",
                 eps: float = DEFAULT_EPS) -> None:
        super().__init__(tasks)
        if main_task not in self.tasks:
            raise MethodError(f"{self.name}: option main_task must be one of the tasks {self.tasks}; "
                              f"got {main_task!r}.")
        if len(self.tasks) < 2:
            raise MethodError(f"{self.name}: needs at least one auxiliary task besides {main_task!r}.")
        self.main_task = main_task
        self.aux_weight = check_number(self.name, "aux_weight", aux_weight, 0.0)
        self.reduction = check_choice(self.name, "reduction", reduction, REDUCTIONS)
        self.eps = check_number(self.name, "eps", eps, 0.0)

    def weigh(self, step: Step) -> Weights:
        G = step.gram  # (k, k)
        A = main_aux_mixing(step.num_tasks, self.tasks.index(self.main_task), self.aux_weight,
                            dtype=G.dtype, device=G.device)[:, step.index.to(G.device)]  # (2, k)
        gram2 = A @ G @ A.T  # (2, 2) Gram of [g_main; g_aux]
        orders = visit_orders(2, step.generator, device=G.device)  # (2, 1)
        W2 = pcgrad_weights(gram2, orders, self.eps)  # (2, 2)
        coefficients = W2.sum(dim=0) @ A  # (k,)
        if self.reduction == "mean":
            coefficients = coefficients / 2
        return Weights(coefficients)
