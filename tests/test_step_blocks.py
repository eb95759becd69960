"""lm.step_blocks: the block-of-steps rule the loop, the pipeline and the compiled step share."""

import jax.numpy as jnp
import pytest

from lm.step_blocks import StepBlocks


def test_blocks_hold_consecutive_steps():
    b = StepBlocks(4)
    assert [b.slot(s) for s in range(9)] == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert [b.first(s) for s in (0, 3, 4, 7, 8)] == [0, 0, 4, 4, 8]
    assert [s for s in range(10) if b.starts_block(s)] == [0, 4, 8]
    assert int(b.slot(jnp.int32(6))) == 2                      # traced steps too


def test_a_block_is_filled_up_to_its_end_or_the_runs_last_step():
    b = StepBlocks(4)
    assert b.fill(5, 100) == 8 and b.fill(5, 6) == 6 and b.fill(6, 6) == 6   # a finished run: empty
    b.check_within(5, 8)
    with pytest.raises(ValueError, match="within one block"):
        b.check_within(3, 6)


@pytest.mark.parametrize("size", [0, -1, 2.0])
def test_a_block_holds_at_least_one_step(size):
    with pytest.raises(ValueError, match="at least one step"):
        StepBlocks(size)
