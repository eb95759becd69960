"""Training steps in blocks: the one rule the loop, the data pipeline and the compiled step share.

The loop puts the inputs of several consecutive steps on the devices at once (one draw from the
dataset, one transfer) and the compiled train step picks its own from the block, so nothing moves
to the devices per step. Block j holds steps [j*size, (j+1)*size); step s sits in slot s % size.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class StepBlocks:
    """Blocks of `size` consecutive training steps (block j: steps [j*size, (j+1)*size))."""

    size: int

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"a block of steps holds at least one step, got size={self.size!r}")

    def slot(self, step):
        """The slot of `step` in its block; works on ints and on traced int32 scalars."""
        return step % self.size

    def first(self, step: int) -> int:
        """The first step of the block that holds `step`."""
        return step - self.slot(step)

    def starts_block(self, step: int) -> bool:
        return self.slot(step) == 0

    def fill(self, step: int, stop: int) -> int:
        """The end of the steps [step, end) a block is filled with from `step` on: the block's end
        or `stop` (the run's last step), whichever comes first (never before `step`)."""
        return max(step, min(self.first(step) + self.size, stop))

    def check_within(self, start: int, stop: int) -> None:
        """Steps [start, stop) lie within one block (ValueError otherwise)."""
        first = self.first(start)
        if not first <= start <= stop <= first + self.size:
            raise ValueError(f"steps [{start}, {stop}) are not within one block of {self.size} steps")
