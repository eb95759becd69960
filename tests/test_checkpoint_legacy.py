"""Checkpoints written before TrainState lost its unused `rng` field still resume."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from lm.checkpoint import Checkpoints
from lm.step import TrainState


@struct.dataclass
class _StateWithRng:          # TrainState as it was, with the PRNG key it never used
    step: jax.Array
    params: dict
    opt_state: tuple
    first_bad_step: jax.Array
    rng: jax.Array


def test_a_checkpoint_with_the_old_rng_field_restores_into_todays_train_state(tmp_path):
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    old = _StateWithRng(step=jnp.int32(7), params=params, opt_state=(jnp.zeros(3),), first_bad_step=jnp.int32(-1),
                        rng=jax.random.PRNGKey(0))
    ckpts = Checkpoints(str(tmp_path / "checkpoints"), async_save=False)
    ckpts.save(7, old, {"position": 7}, {"step": 7})
    ckpts.wait()
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                            TrainState(step=old.step, params=params, opt_state=old.opt_state,
                                       first_bad_step=old.first_bad_step))
    state, data, meta = Checkpoints(str(tmp_path / "checkpoints"), read_only=True).restore(abstract)
    assert isinstance(state, TrainState) and int(state.step) == 7 and int(state.first_bad_step) == -1
    np.testing.assert_array_equal(state.params["w"], params["w"])
    assert data == {"position": 7} and meta == {"step": 7}
