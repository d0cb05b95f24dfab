"""What steers and records `generate()` row by row: each row's own token cap, a stop on request
(a caller that timed out), and the log-probability of every chosen token after the grammar mask.

Duck-typed stopping criteria and logits processor (no transformers base classes at import): this
module imports torch only when a criterion is built or called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class RowBudget:
    """Stopping criterion (duck-typed, as `LogprobRecorder` is a logits processor): ends each
    row at its own token cap; `generate()` pads it while the others go on."""

    def __init__(self, prompt_length: int, caps: Sequence[int]) -> None:
        import torch

        self.prompt_length = prompt_length
        self.caps = torch.tensor(caps)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        generated = input_ids.shape[1] - self.prompt_length
        return (generated >= self.caps).to(input_ids.device)


class StopWhen:
    """Stopping criterion (duck-typed, as `RowBudget`): ends every row at the next step once
    `should_stop()` is true."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        stop = self.should_stop()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class LogprobRecorder:
    """Logits processor placed last: log-probability of each chosen token, under the final
    (grammar-masked, renormalised) distribution, as vLLM reports it with structured outputs.

    Keeps one (batch,) vector per step instead of `output_scores`' (batch, vocab) per step,
    which would cost gigabytes at batch 32 x 768 steps x 32k vocab.
    """

    def __init__(self) -> None:
        self._chosen: list[torch.Tensor] = []
        self._last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._last is not None:  # input_ids now ends with the token chosen from _last
            self._chosen.append(self._last.gather(1, input_ids[:, -1:]).squeeze(1))
        import torch

        self._last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """(batch, steps) float32 on CPU, aligned with the generated tokens."""
        steps = new_tokens.shape[1]
        chosen = self._chosen[:steps]
        if len(chosen) < steps and self._last is not None:  # the last token saw no next call
            last = new_tokens[:, len(chosen) : len(chosen) + 1]
            chosen.append(self._last.gather(1, last).squeeze(1))
        import torch

        if not chosen:
            return torch.zeros(new_tokens.shape, dtype=torch.float32)
        return torch.stack(chosen, dim=1).float().cpu()
